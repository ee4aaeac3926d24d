package osinst

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/rules"
)

// The malformed-packet corpus: hostile and broken frames, each run through a transparent
// filter (fw), a transparent SNAT of the inside 192.0.2.0/24 (nat) and a router that
// masquerades out east (router), with the fast path on and off. Every case says, per mode,
// what must come of it: forwarded (and as which bytes), or dropped and booked under which
// reason, as the Linux kernel would; TestMalformedKernelVerdicts plays the cases through a
// kernel router in network namespaces and requires the same verdict, except where a case
// names a difference and why it is accepted.

// mfMode is a configuration the corpus runs through.
type mfMode int

const (
	mfFW     mfMode = iota // transparent filter: policy drop, INVALID dropped, all from west allowed
	mfNAT                  // transparent SNAT of 192.0.2.0/24 to 198.51.100.1 out east, no filter
	mfRouter               // router 192.0.2.1/24 west, 198.51.100.1/24 east, MASQUERADE out east
	mfModes
)

func (m mfMode) String() string {
	switch m {
	case mfFW:
		return "fw"
	case mfNAT:
		return "nat"
	}
	return "router"
}

// Sides, as the kernel helpers number them: west (inside) and east (outside).
const (
	mfWest = 0
	mfEast = 1
)

// mfEnv holds the corpus's addresses and the MACs frames are sent between: on each side the
// host's and the router's (the instance's NIC, or the kernel router's interface).
type mfEnv struct {
	a, b, r, rw [4]byte  // inside host, outside host, NAT address (router east), router west
	a6, b6      [16]byte // IPv6 hosts west and east
	host        [2]net.HardwareAddr
	router      [2]net.HardwareAddr
	// id and sp are the first IP ID and source port a case uses (the flow's), unique per
	// case where cases share a router.
	id, sp uint16
}

func newMfEnv(host, router [2]net.HardwareAddr) *mfEnv {
	return &mfEnv{
		a: [4]byte{192, 0, 2, 10}, b: [4]byte{198, 51, 100, 20}, r: [4]byte{198, 51, 100, 1}, rw: [4]byte{192, 0, 2, 1},
		a6:   netip.MustParseAddr("2001:db8:1::10").As16(),
		b6:   netip.MustParseAddr("2001:db8:2::20").As16(),
		host: host, router: router, id: 0x4100, sp: 40000,
	}
}

// mfStdpktEnv is the environment of an instance: the test hosts' MACs and the NICs'.
func mfStdpktEnv() *mfEnv {
	return newMfEnv([2]net.HardwareAddr{macA, macB}, [2]net.HardwareAddr{net.HardwareAddr(macFor(westID)), net.HardwareAddr(macFor(eastID))})
}

// mfPkt is a frame of a case and the side it is sent from.
type mfPkt struct {
	from  int
	frame []byte
}

func (p mfPkt) dir() books.Dir {
	if p.from == mfEast {
		return books.West
	}
	return books.East
}

// eth wraps an L3 payload in an Ethernet frame from the host on side to the router, with
// VLAN tags (TPID, TCI pairs) before the EtherType if given.
func (e *mfEnv) eth(side int, etype uint16, l3 []byte, tags ...uint16) []byte {
	f := make([]byte, 12, 14+4*len(tags)/2+len(l3))
	copy(f, e.router[side])
	copy(f[6:], e.host[side])
	for _, t := range tags {
		f = binary.BigEndian.AppendUint16(f, t)
	}
	f = binary.BigEndian.AppendUint16(f, etype)
	return append(f, l3...)
}

func (e *mfEnv) v4(side int, ip []byte) mfPkt {
	return mfPkt{side, e.eth(side, etherIPv4, ip)}
}

func (e *mfEnv) v6(side int, ip []byte) mfPkt {
	return mfPkt{side, e.eth(side, etherIPv6, ip)}
}

// mfIP4 is an IPv4 datagram built field by field.
type mfIP4 struct {
	src, dst [4]byte
	proto    uint8
	ttl      uint8
	id       uint16
	frag     uint16 // flags and fragment offset
	opts     []byte // options, a multiple of 4 bytes
	payload  []byte
}

func (p mfIP4) bytes() []byte {
	hl := 20 + len(p.opts)
	b := make([]byte, hl, hl+len(p.payload))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(p.payload)))
	binary.BigEndian.PutUint16(b[4:], p.id)
	binary.BigEndian.PutUint16(b[6:], p.frag)
	b[8], b[9] = p.ttl, p.proto
	copy(b[12:], p.src[:])
	copy(b[16:], p.dst[:])
	copy(b[20:], p.opts)
	b = append(b, p.payload...)
	mfSetIPSum(b)
	return b
}

// mfSetIPSum writes an IPv4 header checksum over the header as IHL says, or as much of it
// as there is.
func mfSetIPSum(ip []byte) {
	hl := min(int(ip[0]&0x0f)*4, len(ip))
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], ^knSum(ip[:hl], 0))
}

// TCP flags.
const (
	mfFIN = 0x01
	mfSYN = 0x02
	mfRST = 0x04
	mfPSH = 0x08
	mfACK = 0x10
	mfURG = 0x20
)

// mfL4Sum returns the checksum of a TCP or UDP segment (or ICMPv6 message) over a pseudo
// header of the addresses src and dst (4 or 16 bytes each).
func mfL4Sum(src, dst []byte, proto uint8, seg []byte) uint16 {
	pseudo := uint32(knSum(src, 0)) + uint32(knSum(dst, 0)) + uint32(proto) + uint32(len(seg))
	return ^knSum(seg, pseudo)
}

// mfTCP is a TCP segment from src to dst (addresses of 4 or 16 bytes), checksum right.
func mfTCP(src, dst []byte, sport, dport uint16, flags uint8, seq, ack uint32, payload string) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12], b[13] = 5<<4, flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[16:], mfL4Sum(src, dst, 6, b))
	return b
}

// mfUDP is a UDP datagram from src to dst, checksum right.
func mfUDP(src, dst []byte, sport, dport uint16, payload string) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	b = append(b, payload...)
	c := mfL4Sum(src, dst, 17, b)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[6:], c)
	return b
}

// mfICMP is an ICMPv4 message: type, code, the 4 bytes after the checksum, then payload.
func mfICMP(typ, code uint8, rest uint32, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint32(b[4:], rest)
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[2:], ^knSum(b, 0))
	return b
}

// Datagrams from the inside host to the outside one, well formed.
func (e *mfEnv) udp4(id, sport, dport uint16, payload string) []byte {
	return mfIP4{src: e.a, dst: e.b, proto: 17, ttl: 64, id: id, payload: mfUDP(e.a[:], e.b[:], sport, dport, payload)}.bytes()
}

func (e *mfEnv) tcp4(id, sport, dport uint16, flags uint8, payload string) []byte {
	return mfIP4{src: e.a, dst: e.b, proto: 6, ttl: 64, id: id, payload: mfTCP(e.a[:], e.b[:], sport, dport, flags, 1000, 0, payload)}.bytes()
}

func (e *mfEnv) echo4(id, ident uint16) []byte {
	return mfIP4{src: e.a, dst: e.b, proto: 1, ttl: 64, id: id, payload: mfICMP(8, 0, uint32(ident)<<16|1, []byte("ping-payload"))}.bytes()
}

// mfL4Fix recomputes the transport checksum of a whole IPv4 datagram (TCP, UDP or ICMP).
func mfL4Fix(ip []byte) []byte {
	hl := int(ip[0]&0x0f) * 4
	seg := ip[hl:]
	switch ip[9] {
	case 6:
		binary.BigEndian.PutUint16(seg[16:], 0)
		binary.BigEndian.PutUint16(seg[16:], mfL4Sum(ip[12:16], ip[16:20], 6, seg))
	case 17:
		if binary.BigEndian.Uint16(seg[6:]) == 0 {
			break // no checksum stays no checksum
		}
		binary.BigEndian.PutUint16(seg[6:], 0)
		c := mfL4Sum(ip[12:16], ip[16:20], 17, seg)
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(seg[6:], c)
	case 1:
		binary.BigEndian.PutUint16(seg[2:], 0)
		binary.BigEndian.PutUint16(seg[2:], ^knSum(seg, 0))
	}
	return ip
}

// mfCut returns the first n bytes of a datagram, total length and header checksum fixed.
func mfCut(ip []byte, n int) []byte {
	ip = bytes.Clone(ip[:n])
	binary.BigEndian.PutUint16(ip[2:], uint16(n))
	mfSetIPSum(ip)
	return ip
}

