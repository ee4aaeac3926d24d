package source

// Helpers shared by the source tests: frames, traces written with framing.Writer, and a
// replay into memory that is read back with framing.Reader.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/nf"
)

var (
	westIf = &framing.Interface{Name: "west", LinkType: framing.LinkEthernet}
	eastIf = &framing.Interface{Name: "east", LinkType: framing.LinkEthernet}
)

// t0 is the first timestamp of the test traces.
const t0 = int64(1_700_000_000_000_000_000)

// eth returns an Ethernet frame from MAC src to MAC dst carrying payload.
func eth(dst, src [6]byte, etype uint16, payload []byte) []byte {
	b := append(dst[:], src[:]...)
	b = binary.BigEndian.AppendUint16(b, etype)
	return append(b, payload...)
}

// ip4 returns an IPv4 header (no options) from src to dst followed by 8 bytes of payload.
func ip4(src, dst string) []byte {
	b := make([]byte, 28)
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], 28)
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	return b
}

// ip6 returns an IPv6 header from src to dst followed by 8 bytes of payload.
func ip6(src, dst string) []byte {
	b := make([]byte, 48)
	b[0], b[6], b[7] = 0x60, 17, 64
	binary.BigEndian.PutUint16(b[4:], 8)
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return b
}

var (
	macA = [6]byte{0x02, 0, 0, 0, 0, 0x0a}
	macB = [6]byte{0x02, 0, 0, 0, 0, 0x0b}
)

// packets returns n frames of different sizes and contents, from src, one microsecond
// apart from t0, on the west interface; some have a wire length beyond what was captured
// and a known direction, so a replay that loses either shows.
func packets(n int, src string) []framing.Packet {
	pkts := make([]framing.Packet, n)
	for i := range pkts {
		d := eth(macB, macA, 0x0800, ip4(src, "198.51.100.10"))
		d = append(d, bytes.Repeat([]byte{byte(i)}, 18+i%50)...)
		binary.BigEndian.PutUint32(d[len(d)-4:], uint32(i))
		pkts[i] = framing.Packet{Data: d, Length: len(d) + i%3, Timestamp: t0 + int64(i)*1000,
			Interface: westIf, Direction: framing.Direction(i % 3)}
	}
	return pkts
}

// encode returns pkts as a stream in format f.
func encode(t *testing.T, f framing.Format, pkts []framing.Packet) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := framing.NewWriter(&buf, f)
	if err := errors.Join(w.Write(pkts), w.Flush()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// file writes b to a new file in a temporary directory and returns its path.
func file(t *testing.T, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trace.pcapng")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// decode reads every packet of stream b, copying the frames out of the Reader's buffer.
func decode(t *testing.T, b []byte) []framing.Packet {
	t.Helper()
	r := framing.NewReader(bytes.NewReader(b))
	var out []framing.Packet
	buf := make([]framing.Packet, 64)
	for {
		n, err := r.Read(buf)
		for _, p := range buf[:n] {
			p.Data = bytes.Clone(p.Data)
			out = append(out, p)
		}
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading the output back: %v", err)
		}
	}
}

// replay runs a source of cfg into memory and returns the stream it wrote, its books and
// Run's error.
func replay(t *testing.T, ctx context.Context, cfg Config, dst io.Writer) (*framing.Writer, books.Snapshot, error) {
	t.Helper()
	src, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	out := framing.NewWriter(dst, framing.FormatPcapng)
	st := &nf.Stage{}
	err = src.Run(ctx, out, st)
	return out, st.Books.Snapshot(), err
}

// samePackets reports where got differs from want: frame bytes, wire length, direction,
// interface, and the timestamps when stamps is set.
func samePackets(t *testing.T, got, want []framing.Packet, stamps bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d packets out, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		switch {
		case !bytes.Equal(g.Data, w.Data):
			t.Fatalf("packet %d: frame differs:\n got %x\nwant %x", i, g.Data, w.Data)
		case g.Length != max(w.Length, len(w.Data)):
			t.Fatalf("packet %d: wire length %d, want %d", i, g.Length, w.Length)
		case g.Direction != w.Direction:
			t.Fatalf("packet %d: direction %v, want %v", i, g.Direction, w.Direction)
		case g.Interface == nil || w.Interface == nil || g.Interface.Name != w.Interface.Name || g.Interface.LinkType != w.Interface.LinkType:
			t.Fatalf("packet %d: interface %+v, want %+v", i, g.Interface, w.Interface)
		case stamps && g.Timestamp != w.Timestamp:
			t.Fatalf("packet %d: timestamp %d, want %d", i, g.Timestamp, w.Timestamp)
		}
	}
}

// balanced fails unless the books say in + generated = out + dropped, after moving what
// the output took but never wrote out from out to dropped, as the runner does at exit.
func balanced(t *testing.T, b books.Snapshot, lost framing.Tally) {
	t.Helper()
	e := b.East
	if e.In.Packets+e.Generated.Packets != e.Out.Packets+e.DroppedPackets() {
		t.Errorf("books do not balance: %+v", e)
	}
	if uint64(lost.Packets) > e.Out.Packets {
		t.Errorf("the output lost %d packets but only %d were counted out", lost.Packets, e.Out.Packets)
	}
}

// writes records every write its destination gets; fail, when set, is returned instead.
type writes struct {
	buf   bytes.Buffer
	sizes []int
	fail  error
	onW   func()
}

func (w *writes) Write(b []byte) (int, error) {
	if w.onW != nil {
		w.onW()
	}
	if w.fail != nil {
		return 0, w.fail
	}
	w.sizes = append(w.sizes, len(b))
	return w.buf.Write(b)
}
