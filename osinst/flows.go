package osinst

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/csum"
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

// flowKey is a connection's tuple as netstack forms it, in 40 bytes: a million tracked
// connections hold two each (the map key and the reply tuple).
type flowKey struct {
	src, dst     [16]byte // IPv4 addresses take the first 4 bytes
	sport, dport uint16   // for ICMP echo, sport is the identifier
	proto        uint8
	v6           bool
}

// reversed is the tuple of the other direction.
func (k flowKey) reversed() flowKey {
	return flowKey{src: k.dst, dst: k.src, sport: k.dport, dport: k.sport, proto: k.proto, v6: k.v6}
}

// addr returns one of the key's addresses as a netip.Addr.
func (k *flowKey) addr(a *[16]byte) netip.Addr {
	if k.v6 {
		return netip.AddrFrom16(*a)
	}
	return netip.AddrFrom4([4]byte(a[:4]))
}

// connKey returns the tuple of a direction of a netstack connection.
func connKey(c *stack.ConnTrackInfo) flowKey {
	k := flowKey{sport: c.SrcPort, dport: c.DstPort, proto: uint8(c.TransProto), v6: c.SrcAddr.Len() == 16}
	copy(k.src[:], c.SrcAddr.AsSlice())
	copy(k.dst[:], c.DstAddr.AsSlice())
	return k
}

// tupleOf returns the conntrack tuple of an IP datagram as netstack would form it, and
// whether the packet may open a connection (TCP, UDP, ICMP echo requests; not replies,
// ICMP errors, fragments or IPv6 extension headers, which are left for the stack to judge).
func tupleOf(ip []byte, v6 bool) (k flowKey, opens bool) {
	var l4 []byte
	switch {
	case !v6 && len(ip) >= header.IPv4MinimumSize:
		h := header.IPv4(ip)
		hl := int(h.HeaderLength())
		if hl < header.IPv4MinimumSize || hl > len(ip) || h.More() || h.FragmentOffset() != 0 {
			return k, false
		}
		k.proto, l4 = h.Protocol(), ip[hl:]
		copy(k.src[:], ip[12:16])
		copy(k.dst[:], ip[16:20])
	case v6 && len(ip) >= header.IPv6MinimumSize:
		k.proto, l4, k.v6 = ip[6], ip[header.IPv6MinimumSize:], true
		copy(k.src[:], ip[8:24])
		copy(k.dst[:], ip[24:40])
	default:
		return k, false
	}
	switch k.proto {
	case uint8(header.TCPProtocolNumber), uint8(header.UDPProtocolNumber):
		if len(l4) < 4 {
			return k, false
		}
		k.sport, k.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	case uint8(header.ICMPv4ProtocolNumber), uint8(header.ICMPv6ProtocolNumber):
		echo := byte(header.ICMPv4Echo)
		if v6 {
			echo = byte(header.ICMPv6EchoRequest)
		}
		if (k.proto == uint8(header.ICMPv6ProtocolNumber)) != v6 || len(l4) < 8 || l4[0] != echo {
			return k, false
		}
		k.sport = binary.BigEndian.Uint16(l4[4:]) // the echo identifier
	default:
		return k, false
	}
	return k, true
}

// probe builds a packet of the key's tuple that netstack's conntrack files under the
// connection: an ACK for TCP (a SYN could move the state machine), a datagram for UDP, an
// echo request for ICMP, checksums valid (conntrack ignores packets with bad ones).
func (k *flowKey) probe() []byte {
	alen, iplen := 4, header.IPv4MinimumSize
	if k.v6 {
		alen, iplen = 16, header.IPv6MinimumSize
	}
	var l4len, sumAt int
	switch k.proto {
	case uint8(header.TCPProtocolNumber):
		l4len, sumAt = header.TCPMinimumSize, 16
	case uint8(header.UDPProtocolNumber):
		l4len, sumAt = header.UDPMinimumSize, 6
	default: // ICMP echo
		l4len, sumAt = header.ICMPv4MinimumSize, 2
	}
	b := make([]byte, iplen+l4len)
	ip, l4 := b[:iplen], b[iplen:]
	if k.v6 {
		ip[0] = 6 << 4
		binary.BigEndian.PutUint16(ip[4:], uint16(l4len))
		ip[6], ip[7] = k.proto, 64
		copy(ip[8:], k.src[:])
		copy(ip[24:], k.dst[:])
	} else {
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(len(b)))
		ip[8], ip[9] = 64, k.proto
		copy(ip[12:], k.src[:4])
		copy(ip[16:], k.dst[:4])
		binary.BigEndian.PutUint16(ip[10:], csum.Fold(csum.Sum(ip, 0)))
	}
	switch k.proto {
	case uint8(header.TCPProtocolNumber), uint8(header.UDPProtocolNumber):
		binary.BigEndian.PutUint16(l4, k.sport)
		binary.BigEndian.PutUint16(l4[2:], k.dport)
		if k.proto == uint8(header.TCPProtocolNumber) {
			l4[12], l4[13] = 5<<4, tcpACK
		} else {
			binary.BigEndian.PutUint16(l4[4:], uint16(l4len))
		}
	case uint8(header.ICMPv6ProtocolNumber):
		l4[0] = byte(header.ICMPv6EchoRequest)
		binary.BigEndian.PutUint16(l4[4:], k.sport)
	default:
		l4[0] = byte(header.ICMPv4Echo)
		binary.BigEndian.PutUint16(l4[4:], k.sport)
	}
	// ICMPv4's checksum covers the message alone; the others add the pseudo-header.
	var acc uint32
	if k.proto != uint8(header.ICMPv4ProtocolNumber) {
		acc = csum.Sum(k.src[:alen], csum.Sum(k.dst[:alen], uint32(k.proto)+uint32(l4len)))
	}
	binary.BigEndian.PutUint16(l4[sumAt:], csum.Fold(csum.Sum(l4, acc)))
	return b
}

