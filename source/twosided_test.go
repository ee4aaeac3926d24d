package source

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stdpkt/stdpkt/framing"
)

// sourceAddr finds the IPv4 or IPv6 source of Ethernet frames, VLAN-tagged ones (802.1Q,
// QinQ) included, and of raw IP frames; ARP, other non-IP frames and truncated headers have
// none.
func TestSourceAddr(t *testing.T) {
	v4 := ip4("203.0.113.9", "198.51.100.10")
	v6 := ip6("2001:db8:e::9", "2001:db8:2::10")
	vlan := func(tpids []uint16, etype uint16, payload []byte) []byte {
		b := append(macB[:], macA[:]...)
		for i, tpid := range tpids {
			b = append(b, byte(tpid>>8), byte(tpid), 0, byte(10+i)) // TPID, then the TCI: VLAN 10+i
		}
		return append(append(b, byte(etype>>8), byte(etype)), payload...)
	}
	arp := []byte{0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 0x0a, 203, 0, 113, 9, 0, 0, 0, 0, 0, 0, 198, 51, 100, 10}
	raw := &framing.Interface{LinkType: framing.LinkRaw}
	ether := &framing.Interface{Name: "eth0", LinkType: framing.LinkEthernet}
	for _, c := range []struct {
		name string
		p    framing.Packet
		want string // "" for none
	}{
		{"ipv4", framing.Packet{Data: eth(macB, macA, 0x0800, v4), Interface: ether}, "203.0.113.9"},
		{"ipv4, no interface", framing.Packet{Data: eth(macB, macA, 0x0800, v4)}, "203.0.113.9"},
		{"ipv6", framing.Packet{Data: eth(macB, macA, 0x86dd, v6), Interface: ether}, "2001:db8:e::9"},
		{"802.1Q ipv4", framing.Packet{Data: vlan([]uint16{0x8100}, 0x0800, v4)}, "203.0.113.9"},
		{"QinQ ipv4", framing.Packet{Data: vlan([]uint16{0x88a8, 0x8100}, 0x0800, v4)}, "203.0.113.9"},
		{"802.1Q ipv6", framing.Packet{Data: vlan([]uint16{0x8100}, 0x86dd, v6)}, "2001:db8:e::9"},
		{"raw ipv4", framing.Packet{Data: v4, Interface: raw}, "203.0.113.9"},
		{"raw ipv6", framing.Packet{Data: v6, Interface: raw}, "2001:db8:e::9"},
		{"linktype ipv4", framing.Packet{Data: v4, Interface: &framing.Interface{LinkType: framing.LinkIPv4}}, "203.0.113.9"},
		{"linktype ipv6", framing.Packet{Data: v6, Interface: &framing.Interface{LinkType: framing.LinkIPv6}}, "2001:db8:e::9"},
		{"arp", framing.Packet{Data: eth(macB, macA, 0x0806, arp)}, ""},
		{"802.1Q arp", framing.Packet{Data: vlan([]uint16{0x8100}, 0x0806, arp)}, ""},
		{"short ethernet", framing.Packet{Data: eth(macB, macA, 0x0800, nil)[:13]}, ""},
		{"ethernet header only", framing.Packet{Data: eth(macB, macA, 0x0800, nil)}, ""},
		{"truncated ipv4", framing.Packet{Data: eth(macB, macA, 0x0800, v4[:19])}, ""},
		{"truncated ipv6", framing.Packet{Data: eth(macB, macA, 0x86dd, v6[:39])}, ""},
		{"truncated vlan tag", framing.Packet{Data: vlan([]uint16{0x8100}, 0x0800, nil)[:16]}, ""},
		{"ethernet frame taken for raw ip", framing.Packet{Data: eth(macB, macA, 0x0800, v4), Interface: raw}, ""},
		{"empty", framing.Packet{}, ""},
		{"sll ipv4", framing.Packet{Data: append(sll(0x0800), v4...), Interface: &framing.Interface{LinkType: framing.LinkLinuxSLL}}, "203.0.113.9"},
		{"sll ipv6", framing.Packet{Data: append(sll(0x86dd), v6...), Interface: &framing.Interface{LinkType: framing.LinkLinuxSLL}}, "2001:db8:e::9"},
		{"sll arp", framing.Packet{Data: append(sll(0x0806), v4...), Interface: &framing.Interface{LinkType: framing.LinkLinuxSLL}}, ""},
		{"sll2 ipv4", framing.Packet{Data: append(sll2(0x0800), v4...), Interface: &framing.Interface{LinkType: framing.LinkLinuxSLL2}}, "203.0.113.9"},
		{"sll2 ipv6", framing.Packet{Data: append(sll2(0x86dd), v6...), Interface: &framing.Interface{LinkType: framing.LinkLinuxSLL2}}, "2001:db8:e::9"},
		{"sll2 short", framing.Packet{Data: sll2(0x0800)[:19], Interface: &framing.Interface{LinkType: framing.LinkLinuxSLL2}}, ""},
		{"ipv4 header on another link type", framing.Packet{Data: v4, Interface: &framing.Interface{LinkType: 105}}, ""}, // 802.11
		{"ipv6 EtherType, ipv4 header", framing.Packet{Data: eth(macB, macA, 0x86dd, v4)}, ""},
	} {
		got, ok := sourceAddr(&c.p)
		switch {
		case c.want == "" && ok:
			t.Errorf("%s: source %v, want none", c.name, got)
		case c.want != "" && (!ok || got != netip.MustParseAddr(c.want)):
			t.Errorf("%s: source %v, %v; want %s", c.name, got, ok, c.want)
		}
	}
}

