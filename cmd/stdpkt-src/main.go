// Command stdpkt-src is the west end of a chain: it replays a capture or generates traffic
// and writes packets to stdout as pcapng.
package main

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/gen"
	"github.com/stdpkt/stdpkt/live"
	"github.com/stdpkt/stdpkt/nf"
	"github.com/stdpkt/stdpkt/source"
)

var version = "dev"

func main() {
	const cat = "Source"
	nf.Main(&cli.App{
		Name:      "stdpkt-src",
		Version:   version,
		Usage:     "start a chain: capture interfaces, replay a capture or generate traffic, as pcapng on stdout",
		ArgsUsage: "[IFACE...]",
		Description: `stdpkt-src is the west end of a stdpkt chain. It captures live interfaces (IFACE...,
promiscuous, through an AF_PACKET ring; needs CAP_NET_RAW), reads a pcap or pcapng capture
(-r) or generates synthetic flows (--gen), and writes the packets to stdout as pcapng, so any
stdpkt stage, tcpdump -r - or tshark -r - can read them. Replies that come back over the
return path leave through the interface, or go to --west-out FILE. It refuses to write
binary to a terminal.

Examples:
   stdpkt-src -r capture.pcap | stdpkt-sink -w out.pcapng
   stdpkt-src --gen 'udp,size=64,flows=1000,count=1000000' | stdpkt-sink
   stdpkt-src veth-in | stdpkt-fw -f rules.txt | stdpkt-sink veth-out`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "read", Aliases: []string{"r"}, Category: cat, Usage: "replay `FILE` (pcap or pcapng; - is stdin)"},
			&cli.StringFlag{Name: "gen", Category: cat, Usage: "generate traffic from `SPEC`: udp|tcp|icmp, size=N|imix, flows=N, count=N, rate=PPS, seed=N, ipv6, handshake, src=, dst=, sport=, dport="},
			&cli.BoolFlag{Name: "realtime", Category: cat, Usage: "replay with the capture's own spacing"},
			&cli.Float64Flag{Name: "pps", Category: cat, Usage: "replay at `N` packets per second"},
			&cli.IntFlag{Name: "loop", Category: cat, Value: 1, Usage: "replay the file `N` times"},
			&cli.StringFlag{Name: "timestamps", Category: cat, Value: "auto", Usage: "`keep` the capture's timestamps, stamp the send time (now), or auto: keep at top speed, now when paced"},
			&cli.StringFlag{Name: "from-east", Category: "Two-sided replay", Usage: "replay both sides of a conversation: the frames `SELECTOR` picks (iface=NAME or src=PREFIX) entered from the east; they are turned around by the sink and meet every stage westbound, in trace order; what comes home goes to --west-out"},
			&cli.DurationFlag{Name: "turnaround-wait", Category: "Two-sided replay", Value: time.Second, Usage: "wait at most `DURATION` for a turned-around frame to come home (a stage may drop it)"},
			&cli.StringFlag{Name: "format", Category: cat, Value: "pcapng", EnvVars: []string{"STDPKT_FORMAT"}, Usage: "write `pcapng` or pcap"},
		}, append(nf.ReturnFlags(), nf.Flags()...)...),
		Action: func(c *cli.Context) error {
			opts := nf.OptionsFrom(c)
			if c.NArg() > 0 {
				if c.IsSet("read") || c.IsSet("gen") {
					return nf.UsageError(errors.New("give interfaces, -r FILE or --gen SPEC, not more than one"))
				}
				return runLive(c, opts)
			}
			cfg := source.Config{File: c.String("read"), Realtime: c.Bool("realtime"), PPS: c.Float64("pps"),
				Loop: c.Int("loop"), Stdin: os.Stdin}
			var err error
			if cfg.Stamp, err = source.ParseStamp(c.String("timestamps")); err != nil {
				return nf.UsageError(err)
			}
			var cameHome atomic.Uint64 // frames come home over the return path
			if sel := c.String("from-east"); sel != "" {
				sides, err := source.ParseSides(sel)
				if err != nil {
					return nf.UsageError(err)
				}
				cfg.FromEast, cfg.Home, cfg.TurnWait = &sides, cameHome.Load, c.Duration("turnaround-wait")
			}
			if spec := c.String("gen"); spec != "" {
				g, err := gen.ParseSpec(spec)
				if err != nil {
					return nf.UsageError(err)
				}
				cfg.Gen = &g
			}
			format, err := framing.ParseFormat(c.String("format"))
			if err != nil {
				return nf.UsageError(err)
			}
			src, err := source.New(cfg)
			if err != nil {
				return err
			}
			if err := nf.RefuseTerminal(os.Stdout); err != nil {
				return err
			}
			out := framing.NewWriter(os.Stdout, format)
			st := &nf.Stage{Flush: out.Flush, Progress: src.Progress}
			st.Writes(books.East, out)
			return nf.Exit(nf.Run(opts, st, func(ctx context.Context) error {
				ret, err := nf.OpenReturn(ctx, opts, nf.Ends{East: true})
				if err != nil {
					return err
				}
				st.Writes(books.West, ret)
				defer ret.Close()
				homeDone := make(chan error, 1)
				go func() { // what comes home: to --west-out, or counted as dropped
					homeDone <- st.PumpWest(ctx, ret, func(pkts []framing.Packet) error {
						st.Books.West().In.Add(len(pkts), framing.Bytes(pkts))
						err := ret.SendWest(st.Books.West(), pkts)
						cameHome.Add(uint64(len(pkts)))
						return err
					}, ret.FlushWest)
				}()
				if err := src.Run(ctx, out, st); err != nil {
					return err
				}
				// The replay is over: the chain drains east, and what comes home is taken
				// until the next stage closes the return path.
				_, err = ret.DrainWest(ctx, homeDone, cameHome.Load, max(c.Duration("turnaround-wait"), nf.DrainQuiet))
				return err
			}))
		},
	})
}

// runLive captures the interfaces named on the command line.
func runLive(c *cli.Context, opts nf.Options) error {
	format, err := framing.ParseFormat(c.String("format"))
	if err != nil {
		return nf.UsageError(err)
	}
	names, err := nf.Interfaces(c)
	if err != nil {
		return err
	}
	ports, err := live.OpenAll(names)
	if err != nil {
		return nf.OpenError(err, errors.Is(err, live.ErrNoInterface))
	}
	if err := nf.RefuseTerminal(os.Stdout); err != nil {
		return err
	}
	out := framing.NewWriter(os.Stdout, format)
	st := &nf.Stage{Flush: out.Flush}
	st.Writes(books.East, out)
	return nf.Exit(nf.Run(opts, st, func(ctx context.Context) error {
		ret, err := nf.OpenReturn(ctx, opts, nf.Ends{East: true})
		if err != nil {
			return err
		}
		st.Writes(books.West, ret)
		defer ret.Close()
		return source.RunLive(ctx, source.NewPorts(ports), out, ret, st)
	}))
}
