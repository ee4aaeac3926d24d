// Package rules is a parsed packet filter rule set: the filter table of an iptables-save file
// (as a Linux router exports it) or the short one-liner flags of stdpkt-fw, both compiled to
// the same Ruleset. The package only parses and validates; package osinst loads a Ruleset
// into a netstack instance.
//
// Every rule keeps where it came from (file and line, or flag), so a bad rule is an error that
// names its line and option, and a loaded rule can be listed with its counters.
package rules

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// Family is a set of IP versions a rule set or rule applies to.
type Family uint8

// Families.
const (
	IPv4 Family = 1 << iota
	IPv6
	AnyFamily = IPv4 | IPv6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	case AnyFamily:
		return "ipv4+ipv6"
	}
	return "none"
}

// IP protocol numbers the parser knows by name.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// Interface names of an instance's two NICs. Rules name them directly or through aliases.
const (
	West = "west"
	East = "east"
)

// TargetKind is what a rule does with a packet it matches.
type TargetKind uint8

// Targets.
const (
	Accept TargetKind = iota + 1
	Drop
	Reject
	Log    // not terminating: the packet goes on to the next rule
	Return // back to the calling chain; in a built-in chain, the chain's policy
	Jump   // to the user chain Target.Chain
	// NAT targets, in the nat table only.
	SNAT       // rewrite the source to Target.Addr (and a port in Target.Ports)
	DNAT       // rewrite the destination to Target.Addr (and Target.Ports)
	Masquerade // SNAT to the outgoing interface's address (router mode)
	Redirect   // DNAT to the incoming interface's address and Target.Ports
)

func (k TargetKind) String() string {
	switch k {
	case Accept:
		return "ACCEPT"
	case Drop:
		return "DROP"
	case Reject:
		return "REJECT"
	case Log:
		return "LOG"
	case Return:
		return "RETURN"
	case Jump:
		return "JUMP"
	case SNAT:
		return "SNAT"
	case DNAT:
		return "DNAT"
	case Masquerade:
		return "MASQUERADE"
	case Redirect:
		return "REDIRECT"
	}
	return "NONE"
}

// RejectWith is the answer a REJECT rule sends back.
type RejectWith uint8

// Reject answers. IPv4 and IPv6 names are told apart by the rule set's family.
const (
	RejectPortUnreachable  RejectWith = iota // icmp-port-unreachable, icmp6-port-unreachable (default)
	RejectNetUnreachable                     // icmp-net-unreachable
	RejectHostUnreachable                    // icmp-host-unreachable, icmp6-addr-unreachable
	RejectProtoUnreachable                   // icmp-proto-unreachable
	RejectNetProhibited                      // icmp-net-prohibited
	RejectHostProhibited                     // icmp-host-prohibited
	RejectAdminProhibited                    // icmp-admin-prohibited, icmp6-adm-prohibited
	RejectNoRoute                            // icmp6-no-route
	RejectTCPReset                           // tcp-reset
)

var rejectNames = [...]string{
	RejectPortUnreachable:  "icmp-port-unreachable",
	RejectNetUnreachable:   "icmp-net-unreachable",
	RejectHostUnreachable:  "icmp-host-unreachable",
	RejectProtoUnreachable: "icmp-proto-unreachable",
	RejectNetProhibited:    "icmp-net-prohibited",
	RejectHostProhibited:   "icmp-host-prohibited",
	RejectAdminProhibited:  "icmp-admin-prohibited",
	RejectNoRoute:          "icmp6-no-route",
	RejectTCPReset:         "tcp-reset",
}

func (r RejectWith) String() string {
	if int(r) < len(rejectNames) {
		return rejectNames[r]
	}
	return fmt.Sprintf("reject-%d", r)
}

// Target is a rule's action.
type Target struct {
	Kind       TargetKind
	Chain      string     // Jump: the user chain
	RejectWith RejectWith // Reject
	LogPrefix  string     // Log
	LogLevel   string     // Log, as written
	Addr       netip.Addr // SNAT, DNAT: the new address (invalid: keep it)
	Ports      PortRange  // SNAT, DNAT, Masquerade, Redirect: the new port or range (zero: keep, or pick)
}

