package source

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/gen"
	"github.com/stdpkt/stdpkt/nf"
)

// isUsage reports whether err is the runner's usage error (exit status 2).
func isUsage(err error) bool {
	return err != nil && reflect.TypeOf(err) == reflect.TypeOf(nf.UsageError(errors.New("")))
}

// New refuses a source with nothing to send, with both a file and a generator, a loop
// over stdin or a file it cannot open, as usage errors before anything runs.
func TestNewChecksConfig(t *testing.T) {
	path := file(t, encode(t, framing.FormatPcapng, packets(1, "192.0.2.1")))
	spec, err := gen.ParseSpec("udp,count=1")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  Config
		want string // "" for no error
	}{
		{"nothing", Config{}, "nothing to send"},
		{"both", Config{File: path, Gen: &spec}, "exclude each other"},
		{"stdin and gen", Config{File: "-", Gen: &spec}, "exclude each other"},
		{"loop stdin", Config{File: "-", Loop: 2}, "--loop needs a file"},
		{"missing", Config{File: path + ".missing"}, "-r: open " + path + ".missing"},
		{"file", Config{File: path}, ""},
		{"file looped", Config{File: path, Loop: 5}, ""},
		{"stdin once", Config{File: "-", Loop: 1, Stdin: strings.NewReader("")}, ""},
		{"gen", Config{Gen: &spec}, ""},
	} {
		src, err := New(c.cfg)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want == "" && src == nil:
			t.Errorf("%s: no source and no error", c.name)
		case c.want == "":
		case err == nil:
			t.Errorf("%s: accepted", c.name)
		case !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: error %q, want it to say %q", c.name, err, c.want)
		case !isUsage(err):
			t.Errorf("%s: error %q (%T) is not a usage error", c.name, err, err)
		}
	}
	if _, err := New(Config{File: path + ".missing"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: error %v does not wrap fs.ErrNotExist", err)
	}
}

// A replay at top speed sends every frame of the file in order, bytes, wire lengths,
// directions, interfaces and timestamps as they were, and its books balance with nothing
// dropped; a pcapng written by a stage comes out byte for byte.
func TestReplayTopSpeed(t *testing.T) {
	want := packets(3*nf.BatchSize+17, "192.0.2.1")
	in := encode(t, framing.FormatPcapng, want)
	var dst writes
	out, b, err := replay(t, context.Background(), Config{File: file(t, in)}, &dst)
	if err != nil {
		t.Fatal(err)
	}
	samePackets(t, decode(t, dst.buf.Bytes()), want, true)
	if !bytes.Equal(dst.buf.Bytes(), in) {
		t.Errorf("the output stream (%d bytes) is not the input (%d bytes)", dst.buf.Len(), len(in))
	}
	n, size := uint64(len(want)), uint64(framing.Bytes(want))
	e := b.East
	if e.In != (books.Tally{Packets: n, Bytes: size}) || e.Out != e.In || e.Generated.Packets != 0 || e.DroppedPackets() != 0 {
		t.Errorf("books: %+v, want in = out = %d packets of %d bytes", e, n, size)
	}
	if b.West.In.Packets+b.West.Out.Packets != 0 {
		t.Errorf("westbound books of a replay: %+v", b.West)
	}
	if l := out.Lost(); l.Packets != 0 {
		t.Errorf("the output still holds %d packets after Run", l.Packets)
	}
}

// micropcap returns pkts as a classic pcap stream with microsecond timestamps, as tcpdump
// writes by default.
func micropcap(pkts []framing.Packet) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, 0xa1b2c3d4)
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)
	b = le.AppendUint32(b, 65535)
	b = le.AppendUint32(b, uint32(framing.LinkEthernet))
	for _, p := range pkts {
		b = le.AppendUint32(b, uint32(p.Timestamp/1e9))
		b = le.AppendUint32(b, uint32(p.Timestamp%1e9/1e3))
		b = le.AppendUint32(b, uint32(len(p.Data)))
		b = le.AppendUint32(b, uint32(p.Length))
		b = append(b, p.Data...)
	}
	return b
}

