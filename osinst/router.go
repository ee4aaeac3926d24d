package osinst

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
)

// localReason counts frames a router consumes itself (ARP for its addresses, pings to it).
const localReason = books.Local

// ipKey identifies a forwarded packet across netstack: addresses, IPv4 ID and protocol, or
// IPv6 payload length and the first transport bytes; none of these change when a router
// forwards (TTL and checksum do).
type ipKey struct {
	n int
	b [48]byte
}

// With NAT, addresses and ports change on the way through, so the key holds only what NAT
// leaves alone: the IPv4 ID, protocol and length, or the IPv6 payload length and next header.
func keyOf(ip []byte, etype uint16, nat bool) (ipKey, bool) {
	var k ipKey
	switch {
	case etype == etherIPv4 && len(ip) >= header.IPv4MinimumSize:
		k.n += copy(k.b[:], ip[2:6])     // total length, ID
		k.n += copy(k.b[k.n:], ip[9:10]) // protocol
		if !nat {
			k.n += copy(k.b[k.n:], ip[12:20])
		}
		return k, true
	case etype == etherIPv6 && len(ip) >= header.IPv6MinimumSize:
		k.n += copy(k.b[:], ip[4:7]) // payload length, next header
		if !nat {
			k.n += copy(k.b[k.n:], ip[8:40])
			k.n += copy(k.b[k.n:], ip[40:min(len(ip), 44)])
		}
		return k, true
	}
	return k, false
}

type heldMeta struct {
	dir   books.Dir
	ts    int64
	ifc   *framing.Interface
	bytes int
}

// routerState tracks which frames netstack forwards: the frame being delivered, and frames
// held for neighbour resolution, written later from a timer goroutine.
type routerState struct {
	mu      sync.Mutex
	active  bool
	key     ipKey
	hasKey  bool
	meta    heldMeta
	outputs int
	spent   bool   // the frame would have left with TTL 0 (after DNAT): dropped instead
	orig    []byte // the IP datagram being delivered, for fixForwarded
	out     []byte // the frame forwarded from it, for the fast path to learn from
	pending map[ipKey][]heldMeta
}

func (in *Instance) setupRouter() error {
	type nicAddr struct {
		id  tcpip.NICID
		pfx netip.Prefix
	}
	var routes []tcpip.Route
	for _, na := range []nicAddr{{westID, in.cfg.West}, {eastID, in.cfg.East}} {
		proto := header.IPv4ProtocolNumber
		if na.pfx.Addr().Is6() {
			proto = header.IPv6ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: tcpip.AddrFromSlice(na.pfx.Addr().AsSlice()), PrefixLen: na.pfx.Bits()}}
		if err := in.s.AddProtocolAddress(na.id, pa, stack.AddressProperties{}); err != nil {
			return fmt.Errorf("osinst: address %s: %s", na.pfx, err)
		}
		sub := pa.AddressWithPrefix.Subnet()
		routes = append(routes, tcpip.Route{Destination: sub, NIC: na.id})
	}
	// Everything beyond the two subnets is on-link on east: the usual way out of a router
	// at the west end of a chain. A gateway option can replace this later.
	if in.cfg.East.Addr().Is4() {
		routes = append(routes, tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: eastID})
	} else {
		routes = append(routes, tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: eastID})
	}
	in.s.SetRouteTable(routes)
	for _, p := range []tcpip.NetworkProtocolNumber{header.IPv4ProtocolNumber, header.IPv6ProtocolNumber} {
		if err := in.s.SetForwardingDefaultAndAllNICs(p, true); err != nil {
			return fmt.Errorf("osinst: forwarding: %s", err)
		}
	}
	for addr, mac := range in.cfg.Neighbors {
		if len(mac) != 6 {
			return fmt.Errorf("osinst: neighbour %s: %q is not an Ethernet address", addr, mac)
		}
		id := eastID
		if in.cfg.West.Contains(addr) {
			id = westID
		}
		proto := header.IPv4ProtocolNumber
		if addr.Is6() {
			proto = header.IPv6ProtocolNumber
		}
		if err := in.s.AddStaticNeighbor(id, proto, tcpip.AddrFromSlice(addr.AsSlice()), tcpip.LinkAddress(mac)); err != nil {
			return fmt.Errorf("osinst: neighbour %s: %s", addr, err)
		}
	}
	in.rt.pending = map[ipKey][]heldMeta{}
	return nil
}

// dropStats are the netstack counters that tell why a delivered frame went nowhere.
type dropStats struct{ ttl, noRoute, malformed, invalid, local uint64 }