// targetByName returns the built-in target of an iptables name (ACCEPT, SNAT...), or 0 for
// anything else (a user chain): the names are those String gives.
func targetByName(name string) TargetKind {
	for k := Accept; k <= Redirect; k++ {
		if k != Jump && k.String() == name {
			return k
		}
	}
	return 0
}

// NAT reports whether the target rewrites addresses.
func (k TargetKind) NAT() bool { return k >= SNAT && k <= Redirect }

// PortRange is an inclusive range of TCP or UDP ports.
type PortRange struct{ Lo, Hi uint16 }

// Contains reports whether p is in the range.
func (r PortRange) Contains(p uint16) bool { return r.Lo <= p && p <= r.Hi }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d:%d", r.Lo, r.Hi)
}

// PortMatch matches a port against a list of ranges.
type PortMatch struct {
	Ranges []PortRange
	Not    bool
}

// Match reports whether port p matches.
func (m *PortMatch) Match(p uint16) bool {
	for _, r := range m.Ranges {
		if r.Contains(p) {
			return !m.Not
		}
	}
	return m.Not
}

// State is a set of connection tracking states (-m conntrack --ctstate, -m state --state).
type State uint8

// Connection tracking states.
const (
	StateNew State = 1 << iota
	StateEstablished
	StateRelated
	StateInvalid
	StateUntracked
)

var stateNames = []struct {
	s    State
	name string
}{{StateInvalid, "INVALID"}, {StateNew, "NEW"}, {StateRelated, "RELATED"},
	{StateEstablished, "ESTABLISHED"}, {StateUntracked, "UNTRACKED"}}