// flowEntry is one tracked connection.
type flowEntry struct {
	reply       flowKey // the reply tuple; with NAT its destination is the outside view
	first, last int64   // wall clock, ns
	established bool
	dir         books.Dir // of the first packet: the NIC a probe enters by
}

// flowTable is the instance's own connection table. netstack's conntrack has no bound, no
// configurable timeouts and no way to list or delete an entry; this table gives all three:
// a connection is admitted (or refused, Full) when its first packet meets PREROUTING, and
// when it expires here, netstack's entry is aged out with it.
type flowTable struct {
	mu       sync.Mutex
	max      int
	timeouts Timeouts
	m        flowShards
	// replies indexes the connections whose reply tuple is not their original one
	// reversed (NAT changed it), so refuses can tell their replies from new connections.
	replies   map[flowKey]*flowEntry
	lastSweep int64 // when shards were last walked
	nextShard int   // the shard the sweep walks next
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
	return &flowTable{max: max, timeouts: t, m: newFlowShards(), replies: map[flowKey]*flowEntry{}}
}

// flowShardCount is how many pieces the connection table is kept in. The sweep walks one
// piece at a time: walking a million connections takes about 70 ms, too long to hold the
// stage's packets back in one go.
const flowShardCount = 64

// flowShards is the connection table, split by a hash of the key.
type flowShards struct {
	shards [flowShardCount]map[flowKey]*flowEntry
	n      int
	secret [2]uint64
}

func newFlowShards() flowShards {
	s := flowShards{secret: [2]uint64{rand.Uint64() | 1, rand.Uint64() | 1}}
	for i := range s.shards {
		s.shards[i] = map[flowKey]*flowEntry{}
	}
	return s
}

// shard returns the map that holds k.
func (s *flowShards) shard(k flowKey) map[flowKey]*flowEntry {
	le := binary.LittleEndian
	h := mulFold(le.Uint64(k.src[:8])^le.Uint64(k.dst[:8])^s.secret[0],
		le.Uint64(k.src[8:])^le.Uint64(k.dst[8:])^uint64(k.sport)<<24^uint64(k.dport)<<8^uint64(k.proto)^s.secret[1])
	// One fold leaves the low bits of keys that differ in one field (the port) in a few
	// residues: with 500 flows one shard in 40 tables stayed empty, not one in 2,500.
	// A second fold spreads them.
	h = mulFold(h^s.secret[1], s.secret[0])
	return s.shards[h%flowShardCount]
}

func (s *flowShards) get(k flowKey) *flowEntry { return s.shard(k)[k] }

func (s *flowShards) put(k flowKey, e *flowEntry) {
	m := s.shard(k)
	if m[k] == nil {
		s.n++
	}
	m[k] = e
}

func (s *flowShards) del(k flowKey) {
	m := s.shard(k)
	if m[k] != nil {
		s.n--
		delete(m, k)
	}
}

// Len returns the number of connections.
func (s *flowShards) Len() int { return s.n }

// refuses reports whether an IP datagram would open a connection when the table is full,
// and counts it refused. It runs before the stack sees the packet: netstack inserts a
// conntrack entry for every new tuple it meets and keeps it, expired, until its reaper
// passes (the first pass comes 5 s after start), so a flood the table refuses would still
// grow the heap and lengthen netstack's bucket lists.
func (ft *flowTable) refuses(ip []byte, v6 bool) bool {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.m.Len() < ft.max {
		return false
	}
	k, opens := tupleOf(ip, v6)
	if !opens || ft.m.get(k) != nil || ft.replies[k] != nil || ft.m.get(k.reversed()) != nil {
		return false
	}
	ft.refused++
	return true
}