// sll is a Linux cooked (v1) header carrying protocol proto: packet type, ARPHRD, address
// length, 8 address bytes, protocol.
func sll(proto uint16) []byte {
	return []byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, byte(proto >> 8), byte(proto)}
}

// sll2 is a Linux cooked v2 header: protocol, reserved, interface index, ARPHRD, packet
// type, address length, 8 address bytes.
func sll2(proto uint16) []byte {
	return []byte{byte(proto >> 8), byte(proto), 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}
}

// --from-east iface=NAME selects the frames captured on that interface and no others;
// src=PREFIX those whose IP source is in the prefix, of its family only.
func TestFromEast(t *testing.T) {
	v4 := func(src string) framing.Packet {
		return framing.Packet{Data: eth(macB, macA, 0x0800, ip4(src, "198.51.100.10")), Interface: westIf}
	}
	v6 := framing.Packet{Data: eth(macB, macA, 0x86dd, ip6("2001:db8:e::9", "2001:db8:2::10")), Interface: westIf}
	onEast := v4("192.0.2.1")
	onEast.Interface = eastIf
	mapped := netip.MustParsePrefix("::ffff:203.0.113.0/120")
	for _, c := range []struct {
		sides Sides
		p     framing.Packet
		want  bool
	}{
		{Sides{Iface: "east"}, onEast, true},
		{Sides{Iface: "east"}, v4("203.0.113.9"), false},
		{Sides{Iface: "east"}, framing.Packet{Data: onEast.Data}, false}, // no interface
		{Sides{Iface: "eas"}, onEast, false},
		{Sides{Iface: "east", Src: netip.MustParsePrefix("203.0.113.0/24")}, v4("203.0.113.9"), false}, // the interface decides
		{Sides{Src: netip.MustParsePrefix("203.0.113.0/24")}, v4("203.0.113.9"), true},
		{Sides{Src: netip.MustParsePrefix("203.0.113.0/24")}, v4("203.0.114.9"), false},
		{Sides{Src: netip.MustParsePrefix("203.0.113.9/32")}, v4("203.0.113.9"), true},
		{Sides{Src: netip.MustParsePrefix("0.0.0.0/0")}, v4("192.0.2.1"), true},
		{Sides{Src: netip.MustParsePrefix("0.0.0.0/0")}, v6, false},
		{Sides{Src: netip.MustParsePrefix("::/0")}, v4("192.0.2.1"), false},
		{Sides{Src: mapped}, v4("203.0.113.9"), false},
		{Sides{Src: netip.MustParsePrefix("2001:db8:e::/48")}, v6, true},
		{Sides{Src: netip.MustParsePrefix("0.0.0.0/0")}, framing.Packet{Data: eth(macB, macA, 0x0806, make([]byte, 28))}, false},
		{Sides{}, v4("192.0.2.1"), false},
		{Sides{}, onEast, false},
	} {
		if got := c.sides.fromEast(&c.p); got != c.want {
			name := "<none>"
			if c.p.Interface != nil {
				name = c.p.Interface.Name
			}
			src, _ := sourceAddr(&c.p)
			t.Errorf("%+v: frame on %s from %v: from east %v, want %v", c.sides, name, src, got, c.want)
		}
	}
}

