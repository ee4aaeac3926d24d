// Package source is the west end of a chain in its offline modes: replay of a pcap or pcapng
// file (at top speed, in real time or at a rate, looped) and the traffic generator.
package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/gen"
	"github.com/stdpkt/stdpkt/nf"
)

// Stamp says which timestamp a frame leaves with.
type Stamp uint8

// Timestamp policies.
const (
	// StampAuto keeps a file's timestamps at top speed and stamps the send time when paced.
	StampAuto Stamp = iota
	StampKeep       // the trace's own timestamps
	StampNow        // the time the frame is sent, so a sink can measure latency
)

// ParseStamp parses "keep", "now" or "" (auto).
func ParseStamp(s string) (Stamp, error) {
	switch s {
	case "", "auto":
		return StampAuto, nil
	case "keep":
		return StampKeep, nil
	case "now":
		return StampNow, nil
	}
	return 0, fmt.Errorf("--timestamps %q: want keep, now or auto", s)
}

// Config says what a source sends.
type Config struct {
	File     string    // pcap or pcapng to replay; "-" is stdin
	Gen      *gen.Spec // or a generator
	Realtime bool      // keep the trace's spacing
	PPS      float64   // or send at this many frames per second
	Loop     int       // replay the file this many times (0 or 1: once)
	Stamp    Stamp
	Stdin    io.Reader // for File "-"
	// FromEast, if set, makes the replay two-sided: the frames it selects entered from the
	// east; Home counts frames come home over the return path, and TurnWait bounds the
	// wait for each.
	FromEast *Sides
	Home     func() uint64
	TurnWait time.Duration
}

// Source sends a file or generated traffic.
type Source struct {
	cfg      Config
	progress atomic.Pointer[func() string]
}

// New checks cfg and returns a Source of it.
func New(cfg Config) (*Source, error) {
	switch {
	case cfg.Gen == nil && cfg.File == "":
		return nil, nf.UsageError(errors.New("nothing to send: give -r FILE or --gen SPEC"))
	case cfg.Gen != nil && cfg.File != "":
		return nil, nf.UsageError(errors.New("-r and --gen exclude each other"))
	case cfg.Loop > 1 && cfg.File == "-":
		return nil, nf.UsageError(errors.New("--loop needs a file to read again, not stdin"))
	case cfg.File != "" && cfg.File != "-":
		f, err := os.Open(cfg.File)
		if err != nil {
			return nil, nf.UsageError(fmt.Errorf("-r: %w", err))
		}
		f.Close()
	}
	return &Source{cfg: cfg}, nil
}

// Progress says how far the source has come ("37% of lan.pcap"), or "" when it cannot tell.
func (s *Source) Progress() string {
	if f := s.progress.Load(); f != nil {
		return (*f)()
	}
	return ""
}

// Run sends to out, counting in st's books, until the input ends or ctx is cancelled.
// It flushes before every pause and at the end.
func (s *Source) Run(ctx context.Context, out *framing.Writer, st *nf.Stage) error {
	cfg := s.cfg
	if cfg.Gen != nil {
		return s.runGen(ctx, out, st)
	}
	loops := max(cfg.Loop, 1)
	p := newPacer(cfg.PPS, cfg.Realtime)
	stampNow := cfg.Stamp == StampNow || (cfg.Stamp == StampAuto && (cfg.Realtime || cfg.PPS > 0))
	for i := 0; i < loops && ctx.Err() == nil; i++ {
		if err := s.replayOnce(ctx, p, stampNow, out, st); err != nil {
			return err
		}
	}
	return out.Flush()
}

