package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Helpers of TestNATKernelTwoSided: a conversation played step by step through a Linux NAT
// router, recorded as the router's two sides saw it, and a description of datagrams that
// both NATs must agree on.

// The addresses of the conversation: two inside hosts, one outside server, the router's
// outside address (what MASQUERADE and --snat translate to).
var (
	knatA      = netip.MustParseAddr("192.0.2.10")
	knatB      = netip.MustParseAddr("192.0.2.11")
	knatS      = netip.MustParseAddr("203.0.113.10")
	knatRO     = netip.MustParseAddr("203.0.113.1")
	knatInside = netip.MustParsePrefix("192.0.2.0/24")
)

// knatMACs are the MACs of the wire ends (the inside hosts' side, the outside server's
// side) and of the router's two interfaces.
var knatMACs = struct{ in, routerIn, out, routerOut net.HardwareAddr }{
	in:        net.HardwareAddr{2, 0, 0, 0, 0x2a, 1},
	routerIn:  net.HardwareAddr{2, 0, 0, 0, 0x2a, 2},
	out:       net.HardwareAddr{2, 0, 0, 0, 0x2b, 1},
	routerOut: net.HardwareAddr{2, 0, 0, 0, 0x2b, 2},
}

// knatTuple is a datagram's addresses and ports (ICMP echo: the identifier as sport).
type knatTuple struct {
	src, dst     netip.Addr
	sport, dport uint16
}

func (u knatTuple) reverse() knatTuple { return knatTuple{u.dst, u.src, u.dport, u.sport} }

// knatFlow is a conversation opened by an inside host.
type knatFlow struct {
	proto layers.IPProtocol
	knatTuple
}

// knatStep is one packet: sent by the flow's inside host, or (reply) by the outside server to
// the address and port the NAT gave the flow.
type knatStep struct {
	name, flow string
	reply      bool
	flags      string // TCP: S, A, P, F
	seq, ack   uint32 // TCP; ICMP echo: seq is the sequence number
	data       string
}

// knatTCP returns the steps of a whole TCP connection: handshake, a request and a response,
// each acknowledged, and FIN both ways.
func knatTCP(flow string, cseq, sseq uint32, req, resp string) []knatStep {
	q, r := uint32(len(req)), uint32(len(resp))
	return []knatStep{
		{name: flow + " SYN", flow: flow, flags: "S", seq: cseq},
		{name: flow + " SYN-ACK", flow: flow, reply: true, flags: "SA", seq: sseq, ack: cseq + 1},
		{name: flow + " ACK", flow: flow, flags: "A", seq: cseq + 1, ack: sseq + 1},
		{name: flow + " request", flow: flow, flags: "PA", seq: cseq + 1, ack: sseq + 1, data: req},
		{name: flow + " response", flow: flow, reply: true, flags: "PA", seq: sseq + 1, ack: cseq + 1 + q, data: resp},
		{name: flow + " ACK of response", flow: flow, flags: "A", seq: cseq + 1 + q, ack: sseq + 1 + r},
		{name: flow + " FIN", flow: flow, flags: "FA", seq: cseq + 1 + q, ack: sseq + 1 + r},
		{name: flow + " FIN-ACK", flow: flow, reply: true, flags: "FA", seq: sseq + 1 + r, ack: cseq + 2 + q},
		{name: flow + " last ACK", flow: flow, flags: "A", seq: cseq + 2 + q, ack: sseq + 2 + r},
	}
}

