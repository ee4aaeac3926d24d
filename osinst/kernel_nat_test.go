package osinst

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/rules"
)

// The kernel comparison: one two-sided conversation, played step by step through a Linux
// router in network namespaces (MASQUERADE out, a DNAT port forward in) and through an
// instance loaded with the same nat table, exported from that router by iptables-save.
// Each side's replies are built from what that side's NAT emitted, and what comes out is
// compared step by step.

// Sides of the router.
const (
	knIn  = 0 // the inside, 192.0.2.0/24: the router's west
	knOut = 1 // the outside, 203.0.113.0/24: the router's east
)

var (
	knA         = netip.MustParseAddr("192.0.2.10")   // inside host, the port forward's target
	knB         = netip.MustParseAddr("192.0.2.11")   // inside host
	knS         = netip.MustParseAddr("203.0.113.10") // outside server
	knC         = netip.MustParseAddr("203.0.113.20") // outside client of the port forward
	knRO        = netip.MustParseAddr("203.0.113.1")  // the router's outside address
	knRI        = netip.MustParseAddr("192.0.2.1")    // the router's inside address
	knInsideNet = netip.MustParsePrefix("192.0.2.0/24")
)

// knTuple is a packet's addresses and ports (ICMP echo: the identifier as sport).
type knTuple struct {
	src, dst     netip.Addr
	sport, dport uint16
}

func (u knTuple) reverse() knTuple { return knTuple{u.dst, u.src, u.dport, u.sport} }

// knFlow is one logical conversation: its protocol, who opens it, and how the opener
// addresses it.
type knFlow struct {
	proto  layers.IPProtocol
	opener int
	knTuple
}

// knWait says how long a side waits for what a step makes come out.
type knWait int

const (
	knSome   knWait = iota // something comes out (the kernel must send something)
	knNone                 // nothing should come out: a short wait
	knUnsure               // either
)

// knStep is one packet of the conversation.
type knStep struct {
	name, flow string
	reply      bool // sent by the flow's responder, addressed from what its side's NAT emitted
	flags      string
	seq, ack   uint32
	data       string
	ttl        uint8
	frags      int                 // sent as this many IPv4 fragments
	quote      string              // an ICMP port unreachable quoting what the NAT emitted for this step
	mangle     func([]byte) []byte // makes the datagram malformed
	wait       knWait
	invalid    bool // conntrack cannot track it: the kernel forwards it untranslated
}

// knFrame is a frame that came out of a router: its destination MAC and its IPv4 datagram.
type knFrame struct {
	dst net.HardwareAddr
	ip  []byte
}

// knSide plays datagrams from one side into a NAT router and returns what came out on each.
type knSide interface {
	send(t *testing.T, from int, ips [][]byte, w knWait) [2][]knFrame
}

// knRun is one side's record of the conversation.
type knRun struct {
	name string
	side knSide
	far  map[string]knTuple      // per flow: the opener's first packet as it left the far side
	out  map[string][2][]knFrame // per step: what came out inside and outside
	from map[string]int          // per step: the side it was sent from
}

func newKnRun(name string, side knSide) *knRun {
	return &knRun{name: name, side: side, far: map[string]knTuple{}, out: map[string][2][]knFrame{}, from: map[string]int{}}
}

func (r *knRun) play(t *testing.T, flows map[string]knFlow, s knStep, idx int) {
	t.Helper()
	f := flows[s.flow]
	ips, from, ok := r.build(t, f, s, idx)
	if !ok {
		t.Logf("%s: %s not sent: its NAT emitted nothing to reply to", r.name, s.name)
		return
	}
	out := r.side.send(t, from, ips, s.wait)
	r.out[s.name], r.from[s.name] = out, from
	if _, seen := r.far[s.flow]; !s.reply && !seen {
		if dgs := knReassemble(out[1-from]); len(dgs) > 0 && dgs[0].complete {
			if tu, ok := knTupleOf(dgs[0].ip); ok {
				r.far[s.flow] = tu
			}
		}
	}
}

