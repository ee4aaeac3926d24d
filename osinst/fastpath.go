package osinst

import (
	"encoding/binary"
	"time"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/csum"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/rules"
)

// The fast path of a transparent filter. netstack costs microseconds a packet; once a
// connection is established, every later packet of it in the same direction, with the same
// TCP flags, meets the same rules with the same outcome: the slow path has shown which rules
// count it and that it passes. Such packets are passed here without entering the stack,
// their rules counted as netstack would have. The cache only learns from netstack: an entry
// is made from a packet the stack passed as ESTABLISHED, and netstack's connection is kept in
// step by sending a packet of the flow through the stack now and then (refresh). SYN, FIN,
// RST, fragments, IP options, bad checksums, anything unparsed go the slow way; a FIN or RST
// seen there forgets the flow.

// fastKey is a direction of a flow, as a packet's headers say it.
type fastKey struct {
	v6       bool
	proto    uint8
	src, dst [16]byte
	sport    uint16
	dport    uint16
}

// fastEntry is what the slow path showed for one direction of a flow.
type fastEntry struct {
	key      fastKey
	path     []int // rule entries counted, in order, ending with the accepting one
	tcpFlags uint8 // the flags of the packets it holds for (ACK, PSH|ACK...)
	lastSlow int64 // when a packet of it last went through the stack
	nat      bool  // the stack translated it: rewrite, below
	rewrite  natRewrite
	est      bool     // learnt from an ESTABLISHED packet: still right after a reply
	routed   bool     // router mode: the frame leaves with macs and its TTL one less
	macs     [12]byte // destination and source MAC of the frames the stack sent
}

// fastRefresh is how often, at most, a cached flow sends a packet through the stack, so
// netstack's connection and the flow table see it alive; shorter with short --timeouts.
const fastRefresh = 2 * time.Second

// fastParsed is a packet as the fast path reads it.
type fastParsed struct {
	key      fastKey
	tcpFlags uint8
	ok       bool // parsed, lengths and checksums sound
	control  bool // SYN, FIN or RST (or no ACK): for the stack only
	l4       int  // offset of the transport header in the frame
	n        int  // length of the IP datagram
}

// fastParse reads an untagged Ethernet frame holding an unfragmented IPv4 datagram without
// options, or an IPv6 packet without extension headers, carrying TCP or UDP, with sound
// lengths and checksums; anything else is not for the fast path.
func fastParse(p *framing.Packet, fp *fastParsed) {
	*fp = fastParsed{}
	if p.Interface != nil && p.Interface.LinkType != framing.LinkEthernet {
		return
	}
	b := p.Data
	if len(b) < 14+20 {
		return
	}
	var l4 []byte
	var pseudo uint32
	switch binary.BigEndian.Uint16(b[12:]) {
	case etherIPv4:
		ip := b[14:]
		if ip[0] != 0x45 {
			return // not version 4, or options
		}
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if tot < 20 || tot > len(ip) || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return
		}
		// The header summed by hand, the addresses apart: the pseudo-header has them too.
		be := binary.BigEndian
		addrs := uint64(be.Uint32(ip[12:])) + uint64(be.Uint32(ip[16:]))
		if csum.Fold(csum.Reduce(addrs+uint64(be.Uint32(ip[0:]))+uint64(be.Uint32(ip[4:]))+uint64(be.Uint32(ip[8:])))) != 0 {
			return
		}
		pseudo = csum.Reduce(addrs)
		fp.key.proto = ip[9]
		copy(fp.key.src[:4], ip[12:16])
		copy(fp.key.dst[:4], ip[16:20])
		l4 = ip[20:tot]
		fp.l4, fp.n = 14+20, tot
	case etherIPv6:
		ip := b[14:]
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return
		}
		plen := int(binary.BigEndian.Uint16(ip[4:]))
		if 40+plen > len(ip) {
			return
		}
		fp.key.v6, fp.key.proto = true, ip[6]
		copy(fp.key.src[:], ip[8:24])
		copy(fp.key.dst[:], ip[24:40])
		l4 = ip[40 : 40+plen]
		fp.l4, fp.n = 14+40, 40+plen
		pseudo = csum.Sum(ip[8:40], 0)
	default:
		return
	}
	switch fp.key.proto {
	case 6:
		if len(l4) < 20 || int(l4[12]>>4)*4 < 20 || int(l4[12]>>4)*4 > len(l4) {
			return
		}
		fp.tcpFlags = l4[13]
		fp.control = fp.tcpFlags&(tcpSYN|tcpFIN|tcpRST) != 0 || fp.tcpFlags&tcpACK == 0
	case 17:
		if len(l4) < 8 || int(binary.BigEndian.Uint16(l4[4:])) != len(l4) {
			return
		}
		if !fp.key.v6 && binary.BigEndian.Uint16(l4[6:]) == 0 {
			pseudo = 0 // no checksum to verify
			goto ports
		}
	default:
		return
	}
	if csum.Fold(csum.Sum(l4, pseudo+uint32(len(l4))+uint32(fp.key.proto))) != 0 {
		return // a bad checksum is INVALID: the stack's call
	}
