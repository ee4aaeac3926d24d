// Package dumptest builds the mixed trace that the tests of stdpkt-dump compare against
// tcpdump: TCP, UDP, ICMP, ARP, IPv6, 802.1Q and 802.1ad-tagged frames, IPv4 fragments and a
// bad checksum, documentation addresses only. It is shared by the package tests and the
// end-to-end tests so both judge the same frames.
package dumptest

import (
	"bytes"
	"fmt"
	"net"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Frame is one Ethernet frame of the trace and its timestamp.
type Frame struct {
	TS   time.Time
	Data []byte
	// Note says what the frame is, for failure messages.
	Note string
}

// Addresses used by the trace.
var (
	MAC1 = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	MAC2 = net.HardwareAddr{2, 0, 0, 0, 0, 2}
)

// Base is the timestamp of the first frame; frames are 10 ms apart.
var Base = time.Unix(1700000000, 123456789)

// builder accumulates frames; its methods return errors rather than panicking so that a
// bad layer combination is reported by the test that asked for it.
type builder struct {
	frames []Frame
	err    error
}

func ip4(proto layers.IPProtocol, src, dst string) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Id: 0x1234, Flags: layers.IPv4DontFragment, Protocol: proto,
		SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

func ip6(next layers.IPProtocol, src, dst string) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
}

func eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: MAC1, DstMAC: MAC2, EthernetType: t}
}

