package osinst

import (
	"encoding/binary"
	"math"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/csum"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/rules"
)

// translate is a NAT rule's action: netstack's own NAT (IPTPerformNAT and its conntrack),
// with the port ranges netstack's SNAT target cannot take.
func (rt *ruleTarget) translate(pkt *stack.PacketBuffer, hook stack.Hook, r *stack.Route, addressEP stack.AddressableEndpoint) (stack.RuleVerdict, int) {
	var info stack.ConnTrackInfo
	if len(pkt.NetworkHeader().Slice()) == 0 || len(pkt.TransportHeader().Slice()) == 0 ||
		!pkt.FillConnTrackInfo(stack.ConnTrackInfoOpts{}, &info) {
		// Untracked: netstack would dereference a missing connection. Not translatable,
		// so never forwarded untranslated (Linux's NAT skips such INVALID packets and
		// forwards them as they are). Booked invalid, not against the rule.
		return stack.RuleDrop, 0
	}
	t := rt.rule.Target
	addr := tcpip.Address{}
	if t.Addr.IsValid() {
		addr = tcpip.AddrFromSlice(t.Addr.AsSlice())
	}
	switch rt.kind {
	case rules.SNAT, rules.Masquerade:
		if rt.kind == rules.Masquerade {
			if addressEP == nil {
				rt.t.in.droppedBy(pkt, rt.entry)
				return stack.RuleDrop, 0
			}
			ep := addressEP.AcquireOutgoingPrimaryAddress(pkt.Network().DestinationAddress(), tcpip.Address{}, false)
			if ep == nil {
				rt.t.in.droppedBy(pkt, rt.entry)
				return stack.RuleDrop, 0
			}
			addr = ep.AddressWithPrefix().Address
			ep.DecRef()
		}
		stack.IPTPerformNAT(pkt, hook, r, sourceRange(pkt, t.Ports), addr, false, true, true)
	case rules.DNAT, rules.Redirect:
		changeAddr := t.Addr.IsValid()
		if rt.kind == rules.Redirect {
			if addressEP == nil {
				rt.t.in.droppedBy(pkt, rt.entry)
				return stack.RuleDrop, 0
			}
			addr, changeAddr = addressEP.MainAddress().Address, true
		}
		rng := stack.PortOrIdentRange{Start: t.Ports.Lo, Size: uint32(t.Ports.Hi) - uint32(t.Ports.Lo) + 1}
		stack.IPTPerformNAT(pkt, hook, r, rng, addr, true, t.Ports.Lo != 0, changeAddr)
	}
	rt.t.in.flowTab.noteReply(pkt) // the translation, for the connection table
	return stack.RuleAccept, 0
}

// sourceRange is where SNAT may move a source port or echo identifier: the rule's range,
// else as iptables does (below 512 stays below 512, below 1024 below 1024, the rest from
// 1024 up), and any identifier for ICMP. netstack keeps the original when it is free.
func sourceRange(pkt *stack.PacketBuffer, pr rules.PortRange) stack.PortOrIdentRange {
	proto := pkt.TransportProtocolNumber
	if proto != header.TCPProtocolNumber && proto != header.UDPProtocolNumber {
		return stack.PortOrIdentRange{Start: 0, Size: math.MaxUint16 + 1}
	}
	if pr.Lo != 0 {
		return stack.PortOrIdentRange{Start: pr.Lo, Size: uint32(pr.Hi) - uint32(pr.Lo) + 1}
	}
	port := binary.BigEndian.Uint16(pkt.TransportHeader().Slice())
	switch {
	case port < 512:
		return stack.PortOrIdentRange{Start: 1, Size: 511}
	case port < 1024:
		return stack.PortOrIdentRange{Start: 1, Size: 1023}
	}
	return stack.PortOrIdentRange{Start: 1024, Size: math.MaxUint16 - 1023}
}

