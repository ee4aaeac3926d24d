package framing

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// A Writer passes a block read from a stream through as it stands when that is what
// encoding its packet would write. These tests hold it to that: whatever a stage does to
// the packets it read, writing them gives the bytes that writing copies of them, with no
// block to pass, gives.

// twoWriters writes every batch read from a stream twice: as read (blocks passed through
// where they can be) and as copies that have no block (encoded).
type twoWriters struct {
	passed, encoded bytes.Buffer
	wp, we          *Writer
}

func newTwoWriters() *twoWriters {
	tw := &twoWriters{}
	tw.wp, tw.we = NewWriter(&tw.passed, FormatPcapng), NewWriter(&tw.encoded, FormatPcapng)
	return tw
}

// write writes pkts both ways; it reports whether both took them.
func (tw *twoWriters) write(t testing.TB, pkts []Packet) bool {
	t.Helper()
	plain := make([]Packet, len(pkts))
	for i, p := range pkts {
		p.block = nil
		plain[i] = p
	}
	errP, errE := tw.wp.Write(pkts), tw.we.Write(plain)
	if (errP == nil) != (errE == nil) {
		t.Fatalf("passing through: %v; encoding: %v", errP, errE)
	}
	return errP == nil
}

// check flushes both and compares what they wrote.
func (tw *twoWriters) check(t testing.TB) {
	t.Helper()
	if err := errors.Join(tw.wp.Flush(), tw.we.Flush()); err != nil {
		t.Fatal(err)
	}
	p, e := tw.passed.Bytes(), tw.encoded.Bytes()
	if !bytes.Equal(p, e) {
		i := 0
		for i < min(len(p), len(e)) && p[i] == e[i] {
			i++
		}
		t.Fatalf("passed through: %d bytes, encoded: %d bytes; first difference at byte %d", len(p), len(e), i)
	}
}

// copyStream reads stream in batches of batch packets, lets change alter each packet (nil:
// none), writes every batch both ways and compares the two streams. It returns the error
// that ended the stream (nil at its end), and how many packets could be passed through
// as they were written, counted with batches of one (in a larger batch the Writer's last
// interface moves on before the batch is written).
func (tw *twoWriters) copyStream(t testing.TB, stream []byte, batch int, change func(*Packet)) (int, error) {
	t.Helper()
	rd := NewReader(bytes.NewReader(stream))
	pkts := make([]Packet, batch)
	passed := 0
	for {
		n, err := rd.Read(pkts)
		for i := range pkts[:n] {
			if change != nil {
				change(&pkts[i])
			}
			if batch == 1 && tw.wp.passable(&pkts[i]) != nil {
				passed++
			}
		}
		if n > 0 && !tw.write(t, pkts[:n]) {
			return passed, nil // a packet over the Writer's limit: both refused it
		}
		if err != nil {
			tw.check(t)
			if err == io.EOF {
				err = nil
			}
			return passed, err
		}
	}
}

// mixedStream is a pcapng stream of blocks a Writer would write as they are and blocks it
// would not: other timestamp resolutions and offsets, other options, flags with more than
// a direction, padding that is not zero, an original length under the captured one.
func mixedStream(order appendOrder) []byte {
	s := newNG(order).shb().
		idb(LinkEthernet, 0, optName("west"), optTsresol(9)).
		idb(LinkEthernet, 0, optName("east")). // microseconds
		idb(LinkEthernet, 0, optName("off"), optTsresol(9), optTsoffset(order, 7)).
		idb(LinkRaw, 0, optName("raw"), optTsresol(9))
	comment := ngOpt{1, []byte("a comment")}
	for i := range 60 {
		n := 40 + i*13%90
		data := frame(n, byte(i))
		ts := uint64(1_700_000_000_000_000_000 + i*1_000_003)
		switch i % 12 {
		case 0, 1, 2:
			s.epb(0, ts, data, uint32(n))
		case 3:
			s.epb(0, ts, data, uint32(n+100), optFlags(order, 1))
		case 4:
			s.epb(0, ts, data, uint32(n), optFlags(order, 2))
		case 5:
			s.epb(0, ts, data, uint32(n), optFlags(order, 1|1<<24)) // and an FCS length
		case 6:
			s.epb(0, ts, data, uint32(n), optFlags(order, 0))
		case 7:
			s.epb(0, ts, data, uint32(n), comment, optFlags(order, 2))
		case 8:
			s.epb(1, ts/1000, data, uint32(n))
		case 9:
			s.epb(2, ts, data, uint32(n), optFlags(order, 1))
		case 10:
			s.epb(3, ts, data, uint32(n-1)) // original length under the captured
		case 11:
			s.epb(0, ts, frame(61, byte(i)), 61)
			s.b[s.last()+8+20+61] = 0xee // padding that is not zero
		}
	}
	return s.bytes()
}