ports:
	fp.key.sport, fp.key.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	fp.ok = true
	return
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// fast passes p if its flow direction is cached, and reports whether it did; the caller
// sends p on.
func (in *Instance) fast(dir books.Dir, p *framing.Packet, fp *fastParsed, now int64) bool {
	e := in.fastCache[dir].Get(&fp.key)
	if e == nil || e.tcpFlags != fp.tcpFlags || now-e.lastSlow > int64(in.fastRefresh) {
		in.fastMisses.Add(1)
		return false
	}
	if e.routed && !decrementTTL(p.Data, fp.key.v6) {
		in.fastMisses.Add(1)
		return false // the stack answers an expiring TTL
	}
	in.batch.count(e.path, fp.n)
	if e.nat {
		e.rewrite.apply(p.Data, fp) // in place: the frame is ours until it is written
	}
	if e.routed {
		copy(p.Data[:12], e.macs[:])
		p.Data = p.Data[:14+fp.n]
		p.Length = len(p.Data)
	}
	return true
}

// fastBatch is what the fast path counted in one Input batch, rule entries and hits, added
// to the shared atomic counters once at the end of the batch: an atomic add for every
// counter a packet touches would cost more than the rest of passing it.
type fastBatch struct {
	hits    uint64
	rules   []ruleTally // by filter entry
	touched []int       // entries with a tally
}

type ruleTally struct{ packets, bytes uint64 }

// count notes a packet of n IP bytes passed through the rule entries of path.
func (b *fastBatch) count(path []int, n int) {
	b.hits++
	for _, i := range path {
		t := &b.rules[i]
		if t.packets == 0 {
			b.touched = append(b.touched, i)
		}
		t.packets++
		t.bytes += uint64(n) // iptables counts the IP datagram
	}
}

// settleFast adds what the fast path counted in this batch to the shared counters.
func (in *Instance) settleFast() {
	b := &in.batch
	if b.hits == 0 {
		return
	}
	in.fastHits.Add(b.hits)
	b.hits = 0
	for _, i := range b.touched {
		c, t := &in.tables.entries[i], &b.rules[i]
		c.packets.Add(t.packets)
		c.bytes.Add(t.bytes)
		*t = ruleTally{}
	}
	b.touched = b.touched[:0]
}

// natRewrite is a translation the fast path repeats: the addresses and ports of to, and
// what writing them adds to the ones'-complement sums of the IPv4 header and of the
// transport checksum (RFC 1624: HC' = ~(~HC + ~m + m')), worked out once per flow rather
// than field by field for every packet.
type natRewrite struct {
	to      fastKey
	ipDelta uint32 // the IPv4 header's: the addresses
	l4Delta uint32 // the transport checksum's: the addresses (pseudo-header) and ports
}

// newRewrite returns the translation of packets keyed from into to.
func newRewrite(from, to *fastKey) natRewrite {
	n := 4
	if from.v6 {
		n = 16
	}
	var ports, toPorts [4]byte
	binary.BigEndian.PutUint16(ports[:], from.sport)
	binary.BigEndian.PutUint16(ports[2:], from.dport)
	binary.BigEndian.PutUint16(toPorts[:], to.sport)
	binary.BigEndian.PutUint16(toPorts[2:], to.dport)
	addrs := csum.Delta(csum.Delta(0, from.src[:n], to.src[:n]), from.dst[:n], to.dst[:n])
	return natRewrite{to: *to, ipDelta: addrs, l4Delta: csum.Delta(addrs, ports[:], toPorts[:])}
}

