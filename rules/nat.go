package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// natOption parses --to-source, --to-destination (ADDR[:PORT[-PORT]], [V6ADDR]:PORT) and
// --to-ports (PORT[-PORT]).
func (b *ruleBuilder) natOption(opt, val string) error {
	r, p, line := b.r, b.p, b.line
	switch {
	case opt == "--to-ports" && (r.Target.Kind == Masquerade || r.Target.Kind == Redirect):
		pr, err := parseNATPorts(val)
		if err != nil {
			return p.errf(line, opt, "%q: %v", val, err)
		}
		r.Target.Ports = pr
	case opt == "--to-source" && r.Target.Kind == SNAT, opt == "--to-destination" && r.Target.Kind == DNAT:
		addr, ports := val, ""
		if strings.HasPrefix(val, "[") {
			end := strings.Index(val, "]")
			if end < 0 {
				return p.errf(line, opt, "%q: unclosed [", val)
			}
			addr, ports = val[1:end], strings.TrimPrefix(val[end+1:], ":")
		} else if strings.Count(val, ":") == 1 {
			addr, ports, _ = strings.Cut(val, ":")
		}
		if strings.Contains(addr, "-") {
			return p.errf(line, opt, "%q: address ranges are not supported: give one address", val)
		}
		if addr != "" {
			a, err := netip.ParseAddr(addr)
			if err != nil || a.Zone() != "" {
				return p.errf(line, opt, "%q: bad address", val)
			}
			a = a.Unmap()
			if (b.family == IPv4 && !a.Is4()) || (b.family == IPv6 && a.Is4()) {
				return p.errf(line, opt, "%q: address of the wrong family for an %s rule set", val, b.family)
			}
			r.Target.Addr = a
		}
		if ports != "" {
			pr, err := parseNATPorts(ports)
			if err != nil {
				return p.errf(line, opt, "%q: %v", val, err)
			}
			r.Target.Ports = pr
		}
		if !r.Target.Addr.IsValid() && r.Target.Ports.Lo == 0 {
			return p.errf(line, opt, "needs an address or a port")
		}
	default:
		return p.errf(line, opt, "does not go with -j %s", r.Target.Kind)
	}
	if r.Target.Ports.Lo != 0 && (!r.HasProto || r.NotProto || (r.Proto != ProtoTCP && r.Proto != ProtoUDP)) {
		return p.errf(line, opt, "a port needs -p tcp or -p udp")
	}
	return nil
}

func parseNATPorts(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	l, err1 := strconv.ParseUint(lo, 10, 16)
	h := l
	var err2 error
	if isRange {
		h, err2 = strconv.ParseUint(hi, 10, 16)
	}
	if err1 != nil || err2 != nil || l == 0 || h < l {
		return PortRange{}, errBadPorts
	}
	return PortRange{Lo: uint16(l), Hi: uint16(h)}, nil
}

type natError string

func (e natError) Error() string { return string(e) }

const errBadPorts = natError("want PORT or LOW-HIGH, 1 to 65535")

// checkTable refuses targets that do not belong to the rule's table: netstack panics on a
// NAT target outside its hooks, and the kernel refuses DROP and REJECT in the nat table.
func checkTable(r *Rule, table string) error {
	k := r.Target.Kind
	switch {
	case table == "filter" && k.NAT():
		return ruleErr(r, "-j", "%s belongs to the nat table (stdpkt-nat), not to a filter", k)
	case table == "nat" && (k == Drop || k == Reject):
		return ruleErr(r, "-j", "%s in the nat table: the nat table does not filter (use stdpkt-fw)", k)
	case k == DNAT && !r.Target.Addr.IsValid() && r.Target.Ports.Lo == 0,
		k == SNAT && !r.Target.Addr.IsValid():
		opt := map[TargetKind]string{SNAT: "--to-source", DNAT: "--to-destination"}[k]
		return ruleErr(r, opt, "-j %s needs %s", k, opt)
	}
	return nil
}

// checkNATHook refuses a NAT target at a hook where it cannot run.
func checkNATHook(r *Rule, h hookSet, via string) error {
	switch r.Target.Kind {
	case SNAT, Masquerade:
		if h&^hookPostrouting != 0 {
			return ruleErr(r, "-j", "%s works only in POSTROUTING%s", r.Target.Kind, via)
		}
	case DNAT, Redirect:
		if h&^hookPrerouting != 0 {
			return ruleErr(r, "-j", "%s works only in PREROUTING here%s", r.Target.Kind, via)
		}
	}
	return nil
}

