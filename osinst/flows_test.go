package osinst

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/rules"
)

// natSNAT is a nat table translating what leaves by the east side to 203.0.113.1.
func natSNAT(t testing.TB) *rules.Ruleset {
	t.Helper()
	rs, err := rules.FromNATFlags(rules.NATFlags{SNAT: mustAddr("203.0.113.1")})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// Beyond --max-flows, new connections are dropped and counted full; the admitted ones go on
// being served; the books balance.
func TestMaxFlows(t *testing.T) {
	h := newHarness(t, Config{NAT: natSNAT(t), MaxFlows: 10})
	passed := 0
	for round := range 3 {
		for i := range 30 {
			east, _ := h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, uint16(20000+i), 53, "q"))
			passed += len(east)
			if round > 0 && i < 10 && len(east) != 1 {
				t.Errorf("round %d: admitted flow %d was not served", round, i)
			}
		}
	}
	if passed != 30 {
		t.Errorf("%d packets passed, want 3 rounds of the 10 admitted flows", passed)
	}
	tracked, refused := h.in.FlowCount()
	if tracked != 10 || refused != 60 {
		t.Errorf("tracked %d refused %d, want 10 and 60", tracked, refused)
	}
	snap := h.close()
	if got := snap.East.Dropped["full"].Packets; got != 60 {
		t.Errorf("dropped full: %d, want 60", got)
	}
}

// An idle connection expires after its timeout: its place is free again, and netstack's
// entry goes with it, so a new connection on the same ports is NEW again.
func TestFlowTimeout(t *testing.T) {
	h := newHarness(t, Config{NAT: natSNAT(t), MaxFlows: 5, Timeouts: Timeouts{UDP: 20 * time.Millisecond}})
	h.stopClock()
	for i := range 5 {
		h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, uint16(30000+i), 53, "q"))
	}
	if east, _ := h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, 31000, 53, "q")); len(east) != 0 {
		t.Fatal("a sixth flow passed a table of five")
	}
	h.advance(19 * time.Millisecond) // within the timeout
	if east, _ := h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, 31002, 53, "q")); len(east) != 0 {
		t.Fatal("a sixth flow passed a table of five idle for less than their timeout")
	}
	h.advance(41 * time.Millisecond) // past the timeout, however the sweep falls
	if east, _ := h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, 31001, 53, "q")); len(east) != 1 {
		t.Fatal("a new flow was refused after the idle ones expired")
	}
	if tracked, _ := h.in.FlowCount(); tracked != 1 {
		t.Errorf("tracked %d after the sweep, want 1", tracked)
	}
	var dump strings.Builder
	h.in.DumpState(&dump)
	if !strings.Contains(dump.String(), "UDP 192.0.2.10:31001 as 203.0.113.1:31001 -> 198.51.100.20:53") {
		t.Errorf("translation table:\n%s", dump.String())
	}
	h.close()
}