// mfFrag returns a fragment of a whole IPv4 datagram (20-byte header): payload bytes
// [off, end), with more fragments set as more says.
func mfFrag(whole []byte, off, end int, more bool) []byte {
	f := append(bytes.Clone(whole[:20]), whole[20+off:20+end]...)
	binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
	fo := uint16(off / 8)
	if more {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(f[6:], fo)
	mfSetIPSum(f)
	return f
}

// mfWith returns a copy of b with the bytes at off replaced by v.
func mfWith(b []byte, off int, v ...byte) []byte {
	b = bytes.Clone(b)
	copy(b[off:], v)
	return b
}

// IPv6.

// mfIP6 is an IPv6 packet: next header, then the bytes after the fixed header.
func mfIP6(src, dst [16]byte, next uint8, rest []byte) []byte {
	b := make([]byte, 40, 40+len(rest))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(rest)))
	b[6], b[7] = next, 64
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	return append(b, rest...)
}

// mfExt is an IPv6 extension header of 8 bytes: next header, length 0, then PadN (or, for a
// routing header, type 0 with no segments left).
func mfExt(next uint8, routing bool) []byte {
	if routing {
		return []byte{next, 0, 0, 0, 0, 0, 0, 0}
	}
	return []byte{next, 0, 1, 4, 0, 0, 0, 0}
}

// mfFragHdr is an IPv6 fragment header.
func mfFragHdr(next uint8, off int, more bool, id uint32) []byte {
	fo := uint16(off)
	if more {
		fo |= 1
	}
	b := []byte{next, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], fo)
	binary.BigEndian.PutUint32(b[4:], id)
	return b
}

func (e *mfEnv) udp6(sport, dport uint16, payload string) []byte {
	return mfUDP(e.a6[:], e.b6[:], sport, dport, payload)
}

func (e *mfEnv) tcp6(sport, dport uint16, flags uint8, payload string) []byte {
	return mfTCP(e.a6[:], e.b6[:], sport, dport, flags, 1000, 0, payload)
}

func cat(bs ...[]byte) []byte { return slices.Concat(bs...) }

// Expectations.

// mfWant is what must come of a case in one mode.
type mfWant struct {
	out   int                  // frames out on the far side
	back  int                  // frames generated back towards the sender (ICMP errors)
	drops map[books.Reason]int // frames booked dropped, by reason, on the case's direction
	// check inspects what came out, beyond the default: for fw, the frames out are the
	// frames sent, byte for byte; for nat and router, the datagram sent (reassembled),
	// translated as mfTranslate says.
	check func(t *testing.T, e *mfEnv, sent []mfPkt, out, back [][]byte)
	// raw: skip the default check (check says it all).
	raw bool
}

func pass(n int) mfWant { return mfWant{out: n} }

func dropped(r books.Reason, n int) mfWant { return mfWant{drops: map[books.Reason]int{r: n}} }

// and books n more frames dropped for r.
func (w mfWant) and(r books.Reason, n int) mfWant {
	d := map[books.Reason]int{r: n}
	for k, v := range w.drops {
		d[k] += v
	}
	w.drops = d
	return w
}

// answered: n frames go back to the sender.
func (w mfWant) answered(n int) mfWant { w.back = n; return w }

func (w mfWant) checked(f func(t *testing.T, e *mfEnv, sent []mfPkt, out, back [][]byte)) mfWant {
	w.check = f
	return w
}

func (w mfWant) only() mfWant { w.raw = true; return w }

func (w mfWant) String() string {
	var s []string
	if w.out > 0 {
		s = append(s, fmt.Sprintf("forwarded %d", w.out))
	}
	if w.back > 0 {
		s = append(s, fmt.Sprintf("answered %d", w.back))
	}
	for _, r := range slices.Sorted(func(yield func(books.Reason) bool) {
		for r := range w.drops {
			if !yield(r) {
				return
			}
		}
	}) {
		if w.drops[r] != 0 {
			s = append(s, fmt.Sprintf("dropped %d %s", w.drops[r], r))
		}
	}
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}

// all is the same outcome in every mode.
func all(w mfWant) [mfModes]mfWant { return [mfModes]mfWant{w, w, w} }

// mfCase is one entry of the corpus.
type mfCase struct {
	name string
	// flow: before the case, a UDP datagram 192.0.2.10:40000 > 198.51.100.20:53 is sent
	// from the inside; it must pass, and pkts gets the datagram as it came out (translated
	// in nat and router), for ICMP errors that quote it.
	flow bool
	pkts func(e *mfEnv, seen []byte) []mfPkt
	want [mfModes]mfWant
	// kernel says, per mode, why the case is not compared with the kernel ("skip: ..."), or
	// why its verdict knowingly differs ("diff: ..."); empty: the same verdict is required.
	kernel [mfModes]string
}

// mfTranslate is a datagram as nat or router must send it on: the inside source (east) or
// the NAT address as destination (west) translated, TTL one less in router mode, checksums
// recomputed.
func mfTranslate(e *mfEnv, mode mfMode, from int, ip []byte) []byte {
	ip = bytes.Clone(ip)
	if from == mfWest && ip[12] == 192 && ip[13] == 0 && ip[14] == 2 {
		copy(ip[12:16], e.r[:])
	}
	if from == mfEast && [4]byte(ip[16:20]) == e.r {
		copy(ip[16:20], e.a[:])
	}
	if mode == mfRouter {
		ip[8]--
	}
	mfSetIPSum(ip)
	if binary.BigEndian.Uint16(ip[6:])&0x3fff == 0 {
		mfL4Fix(ip)
	}
	return ip
}

// mfDatagram returns the IP datagram of a frame (untagged or tagged Ethernet), cut to its
// total length.
func mfDatagram(f []byte) []byte {
	off, etype, k := linkParse(framing.LinkEthernet, f)
	if k != linkOK {
		return nil
	}
	ip := f[off:]
	switch {
	case etype == etherIPv4 && len(ip) >= 20:
		if n := int(binary.BigEndian.Uint16(ip[2:])); n >= 20 && n <= len(ip) {
			ip = ip[:n]
		}
	case etype == etherIPv6 && len(ip) >= 40:
		if n := 40 + int(binary.BigEndian.Uint16(ip[4:])); n <= len(ip) {
			ip = ip[:n]
		}
	}
	return ip
}

// mfWhole puts the IPv4 datagrams of frames together (fragments by their offsets).
func mfWhole(frames [][]byte) [][]byte {
	var kf []knFrame
	var out [][]byte
	for _, f := range frames {
		if ip := mfDatagram(f); len(ip) >= 20 && ip[0]>>4 == 4 && int(ip[0]&0x0f)*4 >= 20 {
			kf = append(kf, knFrame{ip: ip})
		} else {
			out = append(out, ip) // not IPv4: as it is
		}
	}
	for _, d := range knReassemble(kf) {
		out = append(out, d.ip)
	}
	return out
}

// mfDefaultCheck is the check of a forwarded case when it names none: fw passes the frames
// sent byte for byte; nat and router send the datagram, whole, translated (router: from its
// NIC's MAC to the neighbour's), and every checksum is right.
func mfDefaultCheck(t *testing.T, e *mfEnv, mode mfMode, sent []mfPkt, out [][]byte) {
	t.Helper()
	if mode == mfFW {
		for i := range out {
			if i >= len(sent) || !bytes.Equal(out[i], sent[i].frame) {
				t.Errorf("frame %d out differs from the frame sent:\n got % x\nwant % x", i, out[i], sent[min(i, len(sent)-1)].frame)
			}
		}
		return
	}
	var in [][]byte
	for _, p := range sent {
		in = append(in, p.frame)
	}
	v6 := false
	if off, et, _ := linkParse(framing.LinkEthernet, sent[0].frame); et == etherIPv6 {
		v6 = true
		_ = off
	}
	var want [][]byte
	if v6 {
		for _, f := range in {
			want = append(want, mfDatagram(f))
		}
	} else {
		for _, dg := range mfWhole(in) {
			want = append(want, mfTranslate(e, mode, sent[0].from, dg))
		}
	}
	if len(out) != len(want) {
		t.Errorf("%d frames out, want %d", len(out), len(want))
		return
	}
	for i, f := range out {
		if got := mfDatagram(f); !bytes.Equal(got, want[i]) {
			t.Errorf("datagram %d out:\n got % x\nwant % x", i, got, want[i])
		}
		far := 1 - sent[0].from
		off, _, _ := linkParse(framing.LinkEthernet, f)
		if mode == mfRouter {
			if !bytes.Equal(f[:6], e.host[far]) || !bytes.Equal(f[6:12], e.router[far]) {
				t.Errorf("frame out from %s to %s, want from %s to %s", net.HardwareAddr(f[6:12]), net.HardwareAddr(f[:6]), e.router[far], e.host[far])
			}
		} else if !bytes.Equal(f[:off], sent[0].frame[:off]) {
			t.Errorf("link header out % x, want the frame's % x", f[:off], sent[0].frame[:off])
		}
	}
}

