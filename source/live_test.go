package source

import (
	"slices"
	"testing"

	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/live"
)

// The ports here are never opened: learn and out only compare them, by pointer.

// frameTo returns a frame from MAC src to MAC dst.
func frameTo(dst, src [6]byte) framing.Packet {
	return framing.Packet{Data: eth(dst, src, 0x0800, ip4("192.0.2.1", "198.51.100.10"))}
}

// With several ports, a frame to a MAC address leaves by the port where that address was
// last heard, as a bridge learns; broadcast, multicast and unknown destinations, and frames
// too short to have one, flood every port.
func TestPortsLearn(t *testing.T) {
	p0, p1, p2 := &live.Port{}, &live.Port{}, &live.Port{}
	ps := NewPorts([]*live.Port{p0, p1, p2})
	macC := [6]byte{0x02, 0, 0, 0, 0, 0x0c}
	bcast := [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mcast := [6]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
	check := func(when string, p framing.Packet, want ...*live.Port) {
		t.Helper()
		if got := ps.out(&p); !slices.Equal(got, want) {
			t.Errorf("%s: frame to %x leaves by %v, want %v", when, p.Data[:min(6, len(p.Data))], got, want)
		}
	}
	all := []*live.Port{p0, p1, p2}
	check("nothing heard", frameTo(macA, macB), all...)

	ps.learn(p1, []framing.Packet{frameTo(macB, macA), frameTo(macA, macC)})
	check("A and C heard on port 1", frameTo(macA, macB), p1)
	check("A and C heard on port 1", frameTo(macC, macB), p1)
	check("B not heard", frameTo(macB, macA), all...)
	check("broadcast", frameTo(bcast, macB), all...)
	check("multicast", frameTo(mcast, macB), all...)

	ps.learn(p2, []framing.Packet{frameTo(bcast, macA)})
	check("A moved to port 2", frameTo(macA, macB), p2)
	check("C stayed on port 1", frameTo(macC, macB), p1)

	ps.learn(p0, []framing.Packet{frameTo(macB, mcast), frameTo(macB, bcast), {Data: frameTo(macB, macC).Data[:11]}})
	check("a multicast source is not learned", frameTo(mcast, macB), all...)
	check("a broadcast source is not learned", frameTo(bcast, macB), all...)
	check("a frame too short for its source is not learned", frameTo(macC, macB), p1)
	check("a frame too short for a destination", framing.Packet{Data: []byte{0x02, 0, 0, 0, 0}}, all...)

	tagged := frameTo(macA, macB)
	tagged.Interface = &framing.Interface{Name: "eth9", LinkType: framing.LinkEthernet}
	check("tagged with an interface that is none of the ports", tagged, p2)
}

// With one port every frame leaves by it, and nothing is learned.
func TestPortsOne(t *testing.T) {
	p := &live.Port{}
	ps := NewPorts([]*live.Port{p})
	ps.learn(p, []framing.Packet{frameTo(macB, macA)})
	if len(ps.where) != 0 {
		t.Errorf("one port learned %d addresses", len(ps.where))
	}
	for _, f := range []framing.Packet{frameTo(macA, macB), frameTo([6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, macB), {Data: []byte{1}}} {
		if got := ps.out(&f); len(got) != 1 || got[0] != p {
			t.Errorf("frame %x leaves by %v, want the one port", f.Data, got)
		}
	}
}