func (s State) String() string {
	var names []string
	for _, n := range stateNames {
		if s&n.s != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// StateMatch matches a packet's connection tracking state.
type StateMatch struct {
	States State
	Not    bool
}

// ICMPMatch matches an ICMP or ICMPv6 type and code.
type ICMPMatch struct {
	V6   bool
	Any  bool  // "any": every type
	Type uint8 //
	Code int16 // -1: any code
	Not  bool
}

// Match reports whether an ICMP message of this type and code matches.
func (m *ICMPMatch) Match(typ, code uint8) bool {
	ok := m.Any || (typ == m.Type && (m.Code < 0 || int16(code) == m.Code))
	return ok != m.Not
}

// TCPFlagsMatch matches TCP flags: (flags & Mask) == Comp (--tcp-flags, --syn).
type TCPFlagsMatch struct {
	Mask, Comp uint8
	Not        bool
}

// Match reports whether TCP flags f match.
func (m *TCPFlagsMatch) Match(f uint8) bool { return (f&m.Mask == m.Comp) != m.Not }

// Rule is one rule of a chain. Zero-valued fields do not constrain the match.
type Rule struct {
	Chain string // the chain it belongs to
	Num   int    // 1-based position in its chain
	Src   Source // where it was written

	Family Family // the IP versions it can match, from its addresses and protocol

	SrcNet, DstNet     netip.Prefix // invalid: any
	NotSrc, NotDst     bool
	Proto              uint8 // with HasProto
	HasProto, NotProto bool

	// In and Out are interface names as the instance knows them ("west", "east"), or a
	// name the rule set does not know (such a rule can only match inverted; see Warnings).
	// A trailing "+" matches every name with that prefix, as in iptables.
	In, Out       string
	NotIn, NotOut bool

	SrcPorts, DstPorts *PortMatch
	Ports              *PortMatch // -m multiport --ports: source or destination
	ICMP               *ICMPMatch
	State              *StateMatch
	TCPFlags           *TCPFlagsMatch
	Comment            string

	Target Target
}

// Source says where a rule or chain policy was written.
type Source struct {
	File string // file name, or the flag ("--allow") for one-liners
	Line int    // 1-based line, or the flag's position among the rule flags
	Text string // the line or flag value as written
}

func (s Source) String() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// Chain is a built-in or user chain.
type Chain struct {
	Name    string
	Builtin bool
	Policy  TargetKind // built-in chains: Accept or Drop
	Src     Source     // where it was declared
	Rules   []*Rule
}

// Ruleset is a parsed filter table.
type Ruleset struct {
	Table  string // "filter"
	Family Family // the IP versions the rule set governs; packets of other versions pass
	Chains []*Chain
	// Warnings are things that are valid but probably not what the author meant, such as
	// an interface name that is neither west, east nor an alias. Callers print them.
	Warnings []string
}

// Chain returns the chain with the given name, or nil.
func (rs *Ruleset) Chain(name string) *Chain {
	for _, c := range rs.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Rules returns every rule in chain order: built-in chains first as declared, then user chains.
func (rs *Ruleset) Rules() []*Rule {
	var out []*Rule
	for _, c := range rs.Chains {
		out = append(out, c.Rules...)
	}
	return out
}

// Error is a rule that cannot be loaded: where it is, the option at fault and why.
type Error struct {
	File   string
	Line   int
	Option string // the option or word at fault; "" when it is the line as a whole
	Msg    string
}

func (e *Error) Error() string {
	if e.Option == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: option %s: %s", e.File, e.Line, e.Option, e.Msg)
}

// String renders the rule's match and target as iptables-save writes them, without the chain.
func (r *Rule) String() string {
	var b strings.Builder
	w := func(not bool, opt, val string) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		if not {
			b.WriteString("! ")
		}
		b.WriteString(opt)
		if val != "" {
			b.WriteByte(' ')
			b.WriteString(quote(val))
		}
	}
	if r.SrcNet.IsValid() {
		w(r.NotSrc, "-s", r.SrcNet.String())
	}
	if r.DstNet.IsValid() {
		w(r.NotDst, "-d", r.DstNet.String())
	}
	if r.In != "" {
		w(r.NotIn, "-i", r.In)
	}
	if r.Out != "" {
		w(r.NotOut, "-o", r.Out)
	}
	if r.HasProto {
		w(r.NotProto, "-p", protoName(r.Proto))
	}
	if r.SrcPorts != nil {
		writePorts(w, r.SrcPorts, "--sport", "--sports")
	}
	if r.DstPorts != nil {
		writePorts(w, r.DstPorts, "--dport", "--dports")
	}
	if r.Ports != nil {
		writePorts(w, r.Ports, "--ports", "--ports")
	}
	if r.TCPFlags != nil {
		w(r.TCPFlags.Not, "--tcp-flags", flagNames(r.TCPFlags.Mask))
		b.WriteString(" " + flagNames(r.TCPFlags.Comp))
	}
	if m := r.ICMP; m != nil {
		opt := "--icmp-type"
		if m.V6 {
			opt = "--icmpv6-type"
		}
		val := "any"
		if !m.Any {
			val = strconv.Itoa(int(m.Type))
			if m.Code >= 0 {
				val += "/" + strconv.Itoa(int(m.Code))
			}
		}
		w(m.Not, opt, val)
	}
	if r.State != nil {
		w(false, "-m", "conntrack")
		w(r.State.Not, "--ctstate", r.State.States.String())
	}
	if r.Comment != "" {
		w(false, "-m", "comment")
		w(false, "--comment", r.Comment)
	}
	switch t := r.Target; t.Kind {
	case Jump:
		w(false, "-j", t.Chain)
	case Reject:
		w(false, "-j", "REJECT")
		w(false, "--reject-with", rejectName(t.RejectWith, r.Family))
	case Log:
		w(false, "-j", "LOG")
		if t.LogPrefix != "" {
			w(false, "--log-prefix", t.LogPrefix)
		}
		if t.LogLevel != "" {
			w(false, "--log-level", t.LogLevel)
		}
	case SNAT, DNAT:
		w(false, "-j", t.Kind.String())
		opt := map[TargetKind]string{SNAT: "--to-source", DNAT: "--to-destination"}[t.Kind]
		w(false, opt, natTo(t))
	case Masquerade, Redirect:
		w(false, "-j", t.Kind.String())
		if t.Ports.Lo != 0 {
			w(false, "--to-ports", natPorts(t.Ports))
		}
	default:
		w(false, "-j", t.Kind.String())
	}
	return b.String()
}

// natTo writes a NAT target's ADDR[:PORT[-PORT]], brackets around an IPv6 address with a port.
func natTo(t Target) string {
	a := ""
	if t.Addr.IsValid() {
		a = t.Addr.String()
	}
	if t.Ports.Lo == 0 {
		return a
	}
	if t.Addr.Is6() {
		a = "[" + a + "]"
	}
	return a + ":" + natPorts(t.Ports)
}

// natPorts writes a NAT target's PORT or LOW-HIGH: NAT options separate a range with "-",
// not with the ":" of port matches.
func natPorts(r PortRange) string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// rejectName is the --reject-with name of an answer in a rule of family fam: ip6tables has
// its own names for the ICMPv6 answers.
func rejectName(rw RejectWith, fam Family) string {
	if fam == IPv6 {
		switch rw {
		case RejectPortUnreachable:
			return "icmp6-port-unreachable"
		case RejectHostUnreachable:
			return "icmp6-addr-unreachable"
		case RejectAdminProhibited:
			return "icmp6-adm-prohibited"
		}
	}
	return rw.String()
}

func writePorts(w func(bool, string, string), m *PortMatch, single, multi string) {
	if len(m.Ranges) == 1 && single != multi {
		w(m.Not, single, m.Ranges[0].String())
		return
	}
	s := make([]string, len(m.Ranges))
	for i, r := range m.Ranges {
		s[i] = r.String()
	}
	w(false, "-m", "multiport")
	w(m.Not, multi, strings.Join(s, ","))
}

// quote writes a word as the rule tokenizer reads it back: bare, or in double quotes with
// backslashes before double quotes and backslashes, as iptables-save writes it.
func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"\\'") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Format writes the rule set in iptables-save form.
func (rs *Ruleset) Format() string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%s\n", rs.Table)
	for _, c := range rs.Chains {
		p := "-"
		if c.Builtin {
			p = c.Policy.String()
		}
		fmt.Fprintf(&b, ":%s %s [0:0]\n", c.Name, p)
	}
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "-A %s %s\n", quote(c.Name), r)
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Counter is what one rule, or a built-in chain's policy, has matched.
type Counter struct {
	Chain          string
	Rule           *Rule      // nil for a chain policy
	Policy         TargetKind // for a policy
	Packets, Bytes uint64
}