// add serializes ls (fixing lengths and checksums) and appends the frame.
func (b *builder) add(note string, ls ...gopacket.SerializableLayer) {
	if b.err != nil {
		return
	}
	var nl gopacket.NetworkLayer
	for _, l := range ls {
		switch l := l.(type) {
		case *layers.IPv4:
			nl = l
		case *layers.IPv6:
			nl = l
		case *layers.TCP:
			_ = l.SetNetworkLayerForChecksum(nl)
		case *layers.UDP:
			_ = l.SetNetworkLayerForChecksum(nl)
		case *layers.ICMPv6:
			_ = l.SetNetworkLayerForChecksum(nl)
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		b.err = fmt.Errorf("frame %d (%s): %w", len(b.frames)+1, note, err)
		return
	}
	b.raw(note, buf.Bytes())
}

func (b *builder) raw(note string, data []byte) {
	b.frames = append(b.frames, Frame{TS: Base.Add(time.Duration(len(b.frames)) * 10 * time.Millisecond),
		Data: append([]byte(nil), data...), Note: note})
}

// Trace returns the mixed trace.
func Trace() ([]Frame, error) {
	var b builder
	const (
		a10, a11, a20 = "192.0.2.10", "192.0.2.11", "192.0.2.20"
		w10, w20      = "203.0.113.10", "203.0.113.20"
		r1, r7        = "198.51.100.1", "198.51.100.7"
		six1, six2    = "2001:db8:1::10", "2001:db8:2::10"
	)
	pay := func(n int, c byte) gopacket.Payload { return bytes.Repeat([]byte{c}, n) }
	v4 := layers.EthernetTypeIPv4
	b.add("udp", eth(v4), ip4(layers.IPProtocolUDP, a10, w10), &layers.UDP{SrcPort: 40000, DstPort: 30000}, pay(20, 1))
	b.add("tcp syn", eth(v4), ip4(layers.IPProtocolTCP, a10, w10), &layers.TCP{SrcPort: 40001, DstPort: 80, SYN: true, Seq: 1000, Window: 64240})
	b.add("tcp syn-ack", eth(v4), ip4(layers.IPProtocolTCP, w10, a10), &layers.TCP{SrcPort: 80, DstPort: 40001, SYN: true, ACK: true, Seq: 5000, Ack: 1001, Window: 65160})
	b.add("tcp ack", eth(v4), ip4(layers.IPProtocolTCP, a10, w10), &layers.TCP{SrcPort: 40001, DstPort: 80, ACK: true, Seq: 1001, Ack: 5001, Window: 502})
	b.add("tcp psh-ack", eth(v4), ip4(layers.IPProtocolTCP, a10, w10), &layers.TCP{SrcPort: 40001, DstPort: 80, PSH: true, ACK: true, Seq: 1001, Ack: 5001, Window: 502}, pay(100, 'G'))
	b.add("tcp fin-ack", eth(v4), ip4(layers.IPProtocolTCP, w10, a10), &layers.TCP{SrcPort: 80, DstPort: 40001, FIN: true, ACK: true, Seq: 5001, Ack: 1101, Window: 509})
	b.add("tcp rst", eth(v4), ip4(layers.IPProtocolTCP, r7, a11), &layers.TCP{SrcPort: 443, DstPort: 50000, RST: true, Seq: 77, Window: 0})
	b.add("icmp echo request", eth(v4), ip4(layers.IPProtocolICMPv4, a10, r1), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1}, gopacket.Payload("ping-payload"))
	b.add("icmp echo reply", eth(v4), ip4(layers.IPProtocolICMPv4, r1, a10), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(0, 0), Id: 7, Seq: 1}, gopacket.Payload("ping-payload"))
	// A port unreachable quoting the first UDP frame's headers.
	if b.err == nil {
		quoted := b.frames[0].Data[14 : 14+28]
		b.add("icmp port unreachable", eth(v4), ip4(layers.IPProtocolICMPv4, w10, a10), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(quoted))
	}
	arpReq := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: MAC1, SourceProtAddress: net.IP{192, 0, 2, 10},
		DstHwAddress: make([]byte, 6), DstProtAddress: net.IP{192, 0, 2, 1}}
	b.add("arp request", &layers.Ethernet{SrcMAC: MAC1, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}, arpReq)
	arpRep := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPReply, SourceHwAddress: MAC2, SourceProtAddress: net.IP{192, 0, 2, 1},
		DstHwAddress: MAC1, DstProtAddress: net.IP{192, 0, 2, 10}}
	b.add("arp reply", &layers.Ethernet{SrcMAC: MAC2, DstMAC: MAC1, EthernetType: layers.EthernetTypeARP}, arpRep)
	v6 := layers.EthernetTypeIPv6
	b.add("ipv6 udp", eth(v6), ip6(layers.IPProtocolUDP, six1, six2), &layers.UDP{SrcPort: 40000, DstPort: 30000}, gopacket.Payload("six"))
	b.add("ipv6 tcp syn", eth(v6), ip6(layers.IPProtocolTCP, six1, six2), &layers.TCP{SrcPort: 40002, DstPort: 443, SYN: true, Seq: 42, Window: 64800})
	b.add("icmp6 echo request", eth(v6), ip6(layers.IPProtocolICMPv6, six1, six2),
		&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)},
		&layers.ICMPv6Echo{Identifier: 9, SeqNumber: 2}, gopacket.Payload("ping6"))
	dot1q := layers.EthernetTypeDot1Q
	b.add("vlan 100 udp", eth(dot1q), &layers.Dot1Q{VLANIdentifier: 100, Type: v4}, ip4(layers.IPProtocolUDP, a20, w20), &layers.UDP{SrcPort: 40000, DstPort: 30000}, pay(30, 2))
	b.add("vlan 200 tcp syn", eth(dot1q), &layers.Dot1Q{VLANIdentifier: 200, Priority: 3, Type: v4}, ip4(layers.IPProtocolTCP, a20, w20), &layers.TCP{SrcPort: 40003, DstPort: 80, SYN: true, Seq: 9, Window: 1024})
	b.add("qinq 300/100 udp", eth(layers.EthernetTypeQinQ), &layers.Dot1Q{VLANIdentifier: 300, Type: dot1q}, &layers.Dot1Q{VLANIdentifier: 100, Type: v4}, ip4(layers.IPProtocolUDP, a20, w10), &layers.UDP{SrcPort: 40004, DstPort: 53}, pay(12, 3))
	b.add("vlan 100 arp", eth(dot1q), &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeARP}, arpReq)
	b.add("udp 1400", eth(v4), ip4(layers.IPProtocolUDP, a11, r7), &layers.UDP{SrcPort: 5000, DstPort: 6000}, pay(1400, 0xab))
	// Two fragments of one UDP datagram: the first carries the UDP header, the second not.
	frag1 := ip4(layers.IPProtocolUDP, a10, r7)
	frag1.Flags, frag1.Id = layers.IPv4MoreFragments, 0x4242
	udpHdr := []byte{0x9c, 0x41, 0x75, 0x30, 0x00, 0x30, 0x00, 0x00} // 40001 -> 30000, length 48, no checksum
	b.add("udp fragment 1", eth(v4), frag1, gopacket.Payload(append(udpHdr, bytes.Repeat([]byte{4}, 16)...)))
	frag2 := ip4(layers.IPProtocolUDP, a10, r7)
	frag2.Flags, frag2.Id, frag2.FragOffset = 0, 0x4242, 3
	b.add("udp fragment 2", eth(v4), frag2, pay(16, 5))
	// A UDP datagram whose checksum is wrong (for -v).
	b.add("udp bad checksum", eth(v4), ip4(layers.IPProtocolUDP, a10, w10), &layers.UDP{SrcPort: 40000, DstPort: 30001}, pay(8, 6))
	if b.err == nil {
		d := b.frames[len(b.frames)-1].Data
		d[14+20+6] ^= 0xff // the checksum's high byte
	}
	return b.frames, b.err
}