// Packets read and written on untouched give the same stream either way, and the blocks a
// Writer writes as they are do go through (in the order a Reader read them).
func TestPassThroughAsEncoded(t *testing.T) {
	for _, order := range []appendOrder{le, be} {
		for _, batch := range []int{1, 7, 64} {
			passed, err := newTwoWriters().copyStream(t, mixedStream(order), batch, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Of every 12 blocks, the 5 first (on west) can go through, but not the first
			// of the stream, which also brings the interface's description.
			want := 0
			if order == le {
				want = 60/12*5 - 1
			}
			if batch == 1 && passed != want {
				t.Errorf("%s, batches of %d: %d blocks passable, want %d", order, batch, passed, want)
			}
		}
	}
}

// Whatever a stage changes in the packets it read, the Writer writes what encoding them
// writes: it passes a block through only when nothing but the frame's bytes, in place,
// has changed.
func TestPassThroughAfterChanges(t *testing.T) {
	other := &Interface{Name: "other", LinkType: LinkEthernet}
	changes := []struct {
		name string
		do   func(p *Packet, r *rand.Rand)
	}{
		{"none", func(_ *Packet, _ *rand.Rand) {}},
		{"bytes in place", func(p *Packet, r *rand.Rand) { p.Data[r.IntN(len(p.Data))] ^= 0xff }},
		{"timestamp", func(p *Packet, r *rand.Rand) { p.Timestamp += int64(1 + r.IntN(3)<<32) }},
		{"direction", func(p *Packet, r *rand.Rand) { p.Direction = Direction((int(p.Direction) + 1 + r.IntN(2)) % 3) }},
		{"length", func(p *Packet, r *rand.Rand) { p.Length += 1 + r.IntN(100) }},
		{"shorter", func(p *Packet, r *rand.Rand) { p.Data = p.Data[:len(p.Data)-1-r.IntN(3)] }},
		{"later start", func(p *Packet, _ *rand.Rand) { p.Data = p.Data[1:] }},
		{"copied", func(p *Packet, r *rand.Rand) {
			p.Data = bytes.Clone(p.Data)
			p.Data[0] ^= 1
		}},
		{"interface", func(p *Packet, _ *rand.Rand) { p.Interface = other }},
		{"no interface", func(p *Packet, _ *rand.Rand) { p.Interface = nil }},
	}
	west := &Interface{Name: "west", LinkType: LinkEthernet}
	streams := map[string][]byte{
		"mixed, little-endian": mixedStream(le),
		"mixed, big-endian":    mixedStream(be),
		"as a stage writes":    encode(t, FormatPcapng, genTrace(t, 600, traceStart, west, other)),
	}
	for name, stream := range streams {
		for _, batch := range []int{1, 16} {
			r := rand.New(rand.NewPCG(1, uint64(batch)))
			passed, err := newTwoWriters().copyStream(t, stream, batch, func(p *Packet) {
				if r.IntN(2) == 0 {
					changes[r.IntN(len(changes))].do(p, r)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if batch == 1 && name == "as a stage writes" && passed < 200 {
				t.Errorf("%s: only %d of 600 blocks passed through", name, passed)
			}
		}
	}
}

// recordingWriter keeps every slice it is given, to see where a Writer wrote from.
type recordingWriter struct{ writes [][]byte }

func (r *recordingWriter) Write(b []byte) (int, error) {
	r.writes = append(r.writes, b)
	return len(b), nil
}

// A long run of blocks passed through goes out in one write straight from the Reader's
// buffer, after what was buffered before it; the stream is the same as encoding gives.
func TestPassThroughRunIsNotCopied(t *testing.T) {
	ifc := &Interface{Name: "west", LinkType: LinkEthernet}
	in := make([]Packet, 200)
	for i := range in {
		in[i] = Packet{Data: frame(1500, byte(i)), Timestamp: int64(i), Interface: ifc, Direction: DirInbound}
	}
	stream := encode(t, FormatPcapng, in)
	rd := NewReader(bytes.NewReader(stream))
	pkts := make([]Packet, len(in))
	n, err := rd.Read(pkts)
	if err != nil || n < 100 {
		t.Fatalf("Read: %d packets, %v", n, err)
	}
	pkts[0].Data = bytes.Clone(pkts[0].Data) // encoded, with the header and the interface
	var rec recordingWriter
	w := NewWriter(&rec, FormatPcapng)
	if err := w.Write(pkts[:n]); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 2 {
		t.Fatalf("%d writes, want 2: what was buffered, then the run", len(rec.writes))
	}
	if run := rec.writes[1]; &run[0] != &pkts[1].block[0] || len(run) != (n-1)*len(pkts[1].block) {
		t.Errorf("the run's write is not the Reader's %d blocks as they stand", n-1)
	}
	var out []byte
	for _, b := range rec.writes {
		out = append(out, b...)
	}
	if !bytes.Equal(out, stream[:len(out)]) || len(out) != len(stream)-(len(in)-n)*len(pkts[1].block) {
		t.Error("what was written is not the stream read")
	}
}

// A run that fails to go out is its Write's to count: Lost holds only what earlier calls
// left buffered.
func TestPassThroughLost(t *testing.T) {
	ifc := &Interface{Name: "west", LinkType: LinkEthernet}
	in := make([]Packet, 100)
	for i := range in {
		in[i] = Packet{Data: frame(1500, byte(i)), Interface: ifc}
	}
	stream := encode(t, FormatPcapng, in)
	w := NewWriter(&failAfter{n: 1}, FormatPcapng)
	// The first packet, copied, is encoded and buffered; the second Write's run fails.
	first := []Packet{{Data: bytes.Clone(in[0].Data), Interface: ifc}}
	if err := w.Write(first); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(first); err != nil {
		t.Fatal(err)
	}
	rd := NewReader(bytes.NewReader(stream))
	pkts := make([]Packet, len(in))
	n, err := rd.Read(pkts)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(pkts[1:n]); err == nil {
		t.Fatal("Write to a failed destination succeeded")
	}
	if l := w.Lost(); l != (Tally{1, 1500}) {
		t.Errorf("Lost %+v, want the 1 packet of 1500 bytes buffered before", l)
	}
}

func TestPassThroughAllocs(t *testing.T) {
	ifc := &Interface{Name: "west", LinkType: LinkEthernet}
	for _, size := range []int{64, 1500} {
		in := make([]Packet, 100)
		for i := range in {
			in[i] = Packet{Data: frame(size, byte(i)), Timestamp: int64(i), Interface: ifc, Direction: DirOutbound}
		}
		rd := NewReader(bytes.NewReader(encode(t, FormatPcapng, in)))
		pkts := make([]Packet, len(in))
		n, err := rd.Read(pkts)
		if err != nil {
			t.Fatal(err)
		}
		w := NewWriter(io.Discard, FormatPcapng)
		write := func() {
			if err := w.Write(pkts[:n]); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		write()
		if a := testing.AllocsPerRun(1000, write); a != 0 {
			t.Errorf("%d-byte frames passed through: %v allocations per Write+Flush, want 0", size, a)
		}
	}
}

func BenchmarkPassThrough64(b *testing.B) {
	ifc := &Interface{Name: "west", LinkType: LinkEthernet}
	in := make([]Packet, 256)
	for i := range in {
		in[i] = Packet{Data: frame(64, byte(i)), Timestamp: int64(i), Interface: ifc, Direction: DirInbound}
	}
	rd := NewReader(bytes.NewReader(encode(b, FormatPcapng, in)))
	pkts := make([]Packet, len(in))
	n, err := rd.Read(pkts)
	if err != nil {
		b.Fatal(err)
	}
	w := NewWriter(io.Discard, FormatPcapng)
	b.SetBytes(int64(64 * n))
	b.ResetTimer()
	for b.Loop() {
		if err := w.Write(pkts[:n]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/packet")
}
