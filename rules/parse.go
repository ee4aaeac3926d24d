package rules

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Options tune parsing.
type Options struct {
	// Family is the IP version of an iptables-save file: IPv4 (the default, iptables-save)
	// or IPv6 (ip6tables-save).
	Family Family
	// Aliases maps interface names a rule set uses (say "eth0" on the router it was
	// exported from) to the instance's "west" or "east".
	Aliases map[string]string
	// Table is the table to load: "filter" (the default, for stdpkt-fw) or "nat" (for
	// stdpkt-nat). Other tables in the file are skipped with a warning.
	Table string
}

// builtinChains lists each table's built-in chains, in iptables-save order.
var builtinChains = map[string][]string{
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
}

// otherTables are tables a router's export may hold that a stage skips, saying so.
var otherTables = []string{"filter", "nat", "mangle", "raw", "security"}

// maxLineLen bounds a rule line; a longer line is an error, not an allocation.
const maxLineLen = 64 << 10

// Parse reads a rule set in iptables-save form: a *filter table with chain declarations
// (":FORWARD DROP [0:0]"), -A rules and COMMIT. name is used in error messages. Anything it
// does not understand is an *Error naming the line and option.
func Parse(name string, r io.Reader, opts Options) (*Ruleset, error) {
	if opts.Family == 0 {
		opts.Family = IPv4
	}
	if opts.Table == "" {
		opts.Table = "filter"
	}
	if opts.Family != IPv4 && opts.Family != IPv6 {
		return nil, fmt.Errorf("parse %s: family must be IPv4 or IPv6", name)
	}
	if err := checkAliases(opts.Aliases); err != nil {
		return nil, fmt.Errorf("parse %s: %w", name, err)
	}
	p := &parser{file: name, opts: opts}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLineLen)
	var rs *Ruleset
	var table string // the table open since its *TABLE line, until COMMIT
	line := 0
	done := false
	skipping := false // inside a table this stage does not load
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		src := Source{File: name, Line: line, Text: text}
		switch {
		case text[0] == '*':
			if table != "" {
				return nil, p.errf(line, "", "table %s starts before table %s is committed", text[1:], table)
			}
			table = text[1:]
			if table != opts.Table {
				if !slices.Contains(otherTables, table) {
					return nil, p.errf(line, "", "unknown table %q", table)
				}
				p.warnings = append(p.warnings, fmt.Sprintf("%s:%d: table *%s skipped: this stage loads the *%s table (%s)",
					name, line, table, opts.Table, map[string]string{"filter": "filter rules belong to stdpkt-fw", "nat": "NAT rules belong to stdpkt-nat"}[table]))
				skipping = true
				continue
			}
			if done {
				return nil, p.errf(line, "", "table %s appears twice", table)
			}
			rs = &Ruleset{Table: table, Family: opts.Family}
		case text == "COMMIT":
			if table == "" {
				return nil, p.errf(line, "", "COMMIT outside a table")
			}
			if skipping {
				table, skipping = "", false
				continue
			}
			if err := p.finish(rs); err != nil {
				return nil, err
			}
			table, done = "", true
		case skipping:
			continue
		case table == "":
			return nil, p.errf(line, "", "%q outside a table (a rule set starts with *%s)", firstWord(text), opts.Table)
		case text[0] == ':':
			if err := p.declare(rs, src); err != nil {
				return nil, err
			}
		default:
			if err := p.ruleLine(rs, src); err != nil {
				return nil, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s after line %d: %w", name, line, err)
	}
	if table != "" {
		return nil, p.errf(line, "", "table %s is not committed (missing COMMIT)", table)
	}
	if rs == nil {
		return nil, &Error{File: name, Line: line, Msg: "no *" + opts.Table + " table"}
	}
	return rs, nil
}

func firstWord(s string) string {
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i]
	}
	return s
}

func checkAliases(aliases map[string]string) error {
	for k, v := range aliases {
		if v != West && v != East {
			return fmt.Errorf("interface alias %s=%s: must map to %s or %s", k, v, West, East)
		}
	}
	return nil
}

type parser struct {
	file     string
	opts     Options
	warnings []string
}

func (p *parser) errf(line int, opt, format string, args ...any) error {
	return &Error{File: p.file, Line: line, Option: opt, Msg: fmt.Sprintf(format, args...)}
}