// mfCheckSums fails on any IPv4 frame out with a bad header or transport checksum.
func mfCheckSums(t *testing.T, frames [][]byte) {
	t.Helper()
	for _, dg := range mfWhole(frames) {
		if len(dg) < 20 || dg[0]>>4 != 4 {
			continue
		}
		if knSum(dg[:int(dg[0]&0x0f)*4], 0) != 0xffff {
			t.Errorf("a datagram out has a bad IPv4 header checksum: % x", dg[:20])
		}
		if err := knL4Sum(dg); err != nil {
			t.Errorf("a datagram out: %v: % x", err, dg[:min(len(dg), 48)])
		}
	}
}

// mfConfig is the instance of a mode.
func mfConfig(t testing.TB, mode mfMode, fast bool) Config {
	cfg := Config{NoFastPath: !fast, Seed: 1}
	switch mode {
	case mfFW:
		rs, err := rules.FromOneLiners([]rules.OneLiner{
			{Flag: "--drop", Target: rules.Drop, Spec: "state invalid"},
			{Flag: "--allow", Target: rules.Accept, Spec: "in west"},
		}, rules.Drop, rules.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Filter = rs
	case mfNAT:
		cfg.NAT = mfNATRules(t, "-A POSTROUTING -s 192.0.2.0/24 -o east -j SNAT --to-source 198.51.100.1")
	case mfRouter:
		cfg.West, cfg.East = netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("198.51.100.1/24")
		cfg.Neighbors = map[netip.Addr]net.HardwareAddr{netip.MustParseAddr("192.0.2.10"): macA, netip.MustParseAddr("198.51.100.20"): macB}
		cfg.NAT = mfNATRules(t, "-A POSTROUTING -o east -j MASQUERADE")
	}
	return cfg
}

func mfNATRules(t testing.TB, rule string) *rules.Ruleset {
	t.Helper()
	rs, err := rules.Parse("nat.rules", strings.NewReader("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"+
		rule+"\nCOMMIT\n"), rules.Options{Table: "nat"})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// mfResult is what came of a case.
type mfResult struct {
	sent      []mfPkt
	out, back [][]byte
	drops     map[books.Reason]int // on the case's direction, the flow's packet not counted
	others    string               // drops on the other direction, if any
	seen      []byte
}

// mfRunStdpkt plays a case through a fresh instance of a mode, with the IP IDs and ports
// from id and sp.
func mfRunStdpkt(t *testing.T, c mfCase, mode mfMode, fast bool, id, sp uint16) mfResult {
	t.Helper()
	e := mfStdpktEnv()
	e.id, e.sp = id, sp
	h := newHarness(t, mfConfig(t, mode, fast))
	var res mfResult
	if c.flow {
		east, west := h.send(books.East, e.v4(mfWest, e.udp4(e.id, e.sp, 53, "query")).frame)
		if len(east) != 1 || len(west) != 0 {
			t.Fatalf("the flow's datagram: %d out east, %d west; want it forwarded", len(east), len(west))
		}
		res.seen = mfDatagram(east[0].Data)
	}
	before := h.bk.Snapshot()
	res.sent = c.pkts(e, res.seen)
	for _, p := range res.sent {
		if p.from != res.sent[0].from {
			t.Fatal("a case's frames come from one side")
		}
		east, west := h.send(p.dir(), p.frame)
		far, back := east, west
		if p.dir() == books.West {
			far, back = west, east
		}
		for _, f := range far {
			res.out = append(res.out, f.Data)
		}
		for _, f := range back {
			res.back = append(res.back, f.Data)
		}
	}
	snap := h.close()
	side, bside, other, bother := snap.East, before.East, snap.West, before.West
	if res.sent[0].dir() == books.West {
		side, bside, other, bother = snap.West, before.West, snap.East, before.East
	}
	res.drops = map[books.Reason]int{}
	for r := books.Reason(0); r.String() != fmt.Sprintf("reason-%d", r); r++ {
		if n := int(side.Dropped[r.String()].Packets - bside.Dropped[r.String()].Packets); n != 0 {
			res.drops[r] = n
		}
		if n := other.Dropped[r.String()].Packets - bother.Dropped[r.String()].Packets; n != 0 {
			res.others += fmt.Sprintf(" %s %d", r, n)
		}
	}
	return res
}

func (r mfResult) String() string {
	w := mfWant{out: len(r.out), back: len(r.back), drops: r.drops}
	s := w.String()
	if r.others != "" {
		s += "; other direction dropped" + r.others
	}
	return s
}

// TestMalformedCorpus runs every case of the corpus through fw, nat and router, with the
// fast path on and off, and checks what came out (frames, bytes, checksums) and what the
// books say: every frame is counted out or dropped under the reason the case names.
func TestMalformedCorpus(t *testing.T) {
	for _, c := range mfCorpus() {
		for mode := range mfModes {
			for _, fast := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%s/fast=%v", c.name, mode, fast), func(t *testing.T) {
					w := c.want[mode]
					res := mfRunStdpkt(t, c, mode, fast, 0x4100, 40000)
					got := mfWant{out: len(res.out), back: len(res.back), drops: res.drops}
					if got.String() != w.String() || res.others != "" {
						t.Fatalf("%s: got %s, want %s", c.name, res, w)
					}
					mfCheckSums(t, res.out)
					mfCheckSums(t, res.back)
					if w.out > 0 && !w.raw {
						mfDefaultCheck(t, mfStdpktEnv(), mode, res.sent, res.out)
					}
					if w.check != nil {
						w.check(t, mfStdpktEnv(), res.sent, res.out, res.back)
					}
				})
			}
		}
	}
}

// icmpErr is an ICMP error (type/code) from the far end of seen, as the outside saw it,
// back to its source, quoting q.
func (e *mfEnv) icmpErr(seen []byte, typ, code uint8, q []byte) []byte {
	return mfIP4{src: [4]byte(seen[16:20]), dst: [4]byte(seen[12:16]), proto: 1, ttl: 64, id: e.id + 1,
		payload: mfICMP(typ, code, 0, q)}.bytes()
}

// mfQuote is what an ICMP error quotes of a datagram: its header and 8 bytes.
func mfQuote(ip []byte) []byte {
	return bytes.Clone(ip[:min(len(ip), int(ip[0]&0x0f)*4+8)])
}

// mfQuoteFixed is a quote changed by f, with its header checksum made right again.
func mfQuoteFixed(ip []byte, f func(q []byte) []byte) []byte {
	q := f(mfQuote(ip))
	mfSetIPSum(q)
	return q
}

// mfRecordRoute is a record route option with two empty slots, and a NOP to pad it.
func mfRecordRoute() []byte { return []byte{7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1} }

// mfCheckError checks an ICMP error forwarded back to the inside: from the outside host to
// the inside host, quoting the flow's datagram as the inside host sent it.
func mfCheckError(typ uint8) func(t *testing.T, e *mfEnv, sent []mfPkt, out, back [][]byte) {
	return func(t *testing.T, e *mfEnv, _ []mfPkt, out, _ [][]byte) {
		t.Helper()
		ip := mfDatagram(out[0])
		if [4]byte(ip[12:16]) != e.b || [4]byte(ip[16:20]) != e.a || ip[9] != 1 || ip[20] != typ {
			t.Fatalf("ICMP error out % x: want type %d from %v to %v", ip, typ, e.b, e.a)
		}
		q := ip[28:]
		if [4]byte(q[12:16]) != e.a || [4]byte(q[16:20]) != e.b || binary.BigEndian.Uint16(q[20:]) != e.sp || binary.BigEndian.Uint16(q[22:]) != 53 {
			t.Errorf("the error quotes % x, want the flow's datagram as the inside host sent it", q)
		}
	}
}

