package osinst

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/stdpkt/stdpkt/books"
)

func TestRouterForwardsAndAnswers(t *testing.T) {
	h := newHarness(t, Config{
		West:      netip.MustParsePrefix("192.0.2.1/24"),
		East:      netip.MustParsePrefix("198.51.100.1/24"),
		Neighbors: map[netip.Addr]net.HardwareAddr{netip.MustParseAddr("198.51.100.20"): macB, netip.MustParseAddr("192.0.2.10"): macA},
		Filter:    mustRules(t, webRules),
	})
	westMAC := net.HardwareAddr(macFor(westID))
	eastMAC := net.HardwareAddr(macFor(eastID))
	syn := tcpFrame(t, macA, westMAC, ipA, ipB, tcpSeg{sport: 40000, dport: 80, seq: 1, syn: true})
	east, west := h.send(books.East, syn)
	if len(east) != 1 || len(west) != 0 {
		t.Fatalf("forwarded SYN: east %d west %d", len(east), len(west))
	}
	p := decode(east[0].Data)
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !bytes.Equal(eth.SrcMAC, eastMAC) || !bytes.Equal(eth.DstMAC, macB) || ip.TTL != 63 {
		t.Errorf("forwarded %s > %s TTL %d; want %s > %s TTL 63", eth.SrcMAC, eth.DstMAC, ip.TTL, eastMAC, macB)
	}
	if east[0].Timestamp != h.ts || east[0].Interface != ifWest {
		t.Errorf("forwarded frame lost its timestamp or interface")
	}
	if !bytes.Equal(east[0].Data[14+20:], syn[14+20:len(east[0].Data)]) {
		t.Errorf("TCP segment changed")
	}
	checkSums(t, east[0].Data[14:])
	// The reply comes back through the connection.
	synAck := tcpFrame(t, macB, eastMAC, ipB, ipA, tcpSeg{sport: 80, dport: 40000, seq: 9, ack: 2, syn: true, ack_: true})
	if _, west := h.send(books.West, synAck); len(west) != 1 {
		t.Fatalf("SYN-ACK: %d westbound", len(west))
	}
	// A denied port is dropped by the policy.
	if east, west := h.send(books.East, tcpFrame(t, macA, westMAC, ipA, ipB, tcpSeg{sport: 40001, dport: 23, syn: true})); len(east)+len(west) != 0 {
		t.Fatalf("denied SYN: east %d west %d", len(east), len(west))
	}
	// ARP for the router's west address is answered.
	arpReq := serialize(t, ethL(macA, layers.EthernetBroadcast, layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: ipA,
		DstHwAddress: make([]byte, 6), DstProtAddress: net.IP{192, 0, 2, 1}})
	_, west = h.send(books.East, arpReq)
	if len(west) != 1 {
		t.Fatalf("ARP: %d answers", len(west))
	}
	arp := decode(west[0].Data).Layer(layers.LayerTypeARP).(*layers.ARP)
	if arp.Operation != layers.ARPReply || !bytes.Equal(arp.SourceHwAddress, westMAC) {
		t.Errorf("ARP answer %+v", arp)
	}
	// TTL 1 is not forwarded: time exceeded comes back.
	ttl1 := tcpFrame(t, macA, westMAC, ipA, ipB, tcpSeg{sport: 40000, dport: 80, seq: 2, ack: 10, ack_: true})
	ttl1[14+8] = 1
	ttl1[14+10], ttl1[14+11] = 0, 0
	sum := ^ipChecksum(ttl1[14 : 14+20])
	ttl1[14+10], ttl1[14+11] = byte(sum>>8), byte(sum)
	east, west = h.send(books.East, ttl1)
	if len(east) != 0 {
		t.Fatalf("TTL 1 forwarded")
	}
	if len(west) != 1 || decode(west[0].Data).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4).TypeCode.Type() != 11 {
		t.Errorf("TTL 1: %d answers, want time exceeded", len(west))
	}
	snap := h.close()
	if snap.East.Dropped["rule"].Packets != 1 || snap.East.Dropped["ttl"].Packets != 1 || snap.West.Generated.Packets != 2 {
		t.Errorf("books %+v", snap)
	}
}

func ipChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
