package osinst

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/rules"
)

// reject answers the frame being processed as REJECT does: a TCP reset or an ICMP error,
// sent back out of the NIC the frame came in by, addressed to the frame's sender at L2.
// netstack's own REJECT targets route the answer through the stack, which a transparent
// instance cannot (it has no addresses or routes), so the answer is built here.
func (in *Instance) reject(pkt *stack.PacketBuffer, with rules.RejectWith) {
	if in.curPB.Load() != pkt || in.cur.pkt == nil {
		return // not the frame being processed: nothing to answer to
	}
	ip := make([]byte, 0, ipLen(pkt))
	ip = append(ip, pkt.NetworkHeader().Slice()...)
	ip = append(ip, pkt.TransportHeader().Slice()...)
	ip = append(ip, pkt.Data().AsRange().ToSlice()...)
	v6 := pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber
	var answer []byte
	if with == rules.RejectTCPReset {
		answer = tcpReset(ip, v6, pkt.TransportHeader().Slice(), pkt.Data().Size())
	} else {
		typ, code := uint8(header.ICMPv4DstUnreachable), icmp4Codes[with]
		if v6 {
			typ, code = uint8(header.ICMPv6DstUnreachable), icmp6Codes[with]
		}
		answer = icmpError(ip, v6, typ, code, in.answerSource(ip, v6), isICMPError(pkt))
	}
	if answer == nil {
		return
	}
	f := &in.cur
	fr, ifc := in.wrapL2(f, answer, v6)
	in.emit(reverse(f.dir), framing.Packet{Data: fr, Length: len(fr), Timestamp: now(), Interface: ifc}, true)
}

// answerSource is the source address of an ICMP error: in a router, its address on the NIC
// the frame came in by; in a transparent box, the address the frame was sent to, since the
// box has none of its own.
func (in *Instance) answerSource(ip []byte, v6 bool) []byte {
	if in.router {
		pfx := in.cfg.West
		if in.cur.dir != 0 { // westbound frames came in by east
			pfx = in.cfg.East
		}
		if a := pfx.Addr(); a.Is6() == v6 {
			return a.AsSlice()
		}
	}
	if v6 {
		return ip[24:40]
	}
	return ip[16:20]
}

// wrapL2 puts the answer in a frame of the input frame's link type: Ethernet with the
// addresses swapped (and the same VLAN tags), raw IP as is. Linux cooked captures have no
// way back; the answer goes out as raw IP on a companion interface.
func (in *Instance) wrapL2(f *frame, ip []byte, v6 bool) ([]byte, *framing.Interface) {
	ifc := f.pkt.Interface
	switch f.link {
	case framing.LinkEthernet:
		orig := f.pkt.Data
		l2 := make([]byte, f.l3, f.l3+len(ip))
		copy(l2[0:6], orig[6:12])
		if in.router {
			copy(l2[6:12], in.nics[reverse(f.dir)].mac)
		} else {
			copy(l2[6:12], orig[0:6])
		}
		copy(l2[12:], orig[12:f.l3])
		et := uint16(etherIPv4)
		if v6 {
			et = etherIPv6
		}
		binary.BigEndian.PutUint16(l2[f.l3-2:], et)
		return append(l2, ip...), ifc
	case framing.LinkRaw, framing.LinkIPv4, framing.LinkIPv6:
		return ip, ifc
	}
	if in.genIf == nil {
		in.genIf = map[*framing.Interface]*framing.Interface{}
	}
	g, ok := in.genIf[ifc]
	if !ok {
		name := ""
		if ifc != nil {
			name = ifc.Name
		}
		g = &framing.Interface{Name: name, LinkType: framing.LinkRaw}
		in.genIf[ifc] = g
	}
	return ip, g
}

// ipHeader writes an IP header for an answer from src to dst.
func ipHeader(b []byte, v6 bool, src, dst []byte, proto uint8, payload int) {
	if v6 {
		h := header.IPv6(b)
		h.Encode(&header.IPv6Fields{PayloadLength: uint16(payload), TransportProtocol: tcpip.TransportProtocolNumber(proto),
			HopLimit: 64, SrcAddr: tcpip.AddrFromSlice(src), DstAddr: tcpip.AddrFromSlice(dst)})
		return
	}
	h := header.IPv4(b)
	h.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + payload), TTL: 64,
		Protocol: proto, Flags: header.IPv4FlagDontFragment,
		SrcAddr: tcpip.AddrFromSlice(src), DstAddr: tcpip.AddrFromSlice(dst)})
	h.SetChecksum(^h.CalculateChecksum())
}

func addrs(ip []byte, v6 bool) (src, dst []byte) {
	if v6 {
		return ip[8:24], ip[24:40]
	}
	return ip[12:16], ip[16:20]
}

