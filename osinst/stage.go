package osinst

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/nf"
	"github.com/stdpkt/stdpkt/rules"
)

// Flags are the flags every netstack stage shares: router mode and the output format.
func Flags() []cli.Flag {
	const cat = "Router mode"
	return []cli.Flag{
		&cli.StringFlag{Name: "west", Category: cat, Usage: "route instead of bridging: the west side's address `PREFIX`, e.g. 192.0.2.1/24"},
		&cli.StringFlag{Name: "east", Category: cat, Usage: "the east side's address `PREFIX`, e.g. 203.0.113.1/24"},
		&cli.StringSliceFlag{Name: "neighbor", Category: cat, Usage: "static neighbour `IP=MAC`, for a chain without a return path to resolve over"},
		&cli.StringFlag{Name: "format", Category: "Common", Value: "pcapng", EnvVars: []string{"STDPKT_FORMAT"}, Usage: "write `pcapng` or pcap"},
		&cli.Int64Flag{Name: "seed", Category: "Connection tracking", Usage: "seed the stack's random choices (the port NAT picks on a collision) with `N`, for repeatable runs"},
		&cli.BoolFlag{Name: "no-fastpath", Category: "Connection tracking", Usage: "send every packet through the stack (a transparent filter otherwise passes later packets of established connections itself)"},
		&cli.IntFlag{Name: "max-flows", Category: "Connection tracking", Value: DefaultMaxFlows, Usage: "track at most `N` connections; a new one beyond is dropped and counted (full)"},
		&cli.StringSliceFlag{Name: "timeout", Category: "Connection tracking", Usage: "idle timeouts `NAME=DURATION`: tcp-established (5d), tcp (2m), udp (30s), icmp (30s), other (10m)"},
	}
}

// ConfigFrom reads the router-mode flags into a Config.
func ConfigFrom(c *cli.Context) (Config, error) {
	var cfg Config
	west, east := c.String("west"), c.String("east")
	if (west == "") != (east == "") {
		return cfg, nf.UsageError(fmt.Errorf("router mode needs both --west and --east (transparent mode: neither)"))
	}
	if west != "" {
		var err error
		if cfg.West, err = netip.ParsePrefix(west); err != nil {
			return cfg, nf.UsageError(fmt.Errorf("--west %q: want ADDRESS/LENGTH, e.g. 192.0.2.1/24", west))
		}
		if cfg.East, err = netip.ParsePrefix(east); err != nil {
			return cfg, nf.UsageError(fmt.Errorf("--east %q: want ADDRESS/LENGTH, e.g. 203.0.113.1/24", east))
		}
	}
	cfg.NoFastPath = c.Bool("no-fastpath")
	cfg.Seed = c.Int64("seed")
	cfg.MaxFlows = c.Int("max-flows")
	if cfg.MaxFlows < 1 {
		return cfg, nf.UsageError(fmt.Errorf("--max-flows %d: want at least 1", cfg.MaxFlows))
	}
	cfg.Timeouts = DefaultTimeouts()
	for _, t := range c.StringSlice("timeout") {
		if err := ParseTimeouts(t, &cfg.Timeouts); err != nil {
			return cfg, nf.UsageError(err)
		}
	}
	for _, n := range c.StringSlice("neighbor") {
		ip, mac, ok := strings.Cut(n, "=")
		addr, aerr := netip.ParseAddr(ip)
		hw, merr := net.ParseMAC(mac)
		if !ok || aerr != nil || merr != nil {
			return cfg, nf.UsageError(fmt.Errorf("--neighbor %q: want IP=MAC, e.g. 203.0.113.254=02:00:00:00:00:fe", n))
		}
		if cfg.Neighbors == nil {
			cfg.Neighbors = map[netip.Addr]net.HardwareAddr{}
		}
		cfg.Neighbors[addr] = hw
	}
	return cfg, nil
}

