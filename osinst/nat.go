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
		// so never forwarded untranslated.
		rt.t.in.droppedBy(pkt, rt.entry)
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

// natBytes returns the datagram a packet buffer holds after NAT, with every checksum right:
// without a route, netstack leaves the transport checksum to an offload that a stream has
// not got.
func natBytes(pkt *stack.PacketBuffer) []byte {
	ip := make([]byte, 0, ipLen(pkt))
	ip = append(ip, pkt.NetworkHeader().Slice()...)
	l4 := len(ip)
	ip = append(ip, pkt.TransportHeader().Slice()...)
	ip = append(ip, pkt.Data().AsRange().ToSlice()...)
	fixChecksums(ip, l4, pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber, uint8(pkt.TransportProtocolNumber))
	return ip
}

// fixChecksums recomputes the IPv4 header checksum and the TCP, UDP or ICMPv6 checksum of a
// whole datagram whose transport header starts at l4.
func fixChecksums(ip []byte, l4 int, v6 bool, proto uint8) {
	var pseudo uint32
	if v6 {
		pseudo = csum.Sum(ip[8:40], 0)
	} else {
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], csum.Fold(csum.Sum(ip[:l4], 0)))
		pseudo = csum.Sum(ip[12:20], 0)
	}
	seg := ip[l4:]
	pseudo += uint32(len(seg)) + uint32(proto)
	var at int
	switch {
	case proto == uint8(header.TCPProtocolNumber) && len(seg) >= header.TCPMinimumSize:
		at = 16
	case proto == uint8(header.UDPProtocolNumber) && len(seg) >= header.UDPMinimumSize:
		if !v6 && binary.BigEndian.Uint16(seg[6:]) == 0 {
			return // IPv4 UDP without a checksum stays without
		}
		at = 6
	case proto == uint8(header.ICMPv6ProtocolNumber) && v6 && len(seg) >= 4:
		at = 2
	case proto == uint8(header.ICMPv4ProtocolNumber) && !v6 && len(seg) >= 4:
		at, pseudo = 2, 0
	default:
		return
	}
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
