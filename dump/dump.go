package dump

import (
	"bufio"
	"context"
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
func (d *Dumper) Run(ctx context.Context, in io.Reader, st *nf.Stage) error {
	r := framing.NewReader(in)
	east := st.Books.East()
	err := st.Pump(ctx, r, func(pkts []framing.Packet) error {
		return d.Handle(pkts, east)
	}, d.flush)
	// Westbound: when the return path lands (design section 3), replies read from it go
	// through d.Handle with st.Books.West() and a writer toward the west, on their own
	// goroutine; Handle and flush already take the lock for that.
	if err != nil {
		return fmt.Errorf("stdin: %w", err)
	}
	return d.Finish()
}

// Handle prints one batch that arrived on side and forwards it in --pass mode, keeping the
// books: in for every packet; out for what is forwarded (--pass) or printed; packets the
// filter hides are dropped by rule, unless they are forwarded.
func (d *Dumper) Handle(pkts []framing.Packet, side *books.Side) error {
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
	if d.cfg.Pass != nil {
		if err := d.cfg.Pass.Write(pkts); err != nil {
			side.Drop(books.Output, len(pkts), total)
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