func (in *Instance) dropStats() dropStats {
	st := in.s.Stats()
	ip := st.IP
	return dropStats{
		ttl:       ip.Forwarding.ExhaustedTTL.Value(),
		noRoute:   ip.Forwarding.Unrouteable.Value() + ip.Forwarding.HostUnreachable.Value() + ip.Forwarding.LinkLocalDestination.Value() + ip.Forwarding.LinkLocalSource.Value() + ip.Forwarding.PacketTooBig.Value() + ip.Forwarding.Errors.Value(),
		malformed: ip.MalformedPacketsReceived.Value() + ip.MalformedFragmentsReceived.Value(),
		invalid:   ip.InvalidSourceAddressesReceived.Value() + ip.InvalidDestinationAddressesReceived.Value() + ip.IPTablesPreroutingDropped.Value() + ip.IPTablesInputDropped.Value() + ip.IPTablesForwardDropped.Value() + ip.IPTablesPostroutingDropped.Value(),
		local:     ip.PacketsDelivered.Value() + st.ARP.PacketsReceived.Value(),
	}
}

// route hands one frame to netstack in router mode and books what became of it.
func (in *Instance) route(dir books.Dir, p *framing.Packet) {
	side := &in.bk.Dir[dir]
	if linkOf(p) != framing.LinkEthernet {
		side.Drop(books.LinkType, 1, len(p.Data))
		return
	}
	off, etype, k := linkParse(framing.LinkEthernet, p.Data)
	if k != linkOK || off != header.EthernetMinimumSize {
		// VLAN-tagged frames are not routed: netstack has no VLAN devices.
		side.Drop(books.Malformed, 1, len(p.Data))
		return
	}
	switch etype {
	case etherIPv4, etherIPv6, etherARP:
	default:
		side.Drop(books.NoRoute, 1, len(p.Data))
		return
	}
	if in.nat != nil && (etype == etherIPv4 || etype == etherIPv6) {
		whole, ok := in.reassembled(dir, p, off, etype == etherIPv6)
		if !ok {
			return // held for the rest of its datagram, or dropped and counted
		}
		p = whole
	}
	if etype == etherIPv4 || etype == etherIPv6 {
		if why, ok := in.routable(p.Data[off:], etype == etherIPv6); !ok {
			side.Drop(why, 1, len(p.Data))
			return
		}
	}
	if in.expired(dir, p, off, etype) {
		side.Drop(books.TTL, 1, len(p.Data))
		return
	}
	if in.flowTab != nil && etype != etherARP && in.flowTab.refuses(p.Data[off:], etype == etherIPv6) {
		side.Drop(books.Full, 1, len(p.Data))
		return
	}
	var fp fastParsed
	if in.fastMax > 0 && etype != etherARP {
		if fastParse(p, &fp); fp.ok && !fp.control && in.fast(dir, p, &fp, in.now) {
			in.emit(dir, *p, false)
			return
		}
		in.curPath = in.curPath[:0]
	}
	key, hasKey := keyOf(p.Data[off:], etype, in.nat != nil)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(p.Data)})
	before := in.dropStats()
	rt := &in.rt
	rt.mu.Lock()
	rt.active, rt.key, rt.hasKey, rt.outputs, rt.spent = true, key, hasKey, 0, false
	rt.meta = heldMeta{dir: dir, ts: p.Timestamp, ifc: p.Interface, bytes: len(p.Data)}
	rt.orig = p.Data[off:]
	rt.mu.Unlock()
	in.cur = frame{dir: dir, pkt: p, l3: off, link: framing.LinkEthernet}
	in.curRuled.Store(0)
	in.curFull.Store(false)
	in.curPB.Store(pkt)
	delivered := in.nics[reverse(dir)].deliver(pkt)
	in.curPB.Store(nil)
	in.cur = frame{}
	defer pkt.DecRef()
	rt.mu.Lock()
	outputs, spent, out := rt.outputs, rt.spent, rt.out
	rt.active, rt.orig, rt.out = false, nil, nil
	rt.mu.Unlock()
	if in.fastMax > 0 && etype != etherARP {
		// As in transparent mode: the stack has seen the flow, whose state may have moved
		// on, so what was cached for it goes; a frame it forwarded as is may teach it again.
		var outIP []byte
		if out != nil {
			outIP = out[header.EthernetMinimumSize:]
		}
		passed := outputs == 1 && out != nil && !spent
		st := connState(pkt)
		if fp.ok {
			in.restudy(passed && !fp.control, st, fp.key, datagramKeyOr(outIP, fp.key))
		} else {
			in.forgetDatagram(p.Data[off:], etype == etherIPv6, outIP)
		}
		if passed {
			in.learnRouted(dir, p, &fp, st, in.now, out)
		}
	}
	if spent {
		side.Drop(books.TTL, 1, len(p.Data))
		in.timeExceeded(dir, p, off, etype == etherIPv6)
		return
	}
	if outputs > 0 {
		return // counted Out as it was written
	}
	after := in.dropStats()
	switch {
	case !delivered:
		side.Drop(books.Malformed, 1, len(p.Data))
	case in.curFull.Load():
		side.Drop(books.Full, 1, len(p.Data))
		in.forgetNew(pkt, inNIC(dir))
	case in.curRuled.Load() != 0:
		side.Drop(books.Rule, 1, len(p.Data))
		in.forgetNew(pkt, inNIC(dir))
	case after.malformed != before.malformed:
		side.Drop(books.Malformed, 1, len(p.Data))
	case after.ttl != before.ttl:
		side.Drop(books.TTL, 1, len(p.Data))
	case after.noRoute != before.noRoute:
		side.Drop(books.NoRoute, 1, len(p.Data))
	case after.invalid != before.invalid:
		side.Drop(books.Invalid, 1, len(p.Data))
	case after.local != before.local || etype == etherARP:
		side.Drop(localReason, 1, len(p.Data))
	case hasKey:
		// Nothing else happened to it: netstack holds it until the next hop resolves.
		rt.mu.Lock()
		rt.pending[key] = append(rt.pending[key], rt.meta)
		rt.mu.Unlock()
	default:
		side.Drop(books.NoRoute, 1, len(p.Data))
	}
}

