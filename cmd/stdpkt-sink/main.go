// Command stdpkt-sink is the east end of a chain: it writes what arrives to a file, or counts
// it, and prints how much came, how fast and how late.
package main

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/live"
	"github.com/stdpkt/stdpkt/nf"
	"github.com/stdpkt/stdpkt/sink"
	"github.com/stdpkt/stdpkt/source"
)

var version = "dev"

func main() {
	const cat = "Sink"
	nf.Main(&cli.App{
		Name:      "stdpkt-sink",
		Version:   version,
		Usage:     "end a chain: send packets out of interfaces, write them to a file, or count them",
		ArgsUsage: "[IFACE...]",
		Description: `stdpkt-sink is the east end of a stdpkt chain. It reads pcap or pcapng on stdin and
sends each frame out of a live interface (IFACE..., the one the frame is tagged with when
there are several; needs CAP_NET_RAW), writes it to a file (-w), or counts and discards it.
What the interfaces hear goes back west over the return path. On exit it prints packets,
bytes, duration, Mpps and Gbit/s, and with --latency the percentiles of arrival time minus
packet timestamp.

Examples:
   stdpkt-src -r capture.pcap | stdpkt-sink -w out.pcapng
   tcpdump -r capture.pcap -w - | stdpkt-sink -w out.pcapng
   stdpkt-src -r trace.pcapng --realtime | stdpkt-sink --latency`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "write", Aliases: []string{"w"}, Category: cat, Usage: "write packets to `FILE` (- is stdout)"},
			&cli.StringFlag{Name: "format", Category: cat, Value: "pcapng", EnvVars: []string{"STDPKT_FORMAT"}, Usage: "write `pcapng` or pcap"},
			&cli.BoolFlag{Name: "latency", Category: cat, Usage: "print latency percentiles: arrival time minus packet timestamp"},
		}, append(nf.ReturnFlags(), nf.Flags()...)...),
		Action: func(c *cli.Context) error {
			var ports []*live.Port
			if c.NArg() > 0 {
				if c.IsSet("write") {
					return nf.UsageError(errors.New("give interfaces or -w FILE, not both"))
				}
				names, err := nf.Interfaces(c)
				if err != nil {
					return err
				}
				if ports, err = live.OpenAll(names); err != nil {
					return nf.OpenError(err, errors.Is(err, live.ErrNoInterface))
				}
			}
			format, err := framing.ParseFormat(c.String("format"))
			if err != nil {
				return nf.UsageError(err)
			}
			cfg := sink.Config{Latency: c.Bool("latency"), OutName: c.String("write")}
			var closer io.Closer
			if name := c.String("write"); name != "" {
				f, err := sink.OpenOutput(name, os.Stdout)
				if err != nil {
					return err
				}
				closer = f
				cfg.Out = framing.NewWriter(f, format)
			}
			s := sink.New(cfg)
			opts := nf.OptionsFrom(c)
			st := &nf.Stage{}
			if cfg.Out != nil {
				st.Flush = cfg.Out.Flush
				st.Writes(books.East, cfg.Out)
			}
			st.Report = func(w io.Writer) { s.Report(w, opts.Name, st) }
			st.Extra = func() map[string]any { return map[string]any{"summary": s.Summary(st)} }
			status := nf.Run(opts, st, func(ctx context.Context) error {
				ret, err := nf.OpenReturn(ctx, opts, nf.Ends{West: true})
				if err != nil {
					return err
				}
				st.Writes(books.West, ret)
				defer ret.Close()
				if ports != nil {
					return s.RunLive(ctx, os.Stdin, source.NewPorts(ports), ret, st)
				}
				return s.Run(ctx, os.Stdin, ret, st)
			})
			if closer != nil {
				if err := closer.Close(); err != nil && status == nf.ExitOK {
					return cli.Exit("stdpkt-sink: -w: "+err.Error(), nf.ExitError)
				}
			}
			return nf.Exit(status)
		},
	})
}