func TestParseTimeouts(t *testing.T) {
	tm := DefaultTimeouts()
	if err := ParseTimeouts("tcp-established=1h,udp=45s", &tm); err != nil || tm.TCPEstablished != time.Hour || tm.UDP != 45*time.Second || tm.TCP != 2*time.Minute {
		t.Errorf("%+v %v", tm, err)
	}
	for _, bad := range []string{"tcp=", "udp=-1s", "sctp=1s", "udp"} {
		if err := ParseTimeouts(bad, &tm); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// The fast path allocates nothing per packet: a batch of cached UDP packets passes with
// no allocation in steady state.
func TestFastPathAllocs(t *testing.T) {
	rs := mustRules(t, "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p udp --dport 53 -j ACCEPT\nCOMMIT\n")
	var bk books.Books
	in, err := New(Config{Filter: rs}, discardOut{}, discardOut{}, &bk)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	frame := udpFrame(t, macA, macB, ipA, ipB, 40000, 53, "query")
	batch := make([]framing.Packet, 64)
	for i := range batch {
		batch[i] = framing.Packet{Data: frame, Length: len(frame), Interface: ifWest}
	}
	in.Input(books.East, batch) // the first packet learns the flow
	if allocs := testing.AllocsPerRun(100, func() { in.Input(books.East, batch) }); allocs != 0 {
		t.Errorf("%.1f allocations per batch of 64 cached packets", allocs)
	}
	if hits := in.FastPathStats().Hits; hits < 100*64 {
		t.Errorf("only %d fast-path hits", hits)
	}
}

type discardOut struct{}

func (discardOut) Write([]framing.Packet) error { return nil }

func BenchmarkFastPath64(b *testing.B) {
	rs, err := rules.Parse("b", strings.NewReader("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p udp --dport 53 -j ACCEPT\nCOMMIT\n"), rules.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var bk books.Books
	in, _ := New(Config{Filter: rs}, discardOut{}, discardOut{}, &bk)
	defer in.Close()
	frame := udpFrame(b, macA, macB, ipA, ipB, 40000, 53, "query")
	batch := make([]framing.Packet, 256)
	for i := range batch {
		batch[i] = framing.Packet{Data: frame, Length: len(frame), Interface: ifWest}
	}
	in.Input(books.East, batch)
	b.ReportAllocs()
	for b.Loop() {
		in.Input(books.East, batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/packet")
}

// BenchmarkFastPathFlows is a cached packet's cost with 1,000 flows taking turns, as in
// make bench's traces: the filter of make bench, and SNAT. Frames are copied afresh into
// each batch (NAT translates them in place), which the figure includes.
func BenchmarkFastPathFlows(b *testing.B) {
	rules10, err := os.ReadFile("../bench/fw10.rules")
	if err != nil {
		b.Fatal(err)
	}
	fw, err := rules.Parse("fw10.rules", bytes.NewReader(rules10), rules.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  Config
	}{{"fw10", Config{Filter: fw}}, {"snat", Config{NAT: natSNAT(b)}}} {
		b.Run(c.name, func(b *testing.B) {
			var bk books.Books
			in, err := New(c.cfg, discardOut{}, discardOut{}, &bk)
			if err != nil {
				b.Fatal(err)
			}
			defer in.Close()
			frames := make([][]byte, 1000)
			for i := range frames {
				src := net.IP{192, 0, 2, byte(1 + i%250)}
				frames[i] = udpFrame(b, macA, macB, src, ipB, uint16(10000+i/250), 9, strings.Repeat("x", 18))
			}
			batch := make([]framing.Packet, 256)
			bufs := make([][]byte, len(batch))
			next := 0
			fill := func() {
				for i := range batch {
					bufs[i] = append(bufs[i][:0], frames[next]...)
					next = (next + 1) % len(frames)
					batch[i] = framing.Packet{Data: bufs[i], Length: len(bufs[i]), Interface: ifWest}
				}
			}
			for range 3 * len(frames) / len(batch) { // learn every flow
				fill()
				in.Input(books.East, batch)
			}
			hits := in.FastPathStats().Hits
			b.ReportAllocs()
			for b.Loop() {
				fill()
				in.Input(books.East, batch)
			}
			// Every flow refreshes through the stack every fastRefresh: those are misses.
			if got, all := in.FastPathStats().Hits-hits, uint64(b.N*len(batch)); got < all*99/100 {
				b.Fatalf("%d of %d packets took the fast path", got, all)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/packet")
		})
	}
}

// The NAT fast path rewrites in place without allocating.
func TestNATFastPathAllocs(t *testing.T) {
	var bk books.Books
	in, err := New(Config{NAT: natSNAT(t)}, discardOut{}, discardOut{}, &bk)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	frame := udpFrame(t, macA, macB, ipA, ipB, 40000, 53, "query")
	batch := make([]framing.Packet, 64)
	bufs := make([][]byte, len(batch))
	fill := func() {
		for i := range batch {
			bufs[i] = append(bufs[i][:0], frame...) // each run translates fresh frames
			batch[i] = framing.Packet{Data: bufs[i], Length: len(frame), Interface: ifWest}
		}
	}
	fill()
	in.Input(books.East, batch)
	fill()
	if allocs := testing.AllocsPerRun(100, func() { fill(); in.Input(books.East, batch) }); allocs != 0 {
		t.Errorf("%.1f allocations per batch of 64 translated packets", allocs)
	}
	if hits := in.FastPathStats().Hits; hits < 100*64 {
		t.Errorf("only %d fast-path hits", hits)
	}
}

// A full table refuses new connections before the stack sees them, yet still knows the
// replies of the connections it holds, also when NAT changed their tuple.
func TestFullTableServesReplies(t *testing.T) {
	for _, nat := range []bool{false, true} {
		cfg := Config{Filter: mustRules(t, "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"), MaxFlows: 3}
		if nat {
			cfg = Config{NAT: natSNAT(t), MaxFlows: 3}
		}
		h := newHarness(t, cfg)
		outside := net.IP(ipA)
		if nat {
			outside = net.IP{203, 0, 113, 1}
		}
		for i := range 3 {
			if east, _ := h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, uint16(40000+i), 53, "q")); len(east) != 1 {
				t.Fatalf("nat %v: flow %d not admitted", nat, i)
			}
		}
		if east, _ := h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, 41000, 53, "q")); len(east) != 0 {
			t.Fatalf("nat %v: a fourth flow passed a table of three", nat)
		}
		_, west := h.send(books.West, udpFrame(t, macB, macA, ipB, outside, 53, 40001, "a"))
		if len(west) != 1 {
			t.Fatalf("nat %v: the reply of an admitted flow was refused", nat)
		}
		if got := decode(west[0].Data).NetworkLayer().NetworkFlow().Dst().String(); got != ipA.String() {
			t.Errorf("nat %v: reply delivered to %s, want %s", nat, got, ipA)
		}
		// A packet from outside that opens a connection of its own is refused.
		if _, west := h.send(books.West, udpFrame(t, macB, macA, ipB, outside, 53, 40009, "x")); len(west) != 0 {
			t.Errorf("nat %v: an unsolicited inbound flow passed a full table", nat)
		}
		if tracked, refused := h.in.FlowCount(); tracked != 3 || refused != 2 {
			t.Errorf("nat %v: tracked %d refused %d, want 3 and 2", nat, tracked, refused)
		}
		snap := h.close()
		if full := snap.East.Dropped["full"].Packets + snap.West.Dropped["full"].Packets; full != 2 {
			t.Errorf("nat %v: dropped full %d, want 2", nat, full)
		}
	}
}

// tupleOf reads a datagram's tuple as netstack's conntrack forms it: the key the flow
// table recorded from netstack is the one tupleOf gives for the same bytes.
func TestTupleOfMatchesConntrack(t *testing.T) {
	ip6A, ip6B := net.ParseIP("2001:db8::a"), net.ParseIP("2001:db8:1::b")
	frames := [][]byte{
		udpFrame(t, macA, macB, ipA, ipB, 1234, 53, "q"),
		tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 2345, dport: 80, seq: 1, syn: true}),
		icmpFrame(t, macA, macB, ipA, ipB, 8, 0, 77, 1),
		serialize(t, ethL(macA, macB, layers.EthernetTypeIPv6),
			&layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: ip6A, DstIP: ip6B},
			udpOver6(ip6A, ip6B), gopacket.Payload("q")),
		serialize(t, ethL(macA, macB, layers.EthernetTypeIPv6),
			&layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: ip6A, DstIP: ip6B},
			icmp6Over6(ip6A, ip6B), &layers.ICMPv6Echo{Identifier: 99, SeqNumber: 1}),
	}
	for i, f := range frames {
		h := newHarness(t, Config{Filter: mustRules(t, "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"), NoFastPath: true})
		h.send(books.East, f)
		k, opens := tupleOf(f[14:], f[12] == 0x86)
		ft := h.in.flowTab
		ft.mu.Lock()
		tracked := ft.m.get(k) != nil
		n := ft.m.Len()
		ft.mu.Unlock()
		if !opens || !tracked || n != 1 {
			t.Errorf("frame %d: tupleOf gives %v (opens %v), tracked %v among %d", i, k, opens, tracked, n)
		}
		h.close()
	}
}