// build makes a step's datagrams as this side's hosts would send them.
func (r *knRun) build(t *testing.T, f knFlow, s knStep, idx int) ([][]byte, int, bool) {
	t.Helper()
	tu, from := f.knTuple, f.opener
	if s.reply {
		seen, ok := r.far[s.flow]
		if !ok {
			return nil, 0, false
		}
		tu, from = seen.reverse(), 1-f.opener
	}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: uint16(0x4000 + idx), Protocol: f.proto,
		SrcIP: tu.src.AsSlice(), DstIP: tu.dst.AsSlice()}
	if s.ttl != 0 {
		ip.TTL = s.ttl
	}
	ls := []gopacket.SerializableLayer{ip}
	switch {
	case s.quote != "":
		q, ok := r.quoteOf(s.quote)
		if !ok {
			return nil, 0, false
		}
		ip.Protocol = layers.IPProtocolICMPv4
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(q))
	case f.proto == layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(tu.sport), DstPort: layers.TCPPort(tu.dport), Seq: s.seq, Ack: s.ack, Window: 65535,
			SYN: strings.Contains(s.flags, "S"), ACK: strings.Contains(s.flags, "A"), PSH: strings.Contains(s.flags, "P"),
			FIN: strings.Contains(s.flags, "F"), RST: strings.Contains(s.flags, "R")}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, tcp, gopacket.Payload(s.data))
	case f.proto == layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(tu.sport), DstPort: layers.UDPPort(tu.dport)}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, udp, gopacket.Payload(s.data))
	case f.proto == layers.IPProtocolICMPv4:
		typ, id := uint8(layers.ICMPv4TypeEchoRequest), tu.sport
		if s.reply {
			typ, id = layers.ICMPv4TypeEchoReply, tu.dport
		}
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: uint16(s.seq)}, gopacket.Payload(s.data))
	default:
		t.Fatalf("%s: no builder for %v", s.name, f.proto)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	b := bytes.Clone(buf.Bytes())
	if s.mangle != nil {
		b = s.mangle(b)
	}
	if s.frags > 1 {
		return knFragment(b, s.frags), from, true
	}
	return [][]byte{b}, from, true
}

// quoteOf is what an ICMP error about a step's packet quotes: the IP header and 8 bytes of
// the datagram as this side's NAT emitted it.
func (r *knRun) quoteOf(step string) ([]byte, bool) {
	from, ok := r.from[step]
	if !ok {
		return nil, false
	}
	dgs := knReassemble(r.out[step][1-from])
	if len(dgs) == 0 {
		return nil, false
	}
	ip := dgs[0].ip
	return bytes.Clone(ip[:min(len(ip), int(ip[0]&0x0f)*4+8)]), true
}

// knFragment cuts an IPv4 datagram (20-byte header) into n fragments.
func knFragment(ip []byte, n int) [][]byte {
	payload := ip[20:]
	size := ((len(payload)+n-1)/n + 7) &^ 7
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		f := append(bytes.Clone(ip[:20]), payload[off:end]...)
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		fo := uint16(off / 8)
		if end < len(payload) {
			fo |= 0x2000
		}
		binary.BigEndian.PutUint16(f[6:], fo)
		knSetIPSum(f)
		out = append(out, f)
	}
	return out
}

// knDatagram is a datagram that came out, put together from its fragments.
type knDatagram struct {
	ip       []byte
	frags    int
	complete bool
}

// knReassemble puts fragments back together (by source, destination, protocol and ID), in
// the order their first fragment came; other datagrams pass as they are.
func knReassemble(frames []knFrame) []knDatagram {
	type part struct {
		off  int
		more bool
		ip   []byte
	}
	var order []string
	parts := map[string][]part{}
	var out []knDatagram
	at := map[string]int{}
	for _, fr := range frames {
		ip := fr.ip
		fo := binary.BigEndian.Uint16(ip[6:])
		if fo&0x3fff == 0 {
			out = append(out, knDatagram{ip: ip, frags: 1, complete: true})
			continue
		}
		k := string(ip[12:20]) + string(ip[9:10]) + string(ip[4:6])
		if _, ok := parts[k]; !ok {
			order = append(order, k)
			at[k] = len(out)
			out = append(out, knDatagram{})
		}
		parts[k] = append(parts[k], part{int(fo&0x1fff) * 8, fo&0x2000 != 0, ip})
	}
	for _, k := range order {
		ps := parts[k]
		sort.Slice(ps, func(i, j int) bool { return ps[i].off < ps[j].off })
		hl := int(ps[0].ip[0]&0x0f) * 4
		whole := bytes.Clone(ps[0].ip[:hl])
		complete := ps[0].off == 0
		for _, p := range ps {
			phl := int(p.ip[0]&0x0f) * 4
			if p.off != len(whole)-hl {
				complete = false
				break
			}
			whole = append(whole, p.ip[phl:]...)
		}
		complete = complete && !ps[len(ps)-1].more
		binary.BigEndian.PutUint16(whole[2:], uint16(len(whole)))
		binary.BigEndian.PutUint16(whole[6:], binary.BigEndian.Uint16(whole[6:])&0x4000)
		knSetIPSum(whole)
		out[at[k]] = knDatagram{ip: whole, frags: len(ps), complete: complete}
	}
	return out
}

// knTupleOf reads a datagram's addresses and ports (ICMP echo request: the identifier).
func knTupleOf(ip []byte) (knTuple, bool) {
	hl := int(ip[0]&0x0f) * 4
	if len(ip) < hl+8 {
		return knTuple{}, false
	}
	tu := knTuple{src: netip.AddrFrom4([4]byte(ip[12:16])), dst: netip.AddrFrom4([4]byte(ip[16:20]))}
	l4 := ip[hl:]
	switch layers.IPProtocol(ip[9]) {
	case layers.IPProtocolTCP, layers.IPProtocolUDP:
		tu.sport, tu.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	case layers.IPProtocolICMPv4:
		if l4[0] != layers.ICMPv4TypeEchoRequest {
			return knTuple{}, false
		}
		tu.sport = binary.BigEndian.Uint16(l4[4:])
	default:
		return knTuple{}, false
	}
	return tu, true
}