// replayOnce sends the trace once; a file is closed before the next pass opens it.
func (s *Source) replayOnce(ctx context.Context, p *pacer, stampNow bool, out *framing.Writer, st *nf.Stage) error {
	cfg := s.cfg
	var in io.Reader = cfg.Stdin
	if cfg.File != "-" {
		f, err := os.Open(cfg.File)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
		if prog := progress(f); prog != nil {
			s.progress.Store(&prog)
		}
	}
	r := framing.NewReader(in)
	p.restart()
	var ts *twoSided
	if cfg.FromEast != nil {
		ts = &twoSided{sides: *cfg.FromEast, home: cfg.Home, wait: cfg.TurnWait,
			marked: map[*framing.Interface]*framing.Interface{}}
	}
	err := st.Pump(ctx, r, func(pkts []framing.Packet) error {
		st.Books.East().In.Add(len(pkts), framing.Bytes(pkts))
		if ts != nil {
			return ts.send(ctx, pkts, func(b []framing.Packet) error {
				return send(ctx, p, stampNow, b, out, st)
			}, out.Flush)
		}
		return send(ctx, p, stampNow, pkts, out, st)
	}, out.Flush)
	if err != nil {
		name := cfg.File
		if name == "-" {
			name = "stdin"
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (s *Source) runGen(ctx context.Context, out *framing.Writer, st *nf.Stage) error {
	cfg := s.cfg
	g := gen.New(*cfg.Gen)
	p := newPacer(cfg.Gen.Rate, false)
	p.restart()
	pkts := make([]framing.Packet, nf.BatchSize)
	total, sent := g.Remaining(), atomic.Int64{}
	prog := func() string { return fmt.Sprintf("%.0f%% generated", 100*float64(sent.Load())/float64(total)) }
	s.progress.Store(&prog)
	for ctx.Err() == nil {
		n := g.Next(pkts)
		if n == 0 {
			break
		}
		err := st.Batch(books.East, func() error {
			sent.Add(int64(n))
			st.Books.East().Generated.Add(n, framing.Bytes(pkts[:n]))
			return send(ctx, p, cfg.Stamp != StampKeep, pkts[:n], out, st)
		})
		if err != nil {
			return err
		}
	}
	return out.Flush()
}

// send paces, stamps and writes a batch. What it does not write, since the output failed
// or ctx ended while it waited, is counted dropped: the caller counted the batch in.
func send(ctx context.Context, p *pacer, stampNow bool, pkts []framing.Packet, out *framing.Writer, st *nf.Stage) error {
	if !p.paced() {
		if stampNow {
			now := time.Now().UnixNano()
			for i := range pkts {
				pkts[i].Timestamp = now
			}
		}
		return write(out, pkts, st)
	}
	unsent := func(rest []framing.Packet, why books.Reason) {
		st.Books.East().Drop(why, len(rest), framing.Bytes(rest))
	}
	from := 0
	for i := range pkts {
		wait := p.wait(pkts[i].Timestamp)
		if wait > 0 {
			// Flush before sleeping, so what is due goes out now rather than with the next batch.
			if err := write(out, pkts[from:i], st); err != nil {
				unsent(pkts[i:], books.Output)
				return err
			}
			from = i
			if err := out.Flush(); err != nil {
				unsent(pkts[i:], books.Output)
				return err
			}
			select {
			case <-ctx.Done():
				unsent(pkts[i:], books.Unsent)
				return nil
			case <-time.After(wait):
			}
		}
		if stampNow {
			pkts[i].Timestamp = time.Now().UnixNano()
		}
	}
	if err := write(out, pkts[from:], st); err != nil {
		return err
	}
	// A paced frame leaves when it is due: the last of the batch too, not when the next
	// batch's first frame has waited its turn.
	return out.Flush()
}

func write(out *framing.Writer, pkts []framing.Packet, st *nf.Stage) error {
	if len(pkts) == 0 {
		return nil
	}
	if err := out.Write(pkts); err != nil {
		st.Books.East().Drop(books.Output, len(pkts), framing.Bytes(pkts))
		return fmt.Errorf("output: %w", err)
	}
	st.Books.East().Out.Add(len(pkts), framing.Bytes(pkts))
	return nil
}

func progress(f *os.File) func() string {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
		return nil
	}
	size := fi.Size()
	return func() string {
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return ""
		}
		return fmt.Sprintf("%.0f%% of %s", 100*float64(off)/float64(size), f.Name())
	}
}

// pacer says how long to wait before a frame is due.
type pacer struct {
	interval time.Duration // per frame, when a rate is set
	realtime bool
	start    time.Time
	firstTS  int64
	sent     int64
}

func newPacer(pps float64, realtime bool) *pacer {
	p := &pacer{realtime: realtime}
	if pps > 0 {
		p.interval = time.Duration(float64(time.Second) / pps)
	}
	return p
}

func (p *pacer) paced() bool { return p.realtime || p.interval > 0 }

func (p *pacer) restart() {
	p.start, p.firstTS, p.sent = time.Now(), -1, 0
}

// wait returns how long until the frame with trace timestamp ts is due; waits under 50 us
// are not worth a sleep and return 0.
func (p *pacer) wait(ts int64) time.Duration {
	if p.sent == 0 {
		p.start = time.Now() // the clock starts with the first frame, not with the file
	}
	var due time.Duration
	if p.realtime {
		if p.firstTS < 0 {
			p.firstTS = ts
		}
		due = time.Duration(max(ts-p.firstTS, 0))
	} else {
		due = time.Duration(p.sent) * p.interval
	}
	p.sent++
	if w := due - time.Since(p.start); w > 50*time.Microsecond {
		return w
	}
	return 0
}
