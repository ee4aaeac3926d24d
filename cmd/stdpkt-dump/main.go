// Command stdpkt-dump prints the packets of a stream one line each, like tcpdump -n, selects
// them with a pcap-filter expression, and with --pass forwards every packet unchanged so it
// can sit anywhere in a chain.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/dump"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/nf"
)

var version = "dev"

func main() {
	const out, pass = "Output", "Pass-through"
	nf.Main(&cli.App{
		Name:      "stdpkt-dump",
		Version:   version,
		Usage:     "print packets like tcpdump -n, select them with a filter, or watch a chain pass by",
		ArgsUsage: "[FILTER EXPRESSION]",
		Description: `stdpkt-dump reads pcap or pcapng on stdin and prints one line per packet in the spirit of
tcpdump -n (time, interface and direction when known, addresses, ports, TCP flags, lengths;
-e adds MACs, ethertype and VLAN tags, -v adds TTL, IP id, lengths and checksum validity), or
one JSON object per packet with --json. The arguments are a filter in pcap-filter syntax
(host, net, port, portrange, tcp, udp, icmp, icmp6, arp, ip, ip6, vlan, len, less, greater,
and/or/not, parentheses; "and" and "or" have equal precedence and group from the left, as in
pcap-filter). With --pass every packet is forwarded unchanged to stdout and the lines go to
stderr (or -o FILE), so it can watch any point of a chain. Sequence numbers are absolute, as
tcpdump -S; nothing above the transport layer is decoded.

Examples:
   stdpkt-src -r trace.pcap | stdpkt-dump 'tcp port 80 and host 192.0.2.10'
   stdpkt-src -r trace.pcap | stdpkt-dump --json udp | jq -r '.ip.src'
   stdpkt-src -r t.pcap | stdpkt-dump --pass -o seen.txt icmp | stdpkt-sink -w out.pcapng`,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "link", Aliases: []string{"e"}, Category: out, Usage: "print the link layer: MACs, ethertype, VLAN tags (tcpdump -e)"},
			&cli.BoolFlag{Name: "json", Category: out, Usage: "print one JSON object per packet (time_ns, interface, direction, len, caplen, eth, vlan, ip, proto, ports, flags, ...)"},
			&cli.BoolFlag{Name: "epoch", Category: out, Usage: "print the time as seconds.nanoseconds since the epoch, not the local time of day"},
			&cli.BoolFlag{Name: "count-only", Category: out, Usage: "print only the number of packets the filter selects, at the end"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Category: out, Usage: "write the lines to `FILE` (default: stdout, or stderr with --pass)"},
			&cli.BoolFlag{Name: "n", Category: out, Usage: "accepted for tcpdump's sake: names are never resolved"},
			&cli.BoolFlag{Name: "pass", Category: pass, Usage: "forward every packet unchanged to stdout (as pcapng); lines go to stderr or -o FILE"},
			&cli.StringFlag{Name: "format", Category: pass, Value: "pcapng", EnvVars: []string{"STDPKT_FORMAT"}, Usage: "with --pass, write `pcapng` or pcap"},
		}, append(nf.ReturnFlags(), nf.Flags()...)...),
		Action: func(c *cli.Context) error {
			filter, err := dump.ParseFilter(strings.Join(c.Args().Slice(), " "))
			if err != nil {
				return nf.UsageError(err)
			}
			opts := nf.OptionsFrom(c)
			cfg := dump.Config{Filter: filter, JSON: c.Bool("json"), CountOnly: c.Bool("count-only"),
				Style: dump.Style{Link: c.Bool("link"), Verbose: opts.Verbose, Epoch: c.Bool("epoch")},
				Lines: os.Stdout, LinesName: "stdout"}
			if c.Bool("pass") {
				format, err := framing.ParseFormat(c.String("format"))
				if err != nil {
					return nf.UsageError(err)
				}
				if err := nf.RefuseTerminal(os.Stdout); err != nil {
					return err
				}
				cfg.Pass, cfg.PassName = framing.NewWriter(os.Stdout, format), "stdout"
				cfg.Lines, cfg.LinesName = os.Stderr, "stderr"
			}
			var closer io.Closer
			if name := c.String("output"); name != "" && name != "-" {
				f, err := os.Create(name)
				if err != nil {
					return nf.UsageError(fmt.Errorf("-o: %w", err))
				}
				closer = f
				cfg.Lines, cfg.LinesName = f, name
			}
			d := dump.New(cfg)
			st := &nf.Stage{Flush: d.Finish}
			if cfg.Pass != nil {
				st.Writes(books.East, cfg.Pass)
			}
			if opts.Verbose && !opts.Quiet && filter.Text() != "" {
				fmt.Fprintf(os.Stderr, "%s: filter %s\n", opts.Name, filter)
			}
			st.Extra = func() map[string]any { return map[string]any{"shown": d.Shown()} }
			status := nf.Run(opts, st, func(ctx context.Context) error {
				// Even a dump that passes nothing on connects to a source before it, and
				// closes the return path when it ends: the source then knows no reply will
				// come, instead of waiting for a stage that never dials.
				ret, err := nf.OpenReturn(ctx, opts, nf.Ends{East: cfg.Pass != nil, West: true})
				if err != nil {
					return err
				}
				if cfg.Pass != nil { // a stage in a chain: replies pass through it too
					st.Writes(books.West, ret)
				}
				return d.Run(ctx, os.Stdin, ret, st)
			})
			if closer != nil {
				if err := closer.Close(); err != nil && status == nf.ExitOK {
					return cli.Exit("stdpkt-dump: -o: "+err.Error(), nf.ExitError)
				}
			}
			return nf.Exit(status)
		},
	})
}
