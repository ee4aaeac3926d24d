// Command stdpkt-sink is the east end of a chain: it writes what arrives to a file, or counts
// it, and prints how much came, how fast and how late.
package main

import (
	"context"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/nf"
	"github.com/stdpkt/stdpkt/sink"
)

var version = "dev"

func main() {
	const cat = "Sink"
	nf.Main(&cli.App{
		Name:    "stdpkt-sink",
		Version: version,
		Usage:   "end a chain: write packets to a file, or count them",
		Description: `stdpkt-sink is the east end of a stdpkt chain. It reads pcap or pcapng on stdin and
writes it to a file (-w), or counts and discards it, then prints packets, bytes, duration,
Mpps and Gbit/s, and with --latency the percentiles of arrival time minus packet timestamp.

Examples:
   stdpkt-src -r capture.pcap | stdpkt-sink -w out.pcapng
   tcpdump -r capture.pcap -w - | stdpkt-sink -w out.pcapng
   stdpkt-src -r trace.pcapng --realtime | stdpkt-sink --latency`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "write", Aliases: []string{"w"}, Category: cat, Usage: "write packets to `FILE` (- is stdout)"},
			&cli.StringFlag{Name: "format", Category: cat, Value: "pcapng", EnvVars: []string{"STDPKT_FORMAT"}, Usage: "write `pcapng` or pcap"},
			&cli.BoolFlag{Name: "latency", Category: cat, Usage: "print latency percentiles: arrival time minus packet timestamp"},
		}, nf.Flags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return nf.UsageError(cli.Exit("unexpected argument "+c.Args().First(), nf.ExitUsage))
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
			}
			st.Report = func(w io.Writer) { s.Report(w, opts.Name, st) }
			st.Extra = func() map[string]any { return map[string]any{"summary": s.Summary(st)} }
			status := nf.Run(opts, st, func(ctx context.Context) error { return s.Run(ctx, os.Stdin, st) })
			if closer != nil {
				if err := closer.Close(); err != nil && status == nf.ExitOK {
					return cli.Exit("stdpkt-sink: -w: "+err.Error(), nf.ExitError)
				}
			}
			return nf.Exit(status)
		},
	})
}