// knatBuild makes a step's Ethernet frame: addressed by tu, with IP ID id, as the inside
// host or the outside server puts it on its wire to the router.
func knatBuild(t *testing.T, f knatFlow, s knatStep, tu knatTuple, id uint16) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: knatMACs.in, DstMAC: knatMACs.routerIn, EthernetType: layers.EthernetTypeIPv4}
	if s.reply {
		eth.SrcMAC, eth.DstMAC = knatMACs.out, knatMACs.routerOut
	}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: id, Flags: layers.IPv4DontFragment, Protocol: f.proto,
		SrcIP: tu.src.AsSlice(), DstIP: tu.dst.AsSlice()}
	ls := []gopacket.SerializableLayer{eth, ip}
	switch f.proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(tu.sport), DstPort: layers.TCPPort(tu.dport), Seq: s.seq, Ack: s.ack, Window: 64240,
			SYN: strings.Contains(s.flags, "S"), ACK: strings.Contains(s.flags, "A"), PSH: strings.Contains(s.flags, "P"), FIN: strings.Contains(s.flags, "F")}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, tcp)
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(tu.sport), DstPort: layers.UDPPort(tu.dport)}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, udp)
	case layers.IPProtocolICMPv4:
		typ, ident := uint8(layers.ICMPv4TypeEchoRequest), tu.sport
		if s.reply {
			typ, ident = layers.ICMPv4TypeEchoReply, tu.dport
		}
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: ident, Seq: uint16(s.seq)})
	default:
		t.Fatalf("%s: no builder for %v", s.name, f.proto)
	}
	ls = append(ls, gopacket.Payload(s.data))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// knatIP returns the IPv4 datagram of an Ethernet frame, cut to its total length, or nil.
func knatIP(f []byte) []byte {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[14]>>4 != 4 {
		return nil
	}
	ip := f[14:]
	if n := int(binary.BigEndian.Uint16(ip[2:])); n >= 20 && n <= len(ip) {
		ip = ip[:n]
	}
	return ip
}

func knatID(ip []byte) uint16 { return binary.BigEndian.Uint16(ip[4:]) }

// knatTupleOf reads a datagram's addresses and ports (ICMP echo: the identifier as the
// port at the requester's end).
func knatTupleOf(ip []byte) (knatTuple, bool) {
	hl := int(ip[0]&0x0f) * 4
	if len(ip) < hl+8 {
		return knatTuple{}, false
	}
	tu := knatTuple{src: netip.AddrFrom4([4]byte(ip[12:16])), dst: netip.AddrFrom4([4]byte(ip[16:20]))}
	l4 := ip[hl:]
	switch layers.IPProtocol(ip[9]) {
	case layers.IPProtocolTCP, layers.IPProtocolUDP:
		tu.sport, tu.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	case layers.IPProtocolICMPv4:
		switch l4[0] {
		case layers.ICMPv4TypeEchoRequest:
			tu.sport = binary.BigEndian.Uint16(l4[4:])
		case layers.ICMPv4TypeEchoReply:
			tu.dport = binary.BigEndian.Uint16(l4[4:])
		default:
			return knatTuple{}, false
		}
	default:
		return knatTuple{}, false
	}
	return tu, true
}