// describe writes what came out on one side for a step, one line per datagram, in a form
// both routers must agree on: TTL, IP ID and MACs are left out, and on the outside the
// external port (or echo identifier) of a flow opened inside reads EXT when it is the one
// that side's NAT gave the flow's first packet, so the port picked on a collision may differ.
func (r *knRun) describe(flows map[string]knFlow, s knStep, where int) []string {
	ext, hasExt := uint16(0), false
	if tu, ok := r.far[s.flow]; ok && flows[s.flow].opener == knIn && where == knOut && tu.src == knRO {
		ext, hasExt = tu.sport, true
	}
	port := func(a netip.Addr, p uint16) string {
		if hasExt && a == knRO && p == ext {
			return "EXT"
		}
		return fmt.Sprint(p)
	}
	var lines []string
	for _, d := range knReassemble(r.out[s.name][where]) {
		if !d.complete {
			lines = append(lines, fmt.Sprintf("incomplete fragments of %s", knDescribe(d.ip, port)))
			continue
		}
		lines = append(lines, knDescribe(d.ip, port))
	}
	return lines
}

// knDescribe is one datagram's line; port formats a port or echo identifier at an address.
func knDescribe(ip []byte, port func(netip.Addr, uint16) string) string {
	hl := int(ip[0]&0x0f) * 4
	if len(ip) < 20 || hl < 20 || len(ip) < hl {
		return fmt.Sprintf("malformed IPv4 header, %d bytes", len(ip))
	}
	src, dst := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	ep := func(a netip.Addr, p uint16) string { return a.String() + ":" + port(a, p) }
	l4 := ip[hl:]
	switch proto := layers.IPProtocol(ip[9]); {
	case proto == layers.IPProtocolTCP && len(l4) < 20:
		if len(l4) < 4 {
			return fmt.Sprintf("tcp %s > %s truncated, %d bytes", src, dst, len(l4))
		}
		return fmt.Sprintf("tcp %s > %s truncated header, %d bytes", ep(src, binary.BigEndian.Uint16(l4)), ep(dst, binary.BigEndian.Uint16(l4[2:])), len(l4))
	case proto == layers.IPProtocolTCP:
		doff := int(l4[12]>>4) * 4
		flags := ""
		for i, c := range "FSRPAU" {
			if l4[13]&(1<<i) != 0 {
				flags += string(c)
			}
		}
		return fmt.Sprintf("tcp %s > %s [%s] seq=%d ack=%d data=%s", ep(src, binary.BigEndian.Uint16(l4)), ep(dst, binary.BigEndian.Uint16(l4[2:])),
			flags, binary.BigEndian.Uint32(l4[4:]), binary.BigEndian.Uint32(l4[8:]), knData(l4[min(doff, len(l4)):]))
	case proto == layers.IPProtocolUDP && len(l4) >= 8:
		return fmt.Sprintf("udp %s > %s data=%s", ep(src, binary.BigEndian.Uint16(l4)), ep(dst, binary.BigEndian.Uint16(l4[2:])), knData(l4[8:]))
	case proto == layers.IPProtocolICMPv4 && len(l4) >= 8:
		switch typ, code := l4[0], l4[1]; typ {
		case layers.ICMPv4TypeEchoRequest, layers.ICMPv4TypeEchoReply:
			name := map[uint8]string{layers.ICMPv4TypeEchoRequest: "request", layers.ICMPv4TypeEchoReply: "reply"}[typ]
			at := src
			if dst == knRO {
				at = dst
			}
			return fmt.Sprintf("icmp echo %s %s > %s id=%s seq=%d data=%s", name, src, dst, port(at, binary.BigEndian.Uint16(l4[4:])),
				binary.BigEndian.Uint16(l4[6:]), knData(l4[8:]))
		case layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4TypeTimeExceeded:
			return fmt.Sprintf("icmp %d/%d %s > %s quoting {%s}", typ, code, src, dst, knDescribeQuote(l4[8:], port))
		default:
			return fmt.Sprintf("icmp %d/%d %s > %s", typ, code, src, dst)
		}
	default:
		return fmt.Sprintf("proto %d %s > %s, %d bytes", proto, src, dst, len(l4))
	}
}

