package rules

import (
	"fmt"
	"strings"
)

// OneLiner is one rule flag of stdpkt-fw, such as --allow 'tcp dport 80,443'.
type OneLiner struct {
	Flag   string     // the flag as given ("--allow"), for error messages and listings
	Target TargetKind // Accept, Drop or Reject
	Spec   string     // the words: "tcp dport 80,443", "udp dport 53", "icmp type echo-request"
}

// OneLinerHelp describes the words of a one-liner spec.
const OneLinerHelp = `a spec is words, in any order:
  tcp | udp | icmp | icmpv6 | proto NAME|NUMBER    protocol (one)
  dport LIST | sport LIST | port LIST              ports: 80,443,8000-8080 (needs tcp or udp)
  src PREFIX | dst PREFIX                          192.0.2.0/24, 2001:db8::/32, 192.0.2.7
  in IFACE | out IFACE                             west, east or an interface alias
  state LIST                                       new,established,related,invalid
  type NAME[/CODE]                                 icmp type (needs icmp or icmpv6)
  syn                                              TCP SYN without ACK
  with ANSWER                                      reject answer: tcp-reset (the default for tcp), icmp-port-unreachable (for the rest)...
  not                                              negates the next match`

// FromOneLiners compiles one-liner rules to a filter rule set that governs IPv4 and IPv6.
// FORWARD gets the policy; its first rule accepts packets of ESTABLISHED and RELATED
// connections, so replies to what the one-liners allow come back; then the one-liners, in
// order. INPUT and OUTPUT accept. The same policy written as an iptables-save file loads to
// the same rules.
func FromOneLiners(items []OneLiner, policy TargetKind, opts Options) (*Ruleset, error) {
	if policy != Accept && policy != Drop {
		return nil, fmt.Errorf("policy must be accept or drop, not %s", policy)
	}
	if err := checkAliases(opts.Aliases); err != nil {
		return nil, err
	}
	opts.Family = AnyFamily
	fwd := &Chain{Name: "FORWARD", Builtin: true, Policy: policy, Src: Source{File: "--policy"}}
	rs := &Ruleset{Table: "filter", Family: AnyFamily, Chains: []*Chain{
		{Name: "INPUT", Builtin: true, Policy: Accept},
		fwd,
		{Name: "OUTPUT", Builtin: true, Policy: Accept},
	}}
	fwd.Rules = append(fwd.Rules, &Rule{Chain: "FORWARD", Num: 1, Family: AnyFamily,
		Src:    Source{File: "(implicit)", Text: "state established,related: replies of allowed connections"},
		State:  &StateMatch{States: StateEstablished | StateRelated},
		Target: Target{Kind: Accept}})
	p := &parser{opts: opts}
	for i, it := range items {
		p.file = it.Flag
		r, err := p.oneLiner(it, i+1)
		if err != nil {
			return nil, err
		}
		r.Num = len(fwd.Rules) + 1
		fwd.Rules = append(fwd.Rules, r)
	}
	rs.Warnings = p.warnings
	if err := check(rs); err != nil {
		return nil, err
	}
	return rs, nil
}

var oneLinerProtos = map[string]string{"tcp": "tcp", "udp": "udp", "icmp": "icmp",
	"icmpv6": "ipv6-icmp", "icmp6": "ipv6-icmp", "ipv6-icmp": "ipv6-icmp", "all": "all", "any": "all", "ip": "all"}

