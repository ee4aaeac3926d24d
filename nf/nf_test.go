package nf

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
)

// stream returns a pcapng stream of n 64-byte frames.
func stream(t *testing.T, n int) []byte {
	t.Helper()
	ifc := &framing.Interface{Name: "west", LinkType: framing.LinkEthernet}
	pkts := make([]framing.Packet, n)
	for i := range pkts {
		pkts[i] = framing.Packet{Data: bytes.Repeat([]byte{byte(i)}, 64), Timestamp: int64(i), Interface: ifc}
	}
	var buf bytes.Buffer
	w := framing.NewWriter(&buf, framing.FormatPcapng)
	if err := errors.Join(w.Write(pkts), w.Flush()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The pump flushes when the input has nothing more right now, not while a pipe still
// holds whole records: under load batches are full, an idle chain waits for nothing.
func TestPumpFlushesWhenDrained(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := stream(t, 2*BatchSize+10)
	cut := len(s) - 10*(28+64+4)                // the last 10 frames come later, after a pause
	if _, err := w.Write(s[:cut]); err != nil { // fits the pipe: all there before the first read
		t.Fatal(err)
	}
	pause := make(chan struct{})
	go func() {
		<-pause
		_, _ = w.Write(s[cut:])
		w.Close()
	}()
	var st Stage
	var got []int // packets per batch, and -1 for every flush
	err = st.Pump(context.Background(), framing.NewReader(r), func(p []framing.Packet) error {
		got = append(got, len(p))
		if total(got) == 2*BatchSize {
			close(pause) // the pipe is drained now: the next look finds nothing
		}
		return nil
	}, func() error {
		got = append(got, -1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Two full batches from the first write, a flush when the pipe is empty, the last 10,
	// and a flush at the end (the drained input's and EOF's may both come).
	if len(got) < 5 || got[0] != BatchSize || got[1] != BatchSize || got[2] != -1 || got[3] != 10 || got[len(got)-1] != -1 {
		t.Errorf("batches and flushes (-1): %v", got)
	}
	for i := 0; i < 2; i++ {
		if got[i] == -1 {
			t.Errorf("flushed after batch %d while the pipe still held records: %v", i, got)
		}
	}
}

func total(xs []int) int {
	n := 0
	for _, x := range xs {
		if x > 0 {
			n += x
		}
	}
	return n
}

// An error from the handler stops the pump with that error; a malformed stream stops it
// with the reader's error after the packets before it were handled and flushed.
func TestPumpErrors(t *testing.T) {
	var st Stage
	boom := errors.New("boom")
	err := st.Pump(context.Background(), framing.NewReader(bytes.NewReader(stream(t, 3))),
		func([]framing.Packet) error { return boom }, func() error { return nil })
	if !errors.Is(err, boom) {
		t.Errorf("handler error: pump returned %v", err)
	}
	s := stream(t, 3)
	s = append(s, 6, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f) // an enhanced packet block of 2 GiB
	handled, flushed := 0, false
	err = st.Pump(context.Background(), framing.NewReader(bytes.NewReader(s)),
		func(p []framing.Packet) error { handled += len(p); return nil },
		func() error { flushed = true; return nil })
	var fe *framing.FormatError
	if !errors.As(err, &fe) || handled != 3 || !flushed {
		t.Errorf("malformed stream: err %v, %d handled, flushed %v; want a FormatError after 3, flushed", err, handled, flushed)
	}
}

// A cancelled context stops the pump between batches, flushing what it holds.
func TestPumpStopsOnCancel(t *testing.T) {
	var st Stage
	ctx, cancel := context.WithCancel(context.Background())
	batches, flushed := 0, false
	err := st.Pump(ctx, framing.NewReader(bytes.NewReader(stream(t, 3*BatchSize))), func([]framing.Packet) error {
		batches++
		cancel()
		return nil
	}, func() error { flushed = true; return nil })
	if err != nil || batches != 1 || !flushed {
		t.Errorf("cancelled in the first batch: err %v, %d batches, flushed %v; want nil, 1, true", err, batches, flushed)
	}
}

// lossy is an output that lost some of what it took.
type lossy struct{ lost framing.Tally }

func (l lossy) Lost() framing.Tally { return l.lost }

// What an output took but never wrote out moves from out to dropped (output), so the
// books still balance and say what really left.
func TestSettleMovesLostToDropped(t *testing.T) {
	var st Stage
	east := st.Books.East()
	east.In.Add(10, 1000)
	east.Out.Add(10, 1000)
	st.Writes(books.East, lossy{framing.Tally{Packets: 3, Bytes: 300}})
	st.settle()
	snap := st.Books.Snapshot()
	if err := snap.Check(); err != nil {
		t.Fatal(err)
	}
	if e := snap.East; e.Out.Packets != 7 || e.DroppedPackets() != 3 {
		t.Errorf("after settling: out %d, dropped %d; want 7 and 3", e.Out.Packets, e.DroppedPackets())
	}
}

func TestPPS(t *testing.T) {
	for r, want := range map[float64]string{12_345_678: "12.346 Mpps", 45_600: "45.6 kpps", 42: "42 pps"} {
		if got := PPS(r); got != want {
			t.Errorf("PPS(%v) = %q, want %q", r, got, want)
		}
	}
}