// routable reports whether netstack may be given an IP datagram, or why not. A source-routed
// IPv4 datagram is refused, as Linux refuses it (accept_source_route). Fragments and
// datagrams whose IP header is not sound go to netstack, which forwards fragments without
// looking past the IP header and judges IP headers itself. A datagram that is not a fragment
// must have a whole and consistent transport header (what the transparent path checks with
// newParsed): forwarding, netstack recomputes the TCP checksum over the header length the
// data offset gives, and panics when that runs past the end of the segment. Under NAT, what
// Linux's conntrack calls INVALID is refused, as Linux's NAT would pass it untranslated.
func (in *Instance) routable(ip []byte, v6 bool) (books.Reason, bool) {
	n, frag := ipDatagram(ip, v6)
	if n > 0 && !v6 && sourceRouted(ip) {
		return books.SourceRoute, false
	}
	if n <= 0 || frag {
		return 0, true
	}
	pkt, ok := newParsed(ip[:n], v6)
	if !ok {
		return books.Malformed, false
	}
	defer pkt.DecRef()
	if in.nat != nil && (invalidForLinux(pkt) || badChecksum(pkt, ip[:n])) {
		return books.Invalid, false
	}
	return 0, true
}

// reassembled returns p itself when it is not a fragment, or, for the fragment that
// completes a datagram, a frame holding the whole datagram (the other fragments are booked
// Reassembled: they came in and leave as part of it). It returns false while the datagram
// is incomplete, or when the fragment was refused (counted).
func (in *Instance) reassembled(dir books.Dir, p *framing.Packet, off int, v6 bool) (*framing.Packet, bool) {
	ip := p.Data[off:]
	n, frag := ipDatagram(ip, v6)
	if !frag {
		return p, true
	}
	dg, why := in.frags.add(dir, p, off, ip[:n], v6)
	in.frags.count(in)
	if why != 0 {
		in.bk.Dir[dir].Drop(why-1, 1, len(p.Data))
		return nil, false
	}
	if dg == nil {
		return nil, false
	}
	first := &dg.frames[dg.firstFrame]
	whole := relink(&first.pkt, first.l3, dg.datagram)
	in.bk.Dir[dir].Drop(books.Reassembled, len(dg.frames)-1, 0)
	return &whole, true
}

// expired handles a packet to forward whose TTL or hop limit would reach 0: netstack
// forwards TTL 1 as TTL 0, so the instance drops it and answers time exceeded itself.
func (in *Instance) expired(dir books.Dir, p *framing.Packet, off int, etype uint16) bool {
	ip := p.Data[off:]
	var ttl uint8
	var dst netip.Addr
	v6 := etype == etherIPv6
	switch {
	case etype == etherIPv4 && validIPv4(ip) > 0:
		ttl, dst = ip[8], netip.AddrFrom4([4]byte(ip[16:20]))
		if binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
			return ttl <= 1 && dst != in.cfg.West.Addr() && dst != in.cfg.East.Addr() // later fragment: no answer
		}
	case v6 && validIPv6(ip) > 0:
		ttl, dst = ip[7], netip.AddrFrom16([16]byte(ip[24:40]))
	default:
		return false
	}
	if ttl > 1 || dst == in.cfg.West.Addr() || dst == in.cfg.East.Addr() || dst.IsMulticast() ||
		(!v6 && dst == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
		return false
	}
	in.timeExceeded(dir, p, off, v6)
	return true
}