// tcpReset builds the reset Linux's nf_send_reset sends: from the original destination,
// sequence from the original's ACK, or an ACK of everything the original carried.
func tcpReset(ip []byte, v6 bool, th []byte, payload int) []byte {
	if len(th) < header.TCPMinimumSize {
		return nil
	}
	t := header.TCP(th)
	if t.Flags().Contains(header.TCPFlagRst) {
		return nil
	}
	src, dst := addrs(ip, v6)
	hl := header.IPv4MinimumSize
	if v6 {
		hl = header.IPv6MinimumSize
	}
	b := make([]byte, hl+header.TCPMinimumSize)
	ipHeader(b, v6, dst, src, uint8(header.TCPProtocolNumber), header.TCPMinimumSize)
	f := header.TCPFields{SrcPort: t.DestinationPort(), DstPort: t.SourcePort(), DataOffset: header.TCPMinimumSize}
	if t.Flags().Contains(header.TCPFlagAck) {
		f.SeqNum, f.Flags = t.AckNumber(), header.TCPFlagRst
	} else {
		n := uint32(payload)
		if t.Flags().Contains(header.TCPFlagSyn) {
			n++
		}
		if t.Flags().Contains(header.TCPFlagFin) {
			n++
		}
		f.AckNum, f.Flags = t.SequenceNumber()+n, header.TCPFlagRst|header.TCPFlagAck
	}
	rt := header.TCP(b[hl:])
	rt.Encode(&f)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpip.AddrFromSlice(dst), tcpip.AddrFromSlice(src), header.TCPMinimumSize)
	rt.SetChecksum(^rt.CalculateChecksum(xsum))
	return b
}

var icmp4Codes = map[rules.RejectWith]uint8{
	rules.RejectPortUnreachable: 3, rules.RejectNetUnreachable: 0, rules.RejectHostUnreachable: 1,
	rules.RejectProtoUnreachable: 2, rules.RejectNetProhibited: 9, rules.RejectHostProhibited: 10,
	rules.RejectAdminProhibited: 13, rules.RejectNoRoute: 0,
}

var icmp6Codes = map[rules.RejectWith]uint8{
	rules.RejectPortUnreachable: 4, rules.RejectNoRoute: 0, rules.RejectAdminProhibited: 1,
	rules.RejectHostUnreachable: 3, rules.RejectNetUnreachable: 0, rules.RejectProtoUnreachable: 4,
	rules.RejectNetProhibited: 1, rules.RejectHostProhibited: 1,
}

// icmpError builds an ICMP error quoting the original, as much as fits in
// 576 bytes (IPv4) or 1280 (IPv6). Errors are never sent about errors, or to or from
// multicast and unspecified addresses.
func icmpError(ip []byte, v6 bool, typ, code uint8, from []byte, aboutError bool) []byte {
	if aboutError {
		return nil
	}
	src, dst := addrs(ip, v6)
	sa, _ := netip.AddrFromSlice(src)
	da, _ := netip.AddrFromSlice(dst)
	if sa.IsUnspecified() || sa.IsMulticast() || da.IsMulticast() || (!v6 && da == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
		return nil
	}
	hl, limit := header.IPv4MinimumSize, 576
	if v6 {
		hl, limit = header.IPv6MinimumSize, 1280
	}
	quote := ip[:min(len(ip), limit-hl-8)]
	b := make([]byte, hl+8+len(quote))
	if v6 {
		ipHeader(b, true, from, src, uint8(header.ICMPv6ProtocolNumber), 8+len(quote))
		ic := header.ICMPv6(b[hl:])
		ic.SetType(header.ICMPv6Type(typ))
		ic.SetCode(header.ICMPv6Code(code))
		copy(b[hl+8:], quote)
		ic.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: ic,
			Src: tcpip.AddrFromSlice(from), Dst: tcpip.AddrFromSlice(src)}))
		return b
	}
	ipHeader(b, false, from, src, uint8(header.ICMPv4ProtocolNumber), 8+len(quote))
	b[1] = 0xc0 // TOS: internetwork control, as Linux sends errors
	h := header.IPv4(b)
	h.SetChecksum(0)
	h.SetChecksum(^h.CalculateChecksum())
	ic := header.ICMPv4(b[hl:])
	ic.SetType(header.ICMPv4Type(typ))
	ic.SetCode(header.ICMPv4Code(code))
	copy(b[hl+8:], quote)
	ic.SetChecksum(^checksum.Checksum(b[hl:], 0))
	return b
}

// logPacket writes a LOG target's line, in the kernel's format.
func (in *Instance) logPacket(pkt *stack.PacketBuffer, hook stack.Hook, r *rules.Rule) {
	w := in.cfg.Log
	if w == nil || r == nil {
		return
	}
	inName, outName := "", ""
	if in.curPB.Load() == pkt {
		inName, outName = inNIC(in.cur.dir), outNIC(in.cur.dir)
	}
	net := pkt.Network()
	line := fmt.Sprintf("%sIN=%s OUT=%s SRC=%s DST=%s LEN=%d PROTO=%s", r.Target.LogPrefix, inName, outName,
		net.SourceAddress(), net.DestinationAddress(), ipLen(pkt), protoLabel(transportProto(pkt)))
	if sp, dp, ok := ports(pkt); ok {
		line += fmt.Sprintf(" SPT=%d DPT=%d", sp, dp)
	}
	if h := pkt.TransportHeader().Slice(); len(h) >= 2 && (pkt.TransportProtocolNumber == header.ICMPv4ProtocolNumber || pkt.TransportProtocolNumber == header.ICMPv6ProtocolNumber) {
		line += fmt.Sprintf(" TYPE=%d CODE=%d", h[0], h[1])
	}
	_ = hook
	io.WriteString(w, line+"\n")
}

func protoLabel(p uint8) string {
	switch p {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 1:
		return "ICMP"
	case 58:
		return "ICMPv6"
	}
	return fmt.Sprint(p)
}
