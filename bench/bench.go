// Package bench is make bench: it generates its traces, runs each stdpkt workload next to
// its floor (the same bytes through cat and as many pipes), and writes the results as JSON,
// Markdown and a chart, with the numbers stdpkt aims at next to what was measured.
package bench

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// fw10Rules is bench/fw10.rules: ten FORWARD rules, the traffic matching the last.
//
//go:embed fw10.rules
var fw10Rules []byte

// Commands returns the stdpkt commands a run needs in Config.Bin.
func Commands() []string { return []string{"stdpkt-src", "stdpkt-fw", "stdpkt-nat", "stdpkt-sink"} }

// Config says what to run and how.
type Config struct {
	Bin       string         // the directory holding the stdpkt commands
	Traces    string         // where traces are generated and kept between runs
	Runs      int            // runs of each workload and floor; the median counts
	StackRuns int            // runs of the workloads with network stages or paced packets
	Quick     bool           // QuickSizes instead of FullSizes
	Only      *regexp.Regexp // the workloads to run, by ID; nil: all
	Timeout   time.Duration  // bounds one run of one command; 0: none
	Version   string         // recorded in the results
	Log       io.Writer      // progress, one line per step; nil: none
}

// Run runs the benchmark cfg describes and returns its results.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if cfg.Runs < 1 || cfg.StackRuns < 1 {
		return nil, fmt.Errorf("runs %d, stack runs %d: want at least 1 of each", cfg.Runs, cfg.StackRuns)
	}
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, format+"\n", args...)
		}
	}
	bin, err := filepath.Abs(cfg.Bin)
	if err != nil {
		return nil, fmt.Errorf("--bin: %w", err)
	}
	for _, c := range Commands() {
		if _, err := os.Stat(filepath.Join(bin, c)); err != nil {
			return nil, fmt.Errorf("no %s in %s (make build, or give the directory): %w", c, bin, err)
		}
	}
	traceDir, err := filepath.Abs(cfg.Traces)
	if err != nil {
		return nil, fmt.Errorf("trace directory: %w", err)
	}
	work, err := os.MkdirTemp("", "stdpkt-bench-")
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	defer os.RemoveAll(work)
	rules := filepath.Join(work, "fw10.rules")
	if err := os.WriteFile(rules, fw10Rules, 0o644); err != nil {
		return nil, fmt.Errorf("writing the rules: %w", err)
	}

	sizes := FullSizes()
	if cfg.Quick {
		sizes = QuickSizes()
	}
	ws := Select(Workloads(sizes, traceDir, rules), cfg.Only)
	if len(ws) == 0 {
		return nil, fmt.Errorf("no workload matches %q", cfg.Only)
	}

	res := &Results{Version: cfg.Version, Started: time.Now().UTC().Truncate(time.Second), Host: host(),
		Quick: cfg.Quick, Runs: cfg.Runs, StackRuns: cfg.StackRuns}
	start := time.Now()

	for _, t := range Traces(sizes) {
		if usesTrace(ws, t.Name) {
			logf("trace %s: stdpkt-src --gen %s", t.Name, t.Spec)
			path, err := EnsureTrace(ctx, bin, traceDir, t)
			if err != nil {
				return nil, err
			}
			res.Traces = append(res.Traces, TraceResult{Name: t.Name, Spec: t.Spec, Path: path, Packets: t.Packets})
		}
	}

	runner := Runner{Env: append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH")),
		Dir: work, Timeout: cfg.Timeout}
	if res.RunnerRSSMiB, err = runnerRSS(ctx, runner); err != nil {
		return nil, err
	}
	for _, w := range ws {
		r, err := measure(ctx, runner, w, w.Runs(cfg), work)
		if err != nil {
			return nil, fmt.Errorf("workload %s: %w", w.ID, err)
		}
		logf("%s", progressLine(r))
		res.Workloads = append(res.Workloads, r)
	}
	end, err := runnerRSS(ctx, runner) // this process may have grown
	if err != nil {
		return nil, err
	}
	res.RunnerRSSMiB = max(res.RunnerRSSMiB, end)
	res.Aims = Evaluate(Aims(), res.Workloads)
	res.Seconds = time.Since(start).Seconds()
	res.Host.LoadEnd = loadAvg()
	return res, nil
}