// A classic pcap file, with nanosecond or microsecond timestamps, replays into the same
// frames and timestamps, whatever the format of the output.
func TestReplayClassicPcap(t *testing.T) {
	want := packets(40, "192.0.2.1")
	for i := range want {
		want[i].Direction = framing.DirUnknown // classic pcap has no directions
		want[i].Interface = &framing.Interface{LinkType: framing.LinkEthernet}
	}
	for name, in := range map[string][]byte{"nanosecond": encode(t, framing.FormatPcap, want), "microsecond": micropcap(want)} {
		var dst writes
		_, b, err := replay(t, context.Background(), Config{File: file(t, in)}, &dst)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		samePackets(t, decode(t, dst.buf.Bytes()), want, true)
		if b.East.In.Packets != 40 || b.East.Out.Packets != 40 {
			t.Errorf("%s: books: %+v", name, b.East)
		}
	}
}

// --timestamps: keep leaves the trace's stamps, now stamps the send time, and auto keeps
// them at top speed but stamps the send time when paced (realtime or a rate), so a sink
// can measure latency.
func TestReplayStamps(t *testing.T) {
	// 20 frames 100 ns apart: paced, every one is due within the pacer's 50 us slack, so
	// the replay never sleeps.
	want := packets(20, "192.0.2.1")
	for i := range want {
		want[i].Timestamp = t0 + int64(i)*100
	}
	path := file(t, encode(t, framing.FormatPcapng, want))
	for _, c := range []struct {
		stamp    Stamp
		realtime bool
		pps      float64
		now      bool // whether the frames leave with the send time
	}{
		{StampAuto, false, 0, false},
		{StampKeep, false, 0, false},
		{StampNow, false, 0, true},
		{StampAuto, true, 0, true},
		{StampKeep, true, 0, false},
		{StampNow, true, 0, true},
		{StampAuto, false, 1e9, true},
		{StampKeep, false, 1e9, false},
		{StampNow, false, 1e9, true},
	} {
		name := fmt.Sprintf("stamp %d realtime %v pps %g", c.stamp, c.realtime, c.pps)
		var dst writes
		before := time.Now().UnixNano()
		_, b, err := replay(t, context.Background(), Config{File: path, Stamp: c.stamp, Realtime: c.realtime, PPS: c.pps}, &dst)
		after := time.Now().UnixNano()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := decode(t, dst.buf.Bytes())
		samePackets(t, got, want, !c.now)
		if c.now {
			for i, p := range got {
				if p.Timestamp < before || p.Timestamp > after {
					t.Errorf("%s: packet %d stamped %d, not the send time (between %d and %d)", name, i, p.Timestamp, before, after)
					break
				}
			}
		}
		if b.East.In.Packets != 20 || b.East.Out.Packets != 20 {
			t.Errorf("%s: books %+v", name, b.East)
		}
	}
}

// --loop N sends the file N times over, in order, each pass counted in; 0, 1 or less
// send it once.
func TestReplayLoop(t *testing.T) {
	one := packets(nf.BatchSize+3, "192.0.2.1")
	path := file(t, encode(t, framing.FormatPcapng, one))
	for _, loop := range []int{-1, 0, 1, 3} {
		var dst writes
		_, b, err := replay(t, context.Background(), Config{File: path, Loop: loop}, &dst)
		if err != nil {
			t.Fatalf("loop %d: %v", loop, err)
		}
		var want []framing.Packet
		for range max(loop, 1) {
			want = append(want, one...)
		}
		samePackets(t, decode(t, dst.buf.Bytes()), want, true)
		if b.East.In.Packets != uint64(len(want)) || b.East.Out.Packets != uint64(len(want)) {
			t.Errorf("loop %d: books %+v, want %d in and out", loop, b.East, len(want))
		}
	}
}

