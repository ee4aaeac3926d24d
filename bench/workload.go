package bench

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// Kind says what a workload measures besides time, CPU and memory.
type Kind string

// The kinds of workload.
const (
	// Throughput: a trace through a pipeline as fast as it goes, next to its floor.
	Throughput Kind = "throughput"
	// Connections: as Throughput, and the stage's connection table from its --stats-json.
	Connections Kind = "connections"
	// Latency: packets paced one at a time through an idle chain; the sink's latency
	// percentiles from its --stats-json.
	Latency Kind = "latency"
)

// StatsEnv names the environment variable that holds, in each run, the path a
// workload's command gives --stats-json.
const StatsEnv = "BENCH_STATS"

// MaxFlows is the connection limit of the Connections workload: above a million, so none
// of its flows is refused.
const MaxFlows = 1_100_000

// Workload is one pipeline to measure.
type Workload struct {
	ID         string // short and stable: for --only, the chart and the JSON
	Label      string // what the report calls it
	Kind       Kind
	Cmd        string // a bash pipeline; "$BENCH_STATS" is the file for --stats-json
	Floor      string // the same bytes through cat and as many pipes; "" for none
	FloorLabel string // what the report calls the floor; "" for its command
	Packets    int
	FrameBytes int
	Stack      bool   // network stages or a paced chain: run Config.StackRuns times
	MaxRuns    int    // at most this many runs, whatever the Config says; 0: no limit
	Trace      string // the trace it reads; "" for none
}

