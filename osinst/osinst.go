// Package osinst is the library-OS instance every stdpkt network function runs on: one gVisor
// netstack with two Ethernet NICs, west and east, fed from the pipeline's streams and writing
// to them through this package's own link endpoints.
//
// An instance runs in one of two modes:
//
//   - Transparent (no addresses): a bump in the wire. Frames are parsed into netstack packet
//     buffers and run through netstack's iptables hooks (conntrack, filter) directly, without
//     routing; a frame that passes is written out byte for byte as it came in (no TTL or MAC
//     change). Frames that are not IP (ARP, LLDP...) pass unchanged, as on a bridge.
//   - Router (West and East prefixes): the NICs get addresses, netstack forwards between them,
//     answers ARP for its addresses, resolves next hops (or uses static neighbours) and
//     decrements TTL.
//
// Books: every frame given to Input is counted In on its direction and ends as Out or
// Dropped with a reason; frames the instance creates (ARP, ICMP errors, TCP resets) are
// counted Generated and Out on the direction they travel. After Close,
// in + generated = out + dropped holds for both directions.
//
// Link types: Ethernet is the main case. In transparent mode, raw IP (101, 228, 229) and
// Linux cooked captures (SLL 113, SLL2 276) are filtered too and pass unchanged; in router
// mode they are dropped and counted books.LinkType, since a router needs Ethernet to resolve
// and address next hops.
package osinst

import (
	"errors"
	"fmt"
	"io"
	mrand "math/rand"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/rules"
)

// Output is where an instance sends frames; *framing.Writer satisfies it.
type Output interface {
	Write(pkts []framing.Packet) error
}

// An Output that also has Flush() error is flushed after frames the stack sends on its own
// (from a timer), which no drained input would otherwise flush.

// Config configures an instance.
type Config struct {
	// West and East are the NICs' addresses. Both valid: router mode. Both zero: transparent
	// bump-in-the-wire mode.
	West, East netip.Prefix
	// Filter is the filter table; nil accepts everything.
	Filter *rules.Ruleset
	// NAT is the nat table; nil translates nothing. MASQUERADE and REDIRECT need router
	// mode, since they take the instance's own addresses.
	NAT *rules.Ruleset
	// Neighbors are static neighbours, for router mode when there is no return path to
	// resolve them over.
	Neighbors map[netip.Addr]net.HardwareAddr
	// Log receives LOG target lines; nil discards them.
	Log io.Writer
	// MaxFragmentDatagrams bounds the datagrams held for reassembly (transparent mode);
	// 0 means 256.
	MaxFragmentDatagrams int
	// MaxFlows bounds the connections tracked; a new connection beyond it is dropped and
	// counted Full. 0 means DefaultMaxFlows.
	MaxFlows int
	// Timeouts are the idle timeouts of tracked connections; zero fields take
	// DefaultTimeouts'.
	Timeouts Timeouts
	// Seed seeds the stack's random choices (the port NAT picks on a collision); 0 seeds
	// from the clock.
	Seed int64
	// NoFastPath sends every packet through the stack (a transparent filter otherwise
	// passes the later packets of established connections itself).
	NoFastPath bool
}

// NIC names, as rules name them.
const (
	WestNIC = rules.West
	EastNIC = rules.East
)

const (
	westID tcpip.NICID = 1
	eastID tcpip.NICID = 2
)

// Instance is one netstack with its two NICs. Input and Close may be called from different
// goroutines; Input serializes internally.
type Instance struct {
	cfg    Config
	bk     *books.Books
	out    [2]Output // indexed by books.Dir: where frames travelling that way are written
	router bool
	s      *stack.Stack
	ipt    *stack.IPTables
	nics   [2]*linkEP // indexed by books.Dir of the frames the NIC writes: [East] is the east NIC
	tables *tables    // nil when there is no filter
	nat    *tables    // nil when there is no nat table

	mu     sync.Mutex // serializes Input and Close
	closed bool
	cur    frame // the frame being processed, under mu
	// curPB is the packet buffer of the frame being processed, and curRuled the entry+1 of
	// the rule that dropped it. Targets compare against curPB, since netstack may run rules
	// for its own packets on timer goroutines.
	curPB    atomic.Pointer[stack.PacketBuffer]
	curRuled atomic.Int32
	pending  [2][]framing.Packet
	// inInput is set while Input runs: what netstack writes then is flushed by the caller
	// when its input is drained; what it writes from a timer (ARP, packets released when a
	// neighbour resolves) must be flushed at once, or it waits for the next input frame.
	inInput atomic.Bool
	// flowTab is the connection table (with a filter or NAT); aging is set while it ages a
	// netstack entry out, and curFull when the frame being processed was refused by it.
	flowTab *flowTable
	aging   atomic.Bool
	curFull atomic.Bool

	// The fast path (transparent filter): per direction, what the stack showed for the
	// established flows; curPath the rule entries the frame being processed met; now the
	// time of the batch being processed.
	fastCache   [2]*fastTable
	fastMax     int
	fastRefresh time.Duration
	fastHits    atomic.Uint64
	batch       fastBatch       // what the fast path counted in the batch being processed
	parsed      fastParsed      // the frame being processed, as fastParse read it (transparent mode)
	fastMisses  atomic.Uint64   // packets the fast path could take but did not find cached
	fastEvicted atomic.Uint64   // entries dropped because the stack saw their flow again
	seen        [1 << 14]uint64 // hashes of flow directions met once, for seenBefore (14 bits)
	curPath     []int
	curState    rules.State // of the frame the stack just passed (transparent mode)
	now         int64
	frags       *reassembler
	genIf       map[*framing.Interface]*framing.Interface // raw-IP interfaces for answers to SLL frames

	rt    routerState
	clock *shiftClock
	// wall is the clock of the connection table and the fast path (ns): their timeouts,
	// sweeps and refreshes. Tests stop it to make idleness exact.
	wall func() int64
}