// sendLog records what a two-sided send writes and flushes, and plays the chain: a
// flushed frame comes home after the source has looked homeAfter times.
type sendLog struct {
	events    []string
	flushed   int // turned-around frames flushed and not yet home
	looks     int
	home      uint64
	homeAfter int
	failWrite int // fail the write of this frame (by timestamp), when > 0
	failFlush bool
}

func (l *sendLog) write(pkts []framing.Packet) error {
	if len(pkts) == 0 {
		return nil // as the source's writer does
	}
	var ids []string
	for _, p := range pkts {
		if int(p.Timestamp) == l.failWrite {
			return fmt.Errorf("write %d failed", p.Timestamp)
		}
		ids = append(ids, fmt.Sprint(p.Timestamp))
	}
	l.events = append(l.events, fmt.Sprintf("%s(home %d)", strings.Join(ids, " "), l.home))
	return nil
}

func (l *sendLog) flush() error {
	if l.failFlush {
		return errors.New("flush failed")
	}
	l.events = append(l.events, "flush")
	l.flushed++
	return nil
}

func (l *sendLog) homeCount() uint64 {
	if l.flushed > 0 {
		if l.looks++; l.looks > l.homeAfter {
			l.home, l.flushed, l.looks = l.home+1, l.flushed-1, 0
		}
	}
	return l.home
}

// trip returns frames with timestamps 1 to n, those listed from the east interface.
func trip(n int, east ...int) []framing.Packet {
	pkts := make([]framing.Packet, n)
	for i := range pkts {
		pkts[i] = framing.Packet{Data: []byte{byte(i)}, Timestamp: int64(i + 1), Interface: westIf}
	}
	for _, i := range east {
		pkts[i-1].Interface = eastIf
	}
	return pkts
}

// In a two-sided replay a frame from the east goes out alone, marked for the turnaround
// and flushed, and the frames after it wait until it has come home, so every stage sees the
// conversation in trace order; frames from the west go out together as usual.
func TestTwoSidedWaitsForHome(t *testing.T) {
	for _, homeAfter := range []int{0, 3} {
		l := &sendLog{homeAfter: homeAfter}
		ts := &twoSided{sides: Sides{Iface: "east"}, home: l.homeCount, wait: time.Minute,
			marked: map[*framing.Interface]*framing.Interface{}}
		pkts := trip(7, 3, 5, 6)
		if err := ts.send(context.Background(), pkts, l.write, l.flush); err != nil {
			t.Fatal(err)
		}
		want := "1 2(home 0) 3(home 0) flush 4(home 1) 5(home 1) flush 6(home 2) flush 7(home 3)"
		if got := strings.Join(l.events, " "); got != want {
			t.Errorf("frames to come home after %d looks: sent\n %s\nwant\n %s", homeAfter, got, want)
		}
		for _, i := range []int{0, 1, 3, 6} {
			if pkts[i].Interface != westIf {
				t.Errorf("frame %d from the west left on %+v", i+1, pkts[i].Interface)
			}
		}
		marked := pkts[2].Interface
		if marked == nil || marked.Name != framing.TurnaroundPrefix+"east" || !marked.Turnaround || marked.LinkType != framing.LinkEthernet {
			t.Errorf("frame from the east left on %+v, want %q marked for the turnaround", marked, framing.TurnaroundPrefix+"east")
		}
		if pkts[4].Interface != marked || pkts[5].Interface != marked {
			t.Errorf("frames from one interface left on different interfaces: %p %p %p", marked, pkts[4].Interface, pkts[5].Interface)
		}
	}
}

// A turned-around frame that never comes home (a stage dropped it) holds the replay up
// no longer than the turnaround wait, nor past cancellation.
func TestTwoSidedGivesUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
		wait time.Duration
	}{{"no wait", context.Background(), 0}, {"cancelled", ctx, time.Hour}} {
		var events []string
		write := func(p []framing.Packet) error {
			for i := range p {
				events = append(events, fmt.Sprint(p[i].Timestamp))
			}
			return nil
		}
		ts := &twoSided{sides: Sides{Iface: "east"}, home: func() uint64 { return 0 }, wait: c.wait,
			marked: map[*framing.Interface]*framing.Interface{}}
		if err := ts.send(c.ctx, trip(4, 2, 3), write, func() error { return nil }); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := strings.Join(events, " "); got != "1 2 3 4" {
			t.Errorf("%s: sent %s, want all four in order", c.name, got)
		}
	}
}