// knDescribeQuote describes the datagram an ICMP error quotes: addresses, protocol, ports,
// and whether the quoted IP header's checksum is right (NAT must fix it as it rewrites).
func knDescribeQuote(q []byte, port func(netip.Addr, uint16) string) string {
	if len(q) < 20 || int(q[0]&0x0f)*4 < 20 || len(q) < int(q[0]&0x0f)*4 {
		return fmt.Sprintf("%d bytes, no IPv4 header", len(q))
	}
	hl := int(q[0]&0x0f) * 4
	src, dst := netip.AddrFrom4([4]byte(q[12:16])), netip.AddrFrom4([4]byte(q[16:20]))
	sum := "ok"
	if knSum(q[:hl], 0) != 0xffff {
		sum = "bad"
	}
	l4 := q[hl:]
	proto := layers.IPProtocol(q[9])
	switch {
	case (proto == layers.IPProtocolTCP || proto == layers.IPProtocolUDP) && len(l4) >= 4:
		return fmt.Sprintf("%s %s:%s > %s:%s ipsum=%s", proto, src, port(src, binary.BigEndian.Uint16(l4)), dst, port(dst, binary.BigEndian.Uint16(l4[2:])), sum)
	case proto == layers.IPProtocolICMPv4 && len(l4) >= 8:
		return fmt.Sprintf("icmp %d/%d %s > %s id=%s ipsum=%s", l4[0], l4[1], src, dst, port(src, binary.BigEndian.Uint16(l4[4:])), sum)
	}
	return fmt.Sprintf("proto %d %s > %s ipsum=%s", proto, src, dst, sum)
}

// knData shows a payload: short ones as text, long ones by length and hash.
func knData(b []byte) string {
	if len(b) <= 48 {
		return fmt.Sprintf("%q", b)
	}
	h := fnv.New64a()
	h.Write(b)
	return fmt.Sprintf("%d-bytes-fnv%016x", len(b), h.Sum64())
}

// knEth wraps a datagram in an Ethernet frame.
func knEth(dst, src net.HardwareAddr, ip []byte) []byte {
	f := make([]byte, 14, 14+len(ip))
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	return append(f, ip...)
}

// knUnwrap returns the IPv4 datagram of a frame, cut to its total length (a wire may pad), or
// false for anything else.
func knUnwrap(f []byte) (knFrame, bool) {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[14]>>4 != 4 {
		return knFrame{}, false
	}
	ip := f[14:]
	if n := int(binary.BigEndian.Uint16(ip[2:])); n >= 20 && n <= len(ip) {
		ip = ip[:n]
	}
	return knFrame{dst: net.HardwareAddr(bytes.Clone(f[:6])), ip: bytes.Clone(ip)}, true
}

// knKernel is the Linux router in the namespaces, reached through packet sockets on the
// wire ends of its two veth pairs.
type knKernel struct {
	ports     [2]*knPort
	hostMAC   [2]net.HardwareAddr // the wire ends: the hosts' MAC on each side
	routerMAC [2]net.HardwareAddr
}

func (k *knKernel) send(t *testing.T, from int, ips [][]byte, w knWait) [2][]knFrame {
	t.Helper()
	for side, p := range k.ports {
		if late := p.take(); len(late) > 0 {
			t.Logf("kernel: %d frame(s) came late on side %d, after their step's wait", len(late), side)
		}
	}
	for _, ip := range ips {
		k.ports[from].write(t, knEth(k.routerMAC[from], k.hostMAC[from], ip))
	}
	first := time.Second
	if w == knNone {
		first = 300 * time.Millisecond
	}
	knGather(k.ports[:], first, 100*time.Millisecond, time.Second)
	var out [2][]knFrame
	for side, p := range k.ports {
		for _, f := range p.take() {
			fr, ok := knUnwrap(f)
			if !ok || fr.ip[16] >= 224 {
				t.Logf("kernel: ignored a frame on side %d that is not unicast IPv4: % x", side, f[:min(len(f), 34)])
				continue
			}
			out[side] = append(out[side], fr)
		}
	}
	return out
}

// knStdpkt is an instance in router mode with recording outputs.
type knStdpkt struct {
	in         *Instance
	east, west knRecorder
	bk         books.Books
	hostMAC    [2]net.HardwareAddr
	ts         int64
}

var knIfc = [2]*framing.Interface{{Name: "inside", LinkType: framing.LinkEthernet}, {Name: "outside", LinkType: framing.LinkEthernet}}

func (s *knStdpkt) send(t *testing.T, from int, ips [][]byte, _ knWait) [2][]knFrame {
	t.Helper()
	dir, nic := books.East, westID
	if from == knOut {
		dir, nic = books.West, eastID
	}
	for _, ip := range ips {
		s.ts += 1000
		f := knEth(net.HardwareAddr(macFor(nic)), s.hostMAC[from], ip)
		s.in.Input(dir, []framing.Packet{{Data: f, Length: len(f), Timestamp: s.ts, Interface: knIfc[from]}})
	}
	var out [2][]knFrame
	for side, rec := range []*knRecorder{&s.west, &s.east} {
		for _, f := range rec.take() {
			fr, ok := knUnwrap(f)
			if !ok {
				t.Errorf("stdpkt emitted a frame that is not IPv4 on side %d: % x", side, f[:min(len(f), 34)])
				continue
			}
			out[side] = append(out[side], fr)
		}
	}
	return out
}