// NATFlags are stdpkt-nat's short flags.
type NATFlags struct {
	Inside     string     // "west" (the default) or "east": the side the private hosts are on
	SNAT       netip.Addr // --snat: translate sources leaving by the outside to this address
	Masquerade bool       // --masquerade: to the outside address of the stage (router mode)
	Ports      PortRange  // --ports: the source ports SNAT and MASQUERADE may use
	Forwards   []string   // --forward PROTO:PORT=ADDR:PORT, DNAT from the outside
}

// FromNATFlags compiles the flags to a nat table, through the same parser and checks as
// an iptables-save file, so both forms mean the same. An error names the flag at fault.
func FromNATFlags(f NATFlags) (*Ruleset, error) {
	inside := f.Inside
	if inside == "" {
		inside = West
	}
	if inside != West && inside != East {
		return nil, fmt.Errorf("--inside %q: want west or east", inside)
	}
	outside := map[string]string{West: East, East: West}[inside]
	snat := f.SNAT.Unmap()
	family := IPv4
	if snat.Is6() {
		family = IPv6
	}
	var b strings.Builder
	b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n")
	// flagOf[i] is the flag that wrote line i+6 of the table, for errors.
	var flagOf []string
	for _, fw := range f.Forwards {
		proto, rest, ok1 := strings.Cut(fw, ":")
		port, to, ok2 := strings.Cut(rest, "=")
		// Only the characters of ports and addresses: anything else (a blank, a quote, a
		// newline) would be read as more words or lines of the table.
		if !ok1 || !ok2 || (proto != "tcp" && proto != "udp") || strings.Trim(rest, "0123456789abcdefABCDEF.:[]=-") != "" {
			return nil, fmt.Errorf("--forward %q: want tcp|udp:PORT=ADDRESS:PORT, e.g. tcp:8080=192.0.2.10:80", fw)
		}
		pr, err := ParsePortRange(port)
		if err != nil {
			return nil, fmt.Errorf("--forward %q: port %q: %v", fw, port, err)
		}
		fmt.Fprintf(&b, "-A PREROUTING -i %s -p %s --dport %s -j DNAT --to-destination %s\n", outside, proto, pr, to)
		flagOf = append(flagOf, fmt.Sprintf("--forward %q", fw))
	}
	target, flag := "", ""
	switch {
	case snat.IsValid() && f.Masquerade:
		return nil, fmt.Errorf("--snat and --masquerade exclude each other")
	case snat.IsValid():
		target, flag = "SNAT --to-source "+snat.String(), fmt.Sprintf("--snat %s", f.SNAT)
		if snat.Is6() && f.Ports.Lo != 0 {
			target = "SNAT --to-source [" + snat.String() + "]"
		}
	case f.Masquerade:
		target, flag = "MASQUERADE", "--masquerade"
	case f.Ports.Lo != 0:
		return nil, fmt.Errorf("--ports needs --snat or --masquerade")
	}
	if target != "" {
		if f.Ports.Lo != 0 {
			// A port range only means something to TCP and UDP; other protocols (ICMP
			// echo) are translated by the address alone.
			portOpt := map[bool]string{true: ":", false: " --to-ports "}[snat.IsValid()]
			for _, proto := range []string{"tcp", "udp"} {
				fmt.Fprintf(&b, "-A POSTROUTING -o %s -p %s -j %s%s%d-%d\n", outside, proto, target, portOpt, f.Ports.Lo, f.Ports.Hi)
				flagOf = append(flagOf, fmt.Sprintf("%s --ports %d-%d", flag, f.Ports.Lo, f.Ports.Hi))
			}
		}
		fmt.Fprintf(&b, "-A POSTROUTING -o %s -j %s\n", outside, target)
		flagOf = append(flagOf, flag)
	}
	b.WriteString("COMMIT\n")
	rs, err := Parse("flags", strings.NewReader(b.String()), Options{Family: family, Table: "nat"})
	var e *Error
	if errors.As(err, &e) && e.Line >= 6 && e.Line-6 < len(flagOf) {
		return nil, fmt.Errorf("%s: %s", flagOf[e.Line-6], e.Msg)
	}
	return rs, err
}

// ParsePortRange parses PORT or LOW-HIGH.
func ParsePortRange(s string) (PortRange, error) { return parseNATPorts(s) }

// ParseAliases adds NAME=west|east items to aliases. NAME is an interface name a rule can
// give (-i NAME): not empty, at most 15 bytes, no blank or slash, and not west or east.
func ParseAliases(items []string, aliases map[string]string) error {
	for _, a := range items {
		name, side, ok := strings.Cut(a, "=")
		if !ok || (side != West && side != East) {
			return fmt.Errorf("--alias %q: want NAME=west or NAME=east", a)
		}
		if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ ") {
			return fmt.Errorf("--alias %q: bad interface name %q", a, name)
		}
		if name == West || name == East {
			return fmt.Errorf("--alias %q: %s is already the name of a side", a, name)
		}
		aliases[name] = side
	}
	return nil
}
