package osinst

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/stdpkt/stdpkt/books"
)

// DefaultMaxFlows bounds the connections an instance tracks: about a million.
const DefaultMaxFlows = 1 << 20

// Timeouts are how long an idle connection is kept, by protocol and state.
type Timeouts struct {
	TCPEstablished, TCP, UDP, ICMP, Other time.Duration
}

// DefaultTimeouts are Linux's defaults (nf_conntrack_*_timeout): an established TCP
// connection 5 days, a TCP connection in any other state 2 minutes (Linux varies them by
// state), UDP 30 s, ICMP 30 s.
func DefaultTimeouts() Timeouts {
	return Timeouts{TCPEstablished: 5 * 24 * time.Hour, TCP: 2 * time.Minute, UDP: 30 * time.Second,
		ICMP: 30 * time.Second, Other: 10 * time.Minute}
}

// withDefaults fills the zero fields of t from DefaultTimeouts.
func withDefaults(t Timeouts) Timeouts {
	d := DefaultTimeouts()
	for _, f := range []struct{ v, def *time.Duration }{{&t.TCPEstablished, &d.TCPEstablished}, {&t.TCP, &d.TCP},
		{&t.UDP, &d.UDP}, {&t.ICMP, &d.ICMP}, {&t.Other, &d.Other}} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return t
}

// ParseTimeouts sets the timeouts named in spec, a comma-separated list such as
// "tcp-established=1h,udp=60s".
func ParseTimeouts(spec string, t *Timeouts) error {
	for _, item := range strings.Split(spec, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		d, err := time.ParseDuration(val)
		if !ok || err != nil || d <= 0 {
			return fmt.Errorf("--timeout %q: want NAME=DURATION, e.g. tcp-established=1h (names: tcp-established, tcp, udp, icmp, other)", item)
		}
		switch name {
		case "tcp-established":
			t.TCPEstablished = d
		case "tcp":
			t.TCP = d
		case "udp":
			t.UDP = d
		case "icmp":
			t.ICMP = d
		case "other":
			t.Other = d
		default:
			return fmt.Errorf("--timeout %q: unknown name %q (tcp-established, tcp, udp, icmp, other)", item, name)
		}
	}
	return nil
}

// flowKey is a connection's original tuple.
type flowKey struct {
	proto    uint8
	src, dst netip.AddrPort
}

// flowEntry is one tracked connection.
type flowEntry struct {
	reply       flowKey // the reply tuple; with NAT its destination is the outside view
	first, last int64   // wall clock, ns
	established bool
	probe       []byte // the first packet's headers, to expire netstack's entry in step
	dir         books.Dir
}

// flowTable is the instance's own connection table. netstack's conntrack has no bound, no
// configurable timeouts and no way to list or delete an entry; this table gives all three:
// a connection is admitted (or refused, Full) when its first packet meets PREROUTING, and
// when it expires here, netstack's entry is aged out with it.
type flowTable struct {
	mu        sync.Mutex
	max       int
	timeouts  Timeouts
	m         map[flowKey]*flowEntry
	lastSweep int64
	refused   uint64
}

// sweepEvery is how often idle connections are looked for: every second, or more often for
// timeouts shorter than a few seconds, so a connection outlives its timeout by at most a
// quarter of it.
func (ft *flowTable) sweepEvery() time.Duration {
	t := ft.timeouts
	return max(time.Millisecond, min(time.Second, t.TCPEstablished/4, t.TCP/4, t.UDP/4, t.ICMP/4, t.Other/4))
}

func newFlowTable(max int, t Timeouts) *flowTable {
	if max <= 0 {
		max = DefaultMaxFlows
	}
	return &flowTable{max: max, timeouts: t, m: map[flowKey]*flowEntry{}}
}

func (ft *flowTable) timeout(e *flowEntry, proto uint8) time.Duration {
	switch {
	case proto == uint8(header.TCPProtocolNumber) && e.established:
		return ft.timeouts.TCPEstablished
	case proto == uint8(header.TCPProtocolNumber):
		return ft.timeouts.TCP
	case proto == uint8(header.UDPProtocolNumber):
		return ft.timeouts.UDP
	case proto == uint8(header.ICMPv4ProtocolNumber), proto == uint8(header.ICMPv6ProtocolNumber):
		return ft.timeouts.ICMP
	}
	return ft.timeouts.Other
}

func addrPort(a tcpip.Address, port uint16) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(ip.Unmap(), port)
}