// knFlows and knSteps are the conversation.
func knFlows() map[string]knFlow {
	tcp, udp, icmp := layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolICMPv4
	return map[string]knFlow{
		"t1": {tcp, knIn, knTuple{knA, knS, 40001, 80}},
		"u1": {udp, knIn, knTuple{knA, knS, 40002, 53}},
		"e1": {icmp, knIn, knTuple{knA, knS, 0x4242, 0}},
		"c1": {tcp, knIn, knTuple{knA, knS, 40000, 443}},
		"c2": {tcp, knIn, knTuple{knB, knS, 40000, 443}}, // the same source port, to the same place
		"d1": {tcp, knOut, knTuple{knC, knRO, 50000, 8080}},
		"f1": {udp, knIn, knTuple{knA, knS, 40003, 9999}},
		"x1": {udp, knIn, knTuple{knA, knS, 40004, 33434}},
		"x2": {tcp, knOut, knTuple{knC, knRO, 50001, 8080}},
		"u2": {udp, knIn, knTuple{knA, knS, 40005, 5000}},
		"m1": {udp, knIn, knTuple{knA, knS, 40006, 53}},
		"m2": {tcp, knIn, knTuple{knA, knS, 40007, 80}},
	}
}

func knSteps() []knStep {
	const req, resp = "GET / HTTP/1.0\r\n\r\n", "HTTP/1.0 200 OK\r\n\r\nhello\n"
	const freq, fresp = "GET /fwd HTTP/1.0\r\n\r\n", "fwd-ok\n"
	badSum := func(ip []byte) []byte { ip[10] ^= 0x5a; return ip }
	truncTCP := func(ip []byte) []byte { // 10 bytes of a 20-byte TCP header
		ip = ip[:30]
		binary.BigEndian.PutUint16(ip[2:], 30)
		knSetIPSum(ip)
		return ip
	}
	long := strings.Repeat("fragmented-datagram-", 60) // 1200 bytes
	r1, r2 := uint32(len(req)), uint32(len(resp))
	f1, f2 := uint32(len(freq)), uint32(len(fresp))
	return []knStep{
		// A TCP connection out: handshake, data both ways, FIN both ways.
		{name: "t1-syn", flow: "t1", flags: "S", seq: 1000},
		{name: "t1-synack", flow: "t1", reply: true, flags: "SA", seq: 5000, ack: 1001},
		{name: "t1-ack", flow: "t1", flags: "A", seq: 1001, ack: 5001},
		{name: "t1-req", flow: "t1", flags: "PA", seq: 1001, ack: 5001, data: req},
		{name: "t1-resp", flow: "t1", reply: true, flags: "PA", seq: 5001, ack: 1001 + r1, data: resp},
		{name: "t1-ack2", flow: "t1", flags: "A", seq: 1001 + r1, ack: 5001 + r2},
		{name: "t1-fin", flow: "t1", flags: "FA", seq: 1001 + r1, ack: 5001 + r2},
		{name: "t1-finack", flow: "t1", reply: true, flags: "FA", seq: 5001 + r2, ack: 1002 + r1},
		{name: "t1-last", flow: "t1", flags: "A", seq: 1002 + r1, ack: 5002 + r2},
		// UDP request and response; ICMP echo.
		{name: "u1-req", flow: "u1", data: "query"},
		{name: "u1-resp", flow: "u1", reply: true, data: "answer"},
		{name: "e1-req", flow: "e1", seq: 1, data: "ping-payload"},
		{name: "e1-resp", flow: "e1", reply: true, seq: 1, data: "ping-payload"},
		// Two inside hosts, the same source port, the same destination.
		{name: "c1-syn", flow: "c1", flags: "S", seq: 2000},
		{name: "c2-syn", flow: "c2", flags: "S", seq: 3000},
		{name: "c1-synack", flow: "c1", reply: true, flags: "SA", seq: 6000, ack: 2001},
		{name: "c2-synack", flow: "c2", reply: true, flags: "SA", seq: 6500, ack: 3001},
		{name: "c1-ack", flow: "c1", flags: "A", seq: 2001, ack: 6001},
		{name: "c2-ack", flow: "c2", flags: "A", seq: 3001, ack: 6501},
		// The port forward: 203.0.113.20 to 203.0.113.1:8080, DNAT to 192.0.2.10:80.
		{name: "d1-syn", flow: "d1", flags: "S", seq: 7000},
		{name: "d1-synack", flow: "d1", reply: true, flags: "SA", seq: 8000, ack: 7001},
		{name: "d1-ack", flow: "d1", flags: "A", seq: 7001, ack: 8001},
		{name: "d1-req", flow: "d1", flags: "PA", seq: 7001, ack: 8001, data: freq},
		{name: "d1-resp", flow: "d1", reply: true, flags: "PA", seq: 8001, ack: 7001 + f1, data: fresp},
		{name: "d1-fin", flow: "d1", flags: "FA", seq: 7001 + f1, ack: 8001 + f2},
		{name: "d1-finack", flow: "d1", reply: true, flags: "FA", seq: 8001 + f2, ack: 7002 + f1},
		{name: "d1-last", flow: "d1", flags: "A", seq: 7002 + f1, ack: 8002 + f2},
		// A fragmented UDP datagram out, and its answer.
		{name: "f1-frags", flow: "f1", data: long, frags: 3},
		{name: "f1-resp", flow: "f1", reply: true, data: "got-it"},
		// TTL 1 out (time exceeded from the router), and in through the port forward.
		{name: "x1-ttl1", flow: "x1", ttl: 1, data: "traceroute"},
		{name: "x2-ttl1", flow: "x2", ttl: 1, flags: "S", seq: 9000, wait: knUnsure},
		// An ICMP error from outside about a translated flow.
		{name: "u2-req", flow: "u2", data: "probe"},
		{name: "u2-unreach", flow: "u2", reply: true, quote: "u2-req"},
		// Malformed: a bad IPv4 header checksum; a truncated TCP header.
		{name: "m1-badsum", flow: "m1", data: "bad-ip-sum", mangle: badSum, wait: knNone},
		{name: "m2-trunc", flow: "m2", flags: "S", seq: 1, mangle: truncTCP, wait: knUnsure, invalid: true},
	}
}

