package osinst

import (
	"fmt"
	"net/netip"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/stdpkt/stdpkt/rules"
)

// tables is a rule set compiled to netstack filter tables, with a counter per rule and per
// built-in chain policy shared by the IPv4 and IPv6 tables.
type tables struct {
	in      *Instance
	rs      *rules.Ruleset
	entries []entry
	v4, v6  *stack.Table // nil: the family is not governed by the rule set
}

// entry is one rule or policy and its counters.
type entry struct {
	chain   string
	rule    *rules.Rule // nil for a policy
	policy  rules.TargetKind
	packets atomic.Uint64
	bytes   atomic.Uint64
}

var hookOf = map[string]stack.Hook{"INPUT": stack.Input, "FORWARD": stack.Forward, "OUTPUT": stack.Output,
	"PREROUTING": stack.Prerouting, "POSTROUTING": stack.Postrouting}

// buildTables compiles rs. Everything netstack would panic on (a target at a hook it does not
// support, a matcher on the wrong protocol) has been refused by package rules, and what
// rules cannot know (a chain name netstack has no hook for) is refused here.
func buildTables(in *Instance, rs *rules.Ruleset) (*tables, error) {
	t := &tables{in: in, rs: rs}
	first := map[*rules.Rule]int{}
	for _, c := range rs.Chains {
		if c.Builtin {
			if _, ok := hookOf[c.Name]; !ok {
				return nil, fmt.Errorf("osinst: built-in chain %s has no netstack hook", c.Name)
			}
		}
		for _, r := range c.Rules {
			first[r] = len(t.entries)
			t.entries = append(t.entries, entry{chain: c.Name, rule: r})
		}
		if c.Builtin {
			t.entries = append(t.entries, entry{chain: c.Name, policy: c.Policy})
		}
	}
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		if rs.Family&fam == 0 {
			continue
		}
		tbl, err := t.build(fam)
		if err != nil {
			return nil, err
		}
		if fam == rules.IPv4 {
			t.v4 = tbl
		} else {
			t.v6 = tbl
		}
	}
	return t, nil
}

// install replaces the filter or nat tables. Force: conntrack must run even for a table
// netstack would consider a no-op.
func (t *tables) install(ipt *stack.IPTables) {
	id := stack.FilterID
	if t.rs.Table == "nat" {
		id = stack.NATID
	}
	if t.v4 != nil {
		ipt.ForceReplaceTable(id, *t.v4, false)
	}
	if t.v6 != nil {
		ipt.ForceReplaceTable(id, *t.v6, true)
	}
}

// build lays out one family's table as Linux does: each built-in chain's rules followed by
// its policy (the underflow), then each user chain's rules followed by a RETURN.
func (t *tables) build(fam rules.Family) (*stack.Table, error) {
	netProto := header.IPv4ProtocolNumber
	if fam == rules.IPv6 {
		netProto = header.IPv6ProtocolNumber
	}
	tbl := &stack.Table{}
	for h := range tbl.BuiltinChains {
		tbl.BuiltinChains[h] = stack.HookUnset
		tbl.Underflows[h] = stack.HookUnset
	}
	start := map[string]int{}
	var jumps []*ruleTarget
	e := 0
	for _, c := range t.rs.Chains {
		if c.Builtin {
			tbl.BuiltinChains[hookOf[c.Name]] = len(tbl.Rules)
		} else {
			start[c.Name] = len(tbl.Rules)
		}
		for _, r := range c.Rules {
			idx := e
			e++
			if r.Family&fam == 0 {
				continue
			}
			filter, err := headerFilter(r, fam)
			if err != nil {
				return nil, err
			}
			tg := &ruleTarget{t: t, entry: idx, kind: r.Target.Kind, pos: len(tbl.Rules),
				reject: r.Target.RejectWith, rule: r, netProto: netProto}
			if tg.kind == rules.Jump {
				jumps = append(jumps, tg)
			}
			tbl.Rules = append(tbl.Rules, stack.Rule{Filter: filter, Matchers: matchers(r, fam), Target: tg})
		}
		if c.Builtin {
			tbl.Underflows[hookOf[c.Name]] = len(tbl.Rules)
			tbl.Rules = append(tbl.Rules, stack.Rule{Filter: emptyFilter(fam),
				Target: &ruleTarget{t: t, entry: e, kind: c.Policy, pos: len(tbl.Rules)}})
			e++
		} else {
			tbl.Rules = append(tbl.Rules, stack.Rule{Filter: emptyFilter(fam),
				Target: &stack.ReturnTarget{NetworkProtocol: netProto}})
		}
	}
	for _, j := range jumps {
		to, ok := start[j.rule.Target.Chain]
		if !ok {
			return nil, fmt.Errorf("osinst: %s: jump to unknown chain %s", j.rule.Src, j.rule.Target.Chain)
		}
		j.jumpTo = to
	}
	return tbl, nil
}

func emptyFilter(fam rules.Family) stack.IPHeaderFilter {
	if fam == rules.IPv6 {
		return stack.EmptyFilter6()
	}
	return stack.EmptyFilter4()
}

