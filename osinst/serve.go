package osinst

import (
	"context"
	"errors"
	"io"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/nf"
)

// Serve runs the instance as a stage of a chain: frames from stdin travel east through it
// to out, replies from the east neighbour travel west through it to the west neighbour. It
// returns when stdin ends or ctx is cancelled, after closing the instance, so the books are
// final.
func (in *Instance) Serve(ctx context.Context, st *nf.Stage, stdin io.Reader, out *framing.Writer, ret *nf.Return) error {
	ctx, cancel := context.WithCancel(ctx)
	// Either direction's input can make output in both (a REJECT answers back the way the
	// packet came), so whichever pump finds its input drained flushes both.
	flush := func() error { return errors.Join(out.Flush(), ret.FlushWest()) }
	westDone := make(chan error, 1)
	go func() {
		westDone <- st.PumpWest(ctx, ret, func(pkts []framing.Packet) error {
			in.Input(books.West, pkts)
			return nil
		}, flush)
	}()
	east := &st.Books.Dir[books.East]
	err := st.Pump(ctx, framing.NewReader(stdin), func(pkts []framing.Packet) error {
		// Frames of a two-sided replay that entered from the east pass untouched, in
		// order, to be turned around by the sink and meet this stage westbound.
		start := 0
		for i := range pkts {
			if ifc := pkts[i].Interface; ifc != nil && ifc.Turnaround {
				if start < i {
					in.Input(books.East, pkts[start:i])
				}
				east.In.Add(1, len(pkts[i].Data))
				in.write(books.East, pkts[i:i+1])
				start = i + 1
			}
		}
		if start < len(pkts) {
			in.Input(books.East, pkts[start:])
		}
		return nil
	}, flush)
	var werr error
	drained := false
	if err == nil {
		// The input ended: let the chain drain east, and relay the replies still coming.
		_ = out.Flush()
		drained, werr = ret.DrainWest(ctx, westDone, st.Books.West().In.Packets, nf.DrainQuiet)
	}
	cancel()
	ret.Close() // ends the westbound pump's read, if it still runs
	if !drained {
		werr = errors.Join(werr, <-westDone)
	}
	return errors.Join(err, werr, in.Stop(out, ret))
}

// Stop closes the instance and flushes both directions: what the runner calls when a
// signal stops the stage, and Serve at the end of its input.
func (in *Instance) Stop(out *framing.Writer, ret *nf.Return) error {
	in.Close()
	return errors.Join(out.Flush(), ret.FlushWest())
}
