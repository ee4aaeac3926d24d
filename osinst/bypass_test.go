package osinst

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/rules"
)

// bpPiece is a fragment of a test datagram: payload bytes [off, end) of the good or the
// evil version, or the whole datagram unfragmented when end is 0.
type bpPiece struct {
	off, end int
	evil     bool
}

// bpPlans returns the ways to cut a segment of n bytes (a multiple of 8) into fragments:
// every set of cut points on 8-byte boundaries.
func bpPlans(n int) [][]bpPiece {
	cuts := n/8 - 1
	var plans [][]bpPiece
	for mask := 1; mask < 1<<cuts; mask++ {
		var plan []bpPiece
		off := 0
		for i := range cuts {
			if mask&(1<<i) != 0 {
				plan = append(plan, bpPiece{off: off, end: (i + 1) * 8})
				off = (i + 1) * 8
			}
		}
		plans = append(plans, append(plan, bpPiece{off: off, end: n}))
	}
	return plans
}

// bpPermutations returns every order of 0..n-1.
func bpPermutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range bpPermutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

// bpScenarios are the fragment sequences tried against a deny rule: for every way to cut
// the segment, every order of the fragments, with the first fragment (or every fragment)
// from the denied datagram, and with an extra fragment of the denied datagram that
// overlaps, repeats or is contained in each fragment, sent before or after it.
func bpScenarios(n int) [][]bpPiece {
	var out [][]bpPiece
	for _, plan := range bpPlans(n) {
		for _, order := range bpPermutations(len(plan)) {
			for _, which := range []string{"all evil", "first evil", "later evil"} {
				var s []bpPiece
				for _, i := range order {
					p := plan[i]
					p.evil = which == "all evil" || (which == "first evil") == (p.off == 0)
					s = append(s, p)
				}
				out = append(out, s)
			}
		}
		// Extra fragments of the evil version over each piece of the good one, in order.
		for i, p := range plan {
			extras := []bpPiece{
				{off: p.off, end: p.end, evil: true},               // same range: a duplicate that differs
				{off: p.off, end: min(p.off+8, p.end), evil: true}, // contained
				{off: max(p.off-8, 0), end: p.end, evil: true},     // overlapping before
				{off: p.off, end: min(p.end+8, n), evil: true},     // overlapping after
				{off: 0, end: n, evil: true},                       // covering all but as a fragment
			}
			for _, x := range extras {
				if x.off == x.end {
					continue
				}
				for _, before := range []bool{true, false} {
					var s []bpPiece
					for j, q := range plan {
						if j == i && before {
							s = append(s, x)
						}
						s = append(s, q)
						if j == i && !before {
							s = append(s, x)
						}
					}
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// bpFrames builds the IPv4 frames of a scenario: fragments of good or evil, one IP ID; a
// piece that is the whole segment and the only one is sent unfragmented.
func bpFrames(e *mfEnv, good, evil []byte, id uint16, s []bpPiece) [][]byte {
	var fs [][]byte
	n := len(good) - 20
	for _, p := range s {
		src := good
		if p.evil {
			src = evil
		}
		src = bytes.Clone(src)
		binary.BigEndian.PutUint16(src[4:], id)
		mfSetIPSum(src)
		last := p.end == n
		if len(s) == 1 && p.off == 0 && last {
			fs = append(fs, e.eth(mfWest, etherIPv4, src))
			continue
		}
		fs = append(fs, e.eth(mfWest, etherIPv4, mfFrag(src, p.off, p.end, !last)))
	}
	return fs
}

// bpDenied inspects the frames that came out: denied reports whether a datagram's first
// bytes (IP header and the start of its transport header) are what the deny rule covers.
// It fails on any offset-0 fragment or unfragmented datagram the rule covers, and on any two
// fragments of one datagram that overlap with different bytes, since a receiver could then
// put together what the filter never saw.
func bpCheckOut(t *testing.T, what string, out [][]byte, denied func(ip []byte) bool) {
	t.Helper()
	type key struct {
		src, dst [4]byte
		id       uint16
		proto    uint8
	}
	type part struct {
		off  int
		data []byte
	}
	parts := map[key][]part{}
	for _, f := range out {
		ip := mfDatagram(f)
		if len(ip) < 20 || ip[0]>>4 != 4 {
			continue
		}
		fo := binary.BigEndian.Uint16(ip[6:])
		if fo&0x1fff == 0 && denied(ip) {
			t.Errorf("%s: a datagram the deny rule covers went through: % x", what, ip[:min(len(ip), 44)])
		}
		if fo&0x3fff == 0 {
			continue
		}
		k := key{[4]byte(ip[12:16]), [4]byte(ip[16:20]), binary.BigEndian.Uint16(ip[4:]), ip[9]}
		hl := int(ip[0]&0x0f) * 4
		p := part{int(fo&0x1fff) * 8, ip[hl:]}
		for _, q := range parts[k] {
			lo, hi := max(p.off, q.off), min(p.off+len(p.data), q.off+len(q.data))
			if lo < hi && !bytes.Equal(p.data[lo-p.off:hi-p.off], q.data[lo-q.off:hi-q.off]) {
				t.Errorf("%s: fragments out overlap with different bytes at %d..%d: a receiver may reassemble what the filter did not see", what, lo, hi)
			}
		}
		parts[k] = append(parts[k], p)
	}
}

// bpFilter is a deny rule and how the corpus makes a datagram it covers.
type bpFilter struct {
	name  string
	rule  string // one-liner spec of the --drop rule
	evil  func(e *mfEnv, sp uint16) []byte
	good  func(e *mfEnv, sp uint16) []byte
	match func(ip []byte) bool
}

func bpFilters() []bpFilter {
	const payload = "0123456789abcdef" // a 36-byte TCP segment, cut on 8-byte boundaries
	denied := [4]byte{192, 0, 2, 66}
	return []bpFilter{
		{
			name: "deny tcp dport 23", rule: "tcp dport 23",
			good: func(e *mfEnv, sp uint16) []byte { return e.tcp4(0, sp, 80, mfSYN, payload+"0123") },
			evil: func(e *mfEnv, sp uint16) []byte { return e.tcp4(0, sp, 23, mfSYN, payload+"0123") },
			match: func(ip []byte) bool {
				hl := int(ip[0]&0x0f) * 4
				return ip[9] == 6 && len(ip) >= hl+4 && binary.BigEndian.Uint16(ip[hl+2:]) == 23
			},
		},
		{
			name: "deny src 192.0.2.66", rule: "src 192.0.2.66",
			good: func(e *mfEnv, sp uint16) []byte { return e.tcp4(0, sp, 80, mfSYN, payload+"0123") },
			evil: func(e *mfEnv, sp uint16) []byte {
				ip := e.tcp4(0, sp, 80, mfSYN, payload+"0123")
				copy(ip[12:16], denied[:])
				mfSetIPSum(ip)
				return mfL4Fix(ip)
			},
			match: func(ip []byte) bool { return [4]byte(ip[12:16]) == denied },
		},
	}
}

// TestFilterBypassFragments proves that no combination of fragments gets a datagram a deny
// rule covers past a transparent filter (fast path on and off): for every way to cut a TCP
// segment on 8-byte boundaries, every order of the fragments, the first (or a later, or
// every) fragment taken from the denied datagram, and an extra denied fragment that
// duplicates, is contained in, or overlaps each fragment (before or after it), nothing the
// rule covers comes out, and no two fragments out overlap with different bytes. Every frame
// is booked.
func TestFilterBypassFragments(t *testing.T) {
	for _, f := range bpFilters() {
		for _, fast := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/fast=%v", f.name, fast), func(t *testing.T) {
				rs, err := rules.FromOneLiners([]rules.OneLiner{{Flag: "--drop", Target: rules.Drop, Spec: f.rule}}, rules.Accept, rules.Options{})
				if err != nil {
					t.Fatal(err)
				}
				e := mfStdpktEnv()
				h := newHarness(t, Config{Filter: rs, NoFastPath: !fast, MaxFragmentDatagrams: 4096})
				scen := bpScenarios(40)
				passed := 0
				for i, s := range scen {
					sp := uint16(20000 + i%40000)
					var out [][]byte
					for _, fr := range bpFrames(e, f.good(e, sp), f.evil(e, sp), uint16(i+1), s) {
						east, west := h.send(books.East, fr)
						if len(west) != 0 {
							t.Fatalf("scenario %d: %d frames came back west", i, len(west))
						}
						for _, p := range east {
							out = append(out, p.Data)
						}
					}
					if len(out) > 0 {
						passed++
					}
					bpCheckOut(t, fmt.Sprintf("scenario %d %+v", i, s), out, f.match)
				}
				snap := h.close()
				t.Logf("%d scenarios, %d let something through (all of it allowed); books east: %+v", len(scen), passed, snap.East)
				if passed == 0 {
					t.Error("nothing passed at all: the scenarios never make an allowed datagram, so they prove nothing")
				}
			})
		}
	}
}

// TestFilterBypassFlags proves that no combination of TCP flags (all 256 values of the flag
// byte), sent as a new segment, as part of an allowed connection's tuple turned to the
// denied port, unfragmented or as a tiny first fragment, gets a segment to a denied port
// past a transparent filter, with the fast path on and off.
func TestFilterBypassFlags(t *testing.T) {
	f := bpFilters()[0]
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast=%v", fast), func(t *testing.T) {
			rs, err := rules.FromOneLiners([]rules.OneLiner{{Flag: "--drop", Target: rules.Drop, Spec: f.rule}}, rules.Accept, rules.Options{})
			if err != nil {
				t.Fatal(err)
			}
			e := mfStdpktEnv()
			h := newHarness(t, Config{Filter: rs, NoFastPath: !fast})
			// An allowed connection to port 80, established, and its packets learnt by the
			// fast path: a denied segment must not ride on it.
			for i, s := range []struct {
				from  int
				flags uint8
			}{{mfWest, mfSYN}, {mfEast, mfSYN | mfACK}, {mfWest, mfACK}, {mfWest, mfACK | mfPSH}, {mfWest, mfACK | mfPSH}} {
				src, dst, sp, dp := e.a, e.b, uint16(30000), uint16(80)
				if s.from == mfEast {
					src, dst, sp, dp = dst, src, dp, sp
				}
				ip := mfIP4{src: src, dst: dst, proto: 6, ttl: 64, id: uint16(i), payload: mfTCP(src[:], dst[:], sp, dp, s.flags, 1000, 1, "data")}.bytes()
				p := e.v4(s.from, ip)
				if east, west := h.send(p.dir(), p.frame); len(east)+len(west) != 1 {
					t.Fatalf("the allowed connection's packet %d did not pass", i)
				}
			}
			for flags := range 256 {
				for _, sp := range []uint16{uint16(31000 + flags), 30000} {
					ip := mfIP4{src: e.a, dst: e.b, proto: 6, ttl: 64, id: uint16(1000 + flags), payload: mfTCP(e.a[:], e.b[:], sp, 23, uint8(flags), 1000, 1, "data")}.bytes()
					frames := [][]byte{e.eth(mfWest, etherIPv4, ip), nil, nil}
					frames[1] = e.eth(mfWest, etherIPv4, mfFrag(ip, 0, 8, true))
					frames[2] = e.eth(mfWest, etherIPv4, mfFrag(ip, 8, len(ip)-20, false))
					var out [][]byte
					for _, fr := range frames {
						east, _ := h.send(books.East, fr)
						for _, p := range east {
							out = append(out, p.Data)
						}
					}
					bpCheckOut(t, fmt.Sprintf("flags %#02x from port %d", flags, sp), out, f.match)
				}
			}
			h.close()
		})
	}
}