// declare handles ":CHAIN POLICY [packets:bytes]".
func (p *parser) declare(rs *Ruleset, src Source) error {
	f := strings.Fields(src.Text[1:])
	if len(f) < 2 || len(f) > 3 {
		return p.errf(src.Line, "", "chain declaration %q: want \":CHAIN POLICY [packets:bytes]\"", src.Text)
	}
	name, policy := f[0], f[1]
	if rs.Chain(name) != nil {
		return p.errf(src.Line, "", "chain %s declared twice", name)
	}
	c := &Chain{Name: name, Src: src, Builtin: slices.Contains(builtinChains[rs.Table], name)}
	switch {
	case c.Builtin && policy == "ACCEPT":
		c.Policy = Accept
	case c.Builtin && policy == "DROP" && rs.Table != "nat":
		c.Policy = Drop
	case c.Builtin:
		return p.errf(src.Line, "", "chain %s: policy %q (a built-in chain's policy is ACCEPT or DROP)", name, policy)
	case policy != "-":
		return p.errf(src.Line, "", "user chain %s: policy %q (user chains have none: \"-\")", name, policy)
	case strings.HasPrefix(name, "-") || len(name) > 28:
		return p.errf(src.Line, "", "bad chain name %q", name)
	}
	rs.Chains = append(rs.Chains, c)
	return nil
}