// mfSentFrames checks that the frames out are the frames sent at idx, byte for byte.
func mfSentFrames(idx ...int) func(t *testing.T, e *mfEnv, sent []mfPkt, out, back [][]byte) {
	return func(t *testing.T, _ *mfEnv, sent []mfPkt, out, _ [][]byte) {
		t.Helper()
		for i, j := range idx {
			if i >= len(out) || !bytes.Equal(out[i], sent[j].frame) {
				t.Errorf("frame %d out is not frame %d sent", i, j)
			}
		}
	}
}

// mfTranslated checks that the one frame out holds the datagram build makes, as mode
// translates it.
func mfTranslated(mode mfMode, build func(e *mfEnv) []byte) func(t *testing.T, e *mfEnv, sent []mfPkt, out, back [][]byte) {
	return func(t *testing.T, e *mfEnv, sent []mfPkt, out, _ [][]byte) {
		t.Helper()
		want := mfTranslate(e, mode, sent[0].from, build(e))
		if got := mfDatagram(out[0]); !bytes.Equal(got, want) {
			t.Errorf("datagram out:\n got % x\nwant % x", got, want)
		}
	}
}

// mfCheckParamProblem checks the answer to a datagram whose options the router refuses: a
// parameter problem from the router's west address, as Linux sends.
func mfCheckParamProblem(t *testing.T, e *mfEnv, _ []mfPkt, _, back [][]byte) {
	t.Helper()
	ip := mfDatagram(back[0])
	if [4]byte(ip[12:16]) != e.rw || [4]byte(ip[16:20]) != e.a || ip[9] != 1 || ip[20] != 12 {
		t.Errorf("answer % x: want an ICMP parameter problem from %v to %v", ip, e.rw, e.a)
	}
}

