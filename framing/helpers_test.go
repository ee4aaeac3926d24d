package framing

// Helpers shared by the framing tests: stream builders (pcapng blocks, classic pcap records,
// assembled with encoding/binary so the tests do not depend on the Writer they check),
// readers that copy packets out of the Reader's buffer, and error assertions.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// ---------------------------------------------------------------------------------------------
// pcapng

// appendOrder is a byte order that can also append, as binary.LittleEndian and BigEndian can.
type appendOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// ngStream builds a pcapng stream block by block. offs records the byte offset of every block
// appended, in order, so error tests can name the exact offset they expect.
type ngStream struct {
	order appendOrder
	b     []byte
	offs  []int64
}

func newNG(order appendOrder) *ngStream { return &ngStream{order: order} }

// last returns the offset of the last block appended.
func (s *ngStream) last() int64 { return s.offs[len(s.offs)-1] }

// bytes returns the stream built so far.
func (s *ngStream) bytes() []byte { return s.b }

// ngOpt is one pcapng option; ngOpts encodes a list of them, padded, with opt_endofopt.
type ngOpt struct {
	code uint16
	val  []byte
}

func ngOpts(order appendOrder, opts ...ngOpt) []byte {
	if len(opts) == 0 {
		return nil
	}
	var b []byte
	for _, o := range opts {
		b = order.AppendUint16(b, o.code)
		b = order.AppendUint16(b, uint16(len(o.val)))
		b = append(b, o.val...)
		b = append(b, make([]byte, pad4(len(o.val)))...)
	}
	return append(b, 0, 0, 0, 0)
}

func pad4(n int) int { return (4 - n&3) & 3 }

// raw appends a block of the given type around body (padded to 4 bytes), with correct leading
// and trailing lengths.
func (s *ngStream) raw(btype uint32, body []byte) *ngStream {
	blen := uint32(12 + len(body) + pad4(len(body)))
	return s.rawLen(btype, body, blen, blen)
}

// rawLen appends a block with explicit leading and trailing lengths, for broken streams.
func (s *ngStream) rawLen(btype uint32, body []byte, blen, trail uint32) *ngStream {
	s.offs = append(s.offs, int64(len(s.b)))
	s.b = s.order.AppendUint32(s.b, btype)
	s.b = s.order.AppendUint32(s.b, blen)
	s.b = append(s.b, body...)
	s.b = append(s.b, make([]byte, pad4(len(body)))...)
	s.b = s.order.AppendUint32(s.b, trail)
	return s
}

// shb appends a section header block, version 1.0, section length unknown.
func (s *ngStream) shb() *ngStream {
	var body []byte
	body = s.order.AppendUint32(body, 0x1A2B3C4D)
	body = s.order.AppendUint16(body, 1)
	body = s.order.AppendUint16(body, 0)
	body = s.order.AppendUint64(body, ^uint64(0))
	return s.raw(0x0A0D0D0A, body)
}

// idb appends an interface description block.
func (s *ngStream) idb(link LinkType, snap uint32, opts ...ngOpt) *ngStream {
	var body []byte
	body = s.order.AppendUint16(body, uint16(link))
	body = s.order.AppendUint16(body, 0)
	body = s.order.AppendUint32(body, snap)
	body = append(body, ngOpts(s.order, opts...)...)
	return s.raw(1, body)
}

// epbBody is the body of an enhanced packet block.
func (s *ngStream) epbBody(id uint32, ts uint64, data []byte, caplen, orig uint32, opts ...ngOpt) []byte {
	var body []byte
	body = s.order.AppendUint32(body, id)
	body = s.order.AppendUint32(body, uint32(ts>>32))
	body = s.order.AppendUint32(body, uint32(ts))
	body = s.order.AppendUint32(body, caplen)
	body = s.order.AppendUint32(body, orig)
	body = append(body, data...)
	body = append(body, make([]byte, pad4(len(data)))...)
	return append(body, ngOpts(s.order, opts...)...)
}