// -r - replays what Stdin holds, and its errors name stdin rather than "-".
func TestReplayStdin(t *testing.T) {
	want := packets(10, "192.0.2.1")
	in := encode(t, framing.FormatPcapng, want)
	var dst writes
	_, b, err := replay(t, context.Background(), Config{File: "-", Stdin: bytes.NewReader(in)}, &dst)
	if err != nil {
		t.Fatal(err)
	}
	samePackets(t, decode(t, dst.buf.Bytes()), want, true)
	if b.East.In.Packets != 10 || b.East.Out.Packets != 10 {
		t.Errorf("books %+v", b.East)
	}

	dst = writes{}
	_, _, err = replay(t, context.Background(), Config{File: "-", Stdin: bytes.NewReader(in[:len(in)-5])}, &dst)
	if err == nil || !strings.HasPrefix(err.Error(), "stdin: ") {
		t.Errorf("truncated stdin: error %v, want it to start with \"stdin: \"", err)
	}
}

// A malformed file stops the replay with an error that names the file and the byte offset
// of the bad record, after the frames before it went out, and never panics.
func TestReplayMalformed(t *testing.T) {
	pkts := packets(3, "192.0.2.1")
	whole := encode(t, framing.FormatPcapng, pkts)
	third := int64(len(encode(t, framing.FormatPcapng, pkts[:2]))) // where the third frame's block starts
	huge := bytes.Clone(whole[:third])
	huge = append(huge, 6, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0) // an EPB of 1 GiB
	for _, c := range []struct {
		name     string
		in       []byte
		off      int64 // -1: no FormatError
		before   int   // frames that go out before the error
		truncate bool
	}{
		{"truncated record", whole[:len(whole)-10], third, 2, true},
		{"oversized block", huge, third, 2, false},
		{"bad magic", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0, 0, false},
		{"truncated header", whole[:20], 0, 0, true},
	} {
		path := file(t, c.in)
		var dst writes
		_, b, err := replay(t, context.Background(), Config{File: path}, &dst)
		var fe *framing.FormatError
		switch {
		case err == nil:
			t.Errorf("%s: no error", c.name)
			continue
		case !errors.As(err, &fe):
			t.Errorf("%s: error %v (%T) is not a FormatError", c.name, err, err)
			continue
		case fe.Offset != c.off || fe.Packet != int64(c.before):
			t.Errorf("%s: error at offset %d after packet %d, want %d after %d", c.name, fe.Offset, fe.Packet, c.off, c.before)
		case !strings.HasPrefix(err.Error(), path+": ") || !strings.Contains(err.Error(), fmt.Sprintf("byte offset %d", c.off)):
			t.Errorf("%s: error %q does not name the file and the offset", c.name, err)
		case errors.Is(err, io.ErrUnexpectedEOF) != c.truncate:
			t.Errorf("%s: error %v: unexpected EOF %v, want %v", c.name, err, !c.truncate, c.truncate)
		}
		samePackets(t, decode(t, dst.buf.Bytes()), pkts[:c.before], true)
		if b.East.In.Packets != uint64(c.before) || b.East.Out.Packets != uint64(c.before) {
			t.Errorf("%s: books %+v, want %d in and out", c.name, b.East, c.before)
		}
	}
}

// An empty file is an error that says so, not a silent empty replay.
func TestReplayEmptyFile(t *testing.T) {
	path := file(t, nil)
	var dst writes
	_, _, err := replay(t, context.Background(), Config{File: path}, &dst)
	if !errors.Is(err, framing.ErrEmptyStream) || !strings.HasPrefix(err.Error(), path+": ") {
		t.Errorf("error %v, want %s: %v", err, path, framing.ErrEmptyStream)
	}
}