// mfCorpus is the corpus. Datagrams go from the inside host 192.0.2.10 to the outside host
// 198.51.100.20 (IPv6: 2001:db8:1::10 to 2001:db8:2::20), ICMP errors back.
func mfCorpus() []mfCase {
	const (
		mal  = books.Malformed
		inv  = books.Invalid
		rule = books.Rule
	)
	w, east := mfWest, mfEast
	one := func(side int, f func(e *mfEnv) []byte) func(e *mfEnv, _ []byte) []mfPkt {
		return func(e *mfEnv, _ []byte) []mfPkt { return []mfPkt{e.v4(side, f(e))} }
	}
	one6 := func(f func(e *mfEnv) []byte) func(e *mfEnv, _ []byte) []mfPkt {
		return func(e *mfEnv, _ []byte) []mfPkt { return []mfPkt{e.v6(w, f(e))} }
	}
	frags := func(f func(e *mfEnv) [][]byte) func(e *mfEnv, _ []byte) []mfPkt {
		return func(e *mfEnv, _ []byte) []mfPkt {
			var ps []mfPkt
			for _, ip := range f(e) {
				ps = append(ps, e.v4(w, ip))
			}
			return ps
		}
	}
	errWith := func(typ uint8, q func(seen []byte) []byte) func(e *mfEnv, seen []byte) []mfPkt {
		return func(e *mfEnv, seen []byte) []mfPkt {
			return []mfPkt{e.v4(east, e.icmpErr(seen, typ, 0, q(seen)))}
		}
	}
	const syn = "0123456789abcdef" // a SYN's 16 payload bytes: a 36-byte segment
	good := func(e *mfEnv) []byte { return e.tcp4(e.id+1, e.sp+1, 80, mfSYN, syn) }
	evil := func(e *mfEnv) []byte { // the same datagram to port 23
		return e.tcp4(e.id+1, e.sp+1, 23, mfSYN, syn)
	}
	synAck := func(e *mfEnv) []byte { // the same datagram with other flags
		return e.tcp4(e.id+1, e.sp+1, 80, mfSYN|mfACK, syn)
	}
	udpFr := func(e *mfEnv) []byte { return e.udp4(e.id+1, e.sp+1, 53, strings.Repeat("frag", 10)) } // 48-byte segment
	quoteOf := mfQuote
	kTTL := "skip: a transparent box does not route, so it neither decrements nor checks TTL; the kernel router does"
	kVLAN := "skip: the kernel router has no VLAN devices; a transparent box filters through up to two tags"
	k6 := "skip: the namespace lab routes IPv4 only"
	kRT6 := "skip: the router is configured with IPv4 prefixes only"
	// Linux's NAT skips what conntrack calls INVALID and forwards it untranslated.
	kLeak := "diff: Linux's conntrack calls it INVALID, so its NAT forwards it untranslated, with the inside source address; a NAT must not leak that, stdpkt drops it"
	kOwn := "skip: addressed to the NAT address, which the kernel router owns and takes for itself; a transparent NAT owns none and passes it on untranslated"
	natLeak := [mfModes]string{"", kLeak, kLeak}

	return []mfCase{
		// Baselines.
		{name: "udp", pkts: one(w, func(e *mfEnv) []byte { return e.udp4(e.id+1, e.sp+1, 53, "query") }), want: all(pass(1))},
		{name: "tcp-syn", pkts: one(w, good), want: all(pass(1))},
		{name: "eth-padding", pkts: func(e *mfEnv, _ []byte) []mfPkt {
			p := e.v4(w, e.udp4(e.id+1, e.sp+1, 53, "padded"))
			p.frame = append(p.frame, make([]byte, 20)...)
			return []mfPkt{p}
		}, want: all(pass(1))},
		// IPv4 header.
		{name: "ihl-4", pkts: one(w, func(e *mfEnv) []byte {
			ip := mfWith(e.udp4(e.id+1, e.sp+1, 53, "x"), 0, 0x44)
			mfSetIPSum(ip)
			return ip
		}), want: all(dropped(mal, 1))},
		{name: "ihl-beyond-frame", pkts: one(w, func(e *mfEnv) []byte {
			ip := mfWith(e.udp4(e.id+1, e.sp+1, 53, "x"), 0, 0x4f)
			mfSetIPSum(ip)
			return ip
		}), want: all(dropped(mal, 1))},
		{name: "totlen-beyond-frame", pkts: one(w, func(e *mfEnv) []byte {
			ip := e.udp4(e.id+1, e.sp+1, 53, "x")
			binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+100))
			mfSetIPSum(ip)
			return ip
		}), want: all(dropped(mal, 1))},
		{name: "totlen-below-header", pkts: one(w, func(e *mfEnv) []byte {
			ip := e.udp4(e.id+1, e.sp+1, 53, "x")
			binary.BigEndian.PutUint16(ip[2:], 16)
			mfSetIPSum(ip)
			return ip
		}), want: all(dropped(mal, 1))},
		{name: "ip-checksum", pkts: one(w, func(e *mfEnv) []byte {
			ip := e.udp4(e.id+1, e.sp+1, 53, "x")
			ip[10] ^= 0x5a
			return ip
		}), want: all(dropped(mal, 1))},
		{name: "version-5", pkts: one(w, func(e *mfEnv) []byte {
			ip := mfWith(e.udp4(e.id+1, e.sp+1, 53, "x"), 0, 0x55)
			mfSetIPSum(ip)
			return ip
		}), want: all(dropped(mal, 1))},
		// Transport headers.
		{name: "tcp-truncated", kernel: natLeak, pkts: one(w, func(e *mfEnv) []byte { return mfCut(good(e), 30) }), want: all(dropped(mal, 1))},
		{name: "tcp-doff-short", kernel: natLeak, pkts: one(w, func(e *mfEnv) []byte { return mfL4Fix(mfWith(good(e), 32, 4<<4)) }), want: all(dropped(mal, 1))},
		{name: "tcp-doff-beyond", kernel: natLeak, pkts: one(w, func(e *mfEnv) []byte {
			return mfL4Fix(mfWith(e.tcp4(e.id+1, e.sp+1, 80, mfSYN, ""), 32, 15<<4))
		}), want: all(dropped(mal, 1))},
		{name: "udp-truncated", kernel: natLeak, pkts: one(w, func(e *mfEnv) []byte { return mfCut(e.udp4(e.id+1, e.sp+1, 53, "x"), 24) }), want: all(dropped(mal, 1))},
		{name: "udp-len-beyond", kernel: natLeak, pkts: one(w, func(e *mfEnv) []byte {
			return mfL4Fix(mfWith(e.udp4(e.id+1, e.sp+1, 53, "x"), 24, 0, 200))
		}), want: all(dropped(mal, 1))},
		{name: "udp-len-short", kernel: natLeak, pkts: one(w, func(e *mfEnv) []byte {
			return mfL4Fix(mfWith(e.udp4(e.id+1, e.sp+1, 53, "xyz"), 24, 0, 6))
		}), want: all(dropped(mal, 1))},
		{name: "icmp-truncated", kernel: natLeak, pkts: one(w, func(e *mfEnv) []byte { return mfCut(e.echo4(e.id+1, e.sp+1), 24) }), want: all(dropped(mal, 1))},
		{name: "tcp-checksum", kernel: natLeak, pkts: one(w, func(e *mfEnv) []byte { return mfWith(good(e), 36, 0xde, 0xad) }),
			want: [mfModes]mfWant{dropped(rule, 1), dropped(inv, 1), dropped(inv, 1)}},
		{name: "udp-checksum", kernel: natLeak, pkts: one(w, func(e *mfEnv) []byte { return mfWith(e.udp4(e.id+1, e.sp+1, 53, "x"), 26, 0xde, 0xad) }),
			want: [mfModes]mfWant{dropped(rule, 1), dropped(inv, 1), dropped(inv, 1)}},
		{name: "udp-no-checksum", pkts: one(w, func(e *mfEnv) []byte { return mfWith(e.udp4(e.id+1, e.sp+1, 53, "x"), 26, 0, 0) }), want: all(pass(1))},
		{name: "icmp-checksum", kernel: natLeak, pkts: one(w, func(e *mfEnv) []byte { return mfWith(e.echo4(e.id+1, e.sp+1), 22, 0xde, 0xad) }),
			want: [mfModes]mfWant{dropped(rule, 1), dropped(inv, 1), dropped(inv, 1)}},
		{name: "proto-253", kernel: [mfModes]string{
			"diff: netstack's conntrack tracks TCP, UDP and ICMP only, so another protocol is INVALID and the filter drops it; Linux tracks any protocol (nf_conntrack_generic), so it is NEW",
			"diff: netstack cannot track it, so cannot translate it, and stdpkt never forwards untranslated; Linux tracks it by addresses and translates the source",
			"diff: netstack cannot track it, so cannot translate it, and stdpkt never forwards untranslated; Linux tracks it by addresses and translates the source"}, pkts: one(w, func(e *mfEnv) []byte {
			return mfIP4{src: e.a, dst: e.b, proto: 253, ttl: 64, id: e.id + 1, payload: []byte("experimental")}.bytes()
		}), want: [mfModes]mfWant{dropped(rule, 1), dropped(inv, 1), dropped(inv, 1)}},
		// TTL.
		{name: "ttl-0", pkts: one(w, func(e *mfEnv) []byte {
			ip := mfWith(e.udp4(e.id+1, e.sp+1, 53, "x"), 8, 0)
			mfSetIPSum(ip)
			return ip
		}), want: [mfModes]mfWant{pass(1), pass(1), dropped(books.TTL, 1).answered(1)}, kernel: [mfModes]string{kTTL, kTTL, ""}},
		{name: "ttl-1", pkts: one(w, func(e *mfEnv) []byte {
			ip := mfWith(e.udp4(e.id+1, e.sp+1, 53, "x"), 8, 1)
			mfSetIPSum(ip)
			return ip
		}), want: [mfModes]mfWant{pass(1), pass(1), dropped(books.TTL, 1).answered(1)}, kernel: [mfModes]string{kTTL, kTTL, ""}},
		{name: "ttl-2", pkts: one(w, func(e *mfEnv) []byte {
			ip := mfWith(e.udp4(e.id+1, e.sp+1, 53, "x"), 8, 2)
			mfSetIPSum(ip)
			return ip
		}), want: all(pass(1))},
		// IP options.
		{name: "opt-record-route", pkts: one(w, func(e *mfEnv) []byte {
			return mfIP4{src: e.a, dst: e.b, proto: 17, ttl: 64, id: e.id + 1, opts: mfRecordRoute(), payload: mfUDP(e.a[:], e.b[:], e.sp+1, 53, "rr")}.bytes()
		}), want: [mfModes]mfWant{pass(1), pass(1), pass(1).only().checked(func(t *testing.T, e *mfEnv, sent []mfPkt, out, _ [][]byte) {
			// The router records the address it forwards from, 198.51.100.1, as Linux does.
			want := mfTranslate(e, mfRouter, mfWest, mfDatagram(sent[0].frame))
			want[22] = 8
			copy(want[23:27], e.r[:])
			mfSetIPSum(want)
			if got := mfDatagram(out[0]); !bytes.Equal(got, want) {
				t.Errorf("datagram out:\n got % x\nwant % x", got, want)
			}
		})}},
		{name: "opt-timestamp-addresses", pkts: one(w, func(e *mfEnv) []byte {
			return mfIP4{src: e.a, dst: e.b, proto: 17, ttl: 64, id: e.id + 1, opts: []byte{68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0}, payload: mfUDP(e.a[:], e.b[:], e.sp+1, 53, "ts")}.bytes()
		}), want: [mfModes]mfWant{pass(1), pass(1), pass(1).only().checked(func(t *testing.T, e *mfEnv, _ []mfPkt, out, _ [][]byte) {
			// The router records the address it forwards from, as Linux does, and a time.
			if ip := mfDatagram(out[0]); ip[22] != 13 || [4]byte(ip[24:28]) != e.r {
				t.Errorf("timestamp option out % x: want pointer 13 and the address %v", ip[20:32], e.r)
			}
		})}, kernel: [mfModes]string{"", "", "verdict: the timestamps recorded differ, so the bytes cannot be compared"}},
		{name: "opt-length-short", pkts: one(w, func(e *mfEnv) []byte {
			return mfIP4{src: e.a, dst: e.b, proto: 17, ttl: 64, id: e.id + 1, opts: []byte{7, 2, 4, 0}, payload: mfUDP(e.a[:], e.b[:], e.sp+1, 53, "rr")}.bytes()
		}), want: [mfModes]mfWant{dropped(mal, 1), dropped(mal, 1), dropped(mal, 1).answered(1).checked(mfCheckParamProblem)}},
		{name: "opt-length-beyond", pkts: one(w, func(e *mfEnv) []byte {
			return mfIP4{src: e.a, dst: e.b, proto: 17, ttl: 64, id: e.id + 1, opts: []byte{7, 40, 4, 0}, payload: mfUDP(e.a[:], e.b[:], e.sp+1, 53, "rr")}.bytes()
		}), want: [mfModes]mfWant{dropped(mal, 1), dropped(mal, 1), dropped(mal, 1).answered(1).checked(mfCheckParamProblem)}},
		{name: "opt-lsrr", pkts: one(w, func(e *mfEnv) []byte {
			return mfIP4{src: e.a, dst: e.b, proto: 17, ttl: 64, id: e.id + 1, opts: []byte{131, 7, 4, 198, 51, 100, 99, 1}, payload: mfUDP(e.a[:], e.b[:], e.sp+1, 53, "lsrr")}.bytes()
		}), want: all(dropped(books.SourceRoute, 1))},
		// TCP flags.
		{name: "tcp-syn-fin", kernel: natLeak, pkts: one(w, func(e *mfEnv) []byte { return e.tcp4(e.id+1, e.sp+1, 80, mfSYN|mfFIN, "") }),
			want: [mfModes]mfWant{dropped(rule, 1), dropped(inv, 1), dropped(inv, 1)}},
		{name: "tcp-null", kernel: natLeak, pkts: one(w, func(e *mfEnv) []byte { return e.tcp4(e.id+1, e.sp+1, 80, 0, "") }),
			want: [mfModes]mfWant{dropped(rule, 1), dropped(inv, 1), dropped(inv, 1)}},
		{name: "tcp-xmas", kernel: natLeak, pkts: one(w, func(e *mfEnv) []byte { return e.tcp4(e.id+1, e.sp+1, 80, mfFIN|mfPSH|mfURG, "") }),
			want: [mfModes]mfWant{dropped(rule, 1), dropped(inv, 1), dropped(inv, 1)}},
		{name: "tcp-stray-rst", kernel: [mfModes]string{
			"diff: netstack's TCP conntrack opens a connection on any first segment, so it is NEW and passes; Linux opens one only on a SYN or (loosely) an ACK, and calls a stray RST or FIN INVALID",
			"verdict: Linux calls it INVALID and forwards it untranslated; stdpkt, for which it is NEW, translates it",
			"verdict: Linux calls it INVALID and forwards it untranslated; stdpkt, for which it is NEW, translates it"}, pkts: one(w, func(e *mfEnv) []byte { return e.tcp4(e.id+1, e.sp+1, 80, mfRST, "") }),
			want: all(pass(1))},
		{name: "tcp-stray-fin-ack", kernel: [mfModes]string{
			"diff: netstack's TCP conntrack opens a connection on any first segment, so it is NEW and passes; Linux opens one only on a SYN or (loosely) an ACK, and calls a stray RST or FIN INVALID",
			"verdict: Linux calls it INVALID and forwards it untranslated; stdpkt, for which it is NEW, translates it",
			"verdict: Linux calls it INVALID and forwards it untranslated; stdpkt, for which it is NEW, translates it"}, pkts: one(w, func(e *mfEnv) []byte { return e.tcp4(e.id+1, e.sp+1, 80, mfFIN|mfACK, "") }),
			want: all(pass(1))},
		{name: "tcp-stray-ack", pkts: one(w, func(e *mfEnv) []byte { return e.tcp4(e.id+1, e.sp+1, 80, mfACK, "") }), want: all(pass(1))},
		// Fragments.
		{name: "frag-in-order", pkts: frags(func(e *mfEnv) [][]byte {
			u := udpFr(e)
			return [][]byte{mfFrag(u, 0, 16, true), mfFrag(u, 16, 32, true), mfFrag(u, 32, 48, false)}
		}), want: [mfModes]mfWant{pass(3), pass(1).and(books.Reassembled, 2), pass(1).and(books.Reassembled, 2)}},
		{name: "frag-out-of-order", pkts: frags(func(e *mfEnv) [][]byte {
			u := udpFr(e)
			return [][]byte{mfFrag(u, 32, 48, false), mfFrag(u, 16, 32, true), mfFrag(u, 0, 16, true)}
		}), want: [mfModes]mfWant{pass(3).only(), pass(1).and(books.Reassembled, 2), pass(1).and(books.Reassembled, 2)}},
		{name: "frag-tiny-first", pkts: frags(func(e *mfEnv) [][]byte {
			return [][]byte{mfFrag(good(e), 0, 8, true), mfFrag(good(e), 8, 36, false)}
		}), want: [mfModes]mfWant{pass(2), pass(1).and(books.Reassembled, 1), pass(1).and(books.Reassembled, 1)}},
		{name: "frag-first-16", pkts: frags(func(e *mfEnv) [][]byte {
			return [][]byte{mfFrag(good(e), 0, 16, true), mfFrag(good(e), 16, 36, false)}
		}), want: [mfModes]mfWant{pass(2), pass(1).and(books.Reassembled, 1), pass(1).and(books.Reassembled, 1)}},
		{name: "frag-overlap-ports", pkts: frags(func(e *mfEnv) [][]byte {
			return [][]byte{mfFrag(good(e), 0, 16, true), mfFrag(evil(e), 0, 24, true), mfFrag(good(e), 16, 36, false)}
		}), want: all(dropped(mal, 2).and(books.Unsent, 1))},
		{name: "frag-overlap-flags", pkts: frags(func(e *mfEnv) [][]byte {
			return [][]byte{mfFrag(good(e), 0, 16, true), mfFrag(synAck(e), 8, 24, true), mfFrag(good(e), 24, 36, false)}
		}), want: all(dropped(mal, 2).and(books.Unsent, 1))},
		{name: "frag-duplicate", pkts: frags(func(e *mfEnv) [][]byte {
			return [][]byte{mfFrag(good(e), 0, 16, true), mfFrag(good(e), 0, 16, true), mfFrag(good(e), 16, 36, false)}
		}), want: [mfModes]mfWant{
			pass(2).and(books.Duplicate, 1).only().checked(mfSentFrames(0, 2)),
			pass(1).and(books.Duplicate, 1).and(books.Reassembled, 1).only().checked(mfTranslated(mfNAT, good)),
			pass(1).and(books.Duplicate, 1).and(books.Reassembled, 1).only().checked(mfTranslated(mfRouter, good))}},
		{name: "frag-duplicate-rewrites-ports", pkts: frags(func(e *mfEnv) [][]byte {
			return [][]byte{mfFrag(good(e), 0, 16, true), mfFrag(evil(e), 0, 16, true), mfFrag(good(e), 16, 36, false)}
		}), want: [mfModes]mfWant{
			pass(2).and(books.Duplicate, 1).only().checked(mfSentFrames(0, 2)),
			pass(1).and(books.Duplicate, 1).and(books.Reassembled, 1).only().checked(mfTranslated(mfNAT, good)),
			pass(1).and(books.Duplicate, 1).and(books.Reassembled, 1).only().checked(mfTranslated(mfRouter, good))}},
		{name: "frag-contained-rewrites-flags", pkts: frags(func(e *mfEnv) [][]byte {
			return [][]byte{mfFrag(good(e), 0, 24, true), mfFrag(synAck(e), 8, 16, true), mfFrag(good(e), 24, 36, false)}
		}), want: [mfModes]mfWant{
			pass(2).and(books.Duplicate, 1).only().checked(mfSentFrames(0, 2)),
			pass(1).and(books.Duplicate, 1).and(books.Reassembled, 1).only().checked(mfTranslated(mfNAT, good)),
			pass(1).and(books.Duplicate, 1).and(books.Reassembled, 1).only().checked(mfTranslated(mfRouter, good))}},
		{name: "frag-contained-rewrites-ports", pkts: frags(func(e *mfEnv) [][]byte {
			return [][]byte{mfFrag(good(e), 0, 24, true), mfFrag(evil(e), 0, 8, true), mfFrag(good(e), 24, 36, false)}
		}), want: [mfModes]mfWant{
			pass(2).and(books.Duplicate, 1).only().checked(mfSentFrames(0, 2)),
			pass(1).and(books.Duplicate, 1).and(books.Reassembled, 1).only().checked(mfTranslated(mfNAT, good)),
			pass(1).and(books.Duplicate, 1).and(books.Reassembled, 1).only().checked(mfTranslated(mfRouter, good))}},
		{name: "frag-last-twice-different-ends", pkts: frags(func(e *mfEnv) [][]byte {
			return [][]byte{mfFrag(good(e), 16, 36, false), mfFrag(good(e), 16, 32, false), mfFrag(good(e), 0, 16, true)}
		}), want: all(dropped(mal, 2).and(books.Unsent, 1))},
		{name: "frag-no-first", pkts: frags(func(e *mfEnv) [][]byte {
			return [][]byte{mfFrag(good(e), 16, 36, false)}
		}), want: all(dropped(books.Unsent, 1))},
		{name: "frag-not-multiple-of-8", pkts: frags(func(e *mfEnv) [][]byte {
			return [][]byte{mfFrag(good(e), 0, 12, true), mfFrag(good(e), 16, 36, false)}
		}), want: all(dropped(mal, 1).and(books.Unsent, 1))},
		{name: "frag-beyond-64k", pkts: frags(func(e *mfEnv) [][]byte {
			return [][]byte{mfIP4{src: e.a, dst: e.b, proto: 17, ttl: 64, id: e.id + 1, frag: 8190, payload: make([]byte, 24)}.bytes()}
		}), want: all(dropped(mal, 1))},
		// ICMP errors from the outside about the flow, or quoting broken packets.
		{name: "icmp-err-related", flow: true, pkts: errWith(3, quoteOf),
			want: [mfModes]mfWant{pass(1), pass(1).only().checked(mfCheckError(3)), pass(1).only().checked(mfCheckError(3))}},
		{name: "icmp-err-time-exceeded", flow: true, pkts: errWith(11, quoteOf),
			want: [mfModes]mfWant{pass(1), pass(1).only().checked(mfCheckError(11)), pass(1).only().checked(mfCheckError(11))}},
		{name: "icmp-err-unknown-flow", flow: true, pkts: errWith(3, func(seen []byte) []byte {
			return mfQuoteFixed(seen, func(q []byte) []byte { q[20]++; return q })
		}), want: [mfModes]mfWant{dropped(rule, 1), pass(1).only(), dropped(books.Local, 1)}, kernel: [mfModes]string{"", kOwn, ""}},
		{name: "icmp-err-quote-ip-checksum", flow: true, pkts: errWith(3, func(seen []byte) []byte {
			q := mfQuote(seen)
			q[10] ^= 0x5a
			return q
		}), want: [mfModes]mfWant{pass(1), pass(1).only(), pass(1).only()}},
		{name: "icmp-err-quote-4-bytes", flow: true, pkts: errWith(3, func(seen []byte) []byte { return mfQuote(seen)[:24] }),
			want:   [mfModes]mfWant{dropped(rule, 1), pass(1).only(), dropped(books.Local, 1)},
			kernel: [mfModes]string{"diff: netstack's conntrack needs 8 bytes of the quoted transport header to relate an error (Linux: the 4 bytes of the ports), so it is INVALID and the filter drops it", kOwn, ""}},
		{name: "icmp-err-quote-ihl-4", flow: true, pkts: errWith(3, func(seen []byte) []byte {
			return mfQuoteFixed(seen, func(q []byte) []byte { q[0] = 0x44; return q })
		}), want: [mfModes]mfWant{dropped(rule, 1), dropped(inv, 1), dropped(inv, 1)}},
		{name: "icmp-err-quote-options", flow: true, pkts: errWith(3, func(seen []byte) []byte {
			q := slices.Concat(seen[:20], mfRecordRoute(), seen[20:28])
			q[0] = 0x48
			mfSetIPSum(q)
			return q
		}), want: [mfModes]mfWant{dropped(rule, 1), pass(1).only(), dropped(books.Local, 1)},
			kernel: [mfModes]string{"diff: netstack's conntrack does not read a quoted header with options (gVisor issue 6765), so the error is not RELATED: INVALID, the filter drops it", "verdict: netstack's conntrack does not read a quoted header with options (gVisor issue 6765), so the error is not RELATED: stdpkt passes it untranslated (to the NAT address), Linux translates it back", "diff: netstack's conntrack does not read a quoted header with options (gVisor issue 6765), so the error is not RELATED: the router takes it for itself; Linux translates it back and forwards it"}},
		{name: "icmp-err-quote-first-fragment", flow: true, pkts: errWith(3, func(seen []byte) []byte {
			return mfQuoteFixed(seen, func(q []byte) []byte { q[6] |= 0x20; return q })
		}), want: [mfModes]mfWant{pass(1), pass(1).only(), pass(1).only()}},
		{name: "icmp-err-quote-later-fragment", flow: true, pkts: errWith(3, func(seen []byte) []byte {
			return mfQuoteFixed(seen, func(q []byte) []byte { q[7] = 3; return q })
		}), want: [mfModes]mfWant{dropped(rule, 1), dropped(inv, 1), dropped(inv, 1)}},
		{name: "icmp-err-quote-l4-checksum", flow: true, pkts: errWith(3, func(seen []byte) []byte {
			q := mfQuote(seen)
			q[26] ^= 0x5a
			return q
		}), want: [mfModes]mfWant{pass(1), pass(1).only(), pass(1).only()}},
		{name: "icmp-err-no-quote", flow: true, pkts: errWith(3, func([]byte) []byte { return nil }),
			want: [mfModes]mfWant{dropped(rule, 1), pass(1).only(), dropped(books.Local, 1)}, kernel: [mfModes]string{"", kOwn, ""}},
		{name: "icmp-err-checksum", flow: true, pkts: func(e *mfEnv, seen []byte) []mfPkt {
			ip := e.icmpErr(seen, 3, 3, mfQuote(seen))
			ip[22] ^= 0x5a
			return []mfPkt{e.v4(east, ip)}
		}, want: [mfModes]mfWant{dropped(rule, 1), dropped(inv, 1), dropped(inv, 1)}},
		// VLAN tags.
		{name: "vlan", pkts: func(e *mfEnv, _ []byte) []mfPkt {
			return []mfPkt{{w, e.eth(w, etherIPv4, e.udp4(e.id+1, e.sp+1, 53, "tagged"), etherVLAN, 10)}}
		}, want: [mfModes]mfWant{pass(1), pass(1), dropped(mal, 1)}, kernel: [mfModes]string{kVLAN, kVLAN, ""}},
		{name: "qinq", pkts: func(e *mfEnv, _ []byte) []mfPkt {
			return []mfPkt{{w, e.eth(w, etherIPv4, e.udp4(e.id+1, e.sp+1, 53, "tagged"), etherQinQ, 100, etherVLAN, 10)}}
		}, want: [mfModes]mfWant{pass(1), pass(1), dropped(mal, 1)}, kernel: [mfModes]string{kVLAN, kVLAN, ""}},
		{name: "vlan-bad-checksum", pkts: func(e *mfEnv, _ []byte) []mfPkt {
			return []mfPkt{{w, e.eth(w, etherIPv4, mfWith(e.udp4(e.id+1, e.sp+1, 53, "tagged"), 10, 0, 0), etherVLAN, 10)}}
		}, want: all(dropped(mal, 1)), kernel: [mfModes]string{kVLAN, kVLAN, ""}},
		{name: "vlan-truncated", pkts: func(e *mfEnv, _ []byte) []mfPkt {
			f := e.eth(w, etherVLAN, nil)
			return []mfPkt{{w, append(f, 0, 10)}}
		}, want: all(dropped(mal, 1)), kernel: [mfModes]string{kVLAN, kVLAN, kVLAN}},
		// IPv6.
		{name: "ip6-udp", pkts: one6(func(e *mfEnv) []byte { return mfIP6(e.a6, e.b6, 17, e.udp6(e.sp+1, 53, "v6")) }),
			want: [mfModes]mfWant{pass(1), pass(1), dropped(books.NoRoute, 1)}, kernel: [mfModes]string{k6, k6, kRT6}},
		{name: "ip6-hop-by-hop", pkts: one6(func(e *mfEnv) []byte { return mfIP6(e.a6, e.b6, 0, cat(mfExt(17, false), e.udp6(e.sp+1, 53, "hbh"))) }),
			want: [mfModes]mfWant{pass(1), pass(1), dropped(books.NoRoute, 1)}, kernel: [mfModes]string{k6, k6, kRT6}},
		{name: "ip6-routing", pkts: one6(func(e *mfEnv) []byte { return mfIP6(e.a6, e.b6, 43, cat(mfExt(17, true), e.udp6(e.sp+1, 53, "rh"))) }),
			want: [mfModes]mfWant{pass(1), pass(1), dropped(books.NoRoute, 1)}, kernel: [mfModes]string{k6, k6, kRT6}},
		{name: "ip6-dest-opts", pkts: one6(func(e *mfEnv) []byte {
			return mfIP6(e.a6, e.b6, 60, cat(mfExt(6, false), e.tcp6(e.sp+1, 80, mfSYN, "")))
		}), want: [mfModes]mfWant{pass(1), pass(1), dropped(books.NoRoute, 1)}, kernel: [mfModes]string{k6, k6, kRT6}},
		{name: "ip6-all-ext", pkts: one6(func(e *mfEnv) []byte {
			return mfIP6(e.a6, e.b6, 0, cat(mfExt(60, false), mfExt(43, false), mfExt(60, true)[:0], mfExt(6, true), e.tcp6(e.sp+1, 80, mfSYN, "")))
		}), want: [mfModes]mfWant{pass(1), pass(1), dropped(books.NoRoute, 1)}, kernel: [mfModes]string{k6, k6, kRT6}},
		{name: "ip6-fragments", pkts: func(e *mfEnv, _ []byte) []mfPkt {
			u := e.udp6(e.sp+1, 53, strings.Repeat("six!", 10)) // 48 bytes
			return []mfPkt{e.v6(w, mfIP6(e.a6, e.b6, 44, cat(mfFragHdr(17, 0, true, 77), u[:24]))), e.v6(w, mfIP6(e.a6, e.b6, 44, cat(mfFragHdr(17, 24, false, 77), u[24:])))}
		}, want: [mfModes]mfWant{pass(2), pass(1).and(books.Reassembled, 1).only(), dropped(books.NoRoute, 1).and(books.Reassembled, 1)}, kernel: [mfModes]string{k6, k6, kRT6}},
		{name: "ip6-atomic-fragment", pkts: one6(func(e *mfEnv) []byte {
			return mfIP6(e.a6, e.b6, 44, cat(mfFragHdr(17, 0, false, 78), e.udp6(e.sp+1, 53, "atomic")))
		}), want: [mfModes]mfWant{pass(1), pass(1), dropped(books.NoRoute, 1)}, kernel: [mfModes]string{k6, k6, kRT6}},
		{name: "ip6-fragment-behind-atomic", pkts: one6(func(e *mfEnv) []byte {
			// An atomic fragment header, then a first fragment: a receiver reassembles it
			// with later fragments, so it cannot be judged as a whole packet.
			return mfIP6(e.a6, e.b6, 44, cat(mfFragHdr(44, 0, false, 79), mfFragHdr(6, 0, true, 80), e.tcp6(e.sp+1, 23, mfSYN, "")[:16]))
		}), want: all(dropped(mal, 1)), kernel: [mfModes]string{k6, k6, kRT6}},
		{name: "ip6-unknown-next", pkts: one6(func(e *mfEnv) []byte { return mfIP6(e.a6, e.b6, 250, []byte("unassigned")) }),
			want: [mfModes]mfWant{dropped(rule, 1), pass(1), dropped(books.NoRoute, 1)}, kernel: [mfModes]string{k6, k6, kRT6}},
		{name: "ip6-truncated-header", pkts: one6(func(e *mfEnv) []byte { return mfIP6(e.a6, e.b6, 17, nil)[:30] }),
			want: all(dropped(mal, 1)), kernel: [mfModes]string{k6, k6, kRT6}},
		{name: "ip6-payload-beyond", pkts: one6(func(e *mfEnv) []byte {
			ip := mfIP6(e.a6, e.b6, 17, e.udp6(e.sp+1, 53, "v6"))
			binary.BigEndian.PutUint16(ip[4:], 500)
			return ip
		}), want: all(dropped(mal, 1)), kernel: [mfModes]string{k6, k6, kRT6}},
		{name: "ip6-ext-truncated", pkts: one6(func(e *mfEnv) []byte {
			return mfIP6(e.a6, e.b6, 0, []byte{17, 4, 1, 4, 0, 0, 0, 0})
		}), want: all(dropped(mal, 1)), kernel: [mfModes]string{k6, k6, kRT6}},
		{name: "ip6-tcp-truncated", pkts: one6(func(e *mfEnv) []byte { return mfIP6(e.a6, e.b6, 6, e.tcp6(e.sp+1, 80, mfSYN, "")[:12]) }),
			want: all(dropped(mal, 1)), kernel: [mfModes]string{k6, k6, kRT6}},
	}
}