// replyBehind reports whether pkt, translated back by NAT as a reply of a translated
// connection (or an ICMP error about one), travels the way the connection's first packet
// did. A router would route it back by its new destination; a transparent stage has no
// route, and would send it out by the side it came from, showing that side the addresses
// NAT hides from it.
func (in *Instance) replyBehind(pkt *stack.PacketBuffer, dir books.Dir) bool {
	var orig, rep stack.ConnTrackInfo
	if in.flowTab == nil || !pkt.IsReplyPacket() || !pkt.FillConnTrackInfo(stack.ConnTrackInfoOpts{}, &orig) ||
		!pkt.FillConnTrackInfo(stack.ConnTrackInfoOpts{UseReplyDir: true}, &rep) {
		return false
	}
	if orig.SrcAddr == rep.DstAddr && orig.DstAddr == rep.SrcAddr && orig.SrcPort == rep.DstPort && orig.DstPort == rep.SrcPort {
		return false // not translated: nothing to show
	}
	key := connKey(&orig)
	ft := in.flowTab
	ft.mu.Lock()
	defer ft.mu.Unlock()
	e := ft.m.get(key)
	return e != nil && e.dir == dir
}

// surplus returns the bytes of orig, a datagram as it came, that netstack dropped from ip,
// the datagram it made of it: parsing UDP, netstack trims the payload to the UDP header's
// length, but leaves the IP header's length alone. What lies between (RFC 9868's surplus
// area, which holds UDP options) is no business of a router or NAT, and goes on unchanged.
func surplus(ip, orig []byte, v6 bool) []byte {
	n, m := 0, -1
	switch {
	case v6 && len(ip) >= header.IPv6MinimumSize && len(orig) >= header.IPv6MinimumSize:
		n = header.IPv6MinimumSize + int(binary.BigEndian.Uint16(ip[4:]))
		m = header.IPv6MinimumSize + int(binary.BigEndian.Uint16(orig[4:]))
	case !v6 && len(ip) >= header.IPv4MinimumSize && len(orig) >= header.IPv4MinimumSize:
		n, m = int(binary.BigEndian.Uint16(ip[2:])), int(binary.BigEndian.Uint16(orig[2:]))
	}
	if n != m || n <= len(ip) || n > len(orig) {
		return nil
	}
	return orig[len(ip):n]
}

// natBytes returns the datagram a packet buffer holds after NAT, with every checksum right:
// without a route, netstack leaves the transport checksum to an offload that a stream has
// not got. A datagram whose transport checksum was wrong never gets here (badChecksum), or
// NAT would make a corrupted segment acceptable to its receiver.
func natBytes(pkt *stack.PacketBuffer) []byte {
	ip := make([]byte, 0, ipLen(pkt))
	ip = append(ip, pkt.NetworkHeader().Slice()...)
	l4 := len(ip)
	ip = append(ip, pkt.TransportHeader().Slice()...)
	ip = append(ip, pkt.Data().AsRange().ToSlice()...)
	fixChecksums(ip, l4, pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber, uint8(pkt.TransportProtocolNumber))
	return ip
}

// badChecksum reports whether a parsed datagram's TCP, UDP, ICMP or ICMPv6 checksum is
// wrong: Linux's conntrack calls it INVALID (netstack's leaves a bad TCP or UDP segment
// untracked, which no NAT rule then sees).
func badChecksum(pkt *stack.PacketBuffer, ip []byte) bool {
	_, err := checksumError(ip, len(pkt.NetworkHeader().Slice()), pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber,
		uint8(pkt.TransportProtocolNumber))
	return err != 0
}

// checksumError returns where a datagram's transport checksum field is (in the segment at
// l4) and by how much the checksum is wrong, in ones' complement: 0 if it is right, or if
// there is no checksum to check.
func checksumError(ip []byte, l4 int, v6 bool, proto uint8) (at int, err uint16) {
	at, acc := checksumField(ip, l4, v6, proto)
	if at == 0 {
		return 0, 0
	}
	return at, csum.Fold(csum.Sum(ip[l4:], acc))
}

