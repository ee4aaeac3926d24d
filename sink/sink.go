// Package sink is the east end of a chain in its offline modes: write what arrives to a file,
// or count it and throw it away, and say how much came, how fast, and how late.
package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/nf"
)

// Config says what a sink does with what arrives.
type Config struct {
	Out     *framing.Writer // nil: count and discard
	OutName string          // for messages
	Latency bool            // measure arrival time minus packet timestamp
}

// Sink consumes a stream.
type Sink struct {
	cfg         Config
	first, last time.Time
	hist        Histogram
}

// New returns a Sink.
func New(cfg Config) *Sink { return &Sink{cfg: cfg} }

// Run reads in until it ends or ctx is cancelled. Frames of a two-sided replay that entered
// from the east are turned around: sent west over ret instead of being kept.
func (s *Sink) Run(ctx context.Context, in io.Reader, ret *nf.Return, st *nf.Stage) error {
	r := framing.NewReader(in)
	east := st.Books.East()
	flush := ret.FlushWest
	if s.cfg.Out != nil {
		flush = func() error { return errors.Join(s.cfg.Out.Flush(), ret.FlushWest()) }
	}
	turned := map[*framing.Interface]*framing.Interface{}
	err := st.Pump(ctx, r, func(pkts []framing.Packet) error {
		s.arrived(pkts)
		n := framing.Bytes(pkts)
		east.In.Add(len(pkts), n)
		if k := s.turnAround(pkts, turned, ret, st); k > 0 {
			pkts = pkts[:len(pkts)-k]
			n = framing.Bytes(pkts)
		}
		if s.cfg.Out != nil {
			if err := s.cfg.Out.Write(pkts); err != nil {
				east.Drop(books.Output, len(pkts), n)
				return fmt.Errorf("%s: %w", s.cfg.OutName, err)
			}
		}
		east.Out.Add(len(pkts), n)
		return nil
	}, flush)
	if err != nil {
		err = fmt.Errorf("stdin: %w", err)
		if s.cfg.Out != nil {
			err = fmt.Errorf("%w (%s holds the %d packets before it)", err, s.cfg.OutName, east.Out.Packets())
		}
	}
	return err
}

// turnAround sends the batch's turnaround frames west, with the interface they stand for,
// and moves them to the end of pkts; it returns how many there were.
func (s *Sink) turnAround(pkts []framing.Packet, turned map[*framing.Interface]*framing.Interface, ret *nf.Return, st *nf.Stage) int {
	keep := 0
	var back []framing.Packet
	for i := range pkts {
		ifc := pkts[i].Interface
		if ifc == nil || !ifc.Turnaround {
			pkts[keep] = pkts[i]
			keep++
			continue
		}
		if turned[ifc] == nil {
			turned[ifc] = framing.Unturned(ifc)
		}
		p := pkts[i]
		p.Interface = turned[ifc]
		back = append(back, p)
	}
	if len(back) == 0 {
		return 0
	}
	copy(pkts[keep:], back)
	n := framing.Bytes(back)
	st.Books.East().Out.Add(len(back), n) // handed over to the westbound direction
	st.Books.West().In.Add(len(back), n)
	_ = ret.SendWest(st.Books.West(), back)
	return len(back)
}

// arrived notes a batch's arrival time and, with --latency, each packet's latency.
func (s *Sink) arrived(pkts []framing.Packet) {
	now := time.Now()
	if s.first.IsZero() {
		s.first = now
	}
	s.last = now
	if s.cfg.Latency {
		at := now.UnixNano()
		for i := range pkts {
			s.hist.Add(time.Duration(at - pkts[i].Timestamp))
		}
	}
}

// Summary is what a sink saw, for people and for --stats-json.
type Summary struct {
	Packets uint64          `json:"packets"`
	Bytes   uint64          `json:"bytes"`
	Seconds float64         `json:"seconds"`
	Mpps    float64         `json:"mpps"`
	Gbps    float64         `json:"gbps"`
	Latency *LatencySummary `json:"latency_us,omitempty"`
}

// LatencySummary holds percentiles of arrival time minus packet timestamp, in microseconds.
type LatencySummary struct {
	Samples  uint64  `json:"samples"`
	P50      float64 `json:"p50"`
	P90      float64 `json:"p90"`
	P99      float64 `json:"p99"`
	Max      float64 `json:"max"`
	Negative uint64  `json:"negative"`
}

// Summary returns what the sink saw so far. The duration runs from the first arrival to
// the last, so rates are those of the stream, not of start-up.
func (s *Sink) Summary(st *nf.Stage) Summary {
	in := &st.Books.East().In
	sum := Summary{Packets: in.Packets(), Bytes: in.Bytes()}
	if !s.first.IsZero() {
		sum.Seconds = s.last.Sub(s.first).Seconds()
	}
	if sum.Seconds > 0 && sum.Packets > 1 {
		sum.Mpps = float64(sum.Packets) / sum.Seconds / 1e6
		sum.Gbps = float64(sum.Bytes) * 8 / sum.Seconds / 1e9
	}
	if s.cfg.Latency {
		us := func(d time.Duration) float64 { return float64(d) / 1e3 }
		sum.Latency = &LatencySummary{Samples: s.hist.Count(), P50: us(s.hist.Quantile(.50)),
			P90: us(s.hist.Quantile(.90)), P99: us(s.hist.Quantile(.99)), Max: us(s.hist.Max()),
			Negative: s.hist.Negative()}
	}
	return sum
}

// Report writes the summary for people.
func (s *Sink) Report(w io.Writer, name string, st *nf.Stage) {
	sum := s.Summary(st)
	rate := "too few to time"
	if sum.Mpps > 0 {
		rate = fmt.Sprintf("%s, %.3f Gbit/s", nf.PPS(sum.Mpps*1e6), sum.Gbps)
	}
	fmt.Fprintf(w, "%s: %d packets, %d bytes in %.6f s: %s\n", name, sum.Packets, sum.Bytes, sum.Seconds, rate)
	if l := sum.Latency; l != nil {
		fmt.Fprintf(w, "%s: latency (arrival - timestamp) over %d packets: p50 %.1f us, p90 %.1f us, p99 %.1f us, max %.1f us\n",
			name, l.Samples, l.P50, l.P90, l.P99, l.Max)
		if l.Negative > 0 || l.Max > 3600e6 {
			fmt.Fprintf(w, "%s: warning: %d packets arrived before their timestamp and the largest latency is %.0f s: the timestamps are not send times (use stdpkt-src --timestamps now, --realtime or --pps)\n",
				name, l.Negative, l.Max/1e6)
		}
	}
}

// OpenOutput opens -w's argument: "-" is stdout, refused when it is a terminal.
func OpenOutput(name string, stdout *os.File) (io.WriteCloser, error) {
	if name == "-" {
		if err := nf.RefuseTerminal(stdout); err != nil {
			return nil, err
		}
		return nopCloser{stdout}, nil
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, nf.UsageError(fmt.Errorf("-w: %w", err))
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