// measure runs w and its floor runs times each, alternately, so that whatever else the
// machine does falls on both alike.
func measure(ctx context.Context, runner Runner, w Workload, runs int, work string) (Result, error) {
	r := Result{ID: w.ID, Label: w.Label, FloorLabel: w.FloorLabel, Kind: w.Kind, Packets: w.Packets, FrameBytes: w.FrameBytes}
	var samples, floorSamples []Sample
	var lat, floorLat []LatencyStats
	for i := range runs {
		stats := filepath.Join(work, fmt.Sprintf("%s-%d.json", w.ID, i))
		s, err := runner.Run(ctx, w.Cmd, StatsEnv+"="+stats)
		if err != nil {
			return r, err
		}
		samples = append(samples, s)
		switch w.Kind {
		case Connections:
			c, err := readConnections(stats)
			if err != nil {
				return r, err
			}
			if r.Connections == nil {
				r.Connections = &c
			} else {
				r.Connections.Tracked = min(r.Connections.Tracked, c.Tracked)
				r.Connections.Refused = max(r.Connections.Refused, c.Refused)
			}
		case Latency:
			l, err := readLatency(stats)
			if err != nil {
				return r, err
			}
			lat = append(lat, l)
		}
		if w.Floor != "" {
			f, err := runner.Run(ctx, w.Floor, StatsEnv+"="+stats)
			if err != nil {
				return r, fmt.Errorf("floor: %w", err)
			}
			floorSamples = append(floorSamples, f)
			if w.Kind == Latency {
				l, err := readLatency(stats)
				if err != nil {
					return r, fmt.Errorf("floor: %w", err)
				}
				floorLat = append(floorLat, l)
			}
		}
	}
	r.Run = Summarize(w.Cmd, samples, w.Packets, w.FrameBytes)
	if w.Floor != "" {
		f := Summarize(w.Floor, floorSamples, w.Packets, w.FrameBytes)
		r.Floor = &f
		if r.Run.Seconds > 0 && w.Kind != Latency { // paced: both take the pace's time
			r.FloorShare = f.Seconds / r.Run.Seconds
		}
	}
	if len(lat) > 0 {
		r.Latency = medianLatency(lat)
	}
	if len(floorLat) > 0 {
		r.FloorLatency = medianLatency(floorLat)
	}
	return r, nil
}

// runnerRSS returns the peak RSS runner measures for a command that takes next to no
// memory: at exec, Linux counts the memory of the process bash replaces (a vfork child
// sharing this process's memory) into bash's peak, so no measurement comes out below it.
func runnerRSS(ctx context.Context, runner Runner) (float64, error) {
	s, err := runner.Run(ctx, "true")
	if err != nil {
		return 0, fmt.Errorf("measuring the runner: %w", err)
	}
	return float64(s.PeakRSSKiB) / 1024, nil
}

// readConnections reads the connection table's counts from a stage's --stats-json.
func readConnections(path string) (ConnectionsStats, error) {
	var doc struct {
		Connections *ConnectionsStats `json:"connections"`
	}
	if err := readJSONFile(path, &doc); err != nil {
		return ConnectionsStats{}, err
	}
	if doc.Connections == nil {
		return ConnectionsStats{}, fmt.Errorf("%s: no connections in the stage's stats", path)
	}
	return *doc.Connections, nil
}

// readLatency reads the latency percentiles from stdpkt-sink's --stats-json.
func readLatency(path string) (LatencyStats, error) {
	var doc struct {
		Summary struct {
			Latency *LatencyStats `json:"latency_us"`
		} `json:"summary"`
	}
	if err := readJSONFile(path, &doc); err != nil {
		return LatencyStats{}, err
	}
	if doc.Summary.Latency == nil {
		return LatencyStats{}, fmt.Errorf("%s: no latency in the sink's stats (was --latency given?)", path)
	}
	return *doc.Summary.Latency, nil
}

func readJSONFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading stats: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("reading stats %s: %w", path, err)
	}
	return nil
}

// medianLatency takes each percentile's median over the runs.
func medianLatency(ls []LatencyStats) *LatencyStats {
	pick := func(f func(LatencyStats) float64) float64 {
		xs := make([]float64, len(ls))
		for i, l := range ls {
			xs[i] = f(l)
		}
		return Median(xs)
	}
	return &LatencyStats{
		Samples: uint64(pick(func(l LatencyStats) float64 { return float64(l.Samples) })),
		P50:     pick(func(l LatencyStats) float64 { return l.P50 }),
		P90:     pick(func(l LatencyStats) float64 { return l.P90 }),
		P99:     pick(func(l LatencyStats) float64 { return l.P99 }),
		Max:     pick(func(l LatencyStats) float64 { return l.Max }),
	}
}

func usesTrace(ws []Workload, name string) bool {
	for _, w := range ws {
		if w.Trace == name {
			return true
		}
	}
	return false
}

// progressLine says in one line what a workload measured.
func progressLine(r Result) string {
	line := fmt.Sprintf("%-12s %d runs: %.3f s, %.3f Mpps, %.1f CPU s, %.0f MiB", r.ID, r.Run.Runs, r.Run.Seconds, r.Run.Mpps, r.Run.CPUSeconds, r.Run.PeakRSSMiB)
	if r.Floor != nil {
		line += fmt.Sprintf("; floor %.3f s, %.3f Mpps", r.Floor.Seconds, r.Floor.Mpps)
	}
	if c := r.Connections; c != nil {
		line += fmt.Sprintf("; %d tracked, %d refused", c.Tracked, c.Refused)
	}
	if l := r.Latency; l != nil {
		line += fmt.Sprintf("; latency p50 %.0f us, p99 %.0f us", l.P50, l.P99)
	}
	return line
}

// host describes this machine.
func host() Host {
	h := Host{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, LoadStart: loadAvg()}
	h.Name, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	return h
}

// loadAvg reads the 1, 5 and 15 minute load averages; zeros where it cannot.
func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	for i, f := range strings.Fields(string(b)) {
		if i == len(l) {
			break
		}
		l[i], _ = strconv.ParseFloat(f, 64)
	}
	return l
}