// epb appends an enhanced packet block; ts is in the interface's resolution.
func (s *ngStream) epb(id uint32, ts uint64, data []byte, orig uint32, opts ...ngOpt) *ngStream {
	return s.raw(6, s.epbBody(id, ts, data, uint32(len(data)), orig, opts...))
}

// spb appends a simple packet block.
func (s *ngStream) spb(orig uint32, data []byte) *ngStream {
	body := s.order.AppendUint32(nil, orig)
	return s.raw(3, append(body, data...))
}

// opb appends an obsolete packet block (type 2).
func (s *ngStream) opb(id uint16, ts uint64, data []byte, orig uint32) *ngStream {
	var body []byte
	body = s.order.AppendUint16(body, id)
	body = s.order.AppendUint16(body, 0) // drops count
	body = s.order.AppendUint32(body, uint32(ts>>32))
	body = s.order.AppendUint32(body, uint32(ts))
	body = s.order.AppendUint32(body, uint32(len(data)))
	body = s.order.AppendUint32(body, orig)
	return s.raw(2, append(body, data...))
}

// isb appends an interface statistics block.
func (s *ngStream) isb(id uint32, ts uint64) *ngStream {
	var body []byte
	body = s.order.AppendUint32(body, id)
	body = s.order.AppendUint32(body, uint32(ts>>32))
	body = s.order.AppendUint32(body, uint32(ts))
	body = append(body, ngOpts(s.order, ngOpt{4, s.order.AppendUint64(nil, 7)})...) // isb_ifrecv
	return s.raw(5, body)
}

// Options used by the tests.
func optName(name string) ngOpt { return ngOpt{2, []byte(name)} }
func optTsresol(v byte) ngOpt   { return ngOpt{9, []byte{v}} }
func optTsoffset(order appendOrder, sec int64) ngOpt {
	return ngOpt{14, order.AppendUint64(nil, uint64(sec))}
}
func optFlags(order appendOrder, flags uint32) ngOpt {
	return ngOpt{2, order.AppendUint32(nil, flags)}
}

// ---------------------------------------------------------------------------------------------
// classic pcap

// pcapStream builds a classic pcap stream; offs holds the header's and every record's offset.
type pcapStream struct {
	order appendOrder
	nano  bool
	b     []byte
	offs  []int64
}

func newPcap(order appendOrder, nano bool, snap uint32, link LinkType) *pcapStream {
	s := &pcapStream{order: order, nano: nano, offs: []int64{0}}
	magic := uint32(0xa1b2c3d4)
	if nano {
		magic = 0xa1b23c4d
	}
	s.b = order.AppendUint32(s.b, magic)
	s.b = order.AppendUint16(s.b, 2)
	s.b = order.AppendUint16(s.b, 4)
	s.b = order.AppendUint32(s.b, 0)
	s.b = order.AppendUint32(s.b, 0)
	s.b = order.AppendUint32(s.b, snap)
	s.b = order.AppendUint32(s.b, uint32(link))
	return s
}

// rec appends a record; frac is micro- or nanoseconds as the magic says.
func (s *pcapStream) rec(sec, frac uint32, data []byte, orig uint32) *pcapStream {
	return s.recLen(sec, frac, data, uint32(len(data)), orig)
}

// recLen appends a record header with an explicit captured length, then data.
func (s *pcapStream) recLen(sec, frac uint32, data []byte, caplen, orig uint32) *pcapStream {
	s.offs = append(s.offs, int64(len(s.b)))
	s.b = s.order.AppendUint32(s.b, sec)
	s.b = s.order.AppendUint32(s.b, frac)
	s.b = s.order.AppendUint32(s.b, caplen)
	s.b = s.order.AppendUint32(s.b, orig)
	s.b = append(s.b, data...)
	return s
}

func (s *pcapStream) last() int64   { return s.offs[len(s.offs)-1] }
func (s *pcapStream) bytes() []byte { return s.b }

// ---------------------------------------------------------------------------------------------
// reading

// rpkt is a packet copied out of a Reader, with its interface flattened to values.
type rpkt struct {
	Data      []byte
	Length    int
	Timestamp int64
	IfName    string
	Link      LinkType
	Dir       Direction
	iface     *Interface
}