// ttlSpent reports whether a datagram about to leave has no TTL or hop limit left.
func ttlSpent(ip []byte, etype uint16) bool {
	switch {
	case etype == etherIPv4 && len(ip) >= header.IPv4MinimumSize:
		return ip[8] == 0
	case etype == etherIPv6 && len(ip) >= header.IPv6MinimumSize:
		return ip[7] == 0
	}
	return false
}

// timeExceeded answers a frame whose TTL or hop limit ran out with an ICMP time exceeded,
// sent back the way it came, from the router's address on that side.
func (in *Instance) timeExceeded(dir books.Dir, p *framing.Packet, off int, v6 bool) {
	ip := p.Data[off:]
	n := validIPv4(ip)
	typ := uint8(header.ICMPv4TimeExceeded)
	if v6 {
		n, typ = validIPv6(ip), uint8(header.ICMPv6TimeExceeded)
	}
	if n <= 0 {
		return
	}
	saved := in.cur
	in.cur = frame{dir: dir, pkt: p, l3: off, link: framing.LinkEthernet}
	defer func() { in.cur = saved }()
	aboutError := false
	if pkt, ok := newParsed(ip[:n], v6); ok {
		aboutError = isICMPError(pkt)
		pkt.DecRef()
	}
	answer := icmpError(ip[:n], v6, typ, 0, in.answerSource(ip, v6), aboutError)
	if answer != nil {
		fr, ifc := in.wrapL2(&in.cur, answer, v6)
		in.emit(reverse(dir), framing.Packet{Data: fr, Length: len(fr), Timestamp: now(), Interface: ifc}, true)
	}
}

// sent books a frame netstack wrote on NIC e and writes it out: a frame forwarded from the
// frame being delivered, or from one held for neighbour resolution, keeps that frame's
// timestamp and interface; anything else is generated.
func (in *Instance) sent(e *linkEP, b []byte) {
	p := framing.Packet{Data: b, Length: len(b)}
	generated := true
	if len(b) >= header.EthernetMinimumSize {
		etype := binary.BigEndian.Uint16(b[12:])
		// Under NAT a forwarded packet may carry the router's own address (MASQUERADE), so
		// only without NAT does that address mark the router's own answers.
		if k, ok := keyOf(b[header.EthernetMinimumSize:], etype, in.nat != nil); ok && (in.nat != nil || !in.isOwnAnswer(b, etype)) {
			rt := &in.rt
			rt.mu.Lock()
			// A forwarded frame leaves by the other NIC, in its own direction. Under NAT
			// the key is weak: the router's echo reply copies the request's ID and length,
			// and goes back the way the request came.
			ours := rt.active && rt.hasKey && rt.outputs == 0 && rt.meta.dir == e.dir && bytes.Equal(k.b[:k.n], rt.key.b[:rt.key.n])
			switch {
			case ours && ttlSpent(b[header.EthernetMinimumSize:], etype):
				// Addressed to the router, so let through by expired, then translated
				// to a host beyond it (a port forward): netstack would send it with TTL 0.
				rt.spent = true
				rt.mu.Unlock()
				return
			case ours:
				rt.outputs++
				b = append(b, surplus(b[header.EthernetMinimumSize:], rt.orig, etype == etherIPv6)...)
				p.Data, p.Length = b, len(b)
				in.fixForwarded(e.dir, b[header.EthernetMinimumSize:], rt.orig, etype == etherIPv6)
				rt.out = b
				p.Timestamp, p.Interface, generated = rt.meta.ts, rt.meta.ifc, false
			default:
				q := rt.pending[k]
				if i := slices.IndexFunc(q, func(m heldMeta) bool { return m.dir == e.dir }); i >= 0 {
					m := q[i]
					if len(q) == 1 {
						delete(rt.pending, k)
					} else {
						rt.pending[k] = slices.Delete(q, i, i+1)
					}
					p.Timestamp, p.Interface, generated = m.ts, m.ifc, false
				}
			}
			rt.mu.Unlock()
		}
	}
	if generated {
		p.Timestamp, p.Interface = now(), e.ifc
		in.bk.Dir[e.dir].Generated.Add(1, len(b))
	}
	in.write(e.dir, []framing.Packet{p})
}