// checksumField returns where a datagram's transport checksum field is in the segment at
// l4 (0: there is none to keep, as in IPv4 UDP sent without one) and the sum of what the
// checksum covers besides the segment: the pseudo-header, or nothing for ICMPv4.
func checksumField(ip []byte, l4 int, v6 bool, proto uint8) (at int, pseudo uint32) {
	seg := ip[l4:]
	switch {
	case proto == uint8(header.TCPProtocolNumber) && len(seg) >= header.TCPMinimumSize:
		at = 16
	case proto == uint8(header.UDPProtocolNumber) && len(seg) >= header.UDPMinimumSize:
		if !v6 && binary.BigEndian.Uint16(seg[6:]) == 0 {
			return 0, 0
		}
		at = 6
	case proto == uint8(header.ICMPv6ProtocolNumber) && v6 && len(seg) >= 4:
		at = 2
	case proto == uint8(header.ICMPv4ProtocolNumber) && !v6 && len(seg) >= 4:
		return 2, 0
	default:
		return 0, 0
	}
	if v6 {
		pseudo = csum.Sum(ip[8:40], 0)
	} else {
		pseudo = csum.Sum(ip[12:20], 0)
	}
	return at, pseudo + uint32(len(seg)) + uint32(proto)
}

// fixChecksums recomputes the IPv4 header checksum and the TCP, UDP or ICMPv6 checksum of a
// whole datagram whose transport header starts at l4.
func fixChecksums(ip []byte, l4 int, v6 bool, proto uint8) {
	if !v6 {
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], csum.Fold(csum.Sum(ip[:l4], 0)))
	}
	at, pseudo := checksumField(ip, l4, v6, proto)
	if at == 0 {
		return // IPv4 UDP without a checksum stays without
	}
	seg := ip[l4:]
	binary.BigEndian.PutUint16(seg[at:], 0)
	c := csum.Fold(csum.Sum(seg, pseudo))
	if c == 0 && proto == uint8(header.UDPProtocolNumber) {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(seg[at:], c)
}

// mtu is the IP size a translated datagram is fragmented to: Ethernet's.
const mtu = 1500

// emitFragments sends a translated datagram that arrived as n fragments, cut again to the
// MTU (IPv4; an IPv6 datagram goes whole if it fits, since only its source may fragment it).
// The books: the n fragments came in; more frames out are generated, fewer are counted
// Reassembled.
func (in *Instance) emitFragments(dir books.Dir, first *framing.Packet, l3 int, ip []byte, v6 bool, n int) {
	side := &in.bk.Dir[dir]
	var frames [][]byte
	switch {
	case len(ip) <= mtu:
		frames = [][]byte{ip}
	case v6:
		side.Drop(books.TooBig, n, len(ip))
		return
	default:
		frames = refragment(ip)
	}
	for _, f := range frames {
		in.emit(dir, relink(first, l3, f), false)
	}
	if k := len(frames); k > n {
		side.Generated.Add(k-n, 0)
	} else if k < n {
		side.Drop(books.Reassembled, n-k, 0)
	}
}

// refragment cuts an IPv4 datagram into fragments of at most mtu bytes. Options are copied
// into the first fragment only.
func refragment(ip []byte) [][]byte {
	hl := int(ip[0]&0x0f) * 4
	payload := ip[hl:]
	var out [][]byte
	for off := 0; off < len(payload); {
		h := ip[:hl]
		if off > 0 {
			h = ip[:20]
		}
		room := (mtu - len(h)) &^ 7
		end := min(off+room, len(payload))
		f := append(append(make([]byte, 0, len(h)+end-off), h...), payload[off:end]...)
		f[0] = 0x40 | byte(len(h)/4)
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		flags := binary.BigEndian.Uint16(ip[6:]) & 0x4000 // keep DF
		if end < len(payload) {
			flags |= 0x2000 // more fragments
		}
		binary.BigEndian.PutUint16(f[6:], flags|uint16(off/8))
		binary.BigEndian.PutUint16(f[10:], 0)
		binary.BigEndian.PutUint16(f[10:], csum.Fold(csum.Sum(f[:len(h)], 0)))
		out = append(out, f)
		off = end
	}
	return out
}