func (p rpkt) String() string {
	name := p.IfName
	if len(name) > 40 {
		name = fmt.Sprintf("%s...(%d bytes)", name[:20], len(name))
	}
	return fmt.Sprintf("{len %d/%d ts %d if %q/%s dir %v}", len(p.Data), p.Length, p.Timestamp, name, p.Link, p.Dir)
}

func copyPkt(p *Packet) rpkt {
	return rpkt{Data: bytes.Clone(p.Data), Length: p.Length, Timestamp: p.Timestamp,
		IfName: p.Interface.Name, Link: p.Interface.LinkType, Dir: p.Direction, iface: p.Interface}
}

// readAllFrom reads src to the end with a batch of batch packets and returns copies of the
// packets and the error that ended the stream (nil for io.EOF).
func readAllFrom(src io.Reader, batch int) ([]rpkt, *Reader, error) {
	rd := NewReader(src)
	pkts := make([]Packet, batch)
	var out []rpkt
	for {
		n, err := rd.Read(pkts)
		for i := range pkts[:n] {
			out = append(out, copyPkt(&pkts[i]))
		}
		if err == io.EOF {
			return out, rd, nil
		}
		if err != nil {
			if n != 0 {
				return out, rd, fmt.Errorf("Read returned %d packets with error %v", n, err)
			}
			return out, rd, err
		}
		if n == 0 {
			return out, rd, errors.New("Read returned 0 packets and no error")
		}
	}
}

// readAll reads a whole in-memory stream and fails the test on any error.
func readAll(t testing.TB, b []byte) []rpkt {
	t.Helper()
	out, _, err := readAllFrom(bytes.NewReader(b), 64)
	if err != nil {
		t.Fatalf("reading %d-byte stream: %v", len(b), err)
	}
	return out
}

// readErr reads a whole in-memory stream that must end in an error; it returns the packets
// read before it and the error.
func readErr(t testing.TB, b []byte) ([]rpkt, error) {
	t.Helper()
	out, _, err := readAllFrom(bytes.NewReader(b), 64)
	if err == nil {
		t.Fatalf("reading %d-byte stream: no error, %d packets", len(b), len(out))
	}
	return out, err
}

// wantFormatError asserts err is a *FormatError at offset off whose message contains every
// one of msgs, and returns it.
func wantFormatError(t testing.TB, err error, off int64, msgs ...string) *FormatError {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FormatError", err, err)
	}
	if fe.Offset != off {
		t.Errorf("error %q: offset %d, want %d", fe, fe.Offset, off)
	}
	for _, m := range msgs {
		if !strings.Contains(fe.Msg, m) {
			t.Errorf("error message %q does not say %q", fe.Msg, m)
		}
	}
	return fe
}

// ---------------------------------------------------------------------------------------------
// writing and comparing

// frame returns a deterministic n-byte frame whose bytes depend on seed.
func frame(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// encode writes pkts with a Writer of the given format and returns the stream.
func encode(t testing.TB, format Format, pkts []Packet) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, format)
	if err := w.Write(pkts); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	return buf.Bytes()
}

// samePackets compares what was read with what was written: bytes, lengths, timestamps,
// interface names and link types, directions. tsUnit rounds written timestamps down to what
// the format keeps (1 for nanoseconds).
func samePackets(t testing.TB, got []rpkt, want []Packet, tsUnit int64, withDir bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d packets, wrote %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		wantLen := max(w.Length, len(w.Data))
		wantTS := w.Timestamp / tsUnit * tsUnit
		if !bytes.Equal(g.Data, w.Data) || g.Length != wantLen || g.Timestamp != wantTS {
			t.Errorf("packet %d: got %v data %x, want len %d/%d ts %d data %x", i, g, g.Data, len(w.Data), wantLen, wantTS, w.Data)
		}
		wi := w.Interface
		if wi == nil {
			wi = &Interface{LinkType: LinkEthernet}
		}
		if g.Link != wi.LinkType {
			t.Errorf("packet %d: link type %v, want %v", i, g.Link, wi.LinkType)
		}
		if withDir {
			if g.IfName != wi.Name || g.Dir != w.Direction {
				t.Errorf("packet %d: interface %q dir %v, want %q dir %v", i, g.IfName, g.Dir, wi.Name, w.Direction)
			}
		}
	}
}

