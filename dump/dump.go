package dump

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/nf"
)

// Config says what a Dumper prints and where.
type Config struct {
	// Filter selects the packets printed; nil prints all.
	Filter *Filter
	Style  Style
	// JSON prints one JSON object per packet instead of a line.
	JSON bool
	// CountOnly prints nothing per packet, only the number of packets selected, at the end.
	CountOnly bool
	// Pass forwards every packet, selected or not, unchanged to this writer.
	Pass     *framing.Writer
	PassName string // for messages, e.g. "stdout"
	// Lines receives the lines (or JSON objects, or the count).
	Lines     io.Writer
	LinesName string // for messages, e.g. "stdout", "stderr", the -o file
}

// Dumper prints the packets of a stream, and passes them on in --pass mode.
type Dumper struct {
	cfg   Config
	dec   *Decoder
	lines *bufio.Writer
	buf   []byte
	shown uint64

	// mu keeps the runner's Flush on a signal (another goroutine) from interleaving with a
	// batch in progress.
	mu       sync.Mutex
	finished bool
}

// New returns a Dumper for cfg.
func New(cfg Config) *Dumper {
	return &Dumper{cfg: cfg, dec: NewDecoder(), lines: bufio.NewWriterSize(cfg.Lines, 64<<10),
		buf: make([]byte, 0, 1024)}
}

// Shown returns how many packets the filter selected so far.
func (d *Dumper) Shown() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.shown
}

// Run reads in until it ends or ctx is cancelled, printing (and forwarding) every packet,
// and flushes whenever the input is drained so that lines and packets are not held back on
// an idle chain.
//
// With --pass it is a full stage: replies from the east neighbour (ret) are printed too and
// passed on west, so a dump can sit anywhere in a chain without cutting the return path.
// Without, ret (if any) is only closed at the end, telling the west neighbour that no
// reply will come.
func (d *Dumper) Run(ctx context.Context, in io.Reader, ret *nf.Return, st *nf.Stage) error {
	r := framing.NewReader(in)
	east := st.Books.East()
	westDone := make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if d.cfg.Pass != nil && ret != nil {
		west := ret.WestOutput()
		go func() {
			westDone <- st.PumpWest(wctx, ret, func(pkts []framing.Packet) error {
				return d.handle(pkts, st.Books.West(), west)
			}, func() error { return errors.Join(d.flush(), ret.FlushWest()) })
		}()
	} else {
		westDone <- nil
	}
	err := st.Pump(ctx, r, func(pkts []framing.Packet) error {
		return d.Handle(pkts, east)
	}, d.flush)
	var werr error
	drained := false
	if ret != nil && d.cfg.Pass != nil && err == nil {
		// The input ended: let the chain drain east, and pass the replies still coming.
		_ = d.flush()
		drained, werr = ret.DrainWest(ctx, westDone, st.Books.West().In.Packets, nf.DrainQuiet)
	}
	cancel()
	if ret != nil {
		ret.Close()
	}
	if !drained {
		werr = errors.Join(werr, <-westDone)
	}
	if err != nil {
		return fmt.Errorf("stdin: %w", err)
	}
	return errors.Join(werr, d.Finish())
}

// output is where passed packets go: the pass writer east, the return path west.
type output interface {
	Write([]framing.Packet) error
}

// Handle prints one batch that arrived on side and forwards it in --pass mode, keeping the
// books: in for every packet; out for what is forwarded (--pass) or printed; packets the
// filter hides are dropped by rule, unless they are forwarded.
func (d *Dumper) Handle(pkts []framing.Packet, side *books.Side) error {
	var pass output
	if d.cfg.Pass != nil {
		pass = d.cfg.Pass
	}
	return d.handle(pkts, side, pass)
}

func (d *Dumper) handle(pkts []framing.Packet, side *books.Side, pass output) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	total := 0
	for i := range pkts {
		total += len(pkts[i].Data)
	}
	side.In.Add(len(pkts), total)
	shown, shownBytes := 0, 0
	for i := range pkts {
		p := &pkts[i]
		f := d.dec.Decode(p)
		if !d.cfg.Filter.Match(f) {
			continue
		}
		shown++
		shownBytes += len(p.Data)
		if d.cfg.CountOnly {
			continue
		}
		if d.cfg.JSON {
			d.buf = d.dec.AppendJSON(d.buf[:0])
		} else {
			d.buf = d.dec.AppendLine(d.buf[:0], &d.cfg.Style)
		}
		if _, err := d.lines.Write(d.buf); err != nil {
			d.account(side, pkts, total, shown, shownBytes)
			return fmt.Errorf("%s: %w", d.cfg.LinesName, err)
		}
	}
	d.shown += uint64(shown)
	if pass != nil {
		if err := pass.Write(pkts); err != nil {
			side.Drop(books.ReasonFor(err), len(pkts), total)
			if errors.Is(err, books.ErrNoReturnPath) {
				return nil
			}
			return fmt.Errorf("%s: %w", d.cfg.PassName, err)
		}
		side.Out.Add(len(pkts), total)
		return nil
	}
	side.Out.Add(shown, shownBytes)
	side.Drop(books.Rule, len(pkts)-shown, total-shownBytes)
	return nil
}

// account balances the books of a batch cut short by a failed line write: what was printed
// is out, the rest is dropped as refused by the output.
func (d *Dumper) account(side *books.Side, pkts []framing.Packet, total, shown, shownBytes int) {
	d.shown += uint64(shown)
	if d.cfg.Pass != nil {
		side.Drop(books.Output, len(pkts), total)
		return
	}
	side.Out.Add(shown, shownBytes)
	side.Drop(books.Output, len(pkts)-shown, total-shownBytes)
}

// flush writes out forwarded packets first (the next stage is waiting), then the lines.
func (d *Dumper) flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.flushLocked()
}

func (d *Dumper) flushLocked() error {
	if d.cfg.Pass != nil {
		if err := d.cfg.Pass.Flush(); err != nil {
			return fmt.Errorf("%s: %w", d.cfg.PassName, err)
		}
	}
	if err := d.lines.Flush(); err != nil {
		return fmt.Errorf("%s: %w", d.cfg.LinesName, err)
	}
	return nil
}

// Finish flushes everything and, with CountOnly, prints the count. It is what the runner
// calls when the stage is stopped by a signal, and what Run calls at the end of the input;
// only the first call prints the count.
func (d *Dumper) Finish() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg.CountOnly && !d.finished {
		d.buf = strconv.AppendUint(d.buf[:0], d.shown, 10)
		d.buf = append(d.buf, '\n')
		if _, err := d.lines.Write(d.buf); err != nil {
			return fmt.Errorf("%s: %w", d.cfg.LinesName, err)
		}
	}
	d.finished = true
	return d.flushLocked()
}