// When the output fails, Run returns its error, and the books balance once what the output
// took but never wrote is counted dropped: at top speed, and when paced, where the frames
// still to wait for are dropped (output) at once rather than waited for.
func TestReplayOutputFails(t *testing.T) {
	broken := errors.New("broken pipe")
	pkts := packets(5, "192.0.2.1")
	for i := range pkts {
		if i >= 2 {
			pkts[i].Timestamp = t0 + int64(time.Hour) // paced, the last three are due in an hour
		}
	}
	path := file(t, encode(t, framing.FormatPcapng, pkts))
	for _, realtime := range []bool{false, true} {
		dst := writes{fail: broken}
		out, b, err := replay(t, context.Background(), Config{File: path, Realtime: realtime}, &dst)
		if !errors.Is(err, broken) || !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("realtime %v: error %v, want %s: ...%v", realtime, err, path, broken)
		}
		lost := out.Lost()
		balanced(t, b, lost)
		if b.East.In.Packets != 5 || b.East.Out.Packets != uint64(lost.Packets) {
			t.Errorf("realtime %v: books %+v with %d lost: something counted out that never left", realtime, b.East, lost.Packets)
		}
		if realtime && b.East.Dropped[books.Output.String()].Packets != 3 {
			t.Errorf("realtime: books %+v, want the 3 frames not yet due dropped (output)", b.East)
		}
	}
}

// Cancelling a paced replay while it waits for a frame stops it at once without an error:
// what was due went out, the frames not sent are counted dropped (unsent).
func TestReplayCancelWhileWaiting(t *testing.T) {
	pkts := packets(5, "192.0.2.1")
	for i := range pkts {
		pkts[i].Timestamp = t0
		if i >= 2 {
			pkts[i].Timestamp = t0 + int64(time.Hour)
		}
	}
	path := file(t, encode(t, framing.FormatPcapng, pkts))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dst := writes{onW: cancel} // the first write is the flush before the hour's wait
	before := time.Now().UnixNano()
	_, b, err := replay(t, ctx, Config{File: path, Realtime: true}, &dst)
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, dst.buf.Bytes())
	samePackets(t, got, pkts[:2], false)
	for i, p := range got {
		if p.Timestamp < before {
			t.Errorf("packet %d stamped %d, before the replay started (%d)", i, p.Timestamp, before)
		}
	}
	e := b.East
	if e.In.Packets != 5 || e.Out.Packets != 2 || e.Dropped[books.Unsent.String()].Packets != 3 || e.DroppedPackets() != 3 {
		t.Errorf("books %+v, want in 5, out 2, dropped 3 (unsent)", e)
	}
	balanced(t, b, framing.Tally{})
}

// A replay cancelled before it starts sends nothing but still leaves a valid, empty stream.
func TestReplayCancelledBeforeStart(t *testing.T) {
	path := file(t, encode(t, framing.FormatPcapng, packets(5, "192.0.2.1")))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var dst writes
	_, b, err := replay(t, ctx, Config{File: path}, &dst)
	if err != nil {
		t.Fatal(err)
	}
	if got := decode(t, dst.buf.Bytes()); len(got) != 0 {
		t.Errorf("%d packets sent after cancel", len(got))
	}
	if b.East.In.Packets+b.East.Out.Packets != 0 {
		t.Errorf("books %+v", b.East)
	}
}

