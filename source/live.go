package source

import (
	"context"
	"errors"
	"sync"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/live"
	"github.com/stdpkt/stdpkt/nf"
)

// RunLive captures the ports and sends what they hear east, and writes westbound frames
// that come home out of the port they are tagged with (the first port when the tag names
// none of them). It returns when ctx is cancelled or a port fails.
func RunLive(ctx context.Context, ports []*live.Port, out *framing.Writer, ret *nf.Return, st *nf.Stage) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		for _, p := range ports {
			p.Close()
		}
	}()
	var wg sync.WaitGroup
	errs := make([]error, len(ports)+1)
	for i, p := range ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			errs[i] = Capture(ctx, p, st, books.East, func(pkts []framing.Packet) error {
				if err := out.Write(pkts); err != nil {
					st.Books.East().Drop(books.Output, len(pkts), framing.Bytes(pkts))
					return err
				}
				st.Books.East().Out.Add(len(pkts), framing.Bytes(pkts))
				return nil
			}, out.Flush)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs[len(ports)] = st.PumpWest(ctx, ret, func(pkts []framing.Packet) error {
			Inject(ports, st.Books.West(), pkts)
			return nil
		}, func() error { return nil })
	}()
	wg.Wait()
	for _, p := range ports {
		p.Release()
	}
	return errors.Join(errs...)
}

// Capture reads port p until ctx is done, counting what it captures as travelling in dir
// and handing batches to send; flush is called whenever the ring is drained. Ring overruns
// and oversized frames are counted as dropped.
func Capture(ctx context.Context, p *live.Port, st *nf.Stage, dir books.Dir, send func([]framing.Packet) error, flush func() error) error {
	side := &st.Books.Dir[dir]
	pkts := make([]framing.Packet, nf.BatchSize)
	for ctx.Err() == nil {
		n, err := p.Read(pkts)
		if errors.Is(err, live.ErrClosed) {
			break
		}
		if err != nil {
			return err
		}
		err = st.Batch(dir, func() error {
			over, big := p.TakeDrops()
			side.In.Add(n+int(over+big), framing.Bytes(pkts[:n]))
			side.Drop(books.Overrun, int(over), 0)
			side.Drop(books.TooBig, int(big), 0)
			if err := send(pkts[:n]); err != nil {
				return err
			}
			if n < len(pkts) {
				return flush()
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return flush()
}

// Inject writes frames out of the port each is tagged with (the first port when the tag
// names none), counting them into side.
func Inject(ports []*live.Port, side *books.Side, pkts []framing.Packet) {
	side.In.Add(len(pkts), framing.Bytes(pkts))
	for i := 0; i < len(pkts); {
		port := ports[0]
		if ifc := pkts[i].Interface; ifc != nil && len(ports) > 1 {
			for _, p := range ports {
				if p.Name() == ifc.Name {
					port = p
				}
			}
		}
		// Write runs of frames bound for the same port at once.
		j := i + 1
		for j < len(pkts) && (len(ports) == 1 || pkts[j].Interface == pkts[i].Interface) {
			j++
		}
		sent, sentBytes, _ := port.Write(pkts[i:j])
		side.Out.Add(sent, sentBytes)
		side.Drop(books.Output, j-i-sent, framing.Bytes(pkts[i:j])-sentBytes)
		i = j
	}
}