func udpOver6(src, dst net.IP) *layers.UDP {
	u := &layers.UDP{SrcPort: 5353, DstPort: 53}
	_ = u.SetNetworkLayerForChecksum(&layers.IPv6{SrcIP: src, DstIP: dst, NextHeader: layers.IPProtocolUDP})
	return u
}

func icmp6Over6(src, dst net.IP) *layers.ICMPv6 {
	c := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	_ = c.SetNetworkLayerForChecksum(&layers.IPv6{SrcIP: src, DstIP: dst, NextHeader: layers.IPProtocolICMPv6})
	return c
}

// A probe carries its key's tuple with valid checksums, so conntrack files it under the
// connection: tupleOf reads the key back from it, and newParsed accepts it.
func TestProbeCarriesTuple(t *testing.T) {
	v4 := func(b ...byte) (a [16]byte) { copy(a[:], b); return a }
	v6a, v6b := [16]byte(net.ParseIP("2001:db8::a").To16()), [16]byte(net.ParseIP("2001:db8:1::b").To16())
	for _, k := range []flowKey{
		{src: v4(192, 0, 2, 10), dst: v4(198, 51, 100, 20), sport: 1234, dport: 80, proto: 6},
		{src: v4(192, 0, 2, 10), dst: v4(198, 51, 100, 20), sport: 1234, dport: 53, proto: 17},
		{src: v4(192, 0, 2, 10), dst: v4(198, 51, 100, 20), sport: 77, proto: 1},
		{src: v6a, dst: v6b, sport: 1234, dport: 80, proto: 6, v6: true},
		{src: v6a, dst: v6b, sport: 1234, dport: 53, proto: 17, v6: true},
		{src: v6a, dst: v6b, sport: 77, proto: 58, v6: true},
	} {
		b := k.probe()
		got, opens := tupleOf(b, k.v6)
		if !opens || got != k {
			t.Errorf("probe of %+v reads as %+v (opens %v)", k, got, opens)
		}
		pkt, ok := newParsed(b, k.v6)
		if !ok {
			t.Errorf("probe of %+v does not parse", k)
			continue
		}
		pkt.DecRef()
		if k.v6 {
			continue
		}
		checkSums(t, b)
	}
}

