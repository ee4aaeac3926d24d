package nf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/returnpath"
)

// dialPatience is how long a stage looks for its west neighbour's socket: that stage may
// still be starting, and on a loaded machine that takes a while.
const dialPatience = 3 * time.Second

// ReturnFlags are the flags that wire the westbound stream explicitly.
func ReturnFlags() []cli.Flag {
	const cat = "Return path"
	return []cli.Flag{
		&cli.StringFlag{Name: "east-in", Category: cat, EnvVars: []string{"STDPKT_EAST_IN"},
			Usage: "read westbound frames from `SPEC` (a file or FIFO, tcp:HOST:PORT, tcp-listen:[HOST]:PORT) instead of the stage after this one"},
		&cli.StringFlag{Name: "west-out", Category: cat, EnvVars: []string{"STDPKT_WEST_OUT"},
			Usage: "write westbound frames to `SPEC` (a file or FIFO, tcp:HOST:PORT, tcp-listen:[HOST]:PORT) instead of the stage before this one"},
	}
}

var errWestEnd = errors.New("the west end of the chain")

// Ends says which neighbours a stage has: a source has no stage to its west, a sink none to
// its east.
type Ends struct {
	East bool // stdout may lead to a stdpkt stage that sends replies back
	West bool // stdin may come from a stdpkt stage that takes replies
}

// Return is a stage's westbound plumbing: replies arrive from the east neighbour and leave
// to the west neighbour, found through the shared pipes or wired with --east-in/--west-out.
type Return struct {
	name   string
	stderr io.Writer

	westOnce  sync.Once
	westReady chan struct{}
	west      *framing.Writer // nil: no return path
	westWhy   error
	westConn  io.Closer

	eastReady chan struct{}
	east      io.ReadCloser // nil: nothing comes from the east
	eastWhy   error

	held *os.File // a read end of our stdout pipe, kept by CloseStdout
}

// OpenReturn starts finding the neighbours in the background; it returns at once. A listener
// on stdout is set up before it returns, so the east neighbour finds it as soon as it starts.
func OpenReturn(ctx context.Context, opts Options, ends Ends) (*Return, error) {
	r := &Return{name: opts.Name, stderr: os.Stderr, westReady: make(chan struct{}), eastReady: make(chan struct{})}
	switch {
	case opts.WestOut != "":
		go func() {
			c, err := returnpath.Open(ctx, opts.WestOut, true)
			r.setWest(c, err)
		}()
	case ends.West:
		go func() {
			c, err := returnpath.Dial(ctx, os.Stdin, dialPatience)
			r.setWest(c, err)
		}()
	default:
		r.setWest(nil, errWestEnd)
	}
	switch {
	case opts.EastIn != "":
		go func() {
			c, err := returnpath.Open(ctx, opts.EastIn, false)
			r.setEast(c, err)
		}()
	case ends.East:
		ln, err := returnpath.Listen(os.Stdout)
		if errors.Is(err, returnpath.ErrNotPipe) {
			r.setEast(nil, nil)
			break
		}
		if err != nil {
			return nil, err
		}
		ln.Refused = func(err error) { fmt.Fprintf(r.stderr, "%s: %v\n", r.name, err) }
		go func() {
			c, err := ln.Accept(ctx)
			if ctx.Err() != nil {
				err = nil
			}
			if c == nil { // a nil *UnixConn in an io.ReadCloser would not be nil
				r.setEast(nil, err)
				return
			}
			r.setEast(c, err)
		}()
	default:
		r.setEast(nil, nil)
	}
	return r, nil
}

func (r *Return) setWest(c io.WriteCloser, err error) {
	if err == nil && c != nil {
		r.west = framing.NewWriter(c, framing.FormatPcapng)
		r.westConn = c
	}
	r.westWhy = err
	close(r.westReady)
}

func (r *Return) setEast(c io.ReadCloser, err error) {
	r.east, r.eastWhy = c, err
	close(r.eastReady)
}

// West returns the writer to the west neighbour, waiting until it is found. When there is
// none it returns nil and, the first time, says so on stderr: the caller counts the frames
// as dropped (no return path).
func (r *Return) West() *framing.Writer {
	<-r.westReady
	if r.west == nil {
		r.westOnce.Do(func() {
			why := "the stage before this one is not a stdpkt stage (a pipe through another program, a file, or a terminal)"
			switch {
			case errors.Is(r.westWhy, errWestEnd):
				why = "this is the west end of the chain; give --west-out FILE to keep what comes home"
			case errors.Is(r.westWhy, returnpath.ErrNotPipe):
				why = "stdin is not a pipe from a stdpkt stage"
			case r.westWhy != nil && !returnpath.IsRefused(r.westWhy):
				why = r.westWhy.Error()
			}
			fmt.Fprintf(r.stderr, "%s: no return path: %s; westbound frames are counted as dropped (no-return-path)\n", r.name, why)
		})
	}
	return r.west
}

// WestOutput is the westbound output as a stage's network stack sees it: writes go to the
// west neighbour, or fail with books.ErrNoReturnPath when there is none.
func (r *Return) WestOutput() interface {
	Write([]framing.Packet) error
	Flush() error
} {
	return westOutput{r}
}

type westOutput struct{ r *Return }

// Flush writes out what waits for the west neighbour.
func (o westOutput) Flush() error { return o.r.FlushWest() }

func (o westOutput) Write(pkts []framing.Packet) error {
	w := o.r.West()
	if w == nil {
		return books.ErrNoReturnPath
	}
	return w.Write(pkts)
}