// Workloads returns every workload of a run of sizes s, reading its traces from traceDir
// and its firewall rules from rules (bench/fw10.rules: ten rules, the traffic matching the
// last).
func Workloads(s Sizes, traceDir, rules string) []Workload {
	path := map[string]string{}
	for _, t := range Traces(s) {
		path[t.Name] = quote(filepath.Join(traceDir, t.File()))
	}
	S, L, N, F := path["small"], path["large"], path["newflows"], path["flows"]
	R := quote(rules)
	fw := "stdpkt-fw -q -f " + R
	nat := "stdpkt-nat -q --snat 203.0.113.1"
	floor := func(trace string, pipes int) string {
		return "cat " + trace + strings.Repeat(" | cat", pipes) + " > /dev/null"
	}
	// The idle chains start sending once the stages behind have started: packets queued
	// behind a starting stage are start-up, not the idle chain's latency.
	paced := fmt.Sprintf("{ sleep 0.3; exec stdpkt-src -q --gen udp,count=%d,rate=%d; }", s.Latency, LatencyRate)
	sinkLatency := `stdpkt-sink -q --latency --stats-json "$` + StatsEnv + `"`
	return []Workload{
		{ID: "src-sink-64", Label: "stdpkt-src -r f | stdpkt-sink (64 B)", Kind: Throughput, Trace: "small",
			Cmd: "stdpkt-src -q -r " + S + " | stdpkt-sink -q", Floor: floor(S, 1), Packets: s.Small, FrameBytes: 64},
		{ID: "src-sink-1500", Label: "stdpkt-src -r f | stdpkt-sink (1500 B)", Kind: Throughput, Trace: "large",
			Cmd: "stdpkt-src -q -r " + L + " | stdpkt-sink -q", Floor: floor(L, 1), Packets: s.Large, FrameBytes: 1500},
		{ID: "gen-sink-64", Label: "stdpkt-src --gen | stdpkt-sink (64 B)", Kind: Throughput, Trace: "small",
			Cmd:   fmt.Sprintf("stdpkt-src -q --gen udp,size=64,flows=1000,count=%d | stdpkt-sink -q", s.Small),
			Floor: floor(S, 1), Packets: s.Small, FrameBytes: 64},
		{ID: "fw-64", Label: "cat f | stdpkt-fw -f fw10.rules > /dev/null (10 rules, 64 B)", Kind: Throughput, Trace: "small", Stack: true,
			Cmd: "cat " + S + " | " + fw + " > /dev/null", Floor: floor(S, 1), Packets: s.Small, FrameBytes: 64},
		{ID: "nat-64", Label: "cat f | stdpkt-nat --snat > /dev/null (64 B)", Kind: Throughput, Trace: "small", Stack: true,
			Cmd: "cat " + S + " | " + nat + " > /dev/null", Floor: floor(S, 1), Packets: s.Small, FrameBytes: 64},
		{ID: "fw-nat-64", Label: "cat f | stdpkt-fw | stdpkt-nat > /dev/null (64 B)", Kind: Throughput, Trace: "small", Stack: true,
			Cmd: "cat " + S + " | " + fw + " | " + nat + " > /dev/null", Floor: floor(S, 2), Packets: s.Small, FrameBytes: 64},
		{ID: "fw-nat-1500", Label: "cat f | stdpkt-fw | stdpkt-nat > /dev/null (1500 B)", Kind: Throughput, Trace: "large", Stack: true,
			Cmd: "cat " + L + " | " + fw + " | " + nat + " > /dev/null", Floor: floor(L, 2), Packets: s.Large, FrameBytes: 1500},
		{ID: "chain-64", Label: "stdpkt-src -r f | fw | nat | stdpkt-sink (64 B, count)", Kind: Throughput, Trace: "small", Stack: true,
			Cmd:   "stdpkt-src -q -r " + S + " | " + fw + " | " + nat + " | stdpkt-sink -q",
			Floor: floor(S, 3), Packets: s.Small, FrameBytes: 64},
		{ID: "new-flows", Label: "new flows: cat f | stdpkt-nat --snat > /dev/null (every packet a new flow)", Kind: Throughput, Trace: "newflows", Stack: true,
			Cmd: "cat " + N + " | " + nat + " > /dev/null", Floor: floor(N, 1), Packets: s.NewFlows, FrameBytes: 64},
		{ID: "flows-rss", Label: fmt.Sprintf("%s flows: cat f | stdpkt-fw --allow udp > /dev/null (one packet each, all tracked)", count(s.Flows)),
			// Once: a run costs about a minute of CPU, and the peak RSS varies little.
			Kind: Connections, Trace: "flows", Stack: true, MaxRuns: 1,
			Cmd: fmt.Sprintf(`cat %s | stdpkt-fw -q --allow udp --policy drop --max-flows %d --timeout udp=1h --stats-json "$%s" > /dev/null`,
				F, MaxFlows, StatsEnv),
			Floor: floor(F, 1), Packets: s.Flows, FrameBytes: 64},
		{ID: "latency-2", Label: fmt.Sprintf("idle latency: stdpkt-src --gen rate=%d | stdpkt-sink --latency (2 stages)", LatencyRate),
			Kind: Latency, Stack: true, Cmd: paced + " | " + sinkLatency, Packets: s.Latency, FrameBytes: 64},
		{ID: "latency-4", Label: fmt.Sprintf("idle latency: stdpkt-src --gen rate=%d | fw | nat | stdpkt-sink --latency (4 stages)", LatencyRate),
			Kind: Latency, Stack: true, Cmd: paced + " | " + fw + " | " + nat + " | " + sinkLatency, Packets: s.Latency, FrameBytes: 64,
			Floor: paced + " | cat | cat | " + sinkLatency, FloorLabel: fmt.Sprintf("stdpkt-src --gen rate=%d | cat | cat | stdpkt-sink --latency", LatencyRate)},
	}
}

// Runs returns how many times w runs under cfg.
func (w Workload) Runs(cfg Config) int {
	n := cfg.Runs
	if w.Stack {
		n = cfg.StackRuns
	}
	if w.MaxRuns > 0 {
		n = min(n, w.MaxRuns)
	}
	return n
}

// Select returns the workloads whose ID only matches; a nil only selects all.
func Select(ws []Workload, only *regexp.Regexp) []Workload {
	if only == nil {
		return ws
	}
	var out []Workload
	for _, w := range ws {
		if only.MatchString(w.ID) {
			out = append(out, w)
		}
	}
	return out
}

// quote quotes s for bash when it needs it.
func quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// count writes a flow count the short way: 1M, 20k, 1500.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