// TestNATNoInsideAddressLeaks proves that with SNAT (transparent) or MASQUERADE (router) of
// the inside 192.0.2.0/24, nothing leaves on the outside with an inside address anywhere in
// it (IP header, the datagram an ICMP error quotes, IP options): whatever the inside sends,
// ICMP errors about translated flows and about packets never seen, fragments in every
// order and overlapping, malformed transport headers, bad checksums in and out of an
// established flow, and the rest of the malformed corpus. Fast path on and off.
func TestNATNoInsideAddressLeaks(t *testing.T) {
	inside := []byte{192, 0, 2}
	for _, mode := range []mfMode{mfNAT, mfRouter} {
		for _, fast := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/fast=%v", mode, fast), func(t *testing.T) {
				e := mfStdpktEnv()
				h := newHarness(t, mfConfig(t, mode, fast))
				var outside [][]byte
				send := func(p mfPkt) (far, back [][]byte) {
					t.Helper()
					east, west := h.send(p.dir(), p.frame)
					for _, f := range east {
						outside = append(outside, f.Data)
					}
					if p.dir() == books.West {
						east, west = west, east
					}
					for _, f := range east {
						far = append(far, f.Data)
					}
					for _, f := range west {
						back = append(back, f.Data)
					}
					return far, back
				}
				// A UDP flow out and its answer back in.
				q := e.udp4(1, 40000, 53, "query")
				far, _ := send(e.v4(mfWest, q))
				if len(far) != 1 {
					t.Fatal("the flow's query was not forwarded")
				}
				seenQ := mfDatagram(far[0])
				ans := mfIP4{src: e.b, dst: [4]byte(seenQ[12:16]), proto: 17, ttl: 64, id: 2,
					payload: mfUDP(e.b[:], seenQ[12:16], 53, binary.BigEndian.Uint16(seenQ[20:]), "answer")}.bytes()
				far, _ = send(e.v4(mfEast, ans))
				if len(far) != 1 {
					t.Fatal("the flow's answer was not forwarded")
				}
				answerIn := mfDatagram(far[0]) // as the inside host got it
				// A TCP connection out, established.
				syn := e.tcp4(3, 40001, 80, mfSYN, "")
				far, _ = send(e.v4(mfWest, syn))
				if len(far) != 1 {
					t.Fatal("the SYN was not forwarded")
				}
				seenSyn := mfDatagram(far[0])
				sa := mfIP4{src: e.b, dst: [4]byte(seenSyn[12:16]), proto: 6, ttl: 64, id: 4,
					payload: mfTCP(e.b[:], seenSyn[12:16], 80, binary.BigEndian.Uint16(seenSyn[20:]), mfSYN|mfACK, 5000, 1001, "")}.bytes()
				send(e.v4(mfEast, sa))
				ack := mfIP4{src: e.a, dst: e.b, proto: 6, ttl: 64, id: 5, payload: mfTCP(e.a[:], e.b[:], 40001, 80, mfACK, 1001, 5001, "")}.bytes()
				send(e.v4(mfWest, ack))

				var probes [][]byte
				// ICMP errors from the inside host: about the flow's answer (a translated
				// flow), about the TCP connection, about a packet never seen, and errors
				// with a broken quote.
				probes = append(probes,
					mfIP4{src: e.a, dst: e.b, proto: 1, ttl: 64, id: 6, payload: mfICMP(3, 3, 0, mfQuote(answerIn))}.bytes(),
					mfIP4{src: e.a, dst: e.b, proto: 1, ttl: 64, id: 7, payload: mfICMP(11, 0, 0, mfQuote(answerIn))}.bytes(),
					mfIP4{src: e.a, dst: e.b, proto: 1, ttl: 64, id: 8, payload: mfICMP(3, 3, 0, mfQuote(mfIP4{src: e.b, dst: e.a, proto: 17, ttl: 64, id: 9,
						payload: mfUDP(e.b[:], e.a[:], 999, 888, "never")}.bytes()))}.bytes(),
					mfIP4{src: e.a, dst: e.b, proto: 1, ttl: 64, id: 10, payload: mfICMP(3, 3, 0, mfQuote(answerIn)[:24])}.bytes(),
					mfIP4{src: e.a, dst: e.b, proto: 1, ttl: 64, id: 11, payload: mfICMP(3, 3, 0, nil)}.bytes(),
					mfIP4{src: e.a, dst: e.b, proto: 1, ttl: 64, id: 12, payload: mfICMP(3, 4, 0, mfQuoteFixed(answerIn, func(q []byte) []byte { q[7] = 1; return q }))}.bytes(),
				)
				// Packets of the established flows with bad checksums, impossible flags,
				// truncated headers.
				probes = append(probes,
					mfWith(e.udp4(13, 40000, 53, "more"), 26, 0xde, 0xad),
					mfWith(e.tcp4(14, 40001, 80, mfACK, "data"), 36, 0xde, 0xad),
					e.tcp4(15, 40001, 80, mfSYN|mfFIN, ""),
					e.tcp4(16, 40001, 80, 0, ""),
					mfCut(e.tcp4(17, 40001, 80, mfACK, "data"), 30),
					mfCut(e.udp4(18, 40000, 53, "more"), 24),
					mfIP4{src: e.a, dst: e.b, proto: 253, ttl: 64, id: 19, payload: []byte("other protocol")}.bytes(),
					mfIP4{src: e.a, dst: e.b, proto: 17, ttl: 64, id: 20, opts: mfRecordRoute(), payload: mfUDP(e.a[:], e.b[:], 40002, 53, "rr")}.bytes(),
					mfIP4{src: e.a, dst: e.b, proto: 17, ttl: 64, id: 21, opts: []byte{68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0}, payload: mfUDP(e.a[:], e.b[:], 40003, 53, "ts")}.bytes(),
				)
				for _, ip := range probes {
					send(e.v4(mfWest, ip))
				}
				// Fragments: every plan and order, with overlapping and repeated pieces,
				// from the flow's tuple and from new ones.
				for i, s := range bpScenarios(40) {
					if i%7 != 0 {
						continue // a seventh of them: the plans and orders all occur
					}
					good := e.udp4(0, uint16(41000+i%2000), 53, strings.Repeat("f", 32))
					evil := e.udp4(0, uint16(41000+i%2000), 53, strings.Repeat("g", 32))
					for _, fr := range bpFrames(e, good, evil, uint16(100+i), s) {
						send(mfPkt{mfWest, fr})
					}
				}
				// The malformed corpus, from the inside.
				for _, c := range mfCorpus() {
					if c.flow {
						continue
					}
					for _, p := range c.pkts(e, nil) {
						if p.from == mfWest {
							send(p)
						}
					}
				}
				snap := h.close()
				if len(outside) < 5 {
					t.Fatalf("only %d frames left on the outside: the probes prove nothing", len(outside))
				}
				for _, f := range outside {
					off, _, _ := linkParse(framing.LinkEthernet, f)
					if i := bytes.Index(f[off:], inside); i >= 0 {
						t.Errorf("a frame left on the outside with an inside address at byte %d of its datagram: % x", i, f[off:min(len(f), off+64)])
					}
				}
				mfCheckSums(t, outside)
				t.Logf("%d frames left on the outside; books east %+v", len(outside), snap.East)
			})
		}
	}
}

