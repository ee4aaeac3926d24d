package osinst

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/rules"
)

// The fuzz input is a sequence of records, each a control byte, a big-endian 16-bit length
// and that many bytes of frame (fewer if the input ends first). The control byte's bits:
const (
	fuzzWestbound = 0x01 // the frame travels westbound (it arrived on the east NIC)
	fuzzFixSums   = 0x02 // recompute the IPv4 header and transport checksums before injecting
	fuzzFixLens   = 0x04 // set the IP (and UDP) length fields to the bytes present, first
	fuzzRawIP     = 0x08 // strip the link header: deliver the IP datagram as raw IP
	fuzzSameBatch = 0x10 // deliver in the same Input call as the previous frame, if same way
)

// fuzzMaxFrames bounds the frames of one input, so an iteration stays fast.
const fuzzMaxFrames = 64

const fuzzFilterRules = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i west -p tcp -m tcp --dport 80 -j ACCEPT
-A FORWARD -i west -p udp -m udp --dport 53 -j ACCEPT
-A FORWARD -i west -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 25 -j REJECT --reject-with tcp-reset
-A FORWARD -p udp -m udp --dport 9 -j REJECT --reject-with icmp-port-unreachable
-A FORWARD -i east -p tcp -m tcp --dport 22 -j DROP
COMMIT
`

// fuzzInside is where the NAT configurations' private hosts are; nothing leaving eastbound
// may show these addresses, unless the outside named them first.
const fuzzInside = "192.0.2.0/24"

// fuzzHosts are the addresses the seed traffic of a configuration uses.
type fuzzHosts struct {
	west, east       net.IP           // a host on each side
	westMAC, eastMAC net.HardwareAddr // their MACs
	toEast, toWest   net.HardwareAddr // destination MAC of frames sent east, and west
	replyTo          net.IP           // the west host as the east host sees it (NAT)
	fwdPort          uint16           // DNAT: an outside port forwarded to west:80
	router           net.IP           // router mode: the router's west address
	west6, east6     net.IP           // IPv6 hosts, untranslated
}

func filterHosts() fuzzHosts {
	return fuzzHosts{west: ipA, east: ipB, westMAC: macA, eastMAC: macB, toEast: macB, toWest: macA, replyTo: ipA}
}

func natHosts() fuzzHosts {
	return fuzzHosts{west: ipA, east: ipB, westMAC: macA, eastMAC: macB, toEast: macB, toWest: macA,
		replyTo: net.IP{203, 0, 113, 1}, fwdPort: 8080}
}

func routerHosts() fuzzHosts {
	return fuzzHosts{west: ipA, east: ipB, westMAC: macA, eastMAC: macB,
		toEast: net.HardwareAddr(macFor(westID)), toWest: net.HardwareAddr(macFor(eastID)),
		replyTo: net.IP{203, 0, 113, 1}, router: net.IP{192, 0, 2, 1}}
}

func fuzzNATRules(tb testing.TB) *rules.Ruleset {
	rs, err := rules.FromNATFlags(rules.NATFlags{Inside: rules.West, SNAT: netip.MustParseAddr("203.0.113.1"),
		Forwards: []string{"tcp:8080=192.0.2.10:80"}})
	if err != nil {
		tb.Fatal(err)
	}
	return rs
}

func fuzzRouterConfig(tb testing.TB) Config {
	nat, err := rules.FromNATFlags(rules.NATFlags{Inside: rules.West, Masquerade: true})
	if err != nil {
		tb.Fatal(err)
	}
	return Config{
		West:   netip.MustParsePrefix("192.0.2.1/24"),
		East:   netip.MustParsePrefix("203.0.113.1/24"),
		Filter: mustRules(tb, fuzzFilterRules),
		NAT:    nat,
		Neighbors: map[netip.Addr]net.HardwareAddr{
			netip.MustParseAddr("192.0.2.10"):    macA,
			netip.MustParseAddr("198.51.100.20"): macB,
			netip.MustParseAddr("203.0.113.20"):  macB,
		},
		Seed: 1,
	}
}

// FuzzFilterPath fuzzes a transparent filter (stdpkt-fw) with the fast path on. Invariants:
// no panic; the books balance after Close; a frame that passes is byte for byte the frame
// that came in; every IP frame that leaves has a sound IP header with a valid IPv4 checksum,
// and a transport checksum that is valid if the frame was generated (REJECT) and as valid as
// its input's if forwarded (a bad one passes only as Linux would pass it, unchanged, never
// repaired); and the same input through the stack alone (NoFastPath) gives the same frames,
// books and rule counters.
func FuzzFilterPath(f *testing.F) {
	addFuzzSeeds(f, filterHosts())
	rs := mustRules(f, fuzzFilterRules)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzCompare(t, Config{Filter: rs, Seed: 1}, parseFuzzFrames(data))
	})
}

// FuzzNATPath fuzzes a transparent NAT (stdpkt-nat --snat 203.0.113.1 --forward
// tcp:8080=192.0.2.10:80, inside west) with the fast path on. Invariants: those of
// FuzzFilterPath, but that NAT may change IP frames; and nothing that leaves eastbound
// carries an inside address (192.0.2.0/24) as its IPv4 source or in the IPv4 header an ICMP
// error quotes, unless a westbound frame showed that address first (the outside knew it, and
// Linux's NAT leaves a connection opened to it alone).
func FuzzNATPath(f *testing.F) {
	addFuzzSeeds(f, natHosts())
	rs := fuzzNATRules(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzCompare(t, Config{NAT: rs, Seed: 1}, parseFuzzFrames(data))
	})
}

// FuzzRouterPath fuzzes router mode (west 192.0.2.1/24, east 203.0.113.1/24) with
// MASQUERADE out of east, a filter and static neighbours. Invariants: no panic; the books
// balance after Close; the checksum and NAT invariants of FuzzNATPath. The fast path is a
// transparent-mode feature, so there is no second run to compare with.
func FuzzRouterPath(f *testing.F) {
	addFuzzSeeds(f, routerHosts())
	cfg := fuzzRouterConfig(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRun(t, cfg, parseFuzzFrames(data))
	})
}

// fuzzCompare runs frames with the fast path and without, checking each run's invariants,
// and requires the same result from both.
func fuzzCompare(t *testing.T, cfg Config, frames []fuzzFrame) {
	cfg.NoFastPath = false
	fast := fuzzRun(t, cfg, frames)
	cfg.NoFastPath = true
	slow := fuzzRun(t, cfg, frames)
	for i := range max(len(fast.outs), len(slow.outs)) {
		if i >= len(fast.outs) || i >= len(slow.outs) || !fast.outs[i].same(&slow.outs[i]) {
			t.Fatalf("fast path and stack differ at output %d:\nfast:\n%s\nstack:\n%s", i, fuzzListOuts(fast.outs), fuzzListOuts(slow.outs))
		}
	}
	if !reflect.DeepEqual(fast.snap, slow.snap) {
		t.Fatalf("books differ: fast path %+v, stack %+v", fast.snap, slow.snap)
	}
	for i := range fast.counters {
		a, b := fast.counters[i], slow.counters[i]
		if a.Packets != b.Packets || a.Bytes != b.Bytes {
			t.Fatalf("rule counter %d (%s %v) differs: fast path %d packets %d bytes, stack %d packets %d bytes",
				i, a.Chain, a.Rule, a.Packets, a.Bytes, b.Packets, b.Bytes)
		}
	}
}

// fuzzFrame is one frame of a fuzz input.
type fuzzFrame struct {
	dir   books.Dir
	raw   bool // raw IP rather than Ethernet
	batch bool // in the previous frame's Input call
	data  []byte
}

// parseFuzzFrames splits a fuzz input into frames, applying the repairs their control bytes
// ask for.
func parseFuzzFrames(b []byte) []fuzzFrame {
	var frames []fuzzFrame
	for len(b) >= 3 && len(frames) < fuzzMaxFrames {
		ctl, n := b[0], int(binary.BigEndian.Uint16(b[1:3]))
		b = b[3:]
		n = min(n, len(b))
		fr := fuzzFrame{data: bytes.Clone(b[:n])}
		b = b[n:]
		if ctl&fuzzWestbound != 0 {
			fr.dir = books.West
		}
		if ctl&fuzzRawIP != 0 {
			if off, _, ok := fuzzLinkOff(framing.LinkEthernet, fr.data); ok {
				fr.data, fr.raw = fr.data[off:], true
			}
		}
		fr.batch = ctl&fuzzSameBatch != 0 && len(frames) > 0 && frames[len(frames)-1].dir == fr.dir
		link := framing.LinkEthernet
		if fr.raw {
			link = framing.LinkRaw
		}
		if ip, v6, ok := fuzzL3(link, fr.data); ok {
			if ctl&fuzzFixLens != 0 {
				fuzzFixLengths(ip, v6)
			}
			if ctl&fuzzFixSums != 0 {
				fuzzFixChecksums(ip, v6)
			}
		}
		frames = append(frames, fr)
	}
	return frames
}

// fuzzOut is a frame an instance wrote.
type fuzzOut struct {
	during int // the input frame whose Input call wrote it (len(frames): Close)
	dir    books.Dir
	gen    bool // generated: its timestamp is the clock's, not an input frame's
	ts     int64
	ifc    framing.Interface
	data   []byte
}

func (o *fuzzOut) same(p *fuzzOut) bool {
	return o.during == p.during && o.dir == p.dir && o.gen == p.gen && (o.gen || o.ts == p.ts) &&
		o.ifc == p.ifc && bytes.Equal(o.data, p.data)
}

func fuzzListOuts(outs []fuzzOut) string {
	var b bytes.Buffer
	for i, o := range outs {
		fmt.Fprintf(&b, "  %d: during frame %d %s gen=%v ts=%d %s %x\n", i, o.during, o.dir, o.gen, o.ts, o.ifc.Name, o.data)
	}
	return b.String()
}

// fuzzResult is what a run gave.
type fuzzResult struct {
	outs     []fuzzOut
	snap     books.Snapshot
	counters []rules.Counter
}

// fuzzInput is what the checks know of an input frame.
type fuzzInput struct {
	index int
	data  []byte
	l4    fuzzValidity // of its datagram's transport checksum
}

type fuzzValidity uint8

const (
	l4Unknown fuzzValidity = iota // not IP, not a transport it checks, or a datagram never completed
	l4Valid
	l4Bad
)

func (v fuzzValidity) String() string {
	return [...]string{"unknown", "valid", "bad"}[v]
}

// fuzzRun runs frames through a new instance of cfg, checking every frame written, and the
// books after Close.
func fuzzRun(t *testing.T, cfg Config, frames []fuzzFrame) fuzzResult {
	t.Helper()
	var east, west recorder
	var bk books.Books
	in, err := New(cfg, &east, &west, &bk)
	if err != nil {
		t.Fatal(err)
	}
	// Per run, not shared: outputs carry the input's interface, and the runs compare them.
	ifcs := [2][2]*framing.Interface{
		{{Name: "lan", LinkType: framing.LinkEthernet}, {Name: "wan", LinkType: framing.LinkEthernet}},
		{{Name: "lan-ip", LinkType: framing.LinkRaw}, {Name: "wan-ip", LinkType: framing.LinkRaw}},
	}
	var res fuzzResult
	inputs := map[int64]*fuzzInput{}
	inReasm := fuzzReassembler{}
	outReasm := fuzzReassembler{}
	known := map[netip.Addr]bool{} // addresses westbound frames showed: the outside knows them
	check := &fuzzChecker{t: t, nat: cfg.NAT != nil, inside: netip.MustParsePrefix(fuzzInside), transparent: !cfg.West.IsValid(),
		inputs: inputs, known: known}
	collect := func(during int) {
		for _, o := range []struct {
			dir books.Dir
			r   *recorder
		}{{books.East, &east}, {books.West, &west}} {
			for _, p := range o.r.take() {
				_, isInput := inputs[p.Timestamp]
				out := fuzzOut{during: during, dir: o.dir, gen: !isInput, ts: p.Timestamp, data: p.Data}
				if p.Interface != nil {
					out.ifc = *p.Interface
				}
				if out.gen {
					out.ts = 0 // the clock's: differs run to run
				}
				check.out(&out, &outReasm)
				res.outs = append(res.outs, out)
			}
		}
	}
	for i := 0; i < len(frames); {
		dir := frames[i].dir
		var batch []framing.Packet
		first := i
		for ; i < len(frames) && (i == first || frames[i].batch); i++ {
			fr := &frames[i]
			ts := int64(i+1) * 1000
			link := framing.LinkEthernet
			if fr.raw {
				link = framing.LinkRaw
			}
			fin := &fuzzInput{index: i, data: fr.data}
			inputs[ts] = fin
			if ip, v6, ok := fuzzL3(link, fr.data); ok {
				fin.l4 = inReasm.validity(dir, ip, v6, ts, inputs)
				if dir == books.West && !v6 {
					fuzzNoteAddrs(ip, known)
				}
			}
			batch = append(batch, framing.Packet{Data: bytes.Clone(fr.data), Length: len(fr.data), Timestamp: ts,
				Interface: ifcs[b2i(fr.raw)][dir]})
		}
		check.during = first
		in.Input(dir, batch)
		collect(first)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	check.during = len(frames)
	collect(len(frames))
	res.snap = bk.Snapshot()
	if err := res.snap.Check(); err != nil {
		t.Fatalf("after %d frames: %v\n%+v", len(frames), err, res.snap)
	}
	res.counters = in.RuleCounters()
	return res
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fuzzChecker checks the frames an instance writes.
type fuzzChecker struct {
	t           *testing.T
	nat         bool
	inside      netip.Prefix // with nat
	transparent bool
	during      int
	inputs      map[int64]*fuzzInput
	known       map[netip.Addr]bool
}

func (c *fuzzChecker) out(o *fuzzOut, reasm *fuzzReassembler) {
	c.t.Helper()
	ip, v6, ok := fuzzL3(o.ifc.LinkType, o.data)
	if in := c.inputs[o.ts]; !o.gen && c.transparent && (!ok || !c.nat) && !bytes.Equal(o.data, in.data) {
		// A transparent stage passes frames byte for byte, but for what NAT translates.
		c.t.Fatalf("frame %d: input frame %d changed on its way %s:\n in %x\nout %x", c.during, in.index, o.dir, in.data, o.data)
	}
	if !ok {
		if o.ifc.LinkType != framing.LinkEthernet {
			c.t.Fatalf("frame %d: a raw-IP frame that is not IP left %s: %x", c.during, o.dir, o.data)
		}
		return // not IP: passes as on a bridge
	}
	n := fuzzIPLen(ip, v6)
	if n == 0 {
		c.t.Fatalf("frame %d: an IP frame with an unsound header or bad IPv4 checksum left %s: %x", c.during, o.dir, o.data)
	}
	ip = ip[:n]
	if c.nat && o.dir == books.East && !v6 {
		c.checkLeak(o, ip)
	}
	var src, dst, seg []byte
	var proto uint8
	var tss []int64
	if fuzzIsFragment(ip, v6) {
		var done bool
		if src, dst, proto, seg, tss, done = reasm.add(o.dir, ip, v6, o.ts); !done {
			return
		}
	} else if src, dst, proto, seg, ok = fuzzTransport(ip, v6); !ok {
		return
	} else {
		tss = []int64{o.ts}
	}
	v := fuzzL4(v6, src, dst, proto, seg)
	if v == l4Unknown {
		return
	}
	if o.gen {
		if v != l4Valid {
			c.t.Fatalf("frame %d: a generated frame left %s with a bad transport checksum: %x", c.during, o.dir, o.data)
		}
		return
	}
	// A forwarded datagram: its checksum must be as valid as the input's. The first
	// fragment's timestamp names the input (a translated datagram leaves under it).
	if in := c.inputs[tss[0]]; in != nil && in.l4 != l4Unknown && in.l4 != v {
		c.t.Fatalf("frame %d: input frame %d had a %s transport checksum, but left %s with a %s one: %x",
			c.during, in.index, in.l4, o.dir, v, o.data)
	}
}

// checkLeak fails if an eastbound IPv4 datagram shows an inside address the outside has not
// seen: as its source, or in the header an ICMP error quotes.
func (c *fuzzChecker) checkLeak(o *fuzzOut, ip []byte) {
	c.t.Helper()
	leak := func(b []byte, what string) {
		a := netip.AddrFrom4([4]byte(b))
		if c.inside.Contains(a) && !c.known[a] {
			c.t.Fatalf("frame %d: %s %s (inside) left eastbound: %x", c.during, what, a, o.data)
		}
	}
	leak(ip[12:16], "source")
	if q := fuzzQuoted4(ip); q != nil {
		leak(q[12:16], "quoted source")
		leak(q[16:20], "quoted destination")
	}
}

// fuzzQuoted4 returns the IPv4 header an ICMP error quotes (at least 20 bytes), or nil.
func fuzzQuoted4(ip []byte) []byte {
	hl := int(ip[0]&0x0f) * 4
	if ip[9] != 1 || binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 || len(ip) < hl+8+20 {
		return nil
	}
	switch ip[hl] {
	case 3, 4, 5, 11, 12:
		if q := ip[hl+8:]; q[0]>>4 == 4 {
			return q
		}
	}
	return nil
}

// fuzzNoteAddrs records the IPv4 addresses a westbound frame shows, quoted ones included.
func fuzzNoteAddrs(ip []byte, known map[netip.Addr]bool) {
	if fuzzIPLen(ip, false) == 0 {
		return
	}
	known[netip.AddrFrom4([4]byte(ip[12:16]))] = true
	known[netip.AddrFrom4([4]byte(ip[16:20]))] = true
	if q := fuzzQuoted4(ip); q != nil {
		known[netip.AddrFrom4([4]byte(q[12:16]))] = true
		known[netip.AddrFrom4([4]byte(q[16:20]))] = true
	}
}

// The checks parse frames themselves rather than with the package's parsers, so a parser
// bug cannot hide from them. They look through up to two VLAN tags, as the package does:
// what hides behind a third tag is not IP to either.

// fuzzLinkOff returns the offset of a frame's network header and whether it is IPv6.
func fuzzLinkOff(link framing.LinkType, b []byte) (off int, v6, ok bool) {
	switch link {
	case framing.LinkEthernet:
		if len(b) < 14 {
			return 0, false, false
		}
		off, et := 14, binary.BigEndian.Uint16(b[12:])
		for tags := 0; (et == 0x8100 || et == 0x88a8) && tags < 2; tags++ {
			if len(b) < off+4 {
				return 0, false, false
			}
			et, off = binary.BigEndian.Uint16(b[off+2:]), off+4
		}
		switch et {
		case 0x0800:
			return off, false, true
		case 0x86dd:
			return off, true, true
		}
	case framing.LinkRaw:
		if len(b) > 0 && (b[0]>>4 == 4 || b[0]>>4 == 6) {
			return 0, b[0]>>4 == 6, true
		}
	}
	return 0, false, false
}

// fuzzL3 returns the IP datagram a frame carries, with whatever follows it.
func fuzzL3(link framing.LinkType, b []byte) (ip []byte, v6, ok bool) {
	off, v6, ok := fuzzLinkOff(link, b)
	if !ok {
		return nil, false, false
	}
	return b[off:], v6, true
}

// fuzzIPLen returns the length of a sound IP datagram (for IPv4: with a valid header
// checksum), or 0.
func fuzzIPLen(ip []byte, v6 bool) int {
	if v6 {
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return 0
		}
		if n := 40 + int(binary.BigEndian.Uint16(ip[4:])); n <= len(ip) {
			return n
		}
		return 0
	}
	if len(ip) < 20 || ip[0]>>4 != 4 {
		return 0
	}
	hl, tot := int(ip[0]&0x0f)*4, int(binary.BigEndian.Uint16(ip[2:]))
	if hl < 20 || tot < hl || tot > len(ip) || fuzzFold(fuzzSum(ip[:hl], 0)) != 0xffff {
		return 0
	}
	return tot
}

// fuzzV6Walk walks the IPv6 extension headers that come before a fragment header or the
// transport: the offset of the byte naming the next header, and the offset after them.
func fuzzV6Walk(ip []byte) (nhAt, off int, ok bool) {
	nhAt, off = 6, 40
	for {
		switch ip[nhAt] {
		case 0, 43, 60:
			if off+8 > len(ip) {
				return 0, 0, false
			}
			nhAt, off = off, off+8*(int(ip[off+1])+1)
			if off > len(ip) {
				return 0, 0, false
			}
		default:
			return nhAt, off, true
		}
	}
}

// fuzzIsFragment reports whether a sound datagram is a fragment (not an atomic one).
func fuzzIsFragment(ip []byte, v6 bool) bool {
	if !v6 {
		return binary.BigEndian.Uint16(ip[6:])&0x3fff != 0
	}
	nhAt, off, ok := fuzzV6Walk(ip)
	return ok && ip[nhAt] == 44 && off+8 <= len(ip) && binary.BigEndian.Uint16(ip[off+2:])&0xfff9 != 0
}

// fuzzTransport returns the addresses, transport protocol and segment of an unfragmented
// datagram.
func fuzzTransport(ip []byte, v6 bool) (src, dst []byte, proto uint8, seg []byte, ok bool) {
	if !v6 {
		hl := int(ip[0]&0x0f) * 4
		return ip[12:16], ip[16:20], ip[9], ip[hl:], true
	}
	nhAt, off, ok := fuzzV6Walk(ip)
	if !ok {
		return nil, nil, 0, nil, false
	}
	proto = ip[nhAt]
	if proto == 44 { // an atomic fragment: the transport follows its header
		if off+8 > len(ip) {
			return nil, nil, 0, nil, false
		}
		proto, off = ip[off], off+8
	}
	return ip[8:24], ip[24:40], proto, ip[off:], true
}

func fuzzSum(b []byte, acc uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		acc += uint32(b[len(b)-1]) << 8
	}
	return acc
}

func fuzzFold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}

// fuzzL4 says whether a TCP, UDP, ICMP or ICMPv6 segment's checksum is valid.
func fuzzL4(v6 bool, src, dst []byte, proto uint8, seg []byte) fuzzValidity {
	pseudo := func(n int) uint32 { return fuzzSum(dst, fuzzSum(src, 0)) + uint32(proto) + uint32(n) }
	var sum uint16
	switch {
	case proto == 6:
		sum = fuzzFold(fuzzSum(seg, pseudo(len(seg))))
	case proto == 17:
		if len(seg) < 8 {
			return l4Unknown
		}
		if !v6 && binary.BigEndian.Uint16(seg[6:]) == 0 {
			return l4Valid // no checksum
		}
		n := int(binary.BigEndian.Uint16(seg[4:]))
		if n < 8 || n > len(seg) {
			return l4Unknown
		}
		sum = fuzzFold(fuzzSum(seg[:n], pseudo(n)))
	case proto == 1 && !v6:
		sum = fuzzFold(fuzzSum(seg, 0))
	case proto == 58 && v6:
		sum = fuzzFold(fuzzSum(seg, pseudo(len(seg))))
	default:
		return l4Unknown
	}
	if sum == 0xffff {
		return l4Valid
	}
	return l4Bad
}

// fuzzFixLengths sets a datagram's length fields to the bytes present.
func fuzzFixLengths(ip []byte, v6 bool) {
	if v6 {
		if len(ip) >= 40 {
			binary.BigEndian.PutUint16(ip[4:], uint16(min(len(ip)-40, 0xffff)))
		}
	} else if len(ip) >= 20 {
		binary.BigEndian.PutUint16(ip[2:], uint16(min(len(ip), 0xffff)))
	}
	if n := fuzzIPLenNoSum(ip, v6); n > 0 && !fuzzIsFragment(ip[:n], v6) {
		if _, _, proto, seg, ok := fuzzTransport(ip[:n], v6); ok && proto == 17 && len(seg) >= 8 {
			binary.BigEndian.PutUint16(seg[4:], uint16(min(len(seg), 0xffff)))
		}
	}
}

// fuzzIPLenNoSum is fuzzIPLen without the IPv4 header checksum check.
func fuzzIPLenNoSum(ip []byte, v6 bool) int {
	if v6 || len(ip) < 20 || ip[0]>>4 != 4 {
		return fuzzIPLen(ip, v6)
	}
	hl, tot := int(ip[0]&0x0f)*4, int(binary.BigEndian.Uint16(ip[2:]))
	if hl < 20 || tot < hl || tot > len(ip) {
		return 0
	}
	return tot
}

// fuzzFixChecksums makes a datagram's IPv4 header checksum and, unless it is a fragment,
// its transport checksum valid.
func fuzzFixChecksums(ip []byte, v6 bool) {
	n := fuzzIPLenNoSum(ip, v6)
	if n == 0 {
		return
	}
	ip = ip[:n]
	if !v6 {
		hl := int(ip[0]&0x0f) * 4
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], ^fuzzFold(fuzzSum(ip[:hl], 0)))
	}
	if fuzzIsFragment(ip, v6) {
		return
	}
	src, dst, proto, seg, ok := fuzzTransport(ip, v6)
	if !ok {
		return
	}
	at := -1
	switch {
	case proto == 6 && len(seg) >= 20:
		at = 16
	case proto == 17 && len(seg) >= 8:
		at = 6
		if n := int(binary.BigEndian.Uint16(seg[4:])); n >= 8 && n <= len(seg) {
			seg = seg[:n]
		}
	case (proto == 1 && !v6 || proto == 58 && v6) && len(seg) >= 4:
		at = 2
	}
	if at < 0 {
		return
	}
	binary.BigEndian.PutUint16(seg[at:], 0)
	var acc uint32
	if proto != 1 {
		acc = fuzzSum(dst, fuzzSum(src, 0)) + uint32(proto) + uint32(len(seg))
	}
	c := ^fuzzFold(fuzzSum(seg, acc))
	if c == 0 && proto == 17 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(seg[at:], c)
}

// fuzzReassembler puts fragments together, so the checks can verify the transport checksum
// of a fragmented datagram.
type fuzzReassembler map[fuzzFragKey][]fuzzPiece

type fuzzFragKey struct {
	dir      books.Dir
	v6       bool
	src, dst [16]byte
	id       uint32
	proto    uint8
}

type fuzzPiece struct {
	off, end int
	more     bool
	proto    uint8
	data     []byte
	ts       int64
}

// add files a fragment of a sound datagram; done when it completes one, with the datagram's
// addresses, protocol, transport segment and the timestamps of its fragments, first
// fragment's first.
func (r fuzzReassembler) add(dir books.Dir, ip []byte, v6 bool, ts int64) (src, dst []byte, proto uint8, seg []byte, tss []int64, done bool) {
	k := fuzzFragKey{dir: dir, v6: v6}
	var pc fuzzPiece
	if v6 {
		nhAt, off, ok := fuzzV6Walk(ip)
		if !ok || ip[nhAt] != 44 || off+8 > len(ip) {
			return
		}
		copy(k.src[:], ip[8:24])
		copy(k.dst[:], ip[24:40])
		fo := binary.BigEndian.Uint16(ip[off+2:])
		k.id = binary.BigEndian.Uint32(ip[off+4:])
		pc = fuzzPiece{off: int(fo &^ 7), more: fo&1 != 0, proto: ip[off], data: ip[off+8:]}
	} else {
		copy(k.src[:], ip[12:16])
		copy(k.dst[:], ip[16:20])
		k.id, k.proto = uint32(binary.BigEndian.Uint16(ip[4:])), ip[9]
		fo := binary.BigEndian.Uint16(ip[6:])
		pc = fuzzPiece{off: int(fo&0x1fff) * 8, more: fo&0x2000 != 0, proto: ip[9], data: ip[int(ip[0]&0x0f)*4:]}
	}
	pc.end, pc.ts, pc.data = pc.off+len(pc.data), ts, bytes.Clone(pc.data)
	pieces := append(r[k], pc)
	r[k] = pieces
	// Complete when pieces tile [0, end of the last) exactly; overlaps never complete.
	total := -1
	for _, p := range pieces {
		if !p.more {
			total = p.end
		}
	}
	if total < 0 {
		return
	}
	have := make([]bool, total)
	for _, p := range pieces {
		if p.end > total {
			return
		}
		for i := p.off; i < p.end; i++ {
			if have[i] {
				return
			}
			have[i] = true
		}
	}
	for _, h := range have {
		if !h {
			return
		}
	}
	seg = make([]byte, total)
	for _, p := range pieces {
		copy(seg[p.off:], p.data)
		if p.off == 0 {
			proto = p.proto
			tss = append([]int64{p.ts}, tss...)
		} else {
			tss = append(tss, p.ts)
		}
	}
	delete(r, k)
	n := 4
	if v6 {
		n = 16
	}
	return k.src[:n], k.dst[:n], proto, seg, tss, true
}

// validity says whether an input datagram's transport checksum is valid; for a fragment,
// once its datagram completes, the validity is set on every fragment of it.
func (r fuzzReassembler) validity(dir books.Dir, ip []byte, v6 bool, ts int64, inputs map[int64]*fuzzInput) fuzzValidity {
	n := fuzzIPLen(ip, v6)
	if n == 0 {
		return l4Unknown
	}
	ip = ip[:n]
	if !fuzzIsFragment(ip, v6) {
		src, dst, proto, seg, ok := fuzzTransport(ip, v6)
		if !ok {
			return l4Unknown
		}
		return fuzzL4(v6, src, dst, proto, seg)
	}
	src, dst, proto, seg, tss, done := r.add(dir, ip, v6, ts)
	if !done {
		return l4Unknown
	}
	v := fuzzL4(v6, src, dst, proto, seg)
	for _, t := range tss {
		if in := inputs[t]; in != nil {
			in.l4 = v
		}
	}
	return v
}

// fuzzRec is a frame of a seed, before encoding.
type fuzzRec struct {
	ctl  byte
	data []byte
}

func encodeFuzz(recs []fuzzRec, extra byte) []byte {
	var b []byte
	for _, r := range recs {
		b = append(b, r.ctl|extra)
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.data)))
		b = append(b, r.data...)
	}
	return b
}

// addFuzzSeeds adds realistic traffic between the hosts of h as seeds, each as it is and
// with the checksum repair flag set, so mutations of it keep reaching past the checks.
func addFuzzSeeds(f *testing.F, h fuzzHosts) {
	h.west6, h.east6 = net.ParseIP("2001:db8:1::10"), net.ParseIP("2001:db8:2::20")
	s := fuzzSeeder{tb: f, h: h}
	seqs := [][]fuzzRec{
		s.tcpFlow(h.west, h.east, h.replyTo, 40000, 80, 0),
		s.udpFlow(h.west, h.east, h.replyTo, 33333, 53),
		s.ping(h.west, h.east, h.replyTo),
		s.fragmented(),
		s.tcpFlow(h.west6, h.east6, h.west6, 40001, 80, 0),
		append(s.udpFlow(h.west6, h.east6, h.west6, 33334, 53), s.ping(h.west6, h.east6, h.west6)...),
		s.v6Fragmented(),
		s.misc(),
		s.tcpFlow(h.west, h.east, h.replyTo, 40002, 80, 10), // VLAN-tagged
	}
	if h.fwdPort != 0 {
		seqs = append(seqs, s.forwarded())
	}
	var all []fuzzRec
	for _, q := range seqs {
		f.Add(encodeFuzz(q, 0))
		f.Add(encodeFuzz(q, fuzzFixSums))
		all = append(all, q...)
	}
	f.Add(encodeFuzz(all[:min(len(all), fuzzMaxFrames)], fuzzFixSums|fuzzFixLens))
	raw := s.tcpFlow(h.west, h.east, h.replyTo, 40003, 80, 0)
	f.Add(encodeFuzz(raw, fuzzRawIP))
}

type fuzzSeeder struct {
	tb testing.TB
	h  fuzzHosts
}

// frame builds a frame carrying the given transport layers between two addresses, sent
// east if src is the west host (either family), else west; vlan tags it.
func (s *fuzzSeeder) frame(src, dst net.IP, vlan uint16, l4 ...gopacket.SerializableLayer) fuzzRec {
	ctl := byte(0)
	smac, dmac := s.h.westMAC, s.h.toEast
	if !src.Equal(s.h.west) && !src.Equal(s.h.west6) {
		ctl, smac, dmac = fuzzWestbound, s.h.eastMAC, s.h.toWest
	}
	v6 := src.To4() == nil
	et := layers.EthernetTypeIPv4
	if v6 {
		et = layers.EthernetTypeIPv6
	}
	eth := ethL(smac, dmac, et)
	ls := []gopacket.SerializableLayer{eth}
	if vlan != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: vlan, Type: et})
	}
	var proto layers.IPProtocol
	switch l := l4[0].(type) {
	case *layers.TCP:
		proto = layers.IPProtocolTCP
	case *layers.UDP:
		proto = layers.IPProtocolUDP
	case *layers.ICMPv4:
		proto = layers.IPProtocolICMPv4
	case *layers.ICMPv6:
		proto = layers.IPProtocolICMPv6
	default:
		s.tb.Fatalf("no protocol for %T", l)
	}
	var netL gopacket.NetworkLayer
	if v6 {
		ip := &layers.IPv6{Version: 6, NextHeader: proto, HopLimit: 64, SrcIP: src, DstIP: dst}
		ls, netL = append(ls, ip), ip
	} else {
		ip := ip4L(src, dst, proto)
		ls, netL = append(ls, ip), ip
	}
	switch l := l4[0].(type) {
	case *layers.TCP:
		l.SetNetworkLayerForChecksum(netL)
	case *layers.UDP:
		l.SetNetworkLayerForChecksum(netL)
	case *layers.ICMPv6:
		l.SetNetworkLayerForChecksum(netL)
	}
	return fuzzRec{ctl: ctl, data: serialize(s.tb, append(ls, l4...)...)}
}

func (s *fuzzSeeder) tcp(src, dst net.IP, vlan, sport, dport uint16, seq, ack uint32, flags string, payload string) fuzzRec {
	t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack, Window: 65535}
	for _, c := range flags {
		switch c {
		case 'S':
			t.SYN = true
		case 'A':
			t.ACK = true
		case 'F':
			t.FIN = true
		case 'R':
			t.RST = true
		case 'P':
			t.PSH = true
		}
	}
	return s.frame(src, dst, vlan, t, gopacket.Payload(payload))
}

// tcpFlow is a connection from the west host: handshake, data both ways (enough for the
// fast path to learn each direction and pass more), and close. replyTo is the west host's
// address as the east side sees it.
func (s *fuzzSeeder) tcpFlow(west, east, replyTo net.IP, sport, dport, vlan uint16) []fuzzRec {
	c, sv := uint32(1000), uint32(5000)
	q := []fuzzRec{
		s.tcp(west, east, vlan, sport, dport, c, 0, "S", ""),
		s.tcp(east, replyTo, vlan, dport, sport, sv, c+1, "SA", ""),
		s.tcp(west, east, vlan, sport, dport, c+1, sv+1, "A", ""),
	}
	c, sv = c+1, sv+1
	for i := range 3 {
		msg := fmt.Sprintf("GET /%d HTTP/1.0\r\n\r\n", i)
		q = append(q, s.tcp(west, east, vlan, sport, dport, c, sv, "PA", msg))
		c += uint32(len(msg))
	}
	for i := range 3 {
		msg := fmt.Sprintf("HTTP/1.0 200 OK\r\n\r\nbody %d", i)
		q = append(q, s.tcp(east, replyTo, vlan, dport, sport, sv, c, "PA", msg))
		sv += uint32(len(msg))
	}
	return append(q,
		s.tcp(west, east, vlan, sport, dport, c, sv, "A", ""),
		s.tcp(west, east, vlan, sport, dport, c, sv, "FA", ""),
		s.tcp(east, replyTo, vlan, dport, sport, sv, c+1, "FA", ""),
		s.tcp(west, east, vlan, sport, dport, c+1, sv+1, "A", ""),
	)
}

func (s *fuzzSeeder) udp(src, dst net.IP, sport, dport uint16, payload string) fuzzRec {
	return s.frame(src, dst, 0, &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, gopacket.Payload(payload))
}

// udpFlow is a query and answers, three each way, and a port unreachable quoting a
// datagram, for RELATED.
func (s *fuzzSeeder) udpFlow(west, east, replyTo net.IP, sport, dport uint16) []fuzzRec {
	var q []fuzzRec
	for i := range 3 {
		q = append(q, s.udp(west, east, sport, dport, fmt.Sprintf("query %d", i)),
			s.udp(east, replyTo, dport, sport, fmt.Sprintf("answer %d", i)))
	}
	if west.To4() != nil {
		// A query arrives after the east host closed its port: the error quotes it as
		// the east host saw it.
		quoted := s.udp(replyTo, east, sport, dport, "late query").data[14:]
		q = append(q, s.frame(east, replyTo, 0, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)},
			gopacket.Payload(quoted[:28])))
	}
	return q
}

// ping is an echo request and reply, twice, and in IPv4 a time exceeded quoting a request.
func (s *fuzzSeeder) ping(west, east, replyTo net.IP) []fuzzRec {
	var q []fuzzRec
	for seq := uint16(1); seq <= 2; seq++ {
		if west.To4() != nil {
			q = append(q,
				s.frame(west, east, 0, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: seq}, gopacket.Payload("ping")),
				s.frame(east, replyTo, 0, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(0, 0), Id: 7, Seq: seq}, gopacket.Payload("ping")))
			continue
		}
		q = append(q,
			s.frame(west, east, 0, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}, &layers.ICMPv6Echo{Identifier: 7, SeqNumber: seq}, gopacket.Payload("ping")),
			s.frame(east, replyTo, 0, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(129, 0)}, &layers.ICMPv6Echo{Identifier: 7, SeqNumber: seq}, gopacket.Payload("ping")))
	}
	if west.To4() != nil {
		req := s.frame(replyTo, east, 0, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 3}, gopacket.Payload("ping")).data[14:]
		q = append(q, s.frame(west, east, 0, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 3}, gopacket.Payload("ping")),
			s.frame(east, replyTo, 0, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(11, 0)}, gopacket.Payload(req)))
	}
	return q
}

// fragmented is a UDP query cut into three IPv4 fragments, its answer in two, out of
// order, and a query too big for one Ethernet frame (a translated one is cut again).
func (s *fuzzSeeder) fragmented() []fuzzRec {
	h := s.h
	q := s.frag4(s.udp(h.west, h.east, 33400, 53, string(bytes.Repeat([]byte("0123456789abcdef"), 12))), 64)
	a := s.frag4(s.udp(h.east, h.replyTo, 53, 33400, string(bytes.Repeat([]byte("answer.."), 20))), 96)
	big := s.frag4(s.udp(h.west, h.east, 33401, 53, string(bytes.Repeat([]byte("big query "), 300))), 1480)
	return append(append(q, a[1], a[0]), big...)
}

// frag4 cuts the datagram of an untagged IPv4 frame into fragments of size bytes.
func (s *fuzzSeeder) frag4(whole fuzzRec, size int) []fuzzRec {
	l2, hdr, payload := whole.data[:14], whole.data[14:34], whole.data[34:]
	var out []fuzzRec
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		ip := append(bytes.Clone(hdr), payload[off:end]...)
		fo := uint16(off / 8)
		if end < len(payload) {
			fo |= 0x2000
		}
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		binary.BigEndian.PutUint16(ip[6:], fo)
		fuzzFixChecksums(ip, false)
		out = append(out, fuzzRec{ctl: whole.ctl, data: append(bytes.Clone(l2), ip...)})
	}
	return out
}

// v6Fragmented is an IPv6 UDP datagram in three fragments.
func (s *fuzzSeeder) v6Fragmented() []fuzzRec {
	whole := s.udp(s.h.west6, s.h.east6, 33401, 53, string(bytes.Repeat([]byte("v6 fragment data"), 10)))
	l2, hdr, payload := whole.data[:14], whole.data[14:54], whole.data[54:]
	var out []fuzzRec
	for off := 0; off < len(payload); off += 64 {
		end := min(off+64, len(payload))
		ip := append(bytes.Clone(hdr), 17, 0, 0, 0, 0, 0, 0x12, 0x34)
		ip[6] = 44
		fo := uint16(off)
		if end < len(payload) {
			fo |= 1
		}
		binary.BigEndian.PutUint16(ip[42:], fo)
		ip = append(ip, payload[off:end]...)
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40))
		out = append(out, fuzzRec{ctl: whole.ctl, data: append(bytes.Clone(l2), ip...)})
	}
	return out
}

// misc is ARP both ways, a non-IP frame, a denied and two rejected connections, and in
// router mode a ping to the router and a datagram with TTL 1.
func (s *fuzzSeeder) misc() []fuzzRec {
	h := s.h
	arp := func(op uint16, smac net.HardwareAddr, sip net.IP, dmac net.HardwareAddr, dip net.IP, dst net.HardwareAddr) []byte {
		return serialize(s.tb, ethL(smac, dst, layers.EthernetTypeARP), &layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: op, SourceHwAddress: smac, SourceProtAddress: sip.To4(), DstHwAddress: dmac, DstProtAddress: dip.To4()})
	}
	target := h.east
	if h.router != nil {
		target = h.router
	}
	q := []fuzzRec{
		{0, arp(layers.ARPRequest, h.westMAC, h.west, make(net.HardwareAddr, 6), target, layers.EthernetBroadcast)},
		{fuzzWestbound, arp(layers.ARPReply, h.eastMAC, h.east, h.westMAC, h.west, h.westMAC)},
		{0, append(serialize(s.tb, ethL(h.westMAC, net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x0e}, 0x88cc)), make([]byte, 46)...)},
		s.tcp(h.east, h.replyTo, 0, 5555, 22, 1, 0, "S", ""),
		s.tcp(h.west, h.east, 0, 40010, 25, 1, 0, "S", ""),
		s.udp(h.west, h.east, 40011, 9, "discard"),
		s.tcp(h.west, h.east, 0, 40012, 443, 1, 0, "S", ""),
	}
	if h.router != nil {
		q = append(q, s.frame(h.west, h.router, 0, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 9, Seq: 1}, gopacket.Payload("router?")))
		ttl1 := s.udp(h.west, h.east, 33500, 53, "short-lived")
		ttl1.data[14+8] = 1
		fuzzFixChecksums(ttl1.data[14:], false)
		q = append(q, ttl1)
	}
	return q
}

// forwarded is a connection from the east host to the forwarded port, which DNAT sends to
// the west host's port 80.
func (s *fuzzSeeder) forwarded() []fuzzRec {
	h := s.h
	return []fuzzRec{
		s.tcp(h.east, h.replyTo, 0, 6000, h.fwdPort, 100, 0, "S", ""),
		s.tcp(h.west, h.east, 0, 80, 6000, 900, 101, "SA", ""),
		s.tcp(h.east, h.replyTo, 0, 6000, h.fwdPort, 101, 901, "A", ""),
		s.tcp(h.east, h.replyTo, 0, 6000, h.fwdPort, 101, 901, "PA", "hello"),
		s.tcp(h.east, h.replyTo, 0, 6000, h.fwdPort, 106, 901, "PA", "again"),
		s.tcp(h.east, h.replyTo, 0, 6000, h.fwdPort, 111, 901, "PA", "more"),
		s.tcp(h.west, h.east, 0, 80, 6000, 901, 115, "PA", "world"),
	}
}