// admitTarget is the one rule of the mangle table's PREROUTING chain: it keeps the flow
// table, and refuses a new connection when the table is full.
type admitTarget struct {
	in *Instance
}

// Action implements stack.Target.
func (a *admitTarget) Action(pkt *stack.PacketBuffer, _ stack.Hook, _ *stack.Route, _ stack.AddressableEndpoint) (stack.RuleVerdict, int) {
	in := a.in
	if in.aging.Load() {
		return stack.RuleAccept, 0
	}
	var orig, rep stack.ConnTrackInfo
	if !pkt.FillConnTrackInfo(stack.ConnTrackInfoOpts{FillState: true}, &orig) {
		return stack.RuleAccept, 0 // untracked: the filter and NAT decide
	}
	pkt.FillConnTrackInfo(stack.ConnTrackInfoOpts{UseReplyDir: true}, &rep)
	key := flowKey{uint8(orig.TransProto), addrPort(orig.SrcAddr, orig.SrcPort), addrPort(orig.DstAddr, orig.DstPort)}
	now := time.Now().UnixNano()
	ft := in.flowTab
	ft.mu.Lock()
	defer ft.mu.Unlock()
	e := ft.m[key]
	if e == nil {
		if pkt.IsReplyPacket() {
			return stack.RuleAccept, 0 // a reply of a connection this table never saw begin
		}
		if len(ft.m) >= ft.max {
			ft.refused++
			if in.curPB.Load() == pkt {
				in.curFull.Store(true)
			}
			return stack.RuleDrop, 0
		}
		e = &flowEntry{first: now, dir: in.cur.dir, probe: headerBytes(pkt)}
		ft.m[key] = e
	}
	e.last = now
	e.established = e.established || orig.State == stack.ConnTrackStateEstablished
	e.reply = flowKey{uint8(rep.TransProto), addrPort(rep.SrcAddr, rep.SrcPort), addrPort(rep.DstAddr, rep.DstPort)}
	return stack.RuleAccept, 0
}

// noteReply records a connection's reply tuple once NAT has chosen it.
func (ft *flowTable) noteReply(pkt *stack.PacketBuffer) {
	if ft == nil {
		return
	}
	var orig, rep stack.ConnTrackInfo
	if !pkt.FillConnTrackInfo(stack.ConnTrackInfoOpts{}, &orig) || !pkt.FillConnTrackInfo(stack.ConnTrackInfoOpts{UseReplyDir: true}, &rep) {
		return
	}
	key := flowKey{uint8(orig.TransProto), addrPort(orig.SrcAddr, orig.SrcPort), addrPort(orig.DstAddr, orig.DstPort)}
	ft.mu.Lock()
	if e := ft.m[key]; e != nil {
		e.reply = flowKey{uint8(rep.TransProto), addrPort(rep.SrcAddr, rep.SrcPort), addrPort(rep.DstAddr, rep.DstPort)}
	}
	ft.mu.Unlock()
}

// forget removes the connection of a packet that was dropped before it was confirmed.
func (ft *flowTable) forget(pkt *stack.PacketBuffer) {
	if ft == nil {
		return
	}
	var orig stack.ConnTrackInfo
	if !pkt.FillConnTrackInfo(stack.ConnTrackInfoOpts{}, &orig) {
		return
	}
	key := flowKey{uint8(orig.TransProto), addrPort(orig.SrcAddr, orig.SrcPort), addrPort(orig.DstAddr, orig.DstPort)}
	ft.mu.Lock()
	delete(ft.m, key)
	ft.mu.Unlock()
}

// headerBytes copies a packet's network and transport headers.
func headerBytes(pkt *stack.PacketBuffer) []byte {
	nh, th := pkt.NetworkHeader().Slice(), pkt.TransportHeader().Slice()
	b := make([]byte, 0, len(nh)+len(th))
	return append(append(b, nh...), th...)
}

// mangleTable holds the admission rule in PREROUTING for one network protocol.
func (in *Instance) mangleTable(v6 bool) stack.Table {
	f, proto := stack.EmptyFilter4(), header.IPv4ProtocolNumber
	if v6 {
		f, proto = stack.EmptyFilter6(), header.IPv6ProtocolNumber
	}
	t := stack.Table{
		Rules: []stack.Rule{
			{Filter: f, Target: &admitTarget{in: in}},
			{Filter: f, Target: &stack.AcceptTarget{NetworkProtocol: proto}},
			{Filter: f, Target: &stack.ErrorTarget{NetworkProtocol: proto}},
		},
	}
	// Every hook that meets the mangle table (POSTROUTING too) accepts; PREROUTING admits.
	for h := range t.BuiltinChains {
		t.BuiltinChains[h], t.Underflows[h] = 1, 1
	}
	t.BuiltinChains[stack.Prerouting], t.Underflows[stack.Prerouting] = 0, 0
	return t
}

