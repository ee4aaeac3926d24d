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
	path     []int // rule entries counted, in order, ending with the accepting one
	tcpFlags uint8 // the flags of the packets it holds for (ACK, PSH|ACK...)
	lastSlow int64 // when a packet of it last went through the stack
}

// fastRefresh is how often a cached flow sends a packet through the stack, so netstack's
// connection (and the flow table) see it alive.
const fastRefresh = 2 * time.Second

// fastParsed is a packet as the fast path reads it.
type fastParsed struct {
	key      fastKey
	tcpFlags uint8
	ok       bool // parsed, lengths and checksums sound
	control  bool // SYN, FIN or RST (or no ACK): for the stack only
}

// fastParse reads an untagged Ethernet frame holding an unfragmented IPv4 datagram without
// options, or an IPv6 packet without extension headers, carrying TCP or UDP, with sound
// lengths and checksums; anything else is not for the fast path.
func fastParse(p *framing.Packet) (fp fastParsed) {
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
		if tot < 20 || tot > len(ip) || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 || csum.Fold(csum.Sum(ip[:20], 0)) != 0 {
			return
		}
		fp.key.proto = ip[9]
		copy(fp.key.src[:4], ip[12:16])
		copy(fp.key.dst[:4], ip[16:20])
		l4 = ip[20:tot]
		pseudo = csum.Sum(ip[12:20], 0)
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

// fast passes p if its flow direction is cached, and reports whether it did.
func (in *Instance) fast(dir books.Dir, p *framing.Packet, fp *fastParsed, now int64) bool {
	e := in.fastCache[dir][fp.key]
	if e == nil || e.tcpFlags != fp.tcpFlags || now-e.lastSlow > int64(fastRefresh) {
		return false
	}
	n := uint64(len(p.Data) - 14) // iptables counts the IP datagram
	for _, i := range e.path {
		c := &in.tables.entries[i]
		c.packets.Add(1)
		c.bytes.Add(n)
	}
	in.fastHits.Add(1)
	in.emit(dir, *p, false)
	return true
}

// learn caches what the slow path just showed for a passed packet, when it may: the
// connection is NEW or ESTABLISHED (a state only the stack's next packet of the other
// direction, or a control segment, can change), the packet is for the fast path, and no
// rule on its way logs.
func (in *Instance) learn(dir books.Dir, fp *fastParsed, established bool, now int64) {
	if !fp.ok || fp.control || !established {
		return
	}
	for _, i := range in.curPath {
		if r := in.tables.entries[i].rule; r != nil && r.Target.Kind == rules.Log {
			return
		}
	}
	m := in.fastCache[dir]
	if len(m) >= in.fastMax {
		return // full: flows beyond it take the slow path; entries go when their flows end
	}
	e := m[fp.key]
	if e == nil {
		e = &fastEntry{}
		m[fp.key] = e
	}
	e.path = append(e.path[:0], in.curPath...)
	e.tcpFlags, e.lastSlow = fp.tcpFlags, now
}

// forgetFlow drops what is cached for both directions of a flow, whichever way through the
// stage they travelled (a one-way replay sends replies east too).
func (in *Instance) forgetFlow(key fastKey) {
	r := key.reversed()
	for _, m := range in.fastCache {
		delete(m, key)
		delete(m, r)
	}
}

// reversed is the key of the other direction of the flow.
func (k fastKey) reversed() fastKey {
	return fastKey{v6: k.v6, proto: k.proto, src: k.dst, dst: k.src, sport: k.dport, dport: k.sport}
}

// FastPathStats returns the packets the fast path passed.
func (in *Instance) FastPathStats() (hits uint64, cached int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.fastHits.Load(), len(in.fastCache[0]) + len(in.fastCache[1])
}
