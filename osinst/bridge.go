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

// bridgeAll handles a batch in transparent mode. A frame the fast path can read is sound
// as far as bridge's checks go (untagged Ethernet, an IP header without options and with a
// good checksum, no fragment), so a cached flow's frame is passed here and skips them; the
// rest, with what fastParse made of them, go to bridge. The parse goes into the instance,
// not the stack: bridge's frame is large, and most frames never need it.
//
// Frames the fast path passed are queued a run at a time, before the next frame the slow
// path handles; when every frame of the batch passed and nothing else was queued, none is
// (the batch goes out as it is: whole reports it), which saves copying every Packet.
func (in *Instance) bridgeAll(dir books.Dir, pkts []framing.Packet) (whole bool) {
	fp := &in.parsed
	fastOK := in.fastMax > 0 && (in.tables != nil || in.nat != nil)
	run := 0 // pkts[run:i] passed the fast path and are not queued yet
	for i := range pkts {
		p := &pkts[i]
		if fastOK {
			if fastParse(p, fp); fp.ok && !fp.control && in.fast(dir, p, fp, in.now) {
				continue
			}
		} else {
			*fp = fastParsed{}
		}
		in.pending[dir] = append(in.pending[dir], pkts[run:i]...)
		run = i + 1
		in.bridge(dir, p, fp)
	}
	if run == 0 && len(in.pending[books.East]) == 0 && len(in.pending[books.West]) == 0 {
		return true
	}
	in.pending[dir] = append(in.pending[dir], pkts[run:]...)
	return false
}