// When a connection times out here, netstack's connection goes too: the remote side's next
// packet is NEW, not a reply, and a filter admitting only replies from the east drops it.
func TestTimeoutExpiresNetstackConnection(t *testing.T) {
	fw := mustRules(t, `*filter
:FORWARD DROP [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i west -j ACCEPT
COMMIT
`)
	for _, proto := range []string{"udp", "icmp"} {
		h := newHarness(t, Config{Filter: fw, NoFastPath: true, Timeouts: Timeouts{UDP: 20 * time.Millisecond, ICMP: 20 * time.Millisecond}})
		h.stopClock()
		out, back := udpFrame(t, macA, macB, ipA, ipB, 5000, 53, "q"), udpFrame(t, macB, macA, ipB, ipA, 53, 5000, "a")
		if proto == "icmp" {
			out, back = icmpFrame(t, macA, macB, ipA, ipB, 8, 0, 99, 1), icmpFrame(t, macB, macA, ipB, ipA, 0, 0, 99, 1)
		}
		if east, _ := h.send(books.East, out); len(east) != 1 {
			t.Fatalf("%s: the request did not pass", proto)
		}
		if _, west := h.send(books.West, back); len(west) != 1 {
			t.Fatalf("%s: the reply did not pass", proto)
		}
		h.advance(60 * time.Millisecond)                                         // past the timeout, however the sweep falls
		h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, 6000, 53, "sweep")) // the sweep runs on input
		if _, west := h.send(books.West, back); len(west) != 0 {
			t.Errorf("%s: a reply after the connection timed out passed as ESTABLISHED", proto)
		}
		h.close()
	}
}

// The fast path counts what it took, what it missed and what it evicted.
// A large table is swept a shard at a time, each shard once per sweep period; after a quiet
// spell, all at once.
func TestSweepWalksAShardAtATime(t *testing.T) {
	h := newHarness(t, Config{Filter: mustRules(t, "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"), NoFastPath: true})
	defer h.close()
	h.stopClock() // the sends sweep nothing: no shard falls due while the clock stands
	for i := range 500 {
		h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, uint16(20000+i), 53, "q"))
	}
	ft := h.in.flowTab
	sweep := func(behind time.Duration) (removed int) {
		h.in.mu.Lock()
		defer h.in.mu.Unlock()
		ft.mu.Lock()
		for _, m := range ft.m.shards {
			for _, e := range m {
				e.last = 0 // long idle: expired
			}
		}
		before := ft.m.Len()
		ft.lastSweep = h.wall.Load() - int64(behind)
		ft.mu.Unlock()
		h.in.sweepFlows()
		return before - ft.m.Len()
	}
	step := ft.sweepEvery() / flowShardCount
	for i := 500; len(ft.m.shards[ft.nextShard]) == 0 && i < 5000; i++ { // one table in 2,500 leaves it empty
		h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, uint16(20000+i), 53, "q"))
	}
	next := ft.nextShard
	want, total := len(ft.m.shards[next]), ft.m.Len()
	if got := sweep(step + step/2); got != want || got == 0 || got > 50 {
		t.Errorf("one shard due: %d connections removed, want the %d of shard %d", got, want, next)
	}
	if got := sweep(ft.sweepEvery() * 2); got != total-want || ft.m.Len() != 0 {
		t.Errorf("after a quiet spell: %d removed, %d left, want all the rest", got, ft.m.Len())
	}
}