// Progress says how far into the file the replay has read while it runs, and nothing for
// stdin, whose size is unknown.
func TestReplayProgress(t *testing.T) {
	path := file(t, encode(t, framing.FormatPcapng, packets(50, "192.0.2.1")))
	src, err := New(Config{File: path})
	if err != nil {
		t.Fatal(err)
	}
	if p := src.Progress(); p != "" {
		t.Errorf("progress before the replay: %q", p)
	}
	var seen []string
	dst := writes{}
	dst.onW = func() { seen = append(seen, src.Progress()) }
	if err := src.Run(context.Background(), framing.NewWriter(&dst, framing.FormatPcapng), &nf.Stage{}); err != nil {
		t.Fatal(err)
	}
	if want := "100% of " + path; len(seen) == 0 || seen[0] != want {
		t.Errorf("progress while writing: %q, want %q first", seen, want)
	}

	in := encode(t, framing.FormatPcapng, packets(5, "192.0.2.1"))
	src, err = New(Config{File: "-", Stdin: bytes.NewReader(in)})
	if err != nil {
		t.Fatal(err)
	}
	seen = nil
	dst = writes{onW: func() { seen = append(seen, src.Progress()) }}
	if err := src.Run(context.Background(), framing.NewWriter(&dst, framing.FormatPcapng), &nf.Stage{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range seen {
		if p != "" {
			t.Errorf("progress of stdin: %q, want none", p)
		}
	}
}

// genFrames returns what a generator of spec makes, copied out of its buffer.
func genFrames(spec gen.Spec) []framing.Packet {
	g := gen.New(spec)
	var out []framing.Packet
	buf := make([]framing.Packet, nf.BatchSize)
	for n := g.Next(buf); n > 0; n = g.Next(buf) {
		for _, p := range buf[:n] {
			p.Data = bytes.Clone(p.Data)
			out = append(out, p)
		}
	}
	return out
}

// --gen sends exactly count frames, the generator's for the seed, counted generated (not
// in), stamped with the send time unless timestamps are kept (the generator's are zero).
func TestGenerate(t *testing.T) {
	spec, err := gen.ParseSpec("tcp,handshake,flows=3,count=600,size=64/128/1514,seed=7")
	if err != nil {
		t.Fatal(err)
	}
	want := genFrames(spec)
	if len(want) != 600 {
		t.Fatalf("the generator made %d frames", len(want))
	}
	for _, stamp := range []Stamp{StampAuto, StampNow, StampKeep} {
		var dst writes
		before := time.Now().UnixNano()
		_, b, err := replay(t, context.Background(), Config{Gen: &spec, Stamp: stamp}, &dst)
		after := time.Now().UnixNano()
		if err != nil {
			t.Fatalf("stamp %d: %v", stamp, err)
		}
		got := decode(t, dst.buf.Bytes())
		samePackets(t, got, want, stamp == StampKeep)
		if stamp != StampKeep {
			for i, p := range got {
				if p.Timestamp < before || p.Timestamp > after {
					t.Fatalf("stamp %d: packet %d stamped %d, not the send time (%d to %d)", stamp, i, p.Timestamp, before, after)
				}
			}
		}
		e := b.East
		size := uint64(framing.Bytes(want))
		if e.Generated != (books.Tally{Packets: 600, Bytes: size}) || e.Out != e.Generated || e.In.Packets != 0 || e.DroppedPackets() != 0 {
			t.Errorf("stamp %d: books %+v, want generated = out = 600 packets of %d bytes", stamp, e, size)
		}
	}
}

// The same spec and seed make the same stream, frame for frame.
func TestGenerateDeterministic(t *testing.T) {
	spec, err := gen.ParseSpec("udp,flows=50,count=300,size=imix,seed=42")
	if err != nil {
		t.Fatal(err)
	}
	var runs [2][]framing.Packet
	for i := range runs {
		var dst writes
		if _, _, err := replay(t, context.Background(), Config{Gen: &spec, Stamp: StampKeep}, &dst); err != nil {
			t.Fatal(err)
		}
		runs[i] = decode(t, dst.buf.Bytes())
	}
	samePackets(t, runs[1], runs[0], true)
}

// A generator at a rate writes each batch out when it is due, so frames are not held back
// until the buffer fills; at top speed many batches go out in one write.
func TestGeneratePacedFlushesEachBatch(t *testing.T) {
	for _, c := range []struct {
		spec  string
		paced bool
	}{
		{"udp,count=600,seed=1", false},
		{"udp,count=600,seed=1,rate=1000000000", true}, // 1 ns apart: paced, but never a wait
	} {
		spec, err := gen.ParseSpec(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		var dst writes
		if _, _, err := replay(t, context.Background(), Config{Gen: &spec}, &dst); err != nil {
			t.Fatal(err)
		}
		var frames []int // frames in the stream after each write
		end := 0
		for _, n := range dst.sizes {
			end += n
			frames = append(frames, len(decode(t, dst.buf.Bytes()[:end])))
		}
		if c.paced && !reflect.DeepEqual(frames, []int{256, 512, 600}) {
			t.Errorf("%s: frames written by each write %v, want every batch (256, 512, 600)", c.spec, frames)
		}
		if !c.paced && (len(frames) >= 3 || frames[len(frames)-1] != 600) {
			t.Errorf("%s: frames written by each write %v, want fewer writes than batches", c.spec, frames)
		}
	}
}

// Progress of a generator says what share of its count has been sent.
func TestGenerateProgress(t *testing.T) {
	spec, err := gen.ParseSpec("udp,count=1000,seed=1,rate=1000000000")
	if err != nil {
		t.Fatal(err)
	}
	src, err := New(Config{Gen: &spec})
	if err != nil {
		t.Fatal(err)
	}
	if p := src.Progress(); p != "" {
		t.Errorf("progress before the start: %q", p)
	}
	var seen []string
	dst := writes{}
	dst.onW = func() { seen = append(seen, src.Progress()) }
	if err := src.Run(context.Background(), framing.NewWriter(&dst, framing.FormatPcapng), &nf.Stage{}); err != nil {
		t.Fatal(err)
	}
	// A paced generator flushes every batch of 256: 26%, 51%, 77%, then all of it.
	if want := []string{"26% generated", "51% generated", "77% generated", "100% generated"}; !reflect.DeepEqual(seen, want) {
		t.Errorf("progress at each write: %q, want %q", seen, want)
	}
	if p := src.Progress(); p != "100% generated" {
		t.Errorf("progress at the end: %q", p)
	}
}

// A generator stopped before it starts makes nothing, leaving a valid, empty stream; one
// whose output fails returns the output's error.
func TestGenerateStopsAndFails(t *testing.T) {
	spec, err := gen.ParseSpec("udp,count=100,seed=1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var dst writes
	_, b, err := replay(t, ctx, Config{Gen: &spec}, &dst)
	if err != nil {
		t.Fatal(err)
	}
	if got := decode(t, dst.buf.Bytes()); len(got) != 0 || b.East.Generated.Packets != 0 {
		t.Errorf("cancelled: %d packets, books %+v", len(got), b.East)
	}

	broken := errors.New("broken pipe")
	dst = writes{fail: broken}
	out, b, err := replay(t, context.Background(), Config{Gen: &spec}, &dst)
	if !errors.Is(err, broken) {
		t.Errorf("output failing: error %v, want %v", err, broken)
	}
	balanced(t, b, out.Lost())
	if b.East.Generated.Packets != 100 || out.Lost().Packets != 100 {
		t.Errorf("output failing: books %+v, lost %+v", b.East, out.Lost())
	}
}

// Each pass of --loop closes the file it read before the next opens it, so a long loop
// cannot run out of file descriptors.
func TestReplayLoopClosesEachPass(t *testing.T) {
	path := file(t, encode(t, framing.FormatPcapng, packets(3, "192.0.2.1")))
	open := func() int { // descriptors open on the trace
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		n := 0
		for _, e := range ents {
			if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l == path {
				n++
			}
		}
		return n
	}
	most := 0
	dst := writes{}
	dst.onW = func() { most = max(most, open()) }
	if _, _, err := replay(t, context.Background(), Config{File: path, Loop: 5}, &dst); err != nil {
		t.Fatal(err)
	}
	if most > 1 {
		t.Errorf("%d descriptors open on the trace during a replay looped 5 times, want 1", most)
	}
}