// TestKernelNATComparison plays the conversation through the kernel and an instance and
// compares them step by step.
func TestKernelNATComparison(t *testing.T) {
	knNeedRoot(t, "ip", "iptables", "iptables-save")
	l := newKnLab(t, "n")
	nsW, nsR, nsE := l.netns("w"), l.netns("r"), l.netns("e")
	rw, re, wi, ei := l.name("rw"), l.name("re"), l.name("wi"), l.name("ei")
	l.veth(nsR, rw, nsW, wi)
	l.veth(nsR, re, nsE, ei)
	l.run("ip", "-n", nsR, "addr", "add", "192.0.2.1/24", "dev", rw)
	l.run("ip", "-n", nsR, "addr", "add", "203.0.113.1/24", "dev", re)
	l.run("ip", "netns", "exec", nsR, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	hostMAC := [2]net.HardwareAddr{l.mac(nsW, wi), l.mac(nsE, ei)}
	routerMAC := [2]net.HardwareAddr{l.mac(nsR, rw), l.mac(nsR, re)}
	neighbors := map[netip.Addr]net.HardwareAddr{}
	for _, n := range []struct {
		addr netip.Addr
		side int
	}{{knA, knIn}, {knB, knIn}, {knS, knOut}, {knC, knOut}} {
		dev := map[int]string{knIn: rw, knOut: re}[n.side]
		l.run("ip", "-n", nsR, "neigh", "replace", n.addr.String(), "lladdr", hostMAC[n.side].String(), "dev", dev, "nud", "permanent")
		neighbors[n.addr] = hostMAC[n.side]
	}
	ipt := func(args ...string) { l.run(append([]string{"ip", "netns", "exec", nsR, "iptables"}, args...)...) }
	ipt("-t", "nat", "-A", "POSTROUTING", "-o", re, "-j", "MASQUERADE")
	ipt("-t", "nat", "-A", "PREROUTING", "-i", re, "-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "192.0.2.10:80")
	save := l.run("ip", "netns", "exec", nsR, "iptables-save", "-t", "nat")
	t.Logf("%s\nthe router's nat table:\n%s", strings.TrimSpace(l.run("iptables", "-V")), save)
	rs, err := rules.Parse("iptables-save of the router", strings.NewReader(save),
		rules.Options{Table: "nat", Aliases: map[string]string{rw: rules.West, re: rules.East}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Warnings) > 0 {
		t.Fatalf("the router's nat table gives warnings: %v", rs.Warnings)
	}

	kern := &knKernel{hostMAC: hostMAC, routerMAC: routerMAC,
		ports: [2]*knPort{openKnPort(t, nsW, wi), openKnPort(t, nsE, ei)}}
	std := &knStdpkt{hostMAC: hostMAC}
	in, err := New(Config{West: netip.MustParsePrefix("192.0.2.1/24"), East: netip.MustParsePrefix("203.0.113.1/24"),
		NAT: rs, Neighbors: neighbors}, &std.east, &std.west, &std.bk)
	if err != nil {
		t.Fatal(err)
	}
	std.in = in
	closed := false
	t.Cleanup(func() {
		if !closed {
			in.Close()
		}
	})

	flows, steps := knFlows(), knSteps()
	kr, sr := newKnRun("kernel", kern), newKnRun("stdpkt", std)
	for i, s := range steps {
		kr.play(t, flows, s, i)
		got := len(kr.out[s.name][knIn]) + len(kr.out[s.name][knOut])
		if s.wait == knSome && got == 0 {
			t.Fatalf("the kernel router let nothing out for %s: the namespace router does not work, nothing to compare with", s.name)
		}
		sr.play(t, flows, s, i)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	snap := std.bk.Snapshot()
	if err := snap.Check(); err != nil {
		t.Errorf("stdpkt's books do not balance: %v", err)
	}
	// Every neighbour is static, so nothing can be waiting for one when the instance
	// closes: a frame counted unsent was dropped without its reason.
	for d, side := range map[string]books.SideSnapshot{"east": snap.East, "west": snap.West} {
		if c := side.Dropped[books.Unsent.String()]; c.Packets != 0 {
			t.Errorf("stdpkt's books: %d %sbound frames counted %s, though no neighbour needs resolving: dropped without their reason", c.Packets, d, books.Unsent)
		}
	}

	// Step by step: the same datagrams out on the same sides.
	for _, s := range steps {
		t.Logf("%-10s kernel: inside %s; outside %s", s.name, knLines(kr.describe(flows, s, knIn)), knLines(kr.describe(flows, s, knOut)))
		for where, sideName := range []string{"inside", "outside"} {
			kd, sd := kr.describe(flows, s, where), sr.describe(flows, s, where)
			if s.invalid {
				continue // compared below
			}
			if !slices.Equal(kd, sd) {
				t.Errorf("%s, out on the %s:\n  kernel: %s\n  stdpkt: %s", s.name, sideName, knLines(kd), knLines(sd))
			}
		}
		if s.frags > 1 {
			kf, sf := knFragCounts(kr.out[s.name][knOut]), knFragCounts(sr.out[s.name][knOut])
			t.Logf("%s: %d fragments in; out on the outside the kernel sent %v, stdpkt %v (fragment counts may differ)", s.name, s.frags, kf, sf)
		}
	}
	// Conntrack cannot track a truncated TCP header. The kernel forwards such a packet
	// untranslated (its NAT skips untracked packets); stdpkt must not leak the inside
	// address, so it may drop the packet, but where the kernel drops, stdpkt drops too.
	for _, s := range steps {
		if !s.invalid {
			continue
		}
		kd, sd := kr.describe(flows, s, knOut), sr.describe(flows, s, knOut)
		t.Logf("%s (untrackable): kernel out on the outside: %s; stdpkt: %s", s.name, knLines(kd), knLines(sd))
		if len(kd) == 0 && len(sd) != 0 {
			t.Errorf("%s: the kernel drops it, stdpkt forwards %s", s.name, knLines(sd))
		}
		if ki, si := kr.describe(flows, s, knIn), sr.describe(flows, s, knIn); !slices.Equal(ki, si) {
			t.Errorf("%s, out on the inside:\n  kernel: %s\n  stdpkt: %s", s.name, knLines(ki), knLines(si))
		}
	}

	// Ports: one per flow (checked above through EXT), kept where the kernel kept it, and
	// two flows that collide get two external ports.
	invalid := map[string]bool{}
	for _, s := range steps {
		invalid[s.flow] = invalid[s.flow] || s.invalid
	}
	for _, name := range slices.Sorted(maps.Keys(flows)) {
		f := flows[name]
		if invalid[name] {
			continue
		}
		kt, kok := kr.far[name]
		st, sok := sr.far[name]
		if kok != sok {
			t.Errorf("flow %s: the kernel's NAT let its first packet out: %v, stdpkt's: %v", name, kok, sok)
			continue
		}
		if !kok || f.opener != knIn {
			continue
		}
		if st.src != knRO {
			t.Errorf("flow %s: stdpkt translated the source to %s, want %s", name, st.src, knRO)
		}
		if kt.sport == f.sport && st.sport != f.sport {
			t.Errorf("flow %s: the kernel kept port %d, stdpkt moved it to %d", name, f.sport, st.sport)
		}
	}
	if k1, k2 := kr.far["c1"], kr.far["c2"]; k1.sport == k2.sport {
		t.Errorf("the kernel gave colliding flows one port %d: the collision was not set up", k1.sport)
	}
	if s1, s2 := sr.far["c1"], sr.far["c2"]; s1.sport == s2.sport {
		t.Errorf("stdpkt gave the colliding flows c1 and c2 one external tuple %s:%d", s1.src, s1.sport)
	} else {
		t.Logf("collision: kernel ports %d and %d, stdpkt %d and %d", kr.far["c1"].sport, kr.far["c2"].sport, s1.sport, s2.sport)
	}
	// DNAT both ways, stated directly.
	if got, want := sr.far["d1"], (knTuple{knC, knA, 50000, 80}); got != want {
		t.Errorf("port forward: stdpkt sent the SYN inside as %+v, want %+v", got, want)
	}
	if d := sr.describe(flows, knStep{name: "d1-synack", flow: "d1"}, knOut); len(d) != 1 || !strings.HasPrefix(d[0], "tcp 203.0.113.1:8080 > 203.0.113.20:50000 [SA]") {
		t.Errorf("port forward: stdpkt's SYN-ACK out: %s, want it from 203.0.113.1:8080", knLines(d))
	}
	// TTL 1 out: dropped, time exceeded back inside quoting the untranslated packet.
	if d := sr.describe(flows, knStep{name: "x1-ttl1", flow: "x1"}, knIn); len(d) != 1 ||
		d[0] != "icmp 11/0 192.0.2.1 > 192.0.2.10 quoting {UDP 192.0.2.10:40004 > 203.0.113.10:33434 ipsum=ok}" ||
		len(sr.out["x1-ttl1"][knOut]) != 0 {
		t.Errorf("TTL 1: stdpkt inside %s, outside %d frames; want one time exceeded and nothing forwarded", knLines(d), len(sr.out["x1-ttl1"][knOut]))
	}

	// Everything stdpkt emitted: checksums right, the neighbour's MAC, and on the outside no
	// inside address anywhere (also in what ICMP errors quote) and always the router's source.
	for _, s := range steps {
		for where := range 2 {
			frames := sr.out[s.name][where]
			for _, fr := range frames {
				if !bytes.Equal(fr.dst, hostMAC[where]) {
					t.Errorf("%s: stdpkt sent a frame to MAC %s, want the neighbour's %s", s.name, fr.dst, hostMAC[where])
				}
				if knSum(fr.ip[:int(fr.ip[0]&0x0f)*4], 0) != 0xffff {
					t.Errorf("%s: stdpkt emitted a bad IPv4 header checksum: % x", s.name, fr.ip[:20])
				}
			}
			for _, d := range knReassemble(frames) {
				if err := knL4Sum(d.ip); err != nil && !s.invalid {
					t.Errorf("%s: stdpkt emitted %s: %v", s.name, knDescribe(d.ip, func(_ netip.Addr, p uint16) string { return fmt.Sprint(p) }), err)
				}
				if where != knOut {
					continue
				}
				for _, a := range knAddrs(d.ip) {
					if knInsideNet.Contains(a) {
						t.Errorf("%s: stdpkt leaked inside address %s to the outside: % x", s.name, a, d.ip[:min(len(d.ip), 56)])
					}
				}
				if src := netip.AddrFrom4([4]byte(d.ip[12:16])); src != knRO {
					t.Errorf("%s: stdpkt sent %s out from %s, want %s", s.name, knDescribe(d.ip, func(_ netip.Addr, p uint16) string { return fmt.Sprint(p) }), src, knRO)
				}
			}
		}
	}
	t.Logf("stdpkt's books: east %+v west %+v", snap.East, snap.West)
}

func knLines(l []string) string {
	if len(l) == 0 {
		return "(nothing)"
	}
	return strings.Join(l, " | ")
}

func knFragCounts(frames []knFrame) []int {
	var n []int
	for _, d := range knReassemble(frames) {
		n = append(n, d.frags)
	}
	return n
}

// knAddrs are a datagram's addresses and those of the datagram an ICMP error quotes.
func knAddrs(ip []byte) []netip.Addr {
	as := []netip.Addr{netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))}
	hl := int(ip[0]&0x0f) * 4
	if layers.IPProtocol(ip[9]) == layers.IPProtocolICMPv4 && len(ip) >= hl+8+20 {
		if t := ip[hl]; t == layers.ICMPv4TypeDestinationUnreachable || t == layers.ICMPv4TypeTimeExceeded {
			q := ip[hl+8:]
			as = append(as, netip.AddrFrom4([4]byte(q[12:16])), netip.AddrFrom4([4]byte(q[16:20])))
		}
	}
	return as
}

// knL4Sum checks a whole datagram's TCP, UDP or ICMP checksum.
func knL4Sum(ip []byte) error {
	hl := int(ip[0]&0x0f) * 4
	l4 := ip[hl:]
	var pseudo uint32
	switch layers.IPProtocol(ip[9]) {
	case layers.IPProtocolTCP, layers.IPProtocolUDP:
		if ip[9] == uint8(layers.IPProtocolUDP) && len(l4) >= 8 && binary.BigEndian.Uint16(l4[6:]) == 0 {
			return nil // no checksum
		}
		pseudo = uint32(knSum(ip[12:20], 0)) + uint32(ip[9]) + uint32(len(l4))
	case layers.IPProtocolICMPv4:
	default:
		return nil
	}
	if s := knSum(l4, pseudo); s != 0xffff {
		return fmt.Errorf("bad %s checksum (sum %#04x)", layers.IPProtocol(ip[9]), s)
	}
	return nil
}
