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
func RunLive(ctx context.Context, ps *Ports, out *framing.Writer, ret *nf.Return, st *nf.Stage) error {
	ports := ps.List
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
			errs[i] = ps.Capture(ctx, p, st, books.East, func(pkts []framing.Packet) error {
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
			ps.Inject(st.Books.West(), pkts)
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
func (ps *Ports) Capture(ctx context.Context, p *live.Port, st *nf.Stage, dir books.Dir, send func([]framing.Packet) error, flush func() error) error {
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
		ps.learn(p, pkts[:n])
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

// Ports are the live interfaces of one end of a chain. With several, a frame leaves by the
// interface it is tagged with when that is one of them, else by the one where its
// destination MAC was last heard (as a bridge learns), else by all of them.
type Ports struct {
	List  []*live.Port
	mu    sync.Mutex
	where map[[6]byte]*live.Port
}

// NewPorts returns the ports, with an empty MAC table.
func NewPorts(list []*live.Port) *Ports {
	return &Ports{List: list, where: map[[6]byte]*live.Port{}}
}

// learn notes the source MAC of every frame captured on p.
func (ps *Ports) learn(p *live.Port, pkts []framing.Packet) {
	if len(ps.List) < 2 {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i := range pkts {
		if d := pkts[i].Data; len(d) >= 12 && d[6]&1 == 0 {
			ps.where[[6]byte(d[6:12])] = p
		}
	}
}

// out returns the ports frame p leaves by.
func (ps *Ports) out(p *framing.Packet) []*live.Port {
	if len(ps.List) == 1 {
		return ps.List
	}
	if ifc := p.Interface; ifc != nil {
		for i, port := range ps.List {
			if port.Name() == ifc.Name {
				return ps.List[i : i+1]
			}
		}
	}
	if len(p.Data) >= 6 && p.Data[0]&1 == 0 {
		ps.mu.Lock()
		port := ps.where[[6]byte(p.Data[:6])]
		ps.mu.Unlock()
		if port != nil {
			return []*live.Port{port}
		}
	}
	return ps.List // broadcast, multicast or not heard yet: every port, as a bridge floods
}

// Inject writes frames out of their ports (see Ports), counting them into side: a frame is
// out when at least one port took it.
func (ps *Ports) Inject(side *books.Side, pkts []framing.Packet) {
	side.In.Add(len(pkts), framing.Bytes(pkts))
	if len(ps.List) == 1 {
		sent, sentBytes, _ := ps.List[0].Write(pkts)
		side.Out.Add(sent, sentBytes)
		side.Drop(books.Output, len(pkts)-sent, framing.Bytes(pkts)-sentBytes)
		return
	}
	for i := range pkts {
		ok := false
		for _, port := range ps.out(&pkts[i]) {
			if sent, _, _ := port.Write(pkts[i : i+1]); sent == 1 {
				ok = true
			}
		}
		if ok {
			side.Out.Add(1, len(pkts[i].Data))
		} else {
			side.Drop(books.Output, 1, len(pkts[i].Data))
		}
	}
}