// tokenize splits a line as iptables-restore does: on blanks, with double- or single-quoted
// strings and backslash escapes inside double quotes.
func tokenize(s string) ([]string, error) {
	var toks []string
	var cur strings.Builder
	in := false // inside a token
	var q byte  // open quote
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			} else if c == '\\' && q == '"' && i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			q, in = c, true
		case c == ' ' || c == '\t':
			if in {
				toks = append(toks, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if q != 0 {
		return nil, fmt.Errorf("unterminated %c quote", q)
	}
	if in {
		toks = append(toks, cur.String())
	}
	return toks, nil
}

// ruleLine handles "[packets:bytes] -A CHAIN options...".
func (p *parser) ruleLine(rs *Ruleset, src Source) error {
	toks, err := tokenize(src.Text)
	if err != nil {
		return p.errf(src.Line, "", "%v", err)
	}
	if len(toks) > 0 && strings.HasPrefix(toks[0], "[") && strings.HasSuffix(toks[0], "]") {
		toks = toks[1:] // iptables-save -c counters
	}
	if len(toks) < 2 || (toks[0] != "-A" && toks[0] != "--append") {
		cmd := ""
		if len(toks) > 0 {
			cmd = toks[0]
		}
		return p.errf(src.Line, cmd, "a rule line is \"-A CHAIN ...\" (only appends are loaded)")
	}
	c := rs.Chain(toks[1])
	if c == nil {
		return p.errf(src.Line, toks[0], "chain %s is not declared (\":%s - [0:0]\" above)", toks[1], toks[1])
	}
	r := &Rule{Chain: c.Name, Num: len(c.Rules) + 1, Src: src, Family: p.opts.Family}
	b := ruleBuilder{p: p, r: r, line: src.Line, family: p.opts.Family}
	if err := b.options(toks[2:]); err != nil {
		return err
	}
	c.Rules = append(c.Rules, r)
	return nil
}

// ruleBuilder parses one rule's options in iptables syntax.
type ruleBuilder struct {
	p       *parser
	r       *Rule
	line    int
	family  Family
	modules []string // loaded with -m, or implicitly by -p
	target  bool
	given   []string // the matches and target options given so far (optionField)
}

// optionField names what an option sets, for options a rule may give once: a second one
// would silently replace the first, where iptables requires both or refuses the rule.
func optionField(opt string) string {
	switch opt {
	case "-s", "--source", "--src":
		return "source address"
	case "-d", "--destination", "--dst":
		return "destination address"
	case "-p", "--protocol":
		return "protocol"
	case "-i", "--in-interface":
		return "input interface"
	case "-o", "--out-interface":
		return "output interface"
	case "--sport", "--source-port", "--sports", "--source-ports":
		return "source port"
	case "--dport", "--destination-port", "--dports", "--destination-ports":
		return "destination port"
	case "--ports":
		return "port"
	case "--ctstate", "--state":
		return "state"
	case "--icmp-type", "--icmpv6-type":
		return "ICMP type"
	case "--tcp-flags", "--syn":
		return "TCP flags"
	case "--comment":
		return "comment"
	case "--reject-with", "--log-prefix", "--log-level":
		return opt
	case "--to-source", "--to-destination", "--to-ports", "--to":
		return "NAT address or port"
	}
	return ""
}

func (b *ruleBuilder) has(module string) bool { return slices.Contains(b.modules, module) }

func (b *ruleBuilder) options(toks []string) error {
	r := b.r
	not := false
	for i := 0; i < len(toks); i++ {
		opt := toks[i]
		if opt == "!" {
			if not {
				return b.p.errf(b.line, "!", "double negation")
			}
			not = true
			continue
		}
		// arg returns the option's next word.
		arg := func() (string, error) {
			if i+1 >= len(toks) || (toks[i+1] == "!" && opt != "--comment") {
				return "", b.p.errf(b.line, opt, "needs a value")
			}
			i++
			return toks[i], nil
		}
		val, err := "", error(nil)
		if opt != "--syn" && opt != "-f" && opt != "--fragment" && opt != "--random" && opt != "--random-fully" && opt != "--persistent" {
			if val, err = arg(); err != nil {
				return err
			}
		}
		if b.target && !strings.HasPrefix(opt, "--reject-with") && !strings.HasPrefix(opt, "--log-") && !strings.HasPrefix(opt, "--to") && !strings.HasPrefix(opt, "--random") && opt != "--persistent" {
			return b.p.errf(b.line, opt, "comes after the target; matches go before -j")
		}
		if err := b.option(opt, val, not, func() (string, error) { return arg() }); err != nil {
			return err
		}
		not = false
	}
	if not {
		return b.p.errf(b.line, "!", "negates nothing at the end of the rule")
	}
	if r.Target.Kind == 0 {
		return b.p.errf(b.line, "", "rule has no target (-j)")
	}
	return nil
}

var knownModules = []string{"tcp", "udp", "icmp", "icmp6", "icmpv6", "multiport", "conntrack", "state", "comment"}

func (b *ruleBuilder) option(opt, val string, not bool, more func() (string, error)) error {
	r, p, line := b.r, b.p, b.line
	noNot := func() error {
		if not {
			return p.errf(line, opt, "cannot be negated")
		}
		return nil
	}
	if f := optionField(opt); f != "" {
		if slices.Contains(b.given, f) {
			return p.errf(line, opt, "a second %s in one rule (give one)", f)
		}
		b.given = append(b.given, f)
	}
	switch opt {
	case "-s", "--source", "--src", "-d", "--destination", "--dst":
		pfx, err := parsePrefix(val, b.family)
		if err != nil {
			return p.errf(line, opt, "%v", err)
		}
		if opt[1] == 's' || opt == "--src" {
			r.SrcNet, r.NotSrc = pfx, not
		} else {
			r.DstNet, r.NotDst = pfx, not
		}
	case "-p", "--protocol":
		proto, has, err := parseProto(val)
		if err != nil {
			return p.errf(line, opt, "%v", err)
		}
		if !has && not {
			return p.errf(line, opt, "! %s matches no packet", val)
		}
		if has && b.family == IPv4 && proto == ProtoICMPv6 || has && b.family == IPv6 && proto == ProtoICMP {
			return p.errf(line, opt, "protocol %s does not exist in an %s rule set", val, b.family)
		}
		r.Proto, r.HasProto, r.NotProto = proto, has, not
		if has && !not {
			switch proto {
			case ProtoTCP:
				b.modules = append(b.modules, "tcp")
			case ProtoUDP:
				b.modules = append(b.modules, "udp")
			case ProtoICMP:
				b.modules = append(b.modules, "icmp")
			case ProtoICMPv6:
				b.modules = append(b.modules, "icmp6")
			}
		}
	case "-i", "--in-interface", "-o", "--out-interface":
		name, err := b.iface(opt, val)
		if err != nil {
			return err
		}
		if opt == "-i" || opt == "--in-interface" {
			r.In, r.NotIn = name, not
		} else {
			r.Out, r.NotOut = name, not
		}
	case "-m", "--match":
		if err := noNot(); err != nil {
			return err
		}
		if !slices.Contains(knownModules, val) {
			return p.errf(line, opt, "unknown match %q (known: %s)", val, strings.Join(knownModules, ", "))
		}
		if val == "tcp" || val == "udp" || val == "icmp" || val == "icmp6" || val == "icmpv6" {
			if err := b.needProto(opt+" "+val, protoFor(val)); err != nil {
				return err
			}
		}
		if val == "icmpv6" {
			val = "icmp6"
		}
		b.modules = append(b.modules, val)
	case "--sport", "--source-port", "--dport", "--destination-port":
		if !b.has("tcp") && !b.has("udp") {
			return p.errf(line, opt, "needs -p tcp or -p udp before it")
		}
		pr, err := parsePortRange(val)
		if err != nil {
			return p.errf(line, opt, "%v", err)
		}
		m := &PortMatch{Ranges: []PortRange{pr}, Not: not}
		if opt == "--sport" || opt == "--source-port" {
			r.SrcPorts = m
		} else {
			r.DstPorts = m
		}
	case "--sports", "--source-ports", "--dports", "--destination-ports", "--ports":
		if !b.has("multiport") {
			return p.errf(line, opt, "needs -m multiport before it")
		}
		if !b.hasTCPOrUDP() {
			return p.errf(line, opt, "multiport needs -p tcp or -p udp")
		}
		ranges, err := parsePortList(val, 15)
		if err != nil {
			return p.errf(line, opt, "%v", err)
		}
		m := &PortMatch{Ranges: ranges, Not: not}
		switch opt {
		case "--sports", "--source-ports":
			r.SrcPorts = m
		case "--ports":
			r.Ports = m
		default:
			r.DstPorts = m
		}
	case "--ctstate", "--state":
		module := "conntrack"
		if opt == "--state" {
			module = "state"
		}
		if !b.has(module) {
			return p.errf(line, opt, "needs -m %s before it", module)
		}
		st, err := parseState(val)
		if err != nil {
			return p.errf(line, opt, "%v", err)
		}
		r.State = &StateMatch{States: st, Not: not}
	case "--icmp-type", "--icmpv6-type":
		v6 := opt == "--icmpv6-type"
		want := "icmp"
		if v6 {
			want = "icmp6"
		}
		if !b.has(want) {
			return p.errf(line, opt, "needs -p %s before it", map[bool]string{false: "icmp", true: "ipv6-icmp"}[v6])
		}
		m, err := parseICMPType(val, v6)
		if err != nil {
			return p.errf(line, opt, "%v", err)
		}
		m.Not = not
		r.ICMP = &m
	case "--tcp-flags":
		if !b.has("tcp") {
			return p.errf(line, opt, "needs -p tcp before it")
		}
		comp, err := more()
		if err != nil {
			return err
		}
		mask, err := parseTCPFlags(val)
		if err != nil {
			return p.errf(line, opt, "%v", err)
		}
		cf, err := parseTCPFlags(comp)
		if err != nil {
			return p.errf(line, opt, "%v", err)
		}
		r.TCPFlags = &TCPFlagsMatch{Mask: mask, Comp: cf & mask, Not: not}
	case "--syn":
		if !b.has("tcp") {
			return p.errf(line, opt, "needs -p tcp before it")
		}
		r.TCPFlags = &TCPFlagsMatch{Mask: FlagFIN | FlagSYN | FlagRST | FlagACK, Comp: FlagSYN, Not: not}
	case "--comment":
		if !b.has("comment") {
			return p.errf(line, opt, "needs -m comment before it")
		}
		r.Comment = val
	case "-c", "--set-counters":
		if _, err := more(); err != nil { // packets and bytes: counters start at zero here
			return err
		}
	case "-j", "--jump":
		if err := noNot(); err != nil {
			return err
		}
		if b.target {
			return p.errf(line, opt, "a rule has one target")
		}
		b.target = true
		if k := targetByName(val); k != 0 {
			r.Target.Kind = k
			if k == Reject {
				r.Target.RejectWith = RejectPortUnreachable
			}
		} else {
			// A user chain; finish checks that it is declared, and says "unknown
			// target" for names that are not.
			r.Target.Kind = Jump
			r.Target.Chain = val
		}
	case "--reject-with":
		if r.Target.Kind != Reject {
			return p.errf(line, opt, "only after -j REJECT")
		}
		rw, ok := rejectByName4[val]
		if b.family == IPv6 {
			rw, ok = rejectByName6[val]
		} else if b.family == AnyFamily && !ok {
			rw, ok = rejectByName6[val]
		}
		if !ok {
			return p.errf(line, opt, "unknown answer %q for an %s rule set", val, b.family)
		}
		if rw == RejectTCPReset && (r.Proto != ProtoTCP || !r.HasProto || r.NotProto) {
			return p.errf(line, opt, "tcp-reset needs -p tcp")
		}
		r.Target.RejectWith = rw
	case "--to-source", "--to-destination", "--to-ports", "--to":
		if err := b.natOption(opt, val); err != nil {
			return err
		}
	case "--random", "--random-fully", "--persistent":
		return p.errf(line, opt, "not supported: ports are kept when free and picked in order otherwise")
	case "--log-prefix":
		if r.Target.Kind != Log {
			return p.errf(line, opt, "only after -j LOG")
		}
		r.Target.LogPrefix = val
	case "--log-level":
		if r.Target.Kind != Log {
			return p.errf(line, opt, "only after -j LOG")
		}
		r.Target.LogLevel = val
	case "-g", "--goto":
		return p.errf(line, opt, "goto is not supported (use -j)")
	default:
		if strings.HasPrefix(opt, "-") {
			return p.errf(line, opt, "unknown option")
		}
		return p.errf(line, opt, "unexpected word (options start with -)")
	}
	return nil
}

func protoFor(module string) uint8 {
	switch module {
	case "tcp":
		return ProtoTCP
	case "udp":
		return ProtoUDP
	case "icmp":
		return ProtoICMP
	}
	return ProtoICMPv6
}

// needProto checks that -m tcp/udp/icmp follows a matching -p, as iptables requires.
func (b *ruleBuilder) needProto(what string, proto uint8) error {
	if !b.r.HasProto || b.r.NotProto || b.r.Proto != proto {
		return b.p.errf(b.line, what, "needs -p %s before it", protoName(proto))
	}
	return nil
}

func (b *ruleBuilder) hasTCPOrUDP() bool {
	r := b.r
	return r.HasProto && !r.NotProto && (r.Proto == ProtoTCP || r.Proto == ProtoUDP)
}

// iface resolves an interface name through the aliases.
func (b *ruleBuilder) iface(opt, name string) (string, error) {
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ ") {
		return "", b.p.errf(b.line, opt, "bad interface name %q", name)
	}
	if name == West || name == East {
		return name, nil
	}
	if a, ok := b.p.opts.Aliases[name]; ok {
		return a, nil
	}
	if strings.HasSuffix(name, "+") {
		prefix := name[:len(name)-1]
		var hits []string
		for _, n := range []string{West, East} {
			if strings.HasPrefix(n, prefix) {
				hits = append(hits, n)
			}
		}
		for alias, n := range b.p.opts.Aliases {
			if strings.HasPrefix(alias, prefix) && !slices.Contains(hits, n) {
				hits = append(hits, n)
			}
		}
		switch len(hits) {
		case 1:
			return hits[0], nil
		case 2:
			return "+", nil // every interface
		}
	}
	b.p.warnings = append(b.p.warnings, fmt.Sprintf("%s:%d: interface %s is not %s, %s or an alias: %s %s matches no packet",
		b.p.file, b.line, name, West, East, opt, name))
	return name, nil
}

