package sink

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/nf"
	"github.com/stdpkt/stdpkt/source"
)

// RunLive sends what arrives on in out of the ports (each frame out of the port it is
// tagged with, or the first), and sends what the ports hear west over the return path. It
// returns when in ends or ctx is cancelled.
func (s *Sink) RunLive(ctx context.Context, in io.Reader, ps *source.Ports, ret *nf.Return, st *nf.Stage) error {
	ports := ps.List
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make([]error, len(ports))
	for i, p := range ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = ps.Capture(ctx, p, st, books.West, func(pkts []framing.Packet) error {
				return ret.SendWest(st.Books.West(), pkts)
			}, ret.FlushWest)
		}()
	}
	r := framing.NewReader(in)
	err := st.Pump(ctx, r, func(pkts []framing.Packet) error {
		s.arrived(pkts)
		ps.Inject(st.Books.East(), pkts)
		return nil
	}, func() error { return nil })
	cancel()
	for _, p := range ports {
		p.Close()
	}
	wg.Wait()
	for _, p := range ports {
		p.Release()
	}
	return errors.Join(append(errs, err)...)
}