// sweepFlows expires idle connections, at most every sweepEvery, and ages their netstack
// entries out with them: a copy of the connection's first packet meets conntrack with the
// clock turned back further than any netstack timeout, so the entry's last use lies in the
// past and netstack drops it.
func (in *Instance) sweepFlows() {
	ft := in.flowTab
	now := time.Now().UnixNano()
	ft.mu.Lock()
	if now-ft.lastSweep < int64(ft.sweepEvery()) {
		ft.mu.Unlock()
		return
	}
	ft.lastSweep = now
	var old []*flowEntry
	for k, e := range ft.m {
		if time.Duration(now-e.last) > ft.timeout(e, k.proto) {
			delete(ft.m, k)
			old = append(old, e)
		}
	}
	ft.mu.Unlock()
	for _, e := range old {
		in.age(e.probe, e.dir)
	}
}

// age makes netstack's connection for a packet look long idle, so netstack expires it.
func (in *Instance) age(probe []byte, dir books.Dir) {
	pkt, ok := newParsed(probe, len(probe) > 0 && probe[0]>>4 == 6)
	if !ok {
		return
	}
	defer pkt.DecRef()
	in.aging.Store(true)
	in.clock.back.Store(int64(6 * 24 * time.Hour)) // past TCP's 5-day established timeout
	in.ipt.CheckPrerouting(pkt, nil, inNIC(dir))
	in.clock.back.Store(0)
	in.aging.Store(false)
}

// FlowCount returns how many connections are tracked and how many were refused (full).
func (in *Instance) FlowCount() (tracked int, refused uint64) {
	if in.flowTab == nil {
		return 0, 0
	}
	ft := in.flowTab
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return len(ft.m), ft.refused
}

// Flow is one tracked connection, for SIGUSR1 and --stats-json.
type Flow struct {
	Proto   string  `json:"proto"`
	Inside  string  `json:"inside"`  // the original source
	Remote  string  `json:"remote"`  // the original destination
	Outside string  `json:"outside"` // the translated source, where NAT changed it
	State   string  `json:"state"`
	AgeSecs float64 `json:"age_s"`
	IdleSec float64 `json:"idle_s"`
}

// Flows lists up to max tracked connections, oldest first.
func (in *Instance) Flows(max int) []Flow {
	if in.flowTab == nil {
		return nil
	}
	ft := in.flowTab
	now := time.Now().UnixNano()
	ft.mu.Lock()
	out := make([]Flow, 0, min(len(ft.m), max))
	type kv struct {
		k flowKey
		e *flowEntry
	}
	all := make([]kv, 0, len(ft.m))
	for k, e := range ft.m {
		all = append(all, kv{k, e})
	}
	ft.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].e.first < all[j].e.first })
	for _, x := range all[:min(len(all), max)] {
		f := Flow{Proto: protoLabel(x.k.proto), Inside: x.k.src.String(), Remote: x.k.dst.String(),
			State:   map[bool]string{true: "established", false: "new"}[x.e.established],
			AgeSecs: float64(now-x.e.first) / 1e9, IdleSec: float64(now-x.e.last) / 1e9}
		if out := x.e.reply.dst; out.IsValid() && out != x.k.src {
			f.Outside = out.String()
		}
		out = append(out, f)
	}
	return out
}

// dumpFlows writes the connection table, for SIGUSR1.
func (in *Instance) dumpFlows(w io.Writer) {
	tracked, refused := in.FlowCount()
	fmt.Fprintf(w, "connections: %d tracked (limit %d), %d refused: table full\n", tracked, in.flowTab.max, refused)
	for _, f := range in.Flows(1000) {
		nat := ""
		if f.Outside != "" {
			nat = " as " + f.Outside
		}
		fmt.Fprintf(w, "  %s %s%s -> %s %s, age %.0fs, idle %.0fs\n", f.Proto, f.Inside, nat, f.Remote, f.State, f.AgeSecs, f.IdleSec)
	}
	if tracked > 1000 {
		fmt.Fprintf(w, "  (%d more)\n", tracked-1000)
	}
}