// oneLiner translates the spec's words to iptables options and parses those, so both forms
// share one set of checks and meanings.
func (p *parser) oneLiner(it OneLiner, pos int) (*Rule, error) {
	src := Source{File: it.Flag, Line: pos, Text: it.Spec}
	errf := func(word, format string, args ...any) error {
		return &Error{File: it.Flag, Line: pos, Option: word, Msg: fmt.Sprintf(format, args...) + fmt.Sprintf(" (in %q)", it.Spec)}
	}
	switch it.Target {
	case Accept, Drop, Reject:
	default:
		return nil, errf("", "a one-liner accepts, drops or rejects, not %s", it.Target)
	}
	words := strings.Fields(it.Spec)
	if len(words) == 0 {
		return nil, errf("", "empty spec; %s", OneLinerHelp)
	}
	var proto string
	var protoOpts []string  // -p, first: the matches after it need it
	var head, tail []string // the other options before the target, options after it
	var typeAt []int        // where in head the ICMP type options are, named once proto is known
	not := false
	for i := 0; i < len(words); i++ {
		w := strings.ToLower(words[i])
		arg := func() (string, error) {
			if i+1 >= len(words) {
				return "", errf(w, "needs a value")
			}
			i++
			return words[i], nil
		}
		neg := func(opts ...string) {
			if not {
				head = append(head, "!")
				not = false
			}
			head = append(head, opts...)
		}
		if p, ok := oneLinerProtos[w]; ok || w == "proto" {
			if w == "proto" {
				v, err := arg()
				if err != nil {
					return nil, err
				}
				p = v
				// One name per protocol ("proto TCP", "proto 6" and "tcp" are one rule), for
				// the defaults below that depend on it.
				if n, ok := oneLinerProtos[strings.ToLower(v)]; ok {
					v = n
				}
				if n, has, err := parseProto(v); err == nil {
					p = "all"
					if has {
						p = protoName(n)
					}
				}
			}
			if proto != "" {
				return nil, errf(w, "a rule has one protocol (already %s)", proto)
			}
			proto = p
			protoOpts = []string{"-p", p}
			if not {
				protoOpts = []string{"!", "-p", p}
				not = false
			}
			continue
		}
		switch w {
		case "not", "!":
			if not {
				return nil, errf(w, "double negation")
			}
			not = true
		case "dport", "dports", "sport", "sports", "port", "ports":
			v, err := arg()
			if err != nil {
				return nil, err
			}
			dir := w[0]
			switch {
			case dir == 'p':
				head = append(head, "-m", "multiport")
				neg("--ports", v)
			case strings.Contains(v, ","):
				head = append(head, "-m", "multiport")
				neg("--"+string(dir)+"ports", v)
			default:
				neg("--"+string(dir)+"port", strings.Replace(v, "-", ":", 1))
			}
		case "src", "from", "dst", "to", "in", "iif", "out", "oif":
			v, err := arg()
			if err != nil {
				return nil, err
			}
			opt := map[string]string{"src": "-s", "from": "-s", "dst": "-d", "to": "-d",
				"in": "-i", "iif": "-i", "out": "-o", "oif": "-o"}[w]
			neg(opt, v)
		case "state", "ct":
			v, err := arg()
			if err != nil {
				return nil, err
			}
			head = append(head, "-m", "conntrack")
			neg("--ctstate", strings.ToUpper(v))
		case "type":
			v, err := arg()
			if err != nil {
				return nil, err
			}
			neg("--icmp-type", v)
			typeAt = append(typeAt, len(head)-2)
		case "syn":
			neg("--syn")
		case "with":
			v, err := arg()
			if err != nil {
				return nil, err
			}
			if it.Target != Reject {
				return nil, errf(w, "only a reject has an answer")
			}
			tail = append(tail, "--reject-with", v)
		default:
			return nil, errf(words[i], "unknown word; %s", OneLinerHelp)
		}
	}
	if not {
		return nil, errf("not", "negates nothing at the end")
	}
	if proto == "ipv6-icmp" {
		// The words come in any order: "type" may come before "icmpv6".
		for _, i := range typeAt {
			head[i] = "--icmpv6-type"
		}
	}
	if it.Target == Reject && len(tail) == 0 && proto == "tcp" && protoOpts[0] == "-p" {
		// A firewall user rejecting TCP means "connection refused": a reset, as
		// `with tcp-reset` would say (iptables' own default is an ICMP port unreachable).
		tail = append(tail, "--reject-with", "tcp-reset")
	}
	toks := append(append(protoOpts, head...), "-j", it.Target.String())
	toks = append(toks, tail...)
	r := &Rule{Chain: "FORWARD", Src: src, Family: AnyFamily}
	b := ruleBuilder{p: p, r: r, line: pos, family: AnyFamily}
	if err := b.options(toks); err != nil {
		if e, ok := err.(*Error); ok {
			e.Msg += fmt.Sprintf(" (in %q)", it.Spec)
		}
		return nil, err
	}
	fam, err := ruleFamily(r)
	if err != nil {
		return nil, errf("", "%v", err)
	}
	r.Family = fam
	return r, nil
}

// ruleFamily narrows a rule's family from its addresses and protocol.
func ruleFamily(r *Rule) (Family, error) {
	fam := AnyFamily
	narrow := func(f Family, why string) error {
		if fam&f == 0 {
			return fmt.Errorf("%s does not fit an %s rule", why, fam)
		}
		fam = f
		return nil
	}
	for _, pfx := range []struct {
		p   bool
		v4  bool
		why string
	}{{r.SrcNet.IsValid(), r.SrcNet.Addr().Is4(), "src " + r.SrcNet.String()},
		{r.DstNet.IsValid(), r.DstNet.Addr().Is4(), "dst " + r.DstNet.String()}} {
		if !pfx.p {
			continue
		}
		f := IPv6
		if pfx.v4 {
			f = IPv4
		}
		if err := narrow(f, pfx.why); err != nil {
			return 0, err
		}
	}
	if r.HasProto && !r.NotProto {
		switch r.Proto {
		case ProtoICMP:
			if err := narrow(IPv4, "icmp"); err != nil {
				return 0, err
			}
		case ProtoICMPv6:
			if err := narrow(IPv6, "icmpv6"); err != nil {
				return 0, err
			}
		}
	}
	return fam, nil
}