// SendWest writes westbound frames to the west neighbour, counting them out or dropped.
func (r *Return) SendWest(side *books.Side, pkts []framing.Packet) error {
	n := framing.Bytes(pkts)
	if err := r.WestOutput().Write(pkts); err != nil {
		side.Drop(books.ReasonFor(err), len(pkts), n)
		if errors.Is(err, books.ErrNoReturnPath) {
			return nil
		}
		return fmt.Errorf("return path west: %w", err)
	}
	side.Out.Add(len(pkts), n)
	return nil
}

// Lost returns what the west writer took but never wrote out (see framing.Writer.Lost).
func (r *Return) Lost() framing.Tally {
	select {
	case <-r.westReady:
	default:
		return framing.Tally{}
	}
	if r.west == nil {
		return framing.Tally{}
	}
	return r.west.Lost()
}

// FlushWest writes out what waits for the west neighbour.
func (r *Return) FlushWest() error {
	select {
	case <-r.westReady:
	default:
		return nil // nothing can have been written yet
	}
	if r.west == nil {
		return nil
	}
	return r.west.Flush()
}

// East waits for the east neighbour and returns the westbound frames it sends, or nil when
// there is none. An error means an explicit --east-in could not be opened.
func (r *Return) East(ctx context.Context) (io.Reader, error) {
	select {
	case <-ctx.Done():
		return nil, nil
	case <-r.eastReady:
	}
	if r.east == nil {
		return nil, r.eastWhy
	}
	return r.east, nil
}

// AwaitHome is for a source at the end of its replay: when a stdpkt stage reads our stdout,
// it waits (up to the dial patience) for that stage to connect, so replies to the last
// packets still come home, and returns true; the caller then waits for the return path to
// close. With no stage there (a file, | tcpdump -r -) it returns false at once.
func (r *Return) AwaitHome(ctx context.Context) bool {
	select {
	case <-r.eastReady:
		return r.east != nil
	default:
	}
	if !returnpath.NeighborIsStage(os.Stdout, dialPatience) {
		return false
	}
	select {
	case <-r.eastReady:
		return r.east != nil
	case <-time.After(dialPatience):
		return false
	case <-ctx.Done():
		return false
	}
}

// DrainQuiet is how long a stage whose input has ended waits for more replies before it
// gives up on its east neighbour closing the return path. The neighbour normally closes it
// as soon as its own input ends; this bound only matters when a wrapper (timeout, a
// subshell) holds the pipe open, and must outlast a slow neighbour on a loaded machine.
const DrainQuiet = 5 * time.Second

// DrainWest is what a stage does when its eastbound input has ended: it ends its own output
// so the chain drains east, and keeps relaying replies west until its east neighbour closes
// the return path (westDone), or nothing has come back for quiet (a wrapper such as timeout
// can hold the pipe open after the neighbour is done). came counts westbound frames in.
// Without a stdpkt stage east of it, it returns at once. It reports whether it took the
// westbound pump's result from westDone, and that result.
func (r *Return) DrainWest(ctx context.Context, westDone <-chan error, came func() uint64, quiet time.Duration) (bool, error) {
	connected := r.AwaitHome(ctx)
	r.CloseStdout()
	if !connected {
		return false, nil
	}
	for last := came(); ; {
		select {
		case err := <-westDone:
			return true, err
		case <-ctx.Done():
			return false, nil
		case <-time.After(quiet):
			if now := came(); now != last {
				last = now
				continue
			}
			return false, nil
		}
	}
}

// CloseStdout ends the eastbound stream, so the chain drains, while keeping hold of the
// pipe: the east neighbour checks that whoever it connected to holds the pipe, and it may
// check after we have finished writing. A read end keeps that true without keeping the
// stream open. The read end takes the write end's place at descriptor 1 in one step
// (dup3): opening it, then closing stdout, left a moment in which a neighbour listing our
// descriptors saw the new one not yet and the old one no more, and refused us (one short
// chain in a hundred on a loaded machine).
func (r *Return) CloseStdout() {
	held, err := unix.Open("/proc/self/fd/1", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Stdout.Close()
		return
	}
	if err := unix.Dup3(held, 1, unix.O_CLOEXEC); err != nil {
		unix.Close(held)
		os.Stdout.Close()
		return
	}
	unix.Close(held)
	r.held = os.Stdout // descriptor 1, now the read end
}

// Close closes both connections, so the neighbours see the return path end.
func (r *Return) Close() {
	select {
	case <-r.westReady:
		if r.westConn != nil {
			_ = r.FlushWest()
			r.westConn.Close()
		}
	default:
	}
	select {
	case <-r.eastReady:
		if r.east != nil {
			r.east.Close()
		}
	default:
	}
	if r.held != nil {
		r.held.Close()
	}
}

// PumpWest moves westbound frames from the east neighbour through handle until they end or
// ctx is done; it returns nil when there is no east neighbour.
func (s *Stage) PumpWest(ctx context.Context, r *Return, handle func([]framing.Packet) error, flush func() error) error {
	in, err := r.East(ctx)
	if in == nil {
		return err
	}
	err = s.pump(ctx, books.West, framing.NewReader(in), handle, flush)
	if errors.Is(err, framing.ErrEmptyStream) || ctx.Err() != nil {
		return nil // the east neighbour stopped before it had anything to say, or we stop
	}
	if err != nil {
		return fmt.Errorf("return path east: %w", err)
	}
	return nil
}
