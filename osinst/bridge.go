package osinst

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/header/parse"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/rules"
)

// EtherTypes the instance looks into.
const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
	etherARP  = 0x0806
	etherVLAN = 0x8100
	etherQinQ = 0x88a8
)

// linkKind says what linkParse found.
type linkKind uint8

const (
	linkOK linkKind = iota
	linkShort
	linkUnsupported
)

// linkParse finds the network header of a frame: its offset and EtherType. VLAN tags (up to
// two) are looked through, so tagged IP is filtered like untagged IP, not passed unchecked.
func linkParse(link framing.LinkType, b []byte) (off int, etype uint16, k linkKind) {
	switch link {
	case framing.LinkEthernet:
		if len(b) < header.EthernetMinimumSize {
			return 0, 0, linkShort
		}
		off, etype = 14, binary.BigEndian.Uint16(b[12:])
		for tags := 0; (etype == etherVLAN || etype == etherQinQ) && tags < 2; tags++ {
			if len(b) < off+4 {
				return 0, 0, linkShort
			}
			etype = binary.BigEndian.Uint16(b[off+2:])
			off += 4
		}
		return off, etype, linkOK
	case framing.LinkRaw:
		if len(b) < 1 {
			return 0, 0, linkShort
		}
		switch b[0] >> 4 {
		case 4:
			return 0, etherIPv4, linkOK
		case 6:
			return 0, etherIPv6, linkOK
		}
		return 0, 0, linkShort
	case framing.LinkIPv4:
		return 0, etherIPv4, linkOK
	case framing.LinkIPv6:
		return 0, etherIPv6, linkOK
	case framing.LinkLinuxSLL:
		if len(b) < 16 {
			return 0, 0, linkShort
		}
		return 16, binary.BigEndian.Uint16(b[14:]), linkOK
	case framing.LinkLinuxSLL2:
		if len(b) < 20 {
			return 0, 0, linkShort
		}
		return 20, binary.BigEndian.Uint16(b[0:]), linkOK
	}
	return 0, 0, linkUnsupported
}

func linkOf(p *framing.Packet) framing.LinkType {
	if p.Interface == nil {
		return framing.LinkEthernet
	}
	return p.Interface.LinkType
}

// bridge handles one frame in transparent mode.
func (in *Instance) bridge(dir books.Dir, p *framing.Packet) {
	side := &in.bk.Dir[dir]
	if in.tables == nil && in.nat == nil {
		in.emit(dir, *p, false) // nothing to decide: pass, without parsing
		return
	}
	link := linkOf(p)
	off, etype, k := linkParse(link, p.Data)
	switch {
	case k == linkUnsupported:
		side.Drop(books.LinkType, 1, len(p.Data))
		return
	case k == linkShort:
		side.Drop(books.Malformed, 1, len(p.Data))
		return
	case etype != etherIPv4 && etype != etherIPv6:
		in.emit(dir, *p, false) // ARP and other non-IP: a bridge passes them
		return
	}
	ip := p.Data[off:]
	v6 := etype == etherIPv6
	n, frag := ipDatagram(ip, v6)
	if n <= 0 {
		side.Drop(books.Malformed, 1, len(p.Data))
		return
	}
	if frag {
		in.fragment(dir, p, off, ip[:n], v6)
		return
	}
	var fp fastParsed
	if in.fastMax > 0 {
		if fp = fastParse(p); fp.ok && !fp.control && in.fast(dir, p, &fp, in.now) {
			return
		}
		in.curPath = in.curPath[:0]
	}
	ok, why, natted := in.check(dir, p, off, ip[:n], v6)
	if in.fastMax > 0 && fp.ok {
		// The stack has seen a packet of this flow: its state may have moved on (a first
		// reply makes a NEW connection ESTABLISHED), so all that was cached for the flow
		// goes, and this packet's direction is learnt again.
		in.forgetFlow(fp.key, natKey(p, &fp, natted))
		if ok && !fp.control {
			in.learn(dir, p, &fp, in.curEst, in.now, natted)
		}
	}
	if !ok {
		side.Drop(why, 1, len(p.Data))
	} else if natted != nil {
		in.emit(dir, relink(p, off, natted), false)
	} else {
		in.emit(dir, *p, false)
	}
}

// relink returns p with its IP datagram replaced by ip, link header and metadata kept.
func relink(p *framing.Packet, off int, ip []byte) framing.Packet {
	q := *p
	q.Data = append(append(make([]byte, 0, max(off+len(ip), 60)), p.Data[:off]...), ip...)
	if linkOf(p) == framing.LinkEthernet && len(q.Data) < 60 {
		q.Data = q.Data[:60] // Ethernet's minimum frame, zero padding as a NIC would add
		clear(q.Data[off+len(ip):])
	}
	q.Length = len(q.Data) + max(p.Length-len(p.Data), 0)
	return q
}

// fragment holds a fragment until its datagram is complete, then decides on the whole
// datagram, as Linux conntrack does after defragmenting, and passes or drops every fragment.
func (in *Instance) fragment(dir books.Dir, p *framing.Packet, off int, ip []byte, v6 bool) {
	dg, why := in.frags.add(dir, p, off, ip, v6)
	in.frags.count(in)
	if why != 0 {
		in.bk.Dir[dir].Drop(why-1, 1, len(p.Data))
		return
	}
	if dg == nil {
		return // held
	}
	first := &dg.frames[dg.firstFrame]
	ok, reason, natted := in.check(dir, &first.pkt, first.l3, dg.datagram, v6)
	if ok && natted != nil {
		in.emitFragments(dir, &first.pkt, first.l3, natted, v6, len(dg.frames))
		return
	}
	for i := range dg.frames {
		f := &dg.frames[i]
		if ok {
			in.emit(dir, f.pkt, false)
		} else {
			in.bk.Dir[dir].Drop(reason, 1, len(f.pkt.Data))
		}
	}
}