// MarshalJSON writes a counter for scripts: the chain, the rule as iptables-save would write
// it (or the policy), where it came from, its verdict, and what it matched.
func (c Counter) MarshalJSON() ([]byte, error) {
	doc := struct {
		Chain   string `json:"chain"`
		Num     int    `json:"num,omitempty"` // the rule's place in its chain, from 1
		Rule    string `json:"rule,omitempty"`
		Source  string `json:"source,omitempty"`
		Policy  string `json:"policy,omitempty"`
		Target  string `json:"target"`
		Packets uint64 `json:"packets"`
		Bytes   uint64 `json:"bytes"`
	}{Chain: c.Chain, Packets: c.Packets, Bytes: c.Bytes}
	if c.Rule == nil {
		doc.Policy, doc.Target = c.Policy.String(), c.Policy.String()
	} else {
		doc.Num, doc.Rule, doc.Source, doc.Target = c.Rule.Num, "-A "+c.Chain+" "+c.Rule.String(), c.Rule.Src.String(), c.Rule.Target.Kind.String()
		if c.Rule.Target.Kind == Jump {
			doc.Target = c.Rule.Target.Chain
		}
	}
	return json.Marshal(doc)
}

// FormatCounters writes counters as iptables -L -v -n does, roughly: one line per rule,
// with its source line, and one per policy.
func FormatCounters(w io.Writer, cs []Counter) {
	for _, c := range cs {
		if c.Rule == nil {
			fmt.Fprintf(w, "%10d %12d  %s policy %s\n", c.Packets, c.Bytes, c.Chain, c.Policy)
			continue
		}
		where := ""
		if c.Rule.Src.File != "" {
			where = fmt.Sprintf("  (%s)", c.Rule.Src)
		}
		fmt.Fprintf(w, "%10d %12d  -A %s %s%s\n", c.Packets, c.Bytes, c.Chain, c.Rule, where)
	}
}