// setReply records e's reply tuple, under ft.mu.
func (ft *flowTable) setReply(k flowKey, e *flowEntry, reply flowKey) {
	if e.reply == reply {
		return
	}
	ft.unindex(e)
	e.reply = reply
	if reply != k.reversed() {
		ft.replies[reply] = e
	}
}

// unindex removes e from the reply index, under ft.mu.
func (ft *flowTable) unindex(e *flowEntry) {
	if ft.replies[e.reply] == e {
		delete(ft.replies, e.reply)
	}
}

// remove deletes a connection, under ft.mu.
func (ft *flowTable) remove(k flowKey, e *flowEntry) {
	ft.unindex(e)
	ft.m.del(k)
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
	key := connKey(&orig)
	now := in.wall()
	ft := in.flowTab
	ft.mu.Lock()
	defer ft.mu.Unlock()
	e := ft.m.get(key)
	if e == nil {
		if pkt.IsReplyPacket() {
			return stack.RuleAccept, 0 // a reply of a connection this table never saw begin
		}
		if ft.m.Len() >= ft.max {
			ft.refused++
			if in.curPB.Load() == pkt {
				in.curFull.Store(true)
			}
			return stack.RuleDrop, 0
		}
		e = &flowEntry{first: now, dir: in.cur.dir}
		ft.m.put(key, e)
	}
	e.last = now
	e.established = e.established || orig.State == stack.ConnTrackStateEstablished
	ft.setReply(key, e, connKey(&rep))
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
	key := connKey(&orig)
	ft.mu.Lock()
	if e := ft.m.get(key); e != nil {
		ft.setReply(key, e, connKey(&rep))
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
	key := connKey(&orig)
	ft.mu.Lock()
	if e := ft.m.get(key); e != nil {
		ft.remove(key, e)
	}
	ft.mu.Unlock()
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
	now := in.wall()
	ft.mu.Lock()
	// Each shard is walked once a sweepEvery, the shards spread over it: a large table
	// holds packets back for a 64th of its walk at a time. After a quiet spell every shard
	// is due, and all are walked.
	step := max(int64(ft.sweepEvery())/flowShardCount, 1)
	due := min((now-ft.lastSweep)/step, flowShardCount)
	if due == 0 {
		ft.mu.Unlock()
		return
	}
	if due == flowShardCount {
		ft.lastSweep = now
	} else {
		ft.lastSweep += due * step // keep the pace: the shards left over are due next
	}
	type gone struct {
		k, reply flowKey
		dir      books.Dir
	}
	var old []gone
	for range due {
		for k, e := range ft.m.shards[ft.nextShard] {
			if time.Duration(now-e.last) > ft.timeout(e, k.proto) {
				ft.remove(k, e)
				old = append(old, gone{k, e.reply, e.dir})
			}
		}
		ft.nextShard = (ft.nextShard + 1) % flowShardCount
	}
	ft.mu.Unlock()
	for _, g := range old {
		in.age(g.k.probe(), g.dir)
		if in.fastMax > 0 {
			// What the fast path holds for it goes too: an idle flow's entries would
			// otherwise stay until the cache is full, and then no new flow is cached.
			in.forgetFlow(g.k.fastKey(), g.reply.fastKey())
		}
	}
}

// fastKey is the fast path's key of the same direction.
func (k flowKey) fastKey() fastKey {
	return fastKey{v6: k.v6, proto: k.proto, src: k.src, dst: k.dst, sport: k.sport, dport: k.dport}
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
	return ft.m.Len(), ft.refused
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
	now := in.wall()
	ft.mu.Lock()
	out := make([]Flow, 0, min(ft.m.Len(), max))
	type kv struct {
		k flowKey
		e *flowEntry
	}
	all := make([]kv, 0, ft.m.Len())
	for _, m := range ft.m.shards {
		for k, e := range m {
			all = append(all, kv{k, e})
		}
	}
	ft.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].e.first < all[j].e.first })
	for _, x := range all[:min(len(all), max)] {
		src := netip.AddrPortFrom(x.k.addr(&x.k.src), x.k.sport)
		f := Flow{Proto: protoLabel(x.k.proto), Inside: src.String(), Remote: netip.AddrPortFrom(x.k.addr(&x.k.dst), x.k.dport).String(),
			State:   map[bool]string{true: "established", false: "new"}[x.e.established],
			AgeSecs: float64(now-x.e.first) / 1e9, IdleSec: float64(now-x.e.last) / 1e9}
		r := &x.e.reply
		if out := netip.AddrPortFrom(r.addr(&r.dst), r.dport); r.proto != 0 && out != src {
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