// parsePrefix parses ADDR, ADDR/LEN or ADDR/MASK and masks it, as iptables does.
func parsePrefix(s string, fam Family) (netip.Prefix, error) {
	addrS, maskS, hasMask := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addrS)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q (host names are not resolved)", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address %q: zones are not allowed", s)
	}
	a = a.Unmap()
	if fam == IPv4 && !a.Is4() || fam == IPv6 && !a.Is6() {
		return netip.Prefix{}, fmt.Errorf("address %q is not %s", s, fam)
	}
	bits := a.BitLen()
	if hasMask {
		if n, err := strconv.Atoi(maskS); err == nil {
			bits = n
		} else if m, err := netip.ParseAddr(maskS); err == nil && m.BitLen() == a.BitLen() {
			bits = maskLen(m.AsSlice())
			if bits < 0 {
				return netip.Prefix{}, fmt.Errorf("mask %q is not contiguous", maskS)
			}
		} else {
			return netip.Prefix{}, fmt.Errorf("bad mask %q", maskS)
		}
	}
	pfx, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad prefix length in %q", s)
	}
	return pfx, nil
}

// maskLen returns the length of a contiguous mask, or -1.
func maskLen(m []byte) int {
	n := 0
	for i, b := range m {
		if b == 0xff {
			n += 8
			continue
		}
		ones := 0
		for b&0x80 != 0 {
			b <<= 1
			ones++
		}
		if b != 0 {
			return -1
		}
		for _, rest := range m[i+1:] {
			if rest != 0 {
				return -1
			}
		}
		return n + ones
	}
	return n
}