// bridge handles one frame in transparent mode that the fast path did not pass; fp is what
// fastParse made of it.
func (in *Instance) bridge(dir books.Dir, p *framing.Packet, fp *fastParsed) {
	side := &in.bk.Dir[dir]
	if in.tables == nil && in.nat == nil {
		in.emit(dir, *p, false) // nothing to decide: pass, without parsing
		return
	}
	if in.fastMax > 0 {
		in.curPath = in.curPath[:0]
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
	if !v6 && sourceRouted(ip) {
		side.Drop(books.SourceRoute, 1, len(p.Data))
		return
	}
	if frag {
		in.fragment(dir, p, off, ip[:n], v6)
		return
	}
	if in.flowTab != nil && in.flowTab.refuses(ip[:n], v6) {
		side.Drop(books.Full, 1, len(p.Data))
		return
	}
	in.curState = 0
	ok, why, natted := in.check(dir, p, off, ip[:n], v6)
	if in.fastMax > 0 && fp.ok {
		in.restudy(ok && !fp.control, in.curState, fp.key, datagramKeyOr(natted, fp.key))
		if ok && !fp.control {
			in.learn(dir, p, fp, in.curState, in.now, natted)
		}
	} else if in.fastMax > 0 {
		in.forgetDatagram(ip[:n], v6, natted)
	}
	if !ok {
		side.Drop(why, 1, len(p.Data))
	} else if natted != nil && len(natted) == n {
		// NAT does not resize a datagram: it goes over a copy of the frame, whose padding
		// or trailer stays as the fast path, translating in place, leaves it.
		q := *p
		q.Data = append(make([]byte, 0, len(p.Data)), p.Data...)
		copy(q.Data[off:], natted)
		in.emit(dir, q, false)
	} else if natted != nil {
		in.emit(dir, relink(p, off, natted), false)
	} else {
		in.emit(dir, *p, false)
	}
}

// forgetDatagram forgets what the fast path holds for the flow of a datagram the stack
// has seen but fastParse does not read (raw IP, VLAN tags, IP options, fragments, IPv6
// extension headers): the stack's state for the flow may have moved on all the same. natted
// is the datagram NAT made of it, if any, whose flow replies come back on.
func (in *Instance) forgetDatagram(ip []byte, v6 bool, natted []byte) {
	for _, d := range [2][]byte{ip, natted} {
		if k, ok := datagramKey(d, v6); ok {
			in.forgetFlow(k)
		}
	}
}

// datagramKey returns the fast-path key of a TCP or UDP datagram's flow, whatever its IP
// options or IPv6 extension headers (but a fragment header).
func datagramKey(ip []byte, v6 bool) (k fastKey, ok bool) {
	var l4 []byte
	switch {
	case v6 && len(ip) >= header.IPv6MinimumSize:
		k.v6 = true
		copy(k.src[:], ip[8:24])
		copy(k.dst[:], ip[24:40])
		nh, off := ip[6], header.IPv6MinimumSize
		for (nh == 0 || nh == 43 || nh == 60) && off+8 <= len(ip) {
			nh, off = ip[off], off+8*(int(ip[off+1])+1)
		}
		if off > len(ip) {
			return k, false
		}
		k.proto, l4 = nh, ip[off:]
	case !v6 && len(ip) >= header.IPv4MinimumSize:
		hl := int(ip[0]&0x0f) * 4
		if hl < header.IPv4MinimumSize || hl > len(ip) {
			return k, false
		}
		k.proto, l4 = ip[9], ip[hl:]
		copy(k.src[:4], ip[12:16])
		copy(k.dst[:4], ip[16:20])
	default:
		return k, false
	}
	if (k.proto != uint8(header.TCPProtocolNumber) && k.proto != uint8(header.UDPProtocolNumber)) || len(l4) < 4 {
		return k, false
	}
	k.sport, k.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	return k, true
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
	in.curPath = in.curPath[:0]
	ok, reason, natted := in.check(dir, &first.pkt, first.l3, dg.datagram, v6)
	if in.fastMax > 0 {
		in.forgetDatagram(dg.datagram, v6, natted)
	}
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
	if !header.IPv4(b[:hl]).IsChecksumValid() || !ipv4OptionsSound(b[header.IPv4MinimumSize:hl]) {
		return 0
	}
	return tot
}

// sourceRouted reports whether a sound IPv4 header carries a loose or strict source route.
// Linux forwards no such datagram unless told to (accept_source_route): its route is the
// sender's, past the filter's view of the destination.
func sourceRouted(ip []byte) bool {
	hl := int(ip[0]&0x0f) * 4
	for i := header.IPv4MinimumSize; i < hl; {
		switch ip[i] {
		case 0:
			return false
		case 1:
			i++
			continue
		case 131, 137:
			return true
		}
		if i+1 >= hl || ip[i+1] < 2 {
			return false
		}
		i += int(ip[i+1])
	}
	return false
}

// ipv4OptionsSound reports whether IPv4 options are laid out as Linux's ip_options_compile
// takes them from the wire (a datagram whose options it refuses is dropped, answered with a
// parameter problem by a router): every option but EOL and NOP has a length of at least 2
// that stays within the options; record route, timestamp and source routes have room for
// their pointer, the pointer is not before their first slot, and a slot it points to is
// whole; none of these appears twice.
func ipv4OptionsSound(opts []byte) bool {
	const eol, nop, rr, ts, lsrr, ssrr, ra = 0, 1, 7, 68, 131, 137, 148
	var seen [3]bool // record route, timestamp, source route
	for len(opts) > 0 {
		switch opts[0] {
		case eol:
			return true
		case nop:
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || opts[1] < 2 || int(opts[1]) > len(opts) {
			return false
		}
		o := opts[:opts[1]]
		once := -1
		switch o[0] {
		case rr, lsrr, ssrr:
			once = 0
			if o[0] != rr {
				once = 2
			}
			if len(o) < 3 || o[2] < 4 || (o[0] == rr && int(o[2]) <= len(o) && int(o[2])+3 > len(o)) {
				return false
			}
		case ts:
			once = 1
			if len(o) < 4 || o[2] < 5 || (int(o[2]) <= len(o) && int(o[2])+3 > len(o)) {
				return false
			}
			if int(o[2]) <= len(o) && o[3]&0x0f != 0 && int(o[2])+7 > len(o) {
				return false // an address and a timestamp do not fit
			}
			if int(o[2]) > len(o) && o[3]&0x0f != 3 && o[3]>>4 == 15 {
				return false // the overflow count would overflow
			}
		case ra:
			if len(o) < 4 {
				return false
			}
		}
		if once >= 0 {
			if seen[once] {
				return false
			}
			seen[once] = true
		}
		opts = opts[len(o):]
	}
	return true
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
	if in.nat != nil && (invalidForLinux(pkt) || badChecksum(pkt, ip)) {
		// Linux's NAT passes what conntrack calls INVALID untranslated; a NAT never does.
		return false, books.Invalid, nil
	}
	in.cur = frame{dir: dir, pkt: p, l3: l3, link: linkOf(p)}
	in.curRuled.Store(0)
	in.curFull.Store(false)
	in.curPB.Store(pkt)
	ok = in.ipt.CheckPrerouting(pkt, nil, inNIC(dir)) &&
		in.ipt.CheckForward(pkt, inNIC(dir), outNIC(dir))
	if ok {
		in.curState = connState(pkt)
	}
	if ok && in.nat != nil {
		// Before POSTROUTING, which confirms the connection and forgets it.
		ok = !in.replyBehind(pkt, dir) && in.ipt.CheckPostrouting(pkt, nil, nil, outNIC(dir))
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
			natted := natBytes(pkt)
			return true, 0, append(natted, surplus(natted, ip, v6)...)
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
		if !ipv6ChainSound(ip) {
			pkt.DecRef()
			return nil, false
		}
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

// ipv6ChainSound reports whether an IPv6 packet's extension headers, walked as netstack
// walks them, are whole and lead to an upper-layer header, with no fragment header but
// atomic ones. parse.IPv6 takes a truncated chain for one with no upper layer at all, and a
// fragment behind an atomic fragment header for a whole packet: either would reach the rules
// without its transport header (a filter on ports would not see it), while a receiver would
// drop the one and reassemble the other.
func ipv6ChainSound(b []byte) bool {
	if len(b) < header.IPv6MinimumSize {
		return false
	}
	next, off := b[6], header.IPv6MinimumSize
	for {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if off+8 > len(b) {
				return false
			}
			next, off = b[off], off+8*(int(b[off+1])+1)
			if off > len(b) {
				return false
			}
		case 44: // fragment
			if off+8 > len(b) || binary.BigEndian.Uint16(b[off+2:])&0xfff9 != 0 {
				return false
			}
			next, off = b[off], off+8
		default:
			return true
		}
	}
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
