// Command stdpkt-bench is make bench: it generates its traces, runs each stdpkt workload
// next to its floor, prints the report and writes it as JSON, Markdown and a chart.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/stdpkt/stdpkt/bench"
	"github.com/stdpkt/stdpkt/nf"
)

var version = "dev"

func main() {
	const cat = "Benchmark"
	nf.Main(&cli.App{
		Name:    "stdpkt-bench",
		Version: version,
		Usage:   "run every stdpkt workload next to its floor and report",
		Description: `stdpkt-bench generates its traces with stdpkt-src --gen (64 B and 1500 B over 1,000 flows, a
new-flow flood, a million one-packet flows; kept in --traces for later runs) and runs each
workload with bash -o pipefail -c, alternately with its floor (the same trace through cat
and as many pipes): one stage, fw | nat at 64 and 1500 B, src | fw | nat | sink, new flows
through nat, the RSS of a million tracked flows, and the added latency of an idle chain.
Each takes the median of --runs runs (--stack-runs for network stages and paced chains; the
million flows run once), with CPU seconds and peak RSS from wait4. The Markdown report goes to stdout and, with
report.json and the chart throughput.svg, into --out; progress goes to stderr.

Examples:
   stdpkt-bench                         # make bench runs this (scripts/bench.sh)
   stdpkt-bench --quick --runs 1 --stack-runs 1 --out /tmp/b
   stdpkt-bench --only '^(fw|nat)-64$'`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "runs", Category: cat, Value: 5, Usage: "run each workload and floor `N` times; the median counts"},
			&cli.IntFlag{Name: "stack-runs", Category: cat, Value: 3, Usage: "runs of the workloads with network stages or paced packets (`N`)"},
			&cli.StringFlag{Name: "out", Category: cat, Value: filepath.Join("bench", "results"), Usage: "write report.json, report.md and throughput.svg into `DIR`"},
			&cli.StringFlag{Name: "traces", Category: cat, Value: filepath.Join("bench", "traces"), Usage: "generate and keep the traces in `DIR`"},
			&cli.BoolFlag{Name: "quick", Category: cat, Usage: "small packet counts, for tests and CI: seconds, not minutes"},
			&cli.StringFlag{Name: "only", Category: cat, Usage: "run only the workloads whose id matches `REGEX` (ids: the report's id column)"},
			&cli.StringFlag{Name: "bin", Category: cat, Usage: "the stdpkt commands are in `DIR` (default: this command's directory)"},
			&cli.DurationFlag{Name: "timeout", Category: cat, Value: 10 * time.Minute, Usage: "kill a run that takes longer than `DURATION`"},
		},
		Action: run,
	})
}

func run(c *cli.Context) error {
	if c.NArg() > 0 {
		return nf.UsageError(fmt.Errorf("unexpected argument %q", c.Args().First()))
	}
	cfg := bench.Config{Runs: c.Int("runs"), StackRuns: c.Int("stack-runs"), Quick: c.Bool("quick"),
		Traces: c.String("traces"), Bin: c.String("bin"), Timeout: c.Duration("timeout"), Version: version, Log: os.Stderr}
	if cfg.Runs < 1 || cfg.StackRuns < 1 {
		return nf.UsageError(fmt.Errorf("--runs %d, --stack-runs %d: want at least 1", cfg.Runs, cfg.StackRuns))
	}
	if expr := c.String("only"); expr != "" {
		re, err := regexp.Compile(expr)
		if err != nil {
			return nf.UsageError(fmt.Errorf("--only: %w", err))
		}
		cfg.Only = re
	}
	if cfg.Bin == "" {
		exe, err := os.Executable()
		if err == nil {
			exe, err = filepath.EvalSymlinks(exe)
		}
		if err != nil {
			return cli.Exit(fmt.Sprintf("finding the stdpkt commands: %v (give --bin)", err), nf.ExitError)
		}
		cfg.Bin = filepath.Dir(exe)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return cli.Exit(err.Error(), nf.ExitError)
	}
	if err := bench.WriteMarkdown(os.Stdout, res); err != nil {
		return cli.Exit(err.Error(), nf.ExitError)
	}
	paths, err := bench.Save(c.String("out"), res)
	if err != nil {
		return cli.Exit(err.Error(), nf.ExitError)
	}
	for _, p := range paths {
		fmt.Fprintf(os.Stderr, "stdpkt-bench: wrote %s\n", p)
	}
	return nil
}