// ipDatagram returns the length of the IP datagram at the start of ip (0 if its header is
// not sound) and whether it is a fragment.
func ipDatagram(ip []byte, v6 bool) (n int, frag bool) {
	if v6 {
		n = validIPv6(ip)
		return n, n > 0 && ipv6Fragment(ip[:n])
	}
	n = validIPv4(ip)
	return n, n > 0 && binary.BigEndian.Uint16(ip[6:])&0x3fff != 0
}

// validIPv4 returns the datagram's length if the header is sound, else 0.
func validIPv4(b []byte) int {
	if len(b) < header.IPv4MinimumSize || b[0]>>4 != 4 {
		return 0
	}
	h := header.IPv4(b)
	hl := int(h.HeaderLength())
	tot := int(h.TotalLength())
	if hl < header.IPv4MinimumSize || hl > len(b) || tot < hl || tot > len(b) {
		return 0
	}
	if !header.IPv4(b[:hl]).IsChecksumValid() {
		return 0
	}
	return tot
}

// validIPv6 returns the datagram's length if the header is sound, else 0.
func validIPv6(b []byte) int {
	if len(b) < header.IPv6MinimumSize || b[0]>>4 != 6 {
		return 0
	}
	n := header.IPv6MinimumSize + int(header.IPv6(b).PayloadLength())
	if n > len(b) {
		return 0
	}
	return n
}

// check runs a complete IP datagram through conntrack, the nat table and the filter table as
// a forwarded packet. It returns whether it may pass, or why not, and with a nat table the
// translated datagram.
func (in *Instance) check(dir books.Dir, p *framing.Packet, l3 int, ip []byte, v6 bool) (bool, books.Reason, []byte) {
	pkt, ok := newParsed(ip, v6)
	if !ok {
		return false, books.Malformed, nil
	}
	defer pkt.DecRef()
	in.cur = frame{dir: dir, pkt: p, l3: l3, link: linkOf(p)}
	in.curRuled.Store(0)
	in.curFull.Store(false)
	in.curPB.Store(pkt)
	ok = in.ipt.CheckPrerouting(pkt, nil, inNIC(dir)) &&
		in.ipt.CheckForward(pkt, inNIC(dir), outNIC(dir))
	if ok {
		st := connState(pkt)
		in.curEst = st == rules.StateNew || st == rules.StateEstablished
	}
	if ok && in.nat != nil {
		ok = in.ipt.CheckPostrouting(pkt, nil, nil, outNIC(dir))
	} else if ok {
		// Confirm the connection, so its replies are known. Not CheckPostrouting: its
		// no-op SNAT may remap a source port on a tuple clash, and a transparent filter
		// must not change a byte.
		ok = pkt.FinalizeConnTrack()
	}
	in.curPB.Store(nil)
	in.cur = frame{}
	if ok {
		if in.nat != nil {
			return true, 0, natBytes(pkt)
		}
		return true, 0, nil
	}
	in.forgetNew(pkt, inNIC(dir))
	if in.curFull.Load() {
		return false, books.Full, nil
	}
	if in.curRuled.Load() != 0 {
		return false, books.Rule, nil
	}
	return false, books.Invalid, nil // hot-dropped by a matcher, or a conntrack clash
}

// newParsed returns a packet buffer holding a copy of an IP datagram with its network and
// transport headers parsed, or false if they are truncated or inconsistent.
func newParsed(ip []byte, v6 bool) (*stack.PacketBuffer, bool) {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(ip)})
	var proto uint8
	if v6 {
		tp, _, _, _, ok := parse.IPv6(pkt)
		if !ok {
			pkt.DecRef()
			return nil, false
		}
		proto = uint8(tp)
	} else {
		if !parse.IPv4(pkt) {
			pkt.DecRef()
			return nil, false
		}
		proto = header.IPv4(pkt.NetworkHeader().Slice()).Protocol()
	}
	if !parseTransport(pkt, proto) {
		pkt.DecRef()
		return nil, false
	}
	return pkt, true
}

// parseTransport fills the transport header; false means it is truncated or inconsistent.
func parseTransport(pkt *stack.PacketBuffer, proto uint8) bool {
	switch proto {
	case uint8(header.TCPProtocolNumber):
		h, ok := pkt.Data().PullUp(header.TCPMinimumSize)
		if !ok {
			return false
		}
		if off := int(header.TCP(h).DataOffset()); off < header.TCPMinimumSize || off > pkt.Data().Size() {
			return false
		}
		return parse.TCP(pkt)
	case uint8(header.UDPProtocolNumber):
		return parse.UDP(pkt)
	case uint8(header.ICMPv4ProtocolNumber):
		if pkt.NetworkProtocolNumber != header.IPv4ProtocolNumber {
			break
		}
		return parse.ICMPv4(pkt)
	case uint8(header.ICMPv6ProtocolNumber):
		if pkt.NetworkProtocolNumber != header.IPv6ProtocolNumber {
			break
		}
		return parse.ICMPv6(pkt)
	}
	pkt.TransportProtocolNumber = tcpip.TransportProtocolNumber(proto)
	return true
}