// shiftClock is the stack's clock, which forgetNew can turn back for a moment.
type shiftClock struct {
	tcpip.Clock
	back atomic.Int64 // nanoseconds
	// timers is held (read) while a timer's function runs; stopped, set under it when the
	// stack is destroyed, makes timers do nothing.
	timers  sync.RWMutex
	stopped bool
}

// NowMonotonic implements tcpip.Clock.
func (c *shiftClock) NowMonotonic() tcpip.MonotonicTime {
	return c.Clock.NowMonotonic().Add(-time.Duration(c.back.Load()))
}

// AfterFunc implements tcpip.Clock. Once the clock is stopped, a timer that fires does
// nothing: Stack.Destroy does not stop iptables' conntrack reaper, which re-arms itself for
// ever and keeps the whole stack (half a megabyte of connection buckets) alive, and a frame
// the stack sent from a timer after Close (an ARP retry) would be counted in books already
// read.
func (c *shiftClock) AfterFunc(d time.Duration, f func()) tcpip.Timer {
	return c.Clock.AfterFunc(d, func() {
		c.timers.RLock()
		defer c.timers.RUnlock()
		if !c.stopped {
			f()
		}
	})
}

// stop makes timers do nothing from now on, once those running have returned.
func (c *shiftClock) stop() {
	c.timers.Lock()
	c.stopped = true
	c.timers.Unlock()
}

// destroy destroys the stack and stops its timers.
func (in *Instance) destroy() {
	in.s.Destroy()
	in.clock.stop()
}

// forgetNew expires the connection a dropped packet opened. netstack inserts a connection
// when its first packet meets conntrack (Prerouting), not when the packet is accepted, and
// keeps it when the filter then drops the packet (Linux frees such unconfirmed entries).
// Left alone, it would linger for 120 s and its tuple would clash with a later connection
// the other way (an unsolicited inbound packet would break the outbound flow it mirrors).
// netstack has no call to delete a connection, so the packet meets conntrack once more with
// the clock turned back an hour: its last-used time is then long past and lookups, the
// clash check and the reaper treat it as expired.
func (in *Instance) forgetNew(pkt *stack.PacketBuffer, inName string) {
	if !pkt.IsConnTrackConfigured() || pkt.IsReplyPacket() || connState(pkt) != rules.StateNew {
		return
	}
	in.flowTab.forget(pkt) // an unconfirmed connection holds no place in the table either
	ip := make([]byte, 0, ipLen(pkt))
	ip = append(ip, pkt.NetworkHeader().Slice()...)
	ip = append(ip, pkt.TransportHeader().Slice()...)
	ip = append(ip, pkt.Data().AsRange().ToSlice()...)
	again, ok := newParsed(ip, pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber)
	if !ok {
		return
	}
	defer again.DecRef()
	in.aging.Store(true) // not a packet of the chain: the flow table must not see it
	in.clock.back.Store(int64(time.Hour))
	in.ipt.CheckPrerouting(again, nil, inName)
	in.clock.back.Store(0)
	in.aging.Store(false)
}

// frame is what the instance knows about the frame it is processing; targets and the link
// endpoints consult it, since netstack handles a frame synchronously inside the call that
// delivers it.
type frame struct {
	dir   books.Dir
	pkt   *framing.Packet
	l3    int // offset of the IP header in pkt.Data
	link  framing.LinkType
	local bool // router mode: addressed to the instance itself
}