// knatDesc describes a datagram in the fields a NAT may touch or must keep: addresses, ports
// (through port, which may name a translated port), TCP flags, sequence numbers, window,
// payload, IP ID and DF. TTL is left out: a router decrements it, a transparent stage keeps it.
func knatDesc(ip []byte, port func(netip.Addr, uint16) string) string {
	hl := int(ip[0]&0x0f) * 4
	if len(ip) < 20 || hl < 20 || len(ip) < hl+8 {
		return fmt.Sprintf("short IPv4 datagram, %d bytes", len(ip))
	}
	src, dst := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	ipf := fmt.Sprintf("ipid=%#04x df=%v", knatID(ip), ip[6]&0x40 != 0)
	ep := func(a netip.Addr, p uint16) string { return a.String() + ":" + port(a, p) }
	l4 := ip[hl:]
	switch layers.IPProtocol(ip[9]) {
	case layers.IPProtocolTCP:
		if len(l4) < 20 {
			return fmt.Sprintf("tcp %s > %s truncated", src, dst)
		}
		flags := ""
		for i, c := range "FSRPAU" {
			if l4[13]&(1<<i) != 0 {
				flags += string(c)
			}
		}
		doff := min(int(l4[12]>>4)*4, len(l4))
		return fmt.Sprintf("tcp %s > %s [%s] seq=%d ack=%d win=%d data=%q %s", ep(src, binary.BigEndian.Uint16(l4)), ep(dst, binary.BigEndian.Uint16(l4[2:])),
			flags, binary.BigEndian.Uint32(l4[4:]), binary.BigEndian.Uint32(l4[8:]), binary.BigEndian.Uint16(l4[14:]), l4[doff:], ipf)
	case layers.IPProtocolUDP:
		return fmt.Sprintf("udp %s > %s data=%q %s", ep(src, binary.BigEndian.Uint16(l4)), ep(dst, binary.BigEndian.Uint16(l4[2:])), l4[8:], ipf)
	case layers.IPProtocolICMPv4:
		ident := binary.BigEndian.Uint16(l4[4:])
		switch l4[0] {
		case layers.ICMPv4TypeEchoRequest:
			return fmt.Sprintf("icmp echo request %s > %s id=%s seq=%d data=%q %s", src, dst, port(src, ident), binary.BigEndian.Uint16(l4[6:]), l4[8:], ipf)
		case layers.ICMPv4TypeEchoReply:
			return fmt.Sprintf("icmp echo reply %s > %s id=%s seq=%d data=%q %s", src, dst, port(dst, ident), binary.BigEndian.Uint16(l4[6:]), l4[8:], ipf)
		}
		return fmt.Sprintf("icmp %d/%d %s > %s %s", l4[0], l4[1], src, dst, ipf)
	}
	return fmt.Sprintf("proto %d %s > %s %s", ip[9], src, dst, ipf)
}

// knatPlain formats ports as numbers.
func knatPlain(_ netip.Addr, p uint16) string { return fmt.Sprint(p) }

// knatExt formats the port ext at the NAT's outside address as EXT, any other as a number:
// two NATs that gave a flow different external ports describe its packets alike.
func knatExt(ext uint16) func(netip.Addr, uint16) string {
	return func(a netip.Addr, p uint16) string {
		if a == knatRO && p == ext {
			return "EXT"
		}
		return fmt.Sprint(p)
	}
}

// knatByID indexes the IPv4 datagrams of frames by IP ID; a second datagram with one ID is
// an error (nothing in the conversation is fragmented or duplicated).
func knatByID(t *testing.T, what string, frames [][]byte) map[uint16][]byte {
	t.Helper()
	m := map[uint16][]byte{}
	for i, f := range frames {
		ip := knatIP(f)
		if ip == nil {
			t.Errorf("%s: frame %d is not IPv4: % x", what, i+1, f[:min(len(f), 34)])
			continue
		}
		if _, dup := m[knatID(ip)]; dup {
			t.Errorf("%s: two datagrams with IP ID %#04x: %s", what, knatID(ip), knatDesc(ip, knatPlain))
		}
		m[knatID(ip)] = ip
	}
	return m
}

// knatWaitID waits, at most d, for a frame with IP ID id to arrive at p, and returns its
// datagram (nil if none came).
func knatWaitID(p *fwPort, id uint16, d time.Duration) []byte {
	for deadline := time.Now().Add(d); ; time.Sleep(time.Millisecond) {
		p.mu.Lock()
		for _, f := range p.got {
			if ip := knatIP(f); ip != nil && knatID(ip) == id {
				p.mu.Unlock()
				return ip
			}
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			return nil
		}
	}
}

// knatFrames returns a copy of what has arrived at p.
func knatFrames(p *fwPort) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.got...)
}

// knatAddrs lists a datagram's addresses.
func knatAddrs(ip []byte) []netip.Addr {
	return []netip.Addr{netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))}
}

// execOut runs a command and returns its combined output.
func execOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