// fixForwarded undoes, in a datagram netstack forwards (out, from orig), what netstack does
// and a router (Linux) does not. Past the IP header, netstack recomputes TCP and UDP
// checksums, since the NICs have no checksum offload: over the fragment for a fragment, which
// overwrites payload bytes of later fragments; over a corrupt segment, which then looks sound;
// and for UDP sent without a checksum, which then has one. Without NAT, the bytes past the IP
// header are the input's again; with NAT, which translates ports and sees no fragments (they
// are reassembled first) nor bad checksums (untracked, so refused), UDP without a checksum
// leaves without one. And netstack records the address of the NIC a datagram came in by in
// its record route and timestamp options, where RFC 791 and Linux record the address of the
// NIC it leaves by: behind NAT, netstack's would show the outside an inside address.
func (in *Instance) fixForwarded(dir books.Dir, out, orig []byte, v6 bool) {
	if v6 {
		if in.nat == nil && len(out) >= header.IPv6MinimumSize && len(orig) >= len(out) &&
			binary.BigEndian.Uint16(out[4:]) == binary.BigEndian.Uint16(orig[4:]) {
			copy(out[header.IPv6MinimumSize:], orig[header.IPv6MinimumSize:len(out)])
		}
		return
	}
	if len(out) < header.IPv4MinimumSize || len(orig) < header.IPv4MinimumSize {
		return
	}
	hl, tot := int(out[0]&0x0f)*4, int(binary.BigEndian.Uint16(out[2:]))
	if hl < header.IPv4MinimumSize || tot < hl || tot > len(out) || int(orig[0]&0x0f)*4 != hl ||
		int(binary.BigEndian.Uint16(orig[2:])) != tot || tot > len(orig) {
		return
	}
	switch {
	case in.nat == nil:
		copy(out[hl:tot], orig[hl:tot])
	case out[9] == uint8(header.UDPProtocolNumber) && tot-hl >= header.UDPMinimumSize &&
		binary.BigEndian.Uint16(out[6:])&0x3fff == 0 && binary.BigEndian.Uint16(orig[hl+6:]) == 0:
		out[hl+6], out[hl+7] = 0, 0
	}
	// Record route and timestamp: a slot netstack filled with the address of the NIC the
	// datagram came in by gets the address of the NIC it leaves by.
	from, to := in.cfg.West.Addr(), in.cfg.East.Addr()
	if dir == books.West {
		from, to = to, from
	}
	if !from.Is4() || !to.Is4() {
		return
	}
	fa, ta := from.As4(), to.As4()
	for i := header.IPv4MinimumSize; i < hl; {
		switch t := out[i]; {
		case t == 0:
			i = hl
			continue
		case t == 1:
			i++
			continue
		case i+1 >= hl || out[i+1] < 2:
			i = hl
			continue
		case (t == 7 && i+2 < hl && out[i+2] == orig[i+2]+4) || // record route
			(t == 68 && i+3 < hl && out[i+3]&0x0f == 1 && out[i+2] == orig[i+2]+8): // timestamp with addresses
			if slot := i + int(orig[i+2]) - 1; slot+4 <= i+int(out[i+1]) && slot+4 <= hl && [4]byte(out[slot:slot+4]) == fa {
				copy(out[slot:], ta[:])
			}
		}
		i += int(out[i+1])
	}
	h := header.IPv4(out[:hl])
	h.SetChecksum(0)
	h.SetChecksum(^h.CalculateChecksum())
}

// isOwnAnswer reports whether a written packet comes from one of the router's addresses
// (an ICMP error or echo reply), which a forwarded packet never does.
func (in *Instance) isOwnAnswer(b []byte, etype uint16) bool {
	ip := b[header.EthernetMinimumSize:]
	var src netip.Addr
	switch {
	case etype == etherIPv4 && len(ip) >= 20:
		src = netip.AddrFrom4([4]byte(ip[12:16]))
	case etype == etherIPv6 && len(ip) >= 40:
		src = netip.AddrFrom16([16]byte(ip[8:24]))
	default:
		return false
	}
	return src == in.cfg.West.Addr() || src == in.cfg.East.Addr()
}

// routerUnsent counts frames still held for neighbour resolution when the instance stops.
func (in *Instance) routerUnsent() {
	rt := &in.rt
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for k, q := range rt.pending {
		for _, m := range q {
			in.bk.Dir[m.dir].Drop(books.Unsent, 1, m.bytes)
		}
		delete(rt.pending, k)
	}
}