// ---------------------------------------------------------------------------------------------
// external tools

// needTool skips the test, loudly, when an interop tool is not installed.
func needTool(t testing.TB, name, debPkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("SKIPPING INTEROP TEST: %s not found (%v); install the Debian package %q (apt-get install %s)", name, err, debPkg, debPkg)
	}
	return p
}

// run runs a tool with stdin and returns its stdout; it fails the test on a non-zero exit.
func run(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstderr: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// ---------------------------------------------------------------------------------------------
// traces

// genTrace returns count real frames built with gopacket: Ethernet with IPv4/UDP, IPv4/TCP and
// IPv6/UDP, documentation addresses only, on the interfaces given in turn, with directions,
// nanosecond timestamps starting at start and distinct payloads (the first payload bytes
// number the packet, so it can be found again after a tool reorders packets).
func genTrace(t testing.TB, count int, start int64, ifaces ...*Interface) []Packet {
	t.Helper()
	srcMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	dstMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	v4 := []net.IP{net.IPv4(192, 0, 2, 10), net.IPv4(198, 51, 100, 20), net.IPv4(203, 0, 113, 30)}
	v6 := []net.IP{net.ParseIP("2001:db8::1"), net.ParseIP("2001:db8:1::2")}
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	pkts := make([]Packet, count)
	for i := range pkts {
		payload := make([]byte, 8+(i*37)%700)
		binary.BigEndian.PutUint32(payload, uint32(i))
		copy(payload[4:], "stdp")
		for j := 8; j < len(payload); j++ {
			payload[j] = byte(i + j)
		}
		eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}
		var ls []gopacket.SerializableLayer
		switch i % 3 {
		case 0:
			ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: v4[i%3], DstIP: v4[(i+1)%3]}
			udp := &layers.UDP{SrcPort: layers.UDPPort(10000 + i), DstPort: 53}
			if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
				t.Fatal(err)
			}
			ls = []gopacket.SerializableLayer{eth, ip, udp, gopacket.Payload(payload)}
		case 1:
			ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 63, Protocol: layers.IPProtocolTCP, SrcIP: v4[(i+2)%3], DstIP: v4[i%3]}
			tcp := &layers.TCP{SrcPort: layers.TCPPort(20000 + i), DstPort: 443, Seq: uint32(i) * 1000, Ack: 1, ACK: true, PSH: true, Window: 65535}
			if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
				t.Fatal(err)
			}
			ls = []gopacket.SerializableLayer{eth, ip, tcp, gopacket.Payload(payload)}
		default:
			eth.EthernetType = layers.EthernetTypeIPv6
			ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: v6[i%2], DstIP: v6[(i+1)%2]}
			udp := &layers.UDP{SrcPort: layers.UDPPort(30000 + i), DstPort: 123}
			if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
				t.Fatal(err)
			}
			ls = []gopacket.SerializableLayer{eth, ip, udp, gopacket.Payload(payload)}
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
			t.Fatal(err)
		}
		var ifc *Interface
		if len(ifaces) > 0 {
			ifc = ifaces[i%len(ifaces)]
		}
		pkts[i] = Packet{
			Data:      bytes.Clone(buf.Bytes()),
			Timestamp: start + int64(i)*1_000_123_457, // a second and some nanoseconds apart
			Interface: ifc,
			Direction: Direction(i % 3),
		}
		if i%5 == 4 { // some truncated captures: on the wire 100 bytes longer
			pkts[i].Length = len(pkts[i].Data) + 100
		}
	}
	return pkts
}

// traceIndex returns the packet number genTrace stored in a frame's payload, or -1.
func traceIndex(data []byte) int {
	i := bytes.Index(data, []byte("stdp"))
	if i < 4 {
		return -1
	}
	return int(binary.BigEndian.Uint32(data[i-4:]))
}