// RunStage runs an instance of cfg as a stage of a chain under the shared runner: stdin to
// stdout eastbound, the return path westbound, books and state on exit and on SIGUSR1.
// report, if not nil, adds to the summary on exit.
func RunStage(c *cli.Context, cfg Config, report func(in *Instance, w io.Writer)) error {
	opts := nf.OptionsFrom(c)
	format, err := framing.ParseFormat(c.String("format"))
	if err != nil {
		return nf.UsageError(err)
	}
	if err := nf.RefuseTerminal(os.Stdout); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ret, err := nf.OpenReturn(ctx, opts, nf.Ends{East: true, West: true})
	if err != nil {
		return err
	}
	out := framing.NewWriter(os.Stdout, format)
	st := &nf.Stage{}
	st.Writes(books.East, out)
	st.Writes(books.West, ret)
	inst, err := New(cfg, out, ret.WestOutput(), &st.Books)
	if err != nil {
		return nf.UsageError(err)
	}
	st.Flush = func() error { return inst.Stop(out, ret) }
	st.Dump = inst.DumpState
	st.Progress = func() string { // the fast path's share, for the stats line
		hits := inst.FastPathStats().Hits
		in := st.Books.East().In.Packets() + st.Books.West().In.Packets()
		if inst.fastMax == 0 || in == 0 {
			return ""
		}
		return fmt.Sprintf("fast path %.0f%%", 100*float64(hits)/float64(in))
	}
	st.Extra = func() map[string]any {
		tracked, refused := inst.FlowCount()
		return map[string]any{"rules": inst.RuleCounters(), "fastpath": inst.FastPathStats(),
			"connections": map[string]any{"tracked": tracked, "refused": refused, "limit": cfg.MaxFlows, "table": inst.Flows(10000)}}
	}
	if report != nil {
		st.Report = func(w io.Writer) { report(inst, w) }
	}
	return nf.Exit(nf.Run(opts, st, func(rctx context.Context) error {
		return inst.Serve(rctx, st, os.Stdin, out, ret)
	}))
}

// ListRules prints the rules an instance of cfg would load, with zero counters.
func ListRules(cfg Config, w io.Writer) error {
	inst, err := New(cfg, discard{}, discard{}, new(books.Books))
	if err != nil {
		return nf.UsageError(err)
	}
	defer inst.Close()
	rules.FormatCounters(w, inst.RuleCounters())
	return nil
}

type discard struct{}

func (discard) Write([]framing.Packet) error { return nil }

// RuleFileFlags are the flags that load an iptables-save file's table: -f, -6, --alias.
func RuleFileFlags(table, cat string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Category: cat, Usage: "load the " + table + " table of iptables-save `FILE`"},
		&cli.BoolFlag{Name: "ipv6", Aliases: []string{"6"}, Category: cat, Usage: "the file is ip6tables-save output"},
		&cli.StringSliceFlag{Name: "alias", Category: cat, Usage: "`NAME=west|east`: the file's interface NAME is this stage's west or east side"},
	}
}

// RuleOptions reads -6 and --alias into parse options for table.
func RuleOptions(c *cli.Context, table string) (rules.Options, error) {
	opts := rules.Options{Family: rules.IPv4, Table: table, Aliases: map[string]string{}}
	if c.Bool("ipv6") {
		opts.Family = rules.IPv6
	}
	if err := rules.ParseAliases(c.StringSlice("alias"), opts.Aliases); err != nil {
		return opts, nf.UsageError(err)
	}
	return opts, nil
}

// LoadRuleFile parses the table of the file -f names; a bad file is a usage error naming
// its line and option.
func LoadRuleFile(c *cli.Context, table string) (*rules.Ruleset, error) {
	opts, err := RuleOptions(c, table)
	if err != nil {
		return nil, err
	}
	name := c.String("file")
	f, err := os.Open(name)
	if err != nil {
		return nil, nf.UsageError(fmt.Errorf("-f: %w", err))
	}
	defer f.Close()
	rs, err := rules.Parse(name, f, opts)
	if err != nil {
		return nil, nf.UsageError(err)
	}
	return rs, nil
}