// An output error while sending a frame from the east, or flushing it, stops the batch with
// that error; nothing after it is sent.
func TestTwoSidedErrors(t *testing.T) {
	for _, l := range []*sendLog{{failWrite: 3}, {failWrite: 4}, {failFlush: true}} {
		ts := &twoSided{sides: Sides{Iface: "east"}, home: l.homeCount, wait: time.Minute,
			marked: map[*framing.Interface]*framing.Interface{}}
		err := ts.send(context.Background(), trip(5, 3), l.write, l.flush)
		if err == nil {
			t.Errorf("%+v: no error", l)
			continue
		}
		for _, e := range l.events {
			if strings.HasPrefix(e, "4") || strings.HasPrefix(e, "5") {
				t.Errorf("%+v: sent %q after the error %v", l, l.events, err)
			}
		}
	}
}

// A two-sided replay of a file sends every frame in order, the east interface's marked
// for the turnaround (which a reader downstream sees), waiting at each for it to come home.
func TestReplayTwoSided(t *testing.T) {
	pkts := packets(2*300, "192.0.2.1")
	var east []int
	for i := range pkts {
		if i%7 == 3 {
			pkts[i].Interface = eastIf
			east = append(east, i)
		}
	}
	path := file(t, encode(t, framing.FormatPcapng, pkts))
	for _, sides := range []Sides{{Iface: "east"}, {Src: netip.MustParsePrefix("192.0.2.0/24")}} {
		var came uint64 // the sink turns what reached it around: it comes home at once
		dst := writes{}
		dst.onW = func() { came++ }
		sides := sides
		_, b, err := replay(t, context.Background(), Config{File: path, FromEast: &sides, TurnWait: time.Minute,
			Home: func() uint64 { return came }}, &dst)
		if err != nil {
			t.Fatal(err)
		}
		got := decode(t, dst.buf.Bytes())
		want := make([]framing.Packet, len(pkts))
		copy(want, pkts)
		turned := map[int]bool{}
		for i := range want {
			if sides.Iface == "" || want[i].Interface == eastIf {
				want[i].Interface = framing.TurnaroundOf(want[i].Interface)
				turned[i] = true
			}
		}
		samePackets(t, got, want, true)
		for i, p := range got {
			if p.Interface.Turnaround != turned[i] {
				t.Fatalf("%+v: frame %d turnaround %v, want %v", sides, i, p.Interface.Turnaround, turned[i])
			}
		}
		if b.East.In.Packets != uint64(len(pkts)) || b.East.Out.Packets != uint64(len(pkts)) || b.East.DroppedPackets() != 0 {
			t.Errorf("%+v: books %+v", sides, b.East)
		}
		if sides.Iface != "" && len(turned) != len(east) {
			t.Errorf("%d frames turned, want %d", len(turned), len(east))
		}
	}
}

// A frame that is not IP has no IP source, even when its payload happens to start with
// the nibble 4 or 6: an STP BPDU (802.3 with LLC 42 42 03) is not selected by src=.
func TestSourceAddrNotIP(t *testing.T) {
	bpdu := []byte{0x42, 0x42, 0x03, 0, 0, 0, 0, 0, 0x80, 0x00, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
		0, 0, 0, 4, 0x80, 0, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x80, 0x01, 0, 0, 0x14, 0, 0x02, 0, 0x0f, 0}
	for _, p := range []framing.Packet{
		{Data: eth([6]byte{0x01, 0x80, 0xc2, 0, 0, 0}, macA, uint16(len(bpdu)), bpdu)}, // 802.3 length, not an EtherType
		{Data: eth(macB, macA, 0x88cc, append([]byte{0x45}, make([]byte, 30)...))},     // LLDP
	} {
		if a, ok := sourceAddr(&p); ok {
			t.Errorf("frame %x: source %v, want none", p.Data, a)
		}
	}
}