// apply translates a frame the fast path parsed, in place.
func (r *natRewrite) apply(b []byte, fp *fastParsed) {
	l4 := b[fp.l4:]
	var cs []byte // the transport checksum field, if there is one to keep
	switch fp.key.proto {
	case 6:
		cs = l4[16:18]
	case 17:
		if fp.key.v6 || binary.BigEndian.Uint16(l4[6:]) != 0 {
			cs = l4[6:8]
		}
	}
	if cs != nil {
		c := csum.Fold(uint32(^binary.BigEndian.Uint16(cs)) + r.l4Delta)
		if c == 0 && fp.key.proto == 17 {
			c = 0xffff // 0 would say "no checksum"
		}
		binary.BigEndian.PutUint16(cs, c)
	}
	if fp.key.v6 {
		copy(b[14+8:14+24], r.to.src[:])
		copy(b[14+24:14+40], r.to.dst[:])
	} else {
		ip := b[14:34]
		binary.BigEndian.PutUint16(ip[10:], csum.Fold(uint32(^binary.BigEndian.Uint16(ip[10:]))+r.ipDelta))
		copy(ip[12:16], r.to.src[:4])
		copy(ip[16:20], r.to.dst[:4])
	}
	binary.BigEndian.PutUint16(l4[0:], r.to.sport)
	binary.BigEndian.PutUint16(l4[2:], r.to.dport)
}

// decrementTTL takes one from a frame's IPv4 TTL (adjusting the header checksum) or IPv6
// hop limit, as a router forwarding it does; false, and the frame untouched, when the TTL
// would run out (the stack's part: time exceeded).
func decrementTTL(b []byte, v6 bool) bool {
	if v6 {
		if b[14+7] <= 1 {
			return false
		}
		b[14+7]--
		return true
	}
	ip := b[14:]
	if ip[8] <= 1 {
		return false
	}
	old := [2]byte{ip[8], ip[9]}
	ip[8]--
	binary.BigEndian.PutUint16(ip[10:], csum.Adjust(binary.BigEndian.Uint16(ip[10:]), old[:], ip[8:10]))
	return true
}

// learnRouted caches, in router mode, what the stack did to a frame it forwarded as out:
// new MACs, the TTL one less and, under NAT, the translation. Only when doing exactly that
// to the input frame gives out byte for byte; otherwise the flow stays on the slow path.
func (in *Instance) learnRouted(dir books.Dir, p *framing.Packet, fp *fastParsed, st rules.State, now int64, out []byte) {
	established := st == rules.StateNew || st == rules.StateEstablished
	// A router forwards the datagram, not the Ethernet padding or trailer after it.
	if !fp.ok || fp.control || !established || len(out) != 14+fp.n || !in.seenBefore(dir, &fp.key) {
		return
	}
	q := framing.Packet{Data: out}
	var tp fastParsed
	fastParse(&q, &tp)
	if !tp.ok || tp.n != fp.n {
		return
	}
	trial := append([]byte(nil), p.Data[:14+fp.n]...)
	translated := tp.key != fp.key
	rw := newRewrite(&fp.key, &tp.key)
	if translated {
		rw.apply(trial, fp)
	}
	copy(trial[:12], out[:12])
	if !decrementTTL(trial, fp.key.v6) || string(trial) != string(out) {
		return // the stack did more than the fast path can repeat
	}
	e := in.cacheEntry(dir, fp, now)
	if e == nil {
		return
	}
	e.nat, e.rewrite, e.routed, e.est = translated, rw, true, st == rules.StateEstablished
	copy(e.macs[:], out[:12])
}

// learn caches what the slow path just showed for a passed packet, when it may: the
// connection is NEW or ESTABLISHED (a state only the stack's next packet of the other
// direction, or a control segment, can change), the packet is for the fast path, and no
// rule on its way logs.
//
// With NAT, natted is the datagram the stack sent: the entry holds the translation when
// applying it to this packet gives exactly those bytes; otherwise nothing is cached.
func (in *Instance) learn(dir books.Dir, p *framing.Packet, fp *fastParsed, st rules.State, now int64, natted []byte) {
	if !fp.ok || fp.control || (st != rules.StateNew && st != rules.StateEstablished) || !in.seenBefore(dir, &fp.key) {
		return // seenBefore: a flood of one-packet flows would only fill the cache
	}
	var rw natRewrite
	translated := false
	if natted != nil {
		q := framing.Packet{Data: append(append(make([]byte, 0, 14+len(natted)), p.Data[:14]...), natted...), Interface: p.Interface}
		var tp fastParsed
		fastParse(&q, &tp)
		if !tp.ok || tp.n != fp.n {
			return
		}
		rw, translated = newRewrite(&fp.key, &tp.key), tp.key != fp.key
		if translated {
			trial := append([]byte(nil), p.Data[:14+fp.n]...)
			rw.apply(trial, fp)
			if string(trial[14:]) != string(natted) {
				return // the stack did more than the fast path can repeat
			}
		}
	}
	if e := in.cacheEntry(dir, fp, now); e != nil {
		e.nat, e.rewrite, e.est = translated, rw, st == rules.StateEstablished
	}
}