// mfKernelPhase is a configuration of the kernel router and the modes it stands for.
type mfKernelPhase struct {
	name  string
	modes []mfMode
	setup func(l *knLab, ns, rw, re string)
}

// TestMalformedKernelVerdicts plays the corpus through a Linux router in network namespaces,
// first with the fw mode's filter (for fw), then with MASQUERADE out east (for nat and
// router), and requires stdpkt's verdict, forwarded or not, to be the kernel's for every case
// and mode the table does not skip; where the table names a difference ("diff: ..."), the
// verdicts must differ, so a note cannot outlive the difference it explains. In router mode,
// what both forward must be the same datagram, byte for byte.
func TestMalformedKernelVerdicts(t *testing.T) {
	knNeedRoot(t, "ip", "iptables")
	l := newKnLab(t, "m")
	nsW, nsR, nsE := l.netns("w"), l.netns("r"), l.netns("e")
	rw, re, wi, ei := l.name("rw"), l.name("re"), l.name("wi"), l.name("ei")
	l.veth(nsR, rw, nsW, wi)
	l.veth(nsR, re, nsE, ei)
	l.run("ip", "-n", nsR, "addr", "add", "192.0.2.1/24", "dev", rw)
	l.run("ip", "-n", nsR, "addr", "add", "198.51.100.1/24", "dev", re)
	l.run("ip", "netns", "exec", nsR, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	host := [2]net.HardwareAddr{l.mac(nsW, wi), l.mac(nsE, ei)}
	router := [2]net.HardwareAddr{l.mac(nsR, rw), l.mac(nsR, re)}
	l.run("ip", "-n", nsR, "neigh", "replace", "192.0.2.10", "lladdr", host[mfWest].String(), "dev", rw, "nud", "permanent")
	l.run("ip", "-n", nsR, "neigh", "replace", "198.51.100.20", "lladdr", host[mfEast].String(), "dev", re, "nud", "permanent")
	t.Logf("%s; accept_source_route: %s", strings.TrimSpace(l.run("iptables", "-V")),
		strings.TrimSpace(l.run("ip", "netns", "exec", nsR, "sysctl", "-n", "net.ipv4.conf."+rw+".accept_source_route")))
	ports := [2]*knPort{openKnPort(t, nsW, wi), openKnPort(t, nsE, ei)}
	ipt := func(args ...string) { l.run(append([]string{"ip", "netns", "exec", nsR, "iptables"}, args...)...) }

	phases := []mfKernelPhase{
		{name: "filter", modes: []mfMode{mfFW}, setup: func(*knLab, string, string, string) {
			ipt("-P", "FORWARD", "DROP")
			ipt("-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
			ipt("-A", "FORWARD", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
			ipt("-A", "FORWARD", "-i", rw, "-j", "ACCEPT")
		}},
		{name: "masquerade", modes: []mfMode{mfNAT, mfRouter}, setup: func(*knLab, string, string, string) {
			ipt("-F", "FORWARD")
			ipt("-P", "FORWARD", "ACCEPT")
			ipt("-t", "nat", "-A", "POSTROUTING", "-o", re, "-j", "MASQUERADE")
		}},
	}
	corpus := mfCorpus()
	for pi, ph := range phases {
		ph.setup(l, nsR, rw, re)
		for ci, c := range corpus {
			compared := false
			for _, m := range ph.modes {
				compared = compared || !strings.HasPrefix(c.kernel[m], "skip:")
			}
			if !compared {
				continue
			}
			e := newMfEnv(host, router)
			e.id, e.sp = uint16(0x1000+pi*0x4000+ci*16), uint16(10000+pi*20000+ci*16)
			kOut, kBack, ok := mfRunKernel(t, ports, e, c)
			if !ok {
				continue
			}
			for _, m := range ph.modes {
				note := c.kernel[m]
				if strings.HasPrefix(note, "skip:") {
					continue
				}
				res := mfRunStdpkt(t, c, m, false, e.id, e.sp)
				kf, sf := len(kOut) > 0, len(res.out) > 0
				t.Logf("%-32s %-6s kernel: out %d back %d; stdpkt: %s", c.name, m, len(kOut), len(kBack), res)
				switch {
				case strings.HasPrefix(note, "diff:") && kf == sf:
					t.Errorf("%s, %s: the table says stdpkt differs from the kernel (%s), yet both forwarded=%v", c.name, m, note, kf)
				case !strings.HasPrefix(note, "diff:") && kf != sf:
					t.Errorf("%s, %s: the kernel forwarded=%v (%d frames), stdpkt forwarded=%v (%s)", c.name, m, kf, len(kOut), sf, res)
				case m == mfRouter && kf && sf && note == "":
					kd, sd := mfWhole(kOut), mfWhole(res.out)
					if len(kd) != len(sd) || (len(kd) > 0 && !bytes.Equal(mfNoID(kd[0]), mfNoID(sd[0]))) {
						t.Errorf("%s, router: the kernel forwarded\n  % x\nstdpkt\n  % x", c.name, kd, sd)
					}
				}
			}
		}
	}
}

// mfNoID is a datagram with its IPv4 ID and header checksum zeroed, for comparing datagrams
// whose IDs the two routers choose (the kernel picks one for a datagram it refragments).
func mfNoID(ip []byte) []byte {
	ip = bytes.Clone(ip)
	if len(ip) >= 20 && ip[0]>>4 == 4 {
		ip[4], ip[5], ip[10], ip[11] = 0, 0, 0, 0
	}
	return ip
}

// mfRunKernel plays a case through the kernel router and returns what came out on the far
// side and back on the near side (IP only); false if the flow the case needs did not pass.
func mfRunKernel(t *testing.T, ports [2]*knPort, e *mfEnv, c mfCase) (out, back [][]byte, ok bool) {
	t.Helper()
	take := func(p *knPort) [][]byte {
		var fs [][]byte
		for _, f := range p.take() {
			if _, et, k := linkParse(framing.LinkEthernet, f); k == linkOK && (et == etherIPv4 || et == etherIPv6) {
				fs = append(fs, f)
			}
		}
		return fs
	}
	for _, p := range ports {
		p.take()
	}
	var seen []byte
	if c.flow {
		ports[mfWest].write(t, e.v4(mfWest, e.udp4(e.id, e.sp, 53, "query")).frame)
		knGather(ports[:], time.Second, 100*time.Millisecond, time.Second)
		got := take(ports[mfEast])
		take(ports[mfWest])
		if len(got) == 0 {
			t.Errorf("%s: the kernel did not forward the flow's datagram: nothing to compare", c.name)
			return nil, nil, false
		}
		seen = mfDatagram(got[0])
	}
	pkts := c.pkts(e, seen)
	for _, p := range pkts {
		ports[p.from].write(t, p.frame)
	}
	knGather(ports[:], 300*time.Millisecond, 100*time.Millisecond, time.Second)
	from := pkts[0].from
	return take(ports[1-from]), take(ports[from]), true
}
