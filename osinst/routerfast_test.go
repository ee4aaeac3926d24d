package osinst

import (
	"bytes"
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/rules"
)

// In router mode the fast path takes the established packets of a flow, and what leaves is
// byte for byte what the stack alone sends: new MACs, TTL one less, MASQUERADE's
// translation with adjusted checksums, the same rule counters and books.
func TestRouterFastPathSameAsStack(t *testing.T) {
	nat, err := rules.FromNATFlags(rules.NATFlags{Masquerade: true})
	if err != nil {
		t.Fatal(err)
	}
	run := func(noFast bool) ([]framing.Packet, books.Snapshot, []rules.Counter, FastPath) {
		h := newHarness(t, Config{
			West:       netip.MustParsePrefix("192.0.2.1/24"),
			East:       netip.MustParsePrefix("198.51.100.1/24"),
			Neighbors:  map[netip.Addr]net.HardwareAddr{netip.MustParseAddr("198.51.100.20"): macB, netip.MustParseAddr("192.0.2.10"): macA},
			Filter:     mustRules(t, webRules),
			NAT:        nat,
			NoFastPath: noFast,
			Seed:       1,
		})
		westMAC, eastMAC := net.HardwareAddr(macFor(westID)), net.HardwareAddr(macFor(eastID))
		outside := net.IP{198, 51, 100, 1}
		var all []framing.Packet
		send := func(dir books.Dir, f []byte) {
			e, w := h.send(dir, f)
			all = append(append(all, e...), w...)
		}
		send(books.East, tcpFrame(t, macA, westMAC, ipA, ipB, tcpSeg{sport: 40000, dport: 80, seq: 1, syn: true}))
		send(books.West, tcpFrame(t, macB, eastMAC, ipB, outside, tcpSeg{sport: 80, dport: 40000, seq: 100, ack: 2, syn: true, ack_: true}))
		for i := range 20 {
			send(books.East, tcpFrame(t, macA, westMAC, ipA, ipB, tcpSeg{sport: 40000, dport: 80, seq: 2 + uint32(i), ack: 101, ack_: true, payload: "q"}))
			send(books.West, tcpFrame(t, macB, eastMAC, ipB, outside, tcpSeg{sport: 80, dport: 40000, seq: 101 + uint32(i), ack: 3 + uint32(i), ack_: true, payload: "a"}))
		}
		for i := range 10 { // UDP both ways too
			send(books.East, udpFrame(t, macA, westMAC, ipA, ipB, 5353, 53, "q"))
			send(books.West, udpFrame(t, macB, eastMAC, ipB, outside, 53, 5353, string(rune('a'+i))))
		}
		fp := h.in.FastPathStats()
		counters := h.in.RuleCounters()
		return all, h.close(), counters, fp
	}
	slow, slowBooks, slowRules, _ := run(true)
	fast, fastBooks, fastRules, stats := run(false)
	if stats.Hits < 40 {
		t.Errorf("the fast path took %d packets of 62: %+v", stats.Hits, stats)
	}
	if len(slow) != len(fast) {
		t.Fatalf("stack sent %d frames, fast path %d", len(slow), len(fast))
	}
	for i := range slow {
		if !bytes.Equal(slow[i].Data, fast[i].Data) {
			t.Errorf("frame %d differs:\nstack % x\nfast  % x", i, slow[i].Data, fast[i].Data)
		}
		checkSums(t, fast[i].Data[14:])
	}
	if !reflect.DeepEqual(slowBooks, fastBooks) {
		t.Errorf("books differ:\nstack %v\nfast  %v", slowBooks, fastBooks)
	}
	for i := range slowRules {
		if slowRules[i].Packets != fastRules[i].Packets || slowRules[i].Bytes != fastRules[i].Bytes {
			t.Errorf("rule %d: stack %d/%d, fast %d/%d", i, slowRules[i].Packets, slowRules[i].Bytes, fastRules[i].Packets, fastRules[i].Bytes)
		}
	}
}