// headerFilter fills netstack's IP header filter: addresses with masks, a positive protocol,
// interfaces. Negated protocols are a matcher, since IPHeaderFilter cannot negate them.
func headerFilter(r *rules.Rule, fam rules.Family) (stack.IPHeaderFilter, error) {
	f := emptyFilter(fam)
	set := func(pfx netip.Prefix, addr, mask *tcpip.Address) error {
		a := pfx.Addr()
		if (fam == rules.IPv4) != a.Is4() {
			return fmt.Errorf("osinst: %s: address %s in an %s table", r.Src, pfx, fam)
		}
		*addr = tcpip.AddrFromSlice(a.AsSlice())
		m := make([]byte, a.BitLen()/8)
		for i := 0; i < pfx.Bits(); i++ {
			m[i/8] |= 0x80 >> (i % 8)
		}
		*mask = tcpip.AddrFromSlice(m)
		return nil
	}
	if r.SrcNet.IsValid() {
		if err := set(r.SrcNet, &f.Src, &f.SrcMask); err != nil {
			return f, err
		}
		f.SrcInvert = r.NotSrc
	}
	if r.DstNet.IsValid() {
		if err := set(r.DstNet, &f.Dst, &f.DstMask); err != nil {
			return f, err
		}
		f.DstInvert = r.NotDst
	}
	if r.HasProto && !r.NotProto {
		f.Protocol, f.CheckProtocol = tcpip.TransportProtocolNumber(r.Proto), true
	}
	f.InputInterface, f.InputInterfaceInvert = r.In, r.NotIn
	f.OutputInterface, f.OutputInterfaceInvert = r.Out, r.NotOut
	return f, nil
}

// matchers returns the stack.Matchers netstack lacks, for what IPHeaderFilter cannot say.
func matchers(r *rules.Rule, fam rules.Family) []stack.Matcher {
	var ms []stack.Matcher
	if r.HasProto && r.NotProto {
		ms = append(ms, notProtoMatcher{proto: r.Proto})
	}
	if r.SrcPorts != nil || r.DstPorts != nil || r.Ports != nil {
		ms = append(ms, &portMatcher{src: r.SrcPorts, dst: r.DstPorts, either: r.Ports})
	}
	if r.TCPFlags != nil {
		ms = append(ms, &tcpFlagsMatcher{m: r.TCPFlags})
	}
	if r.ICMP != nil {
		ms = append(ms, &icmpMatcher{m: r.ICMP})
	}
	if r.State != nil {
		ms = append(ms, &stateMatcher{m: r.State})
	}
	return ms
}

// counters copies the counters.
func (t *tables) counters() []rules.Counter {
	out := make([]rules.Counter, len(t.entries))
	for i := range t.entries {
		e := &t.entries[i]
		out[i] = rules.Counter{Chain: e.chain, Rule: e.rule, Policy: e.policy,
			Packets: e.packets.Load(), Bytes: e.bytes.Load()}
	}
	return out
}

// ipLen is the IP datagram's length, what iptables counts as a rule's bytes.
func ipLen(pkt *stack.PacketBuffer) int {
	return len(pkt.NetworkHeader().Slice()) + len(pkt.TransportHeader().Slice()) + pkt.Data().Size()
}

// ruleTarget wraps every rule's and policy's verdict: it counts the match, remembers which
// rule dropped the frame being processed (for the books), and does what netstack's own
// targets cannot in a transparent box (REJECT answers built from the frame, LOG).
type ruleTarget struct {
	t      *tables
	entry  int
	kind   rules.TargetKind
	pos    int // this rule's index in the netstack table
	jumpTo int
	reject rules.RejectWith
	rule   *rules.Rule
	// netProto is the table's network protocol, for NAT targets.
	netProto tcpip.NetworkProtocolNumber
}

// Action implements stack.Target.
func (rt *ruleTarget) Action(pkt *stack.PacketBuffer, hook stack.Hook, r *stack.Route, addressEP stack.AddressableEndpoint) (stack.RuleVerdict, int) {
	e := &rt.t.entries[rt.entry]
	e.packets.Add(1)
	e.bytes.Add(uint64(ipLen(pkt)))
	in := rt.t.in
	if in.fastMax > 0 && in.curPB.Load() == pkt && rt.t == in.tables {
		// What the fast path will count for it; only the fast path empties the list.
		in.curPath = append(in.curPath, rt.entry)
	}
	switch rt.kind {
	case rules.Accept:
		return stack.RuleAccept, 0
	case rules.Drop:
		in.droppedBy(pkt, rt.entry)
		return stack.RuleDrop, 0
	case rules.Reject:
		in.droppedBy(pkt, rt.entry)
		in.reject(pkt, rt.reject)
		return stack.RuleDrop, 0
	case rules.Log:
		in.logPacket(pkt, hook, rt.rule)
		return stack.RuleJump, rt.pos + 1 // LOG does not decide: on to the next rule
	case rules.Return:
		return stack.RuleReturn, 0
	case rules.Jump:
		return stack.RuleJump, rt.jumpTo
	case rules.SNAT, rules.DNAT, rules.Masquerade, rules.Redirect:
		return rt.translate(pkt, hook, r, addressEP)
	}
	return stack.RuleDrop, 0
}

// droppedBy records the rule that dropped the packet, if it is the frame being processed
// (a packet netstack generates on a timer may meet OUTPUT rules on another goroutine).
func (in *Instance) droppedBy(pkt *stack.PacketBuffer, entry int) {
	if in.curPB.Load() == pkt {
		in.curRuled.Store(int32(entry + 1))
	}
}
