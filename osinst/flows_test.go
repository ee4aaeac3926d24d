package osinst

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/rules"
)

// natSNAT is a nat table translating what leaves by the east side to 203.0.113.1.
func natSNAT(t *testing.T) *rules.Ruleset {
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
	for i := range 5 {
		h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, uint16(30000+i), 53, "q"))
	}
	if east, _ := h.send(books.East, udpFrame(t, macA, macB, ipA, ipB, 31000, 53, "q")); len(east) != 0 {
		t.Fatal("a sixth flow passed a table of five")
	}
	time.Sleep(60 * time.Millisecond) // past the timeout, however the sweep falls
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
	if hits, _ := in.FastPathStats(); hits < 100*64 {
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
	if hits, _ := in.FastPathStats(); hits < 100*64 {
		t.Errorf("only %d fast-path hits", hits)
	}
}