// A flow that expires leaves the fast path too: the cache holds live flows only.
func TestExpiryEvictsFastPath(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"filter", Config{Filter: mustRules(t, "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"), Timeouts: Timeouts{UDP: 20 * time.Millisecond}}},
		{"nat", Config{NAT: natSNAT(t), Timeouts: Timeouts{UDP: 20 * time.Millisecond}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.cfg)
			h.stopClock() // the three packets come at once, within the fast path's refresh
			for range 3 {
				h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, 7000, 53, "q"))
			}
			if f := h.in.FastPathStats(); f.Cached != 1 || f.Hits != 1 {
				t.Fatalf("after 3 packets of one flow: %+v, want it cached and one hit", f)
			}
			h.advance(60 * time.Millisecond)                                     // past the timeout, however the sweep falls
			h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, 7001, 53, "q")) // another flow's packet runs the sweep
			if f := h.in.FastPathStats(); f.Cached != 0 || f.Evictions != 1 {
				t.Errorf("after the flow expired: %+v, want nothing cached, one eviction", f)
			}
			if tracked, _ := h.in.FlowCount(); tracked != 1 {
				t.Errorf("tracked %d, want the new flow only", tracked)
			}
			h.close()
		})
	}
}

func TestFastPathCounters(t *testing.T) {
	h := newHarness(t, Config{Filter: mustRules(t, "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n")})
	for range 5 {
		h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, 7000, 53, "q"))
	}
	f := h.in.FastPathStats()
	// The first packet opens the flow, the second teaches the cache, the rest pass fast.
	if f.Hits != 3 || f.Misses != 2 || f.Cached != 1 || f.Evictions != 0 {
		t.Errorf("after 5 packets of one flow: %+v, want 3 hits, 2 misses, 1 cached", f)
	}
	h.send(books.West, udpFrame(t, macB, macA, ipB, ipA, 53, 7000, "a")) // the stack sees the flow again
	if f = h.in.FastPathStats(); f.Evictions != 1 || f.Cached != 0 {
		t.Errorf("after a reply: %+v, want the entry evicted", f)
	}
	var dump strings.Builder
	h.in.DumpState(&dump)
	if !strings.Contains(dump.String(), "fast path: 3 hits, 3 misses, 1 evictions, 0 flow directions cached") {
		t.Errorf("state dump:\n%s", dump.String())
	}
	h.close()
}

// A batch that mixes frames of a cached flow with frames the stack decides leaves in the
// order it came: the fast path's frames are not held back behind the stack's, nor sent
// ahead of them; a batch the fast path passes whole goes out as it came too.
func TestFastPathKeepsBatchOrder(t *testing.T) {
	for _, cfg := range []Config{
		{Filter: mustRules(t, "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n")},
		{NAT: natSNAT(t)},
	} {
		h := newHarness(t, cfg)
		cached := func(i int) []byte { return udpFrame(t, macA, macB, ipA, ipB, 7000, 53, fmt.Sprintf("cached %d", i)) }
		for i := range 3 { // opens the flow and teaches the cache
			h.send(books.East, cached(i))
		}
		batch := func(frames ...[]byte) []framing.Packet {
			ps := make([]framing.Packet, len(frames))
			for i, f := range frames {
				ps[i] = framing.Packet{Data: f, Length: len(f), Timestamp: int64(i), Interface: ifWest}
			}
			return ps
		}
		before := h.in.FastPathStats().Hits
		h.in.Input(books.East, batch(cached(3), cached(4),
			udpFrame(t, macA, macB, ipA, ipB, 7001, 53, "new 1"), cached(5),
			udpFrame(t, macA, macB, ipA, ipB, 7002, 53, "new 2")))
		h.in.Input(books.East, batch(cached(6), cached(7)))
		want := []string{"cached 3", "cached 4", "new 1", "cached 5", "new 2", "cached 6", "cached 7"}
		out := h.east.take()
		if len(out) != len(want) {
			t.Fatalf("%d frames out, want %d", len(out), len(want))
		}
		for i, p := range out {
			if !bytes.Contains(p.Data, []byte(want[i])) {
				t.Errorf("frame %d out: %q, want the one of %q", i, p.Data, want[i])
			}
		}
		if hits := h.in.FastPathStats().Hits - before; hits != 5 {
			t.Errorf("%d fast-path hits in the two batches, want 5 (the cached flow's frames)", hits)
		}
		h.close()
	}
}

// The sweep walks the table a shard at a time, so the shards must share the connections
// out evenly even when they differ in one field only, as a client's ports do: with 3,000
// such connections, no shard is left empty (at random, one table in 10^18 would).
func TestShardsSpreadPorts(t *testing.T) {
	for range 50 {
		s := newFlowShards()
		for i := range 3000 {
			k := flowKey{sport: uint16(20000 + i), dport: 53, proto: 17}
			copy(k.src[:], []byte{192, 0, 2, 1})
			copy(k.dst[:], []byte{198, 51, 100, 2})
			s.put(k, &flowEntry{})
		}
		for i, m := range s.shards {
			if len(m) == 0 {
				t.Fatalf("shard %d of %d holds none of 3000 connections that differ in their source port", i, flowShardCount)
			}
		}
	}
}