// cacheEntry returns the entry of fp's flow direction, holding the rules the slow path
// just counted, or nil when it may not be cached: a LOG rule on the way, or a full cache.
func (in *Instance) cacheEntry(dir books.Dir, fp *fastParsed, now int64) *fastEntry {
	for _, i := range in.curPath {
		if r := in.tables.entries[i].rule; r != nil && r.Target.Kind == rules.Log {
			return nil
		}
	}
	m := in.fastCache[dir]
	if m.Len() >= in.fastMax {
		return nil // full: flows beyond it take the slow path; entries go when their flows end
	}
	e := m.Get(&fp.key)
	if e == nil {
		e = &fastEntry{key: fp.key}
		m.Put(e)
	}
	e.path = append(e.path[:0], in.curPath...)
	e.tcpFlags, e.lastSlow = fp.tcpFlags, now
	return e
}

// seenBefore reports whether a packet with this key (and direction) reached learn before,
// remembering it otherwise, in a fixed table of key hashes: no allocation per flow. A
// collision only delays learning a flow by a packet.
func (in *Instance) seenBefore(dir books.Dir, k *fastKey) bool {
	h := uint64(dir)*0x9e3779b97f4a7c15 ^ uint64(k.proto) ^ uint64(k.sport)<<8 ^ uint64(k.dport)<<24
	for _, b := range [][16]byte{k.src, k.dst} {
		for i := 0; i < 16; i += 8 {
			h = (h ^ binary.LittleEndian.Uint64(b[i:])) * 0x100000001b3
		}
	}
	slot := &in.seen[h>>(64-14)] // the high bits: a multiply mixes bits only upwards
	if *slot == h|1 {
		return true
	}
	*slot = h | 1
	return false
}

// restudy adjusts the cache after the stack has seen a packet of a flow (keys as for
// forgetFlow). The connection's state may have moved on: a first reply makes a NEW
// connection ESTABLISHED, a refusal or a control segment may end it. So every entry of the
// flow goes, unless the stack passed this packet as ESTABLISHED (not a control segment):
// then only the entries learnt before the connection was established go, and those learnt
// since stay right. Without that, the two directions of a conversation, taking turns,
// would evict each other at every turn.
func (in *Instance) restudy(passed bool, st rules.State, keys ...fastKey) {
	if !passed || st != rules.StateEstablished {
		in.forgetFlow(keys...)
		return
	}
	for _, key := range keys {
		r := key.reversed()
		for _, m := range in.fastCache {
			for _, k := range [2]fastKey{key, r} {
				if e := m.Get(&k); e != nil && !e.est {
					m.Delete(&k)
					in.fastEvicted.Add(1)
				}
			}
		}
	}
}

// datagramKeyOr returns the fast-path key of an IP datagram (what the stack sent), or def.
func datagramKeyOr(ip []byte, def fastKey) fastKey {
	if ip != nil {
		if k, ok := datagramKey(ip, def.v6); ok {
			return k
		}
	}
	return def
}

// forgetFlow drops what is cached for both directions of a flow, whichever way through the
// stage they travelled (a one-way replay sends replies east too): keys are the packet's own
// key and, under NAT, its translated key, whose reverse is how replies arrive.
func (in *Instance) forgetFlow(keys ...fastKey) {
	for _, key := range keys {
		r := key.reversed()
		for _, m := range in.fastCache {
			for _, k := range [2]fastKey{key, r} {
				if m.Delete(&k) {
					in.fastEvicted.Add(1)
				}
			}
		}
	}
}

// equal is k == o, spelled out field by field: the compiler compares the struct as a
// whole through a call to memequal.
func (k *fastKey) equal(o *fastKey) bool {
	return k.src == o.src && k.dst == o.dst && k.sport == o.sport && k.dport == o.dport &&
		k.proto == o.proto && k.v6 == o.v6
}

// reversed is the key of the other direction of the flow.
func (k fastKey) reversed() fastKey {
	return fastKey{v6: k.v6, proto: k.proto, src: k.dst, dst: k.src, sport: k.dport, dport: k.sport}
}

// FastPath counts what the fast path did.
type FastPath struct {
	Hits      uint64 `json:"hits"`      // packets it passed
	Misses    uint64 `json:"misses"`    // packets it could have taken that went through the stack
	Evictions uint64 `json:"evictions"` // entries dropped when the stack saw their flow again
	Cached    int    `json:"cached"`    // flow directions held now
}

// FastPathStats returns the fast path's counters.
func (in *Instance) FastPathStats() FastPath {
	in.mu.Lock()
	defer in.mu.Unlock()
	return FastPath{Hits: in.fastHits.Load(), Misses: in.fastMisses.Load(), Evictions: in.fastEvicted.Load(),
		Cached: in.fastCache[0].Len() + in.fastCache[1].Len()}
}