// New builds an instance writing eastbound frames to east and westbound frames to west,
// counting into bk.
func New(cfg Config, east, west Output, bk *books.Books) (*Instance, error) {
	if east == nil || west == nil || bk == nil {
		return nil, errors.New("osinst: New needs both outputs and the books")
	}
	in := &Instance{cfg: cfg, bk: bk, wall: now}
	in.out[books.East], in.out[books.West] = east, west
	switch {
	case cfg.West.IsValid() && cfg.East.IsValid():
		in.router = true
	case cfg.West.IsValid() || cfg.East.IsValid():
		return nil, errors.New("osinst: give both --west and --east addresses (router) or neither (transparent)")
	}
	if cfg.Filter != nil && cfg.Filter.Table != "filter" {
		return nil, fmt.Errorf("osinst: rule set is a %q table, want filter", cfg.Filter.Table)
	}
	in.clock = &shiftClock{Clock: tcpip.NewStdClock()}
	seed := cfg.Seed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	in.s = stack.New(stack.Options{
		Clock:              in.clock,
		RandSource:         &lockedSource{src: mrand.NewSource(seed)},
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	in.ipt = in.s.IPTables()
	in.nics[books.East] = newLinkEP(in, books.East, EastNIC, macFor(eastID))
	in.nics[books.West] = newLinkEP(in, books.West, WestNIC, macFor(westID))
	for _, n := range []struct {
		id tcpip.NICID
		ep *linkEP
	}{{westID, in.nics[books.West]}, {eastID, in.nics[books.East]}} {
		if err := in.s.CreateNICWithOptions(n.id, n.ep, stack.NICOptions{Name: n.ep.name}); err != nil {
			in.destroy()
			return nil, fmt.Errorf("osinst: creating NIC %s: %s", n.ep.name, err)
		}
		// Not promiscuous: netstack delivers every packet locally on a promiscuous NIC
		// instead of forwarding it. A router takes frames for any MAC anyway (the link
		// endpoint hands them all up); transparent mode does not use the NICs' input.
	}
	if cfg.NAT != nil && cfg.NAT.Table != "nat" {
		return nil, fmt.Errorf("osinst: NAT rule set is a %q table, want nat", cfg.NAT.Table)
	}
	if cfg.NAT != nil && !in.router {
		for _, r := range cfg.NAT.Rules() {
			if k := r.Target.Kind; k == rules.Masquerade || k == rules.Redirect {
				in.destroy()
				return nil, fmt.Errorf("osinst: %s: %s takes the stage's own address: give --west and --east (router mode), or use SNAT/DNAT with an address", r.Src, k)
			}
		}
	}
	if (cfg.Filter != nil || cfg.NAT != nil) && !cfg.NoFastPath {
		in.fastMax = 2 * min(max(cfg.MaxFlows, 1), DefaultMaxFlows)
		if cfg.MaxFlows <= 0 {
			in.fastMax = 2 * DefaultMaxFlows
		}
		in.fastCache = [2]*fastTable{newFastTable(rand.Uint64), newFastTable(rand.Uint64)}
	}
	if cfg.Filter != nil || cfg.NAT != nil {
		in.flowTab = newFlowTable(cfg.MaxFlows, withDefaults(cfg.Timeouts))
		in.fastRefresh = min(fastRefresh, in.flowTab.sweepEvery())
		in.ipt.ForceReplaceTable(stack.MangleID, in.mangleTable(false), false)
		in.ipt.ForceReplaceTable(stack.MangleID, in.mangleTable(true), true)
	}
	for _, t := range []struct {
		rs  *rules.Ruleset
		dst **tables
	}{{cfg.Filter, &in.tables}, {cfg.NAT, &in.nat}} {
		if t.rs == nil {
			continue
		}
		tb, err := buildTables(in, t.rs)
		if err != nil {
			in.destroy()
			return nil, err
		}
		*t.dst = tb
		tb.install(in.ipt)
	}
	if in.tables != nil {
		in.batch.rules = make([]ruleTally, len(in.tables.entries))
	}
	if in.router {
		if err := in.setupRouter(); err != nil {
			in.destroy()
			return nil, err
		}
	}
	// A transparent filter decides on whole datagrams; a router with NAT must reassemble
	// too, since netstack's NAT cannot translate a fragment it cannot tell the ports of.
	if !in.router || in.nat != nil {
		n := cfg.MaxFragmentDatagrams
		if n <= 0 {
			n = 256
		}
		in.frags = newReassembler(n)
	}
	return in, nil
}

// lockedSource is a math/rand source safe for netstack's goroutines.
type lockedSource struct {
	mu  sync.Mutex
	src mrand.Source
}

func (l *lockedSource) Int63() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.src.Int63()
}

func (l *lockedSource) Seed(seed int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.src.Seed(seed)
}

// macFor returns a locally administered MAC for a NIC: 02:73:74:70:6b:ID ("stpk").
func macFor(id tcpip.NICID) tcpip.LinkAddress {
	return tcpip.LinkAddress([]byte{0x02, 0x73, 0x74, 0x70, 0x6b, byte(id)})
}

// inNIC and outNIC name the NICs a frame travelling in dir enters and leaves by.
func inNIC(dir books.Dir) string {
	if dir == books.East {
		return WestNIC
	}
	return EastNIC
}

func outNIC(dir books.Dir) string {
	if dir == books.East {
		return EastNIC
	}
	return WestNIC
}

func reverse(dir books.Dir) books.Dir {
	if dir == books.East {
		return books.West
	}
	return books.East
}

// Input delivers packets travelling in dir: books.East are frames that arrived on the west
// NIC (from stdin) and leave on east; books.West are replies that arrived on the east NIC
// and leave on west. Forwarded frames keep the Timestamp and Interface of the input frame.
// The packets' Data are not retained after Input returns, but they may be changed: the
// fast path translates (NAT) and forwards (router: MACs, TTL) a frame in place, as the
// stage owns its input until it is written.
func (in *Instance) Input(dir books.Dir, pkts []framing.Packet) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.inInput.Store(true)
	defer in.inInput.Store(false)
	if in.flowTab != nil {
		in.sweepFlows()
	}
	in.now = in.wall()
	side := &in.bk.Dir[dir]
	n := framing.Bytes(pkts)
	side.In.Add(len(pkts), n)
	if in.closed {
		side.Drop(books.Unsent, len(pkts), n)
		return
	}
	if in.router {
		for i := range pkts {
			in.route(dir, &pkts[i])
		}
	} else if in.bridgeAll(dir, pkts) {
		in.settleFast()
		in.write(dir, pkts)
		return
	}
	in.settleFast()
	in.flushPending()
}