// TestRouterKeepsTransportBytes proves that a router without NAT forwards the bytes past
// the IP header as they came, as Linux does: fragments (whose payload netstack's checksum
// offload emulation would overwrite), a UDP datagram with a bad checksum (which it would
// make look sound) and one without a checksum (which it would give one). Only TTL and the
// header checksum change.
func TestRouterKeepsTransportBytes(t *testing.T) {
	e := mfStdpktEnv()
	cfg := mfConfig(t, mfRouter, false)
	cfg.NAT = nil
	cfg.Filter = mustRules(t, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
	h := newHarness(t, cfg)
	u := e.udp4(7, 4000, 53, strings.Repeat("fragmented", 5))
	tcp := e.tcp4(8, 4001, 80, mfSYN, strings.Repeat("segment!", 4))
	for i, ip := range [][]byte{
		mfFrag(u, 0, 16, true), mfFrag(u, 16, 40, true), mfFrag(u, 40, len(u)-20, false),
		mfFrag(tcp, 0, 24, true), mfFrag(tcp, 24, len(tcp)-20, false),
		mfWith(u, 26, 0xde, 0xad), mfWith(e.udp4(9, 4002, 53, "no checksum"), 26, 0, 0),
	} {
		east, _ := h.send(books.East, e.v4(mfWest, ip).frame)
		if len(east) != 1 {
			t.Fatalf("datagram %d: %d frames out, want it forwarded", i, len(east))
		}
		got := mfDatagram(east[0].Data)
		want := bytes.Clone(ip)
		want[8]--
		mfSetIPSum(want)
		if !bytes.Equal(got, want) {
			t.Errorf("datagram %d out:\n got % x\nwant % x", i, got, want)
		}
	}
	h.close()
}