// emit queues a frame to be written in direction dir when the current batch is done.
// Frames are written per batch: one Output.Write per direction per Input call.
func (in *Instance) emit(dir books.Dir, p framing.Packet, generated bool) {
	if generated {
		in.bk.Dir[dir].Generated.Add(1, len(p.Data))
	}
	in.pending[dir] = append(in.pending[dir], p)
}

// flushPending writes the queued frames; a refused batch is counted books.Output.
func (in *Instance) flushPending() {
	for d := range in.pending {
		q := in.pending[d]
		if len(q) == 0 {
			continue
		}
		in.write(books.Dir(d), q)
		clear(q) // drop references to input buffers
		in.pending[d] = q[:0]
	}
}

// write sends frames to the output of dir and counts them Out, or dropped if refused.
func (in *Instance) write(dir books.Dir, q []framing.Packet) {
	n := framing.Bytes(q)
	side := &in.bk.Dir[dir]
	if err := in.out[dir].Write(q); err != nil {
		side.Drop(books.ReasonFor(err), len(q), n)
		return
	}
	side.Out.Add(len(q), n)
	if !in.inInput.Load() {
		if f, ok := in.out[dir].(interface{ Flush() error }); ok {
			_ = f.Flush() // an error shows at the stage's next write
		}
	}
}

// Close stops the instance. Frames it still holds (fragments waiting for the rest of their
// datagram, packets waiting for a neighbour) are counted books.Unsent.
func (in *Instance) Close() error {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return nil
	}
	in.closed = true
	if in.frags != nil {
		in.frags.dropAll(in, books.Unsent)
	}
	in.flushPending()
	in.mu.Unlock()
	in.s.Close()
	in.s.Wait()
	in.destroy()
	if in.router {
		in.routerUnsent()
	}
	return nil
}

// RuleCounters returns what every rule and built-in chain policy has matched, in the
// rule set's order (a chain's rules, then its policy). Empty without a filter.
func (in *Instance) RuleCounters() []rules.Counter {
	var cs []rules.Counter
	for _, t := range []*tables{in.tables, in.nat} {
		if t != nil {
			cs = append(cs, t.counters()...)
		}
	}
	return cs
}

// DumpState writes the rule counters and the connection table, for SIGUSR1 and --list.
func (in *Instance) DumpState(w io.Writer) {
	mode := "transparent"
	if in.router {
		mode = fmt.Sprintf("router west %s east %s", in.cfg.West, in.cfg.East)
	}
	fmt.Fprintf(w, "instance: %s\n", mode)
	rules.FormatCounters(w, in.RuleCounters())
	if in.fastMax > 0 {
		f := in.FastPathStats()
		fmt.Fprintf(w, "fast path: %d hits, %d misses, %d evictions, %d flow directions cached\n", f.Hits, f.Misses, f.Evictions, f.Cached)
	}
	if in.flowTab != nil {
		in.dumpFlows(w)
	}
}

// now is the timestamp of frames the instance generates, and an instance's wall clock
// unless a test stops it.
func now() int64 { return time.Now().UnixNano() }
