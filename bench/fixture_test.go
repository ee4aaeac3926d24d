package bench

import "time"

// fixedResults is a small run with one workload of each kind, for the writers' tests.
func fixedResults() *Results {
	r := &Results{
		Version: "v-test", Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Seconds: 61,
		Host: Host{Name: "box", CPUs: 2, OS: "linux", Arch: "amd64", Kernel: "6.1", LoadStart: [3]float64{0.5, 0.4, 0.3}, LoadEnd: [3]float64{1.5, 0.6, 0.4}},
		Runs: 5, StackRuns: 3, RunnerRSSMiB: 8,
		Traces: []TraceResult{{Name: "small", Spec: "udp,size=64,flows=1000,count=1000000,seed=1", Path: "/t/small.pcapng", Packets: 1000000}},
	}
	run := Summarize("cat f | stdpkt-fw > /dev/null", []Sample{{2, 1.9, 30 << 10}, {1, 1.8, 20 << 10}, {3, 2, 25 << 10}}, 1_000_000, 64)
	floor := Summarize("cat f | cat > /dev/null", []Sample{{0.05, 0.04, 8 << 10}}, 1_000_000, 64)
	flows := Summarize("cat f | stdpkt-fw --allow udp > /dev/null", []Sample{{4, 4, 250 << 10}}, 1_000_000, 64)
	lat := Summarize("stdpkt-src --gen | stdpkt-sink --latency", []Sample{{2.3, 0.2, 16 << 10}}, 2000, 64)
	r.Workloads = []Result{
		{ID: "fw-64", Label: "cat f | stdpkt-fw (64 B)", Kind: Throughput, Packets: 1_000_000, FrameBytes: 64,
			Run: run, Floor: &floor, FloorShare: floor.Seconds / run.Seconds},
		{ID: "flows-rss", Label: "1M flows: cat f | stdpkt-fw", Kind: Connections, Packets: 1_000_000, FrameBytes: 64,
			Run: flows, Floor: &floor, FloorShare: floor.Seconds / flows.Seconds,
			Connections: &ConnectionsStats{Tracked: 1_000_000, Refused: 0, Limit: MaxFlows}},
		{ID: "latency-4", Label: "idle latency: src | fw | nat | sink", Kind: Latency, Packets: 2000, FrameBytes: 64,
			Run: lat, Latency: &LatencyStats{Samples: 2000, P50: 40.5, P90: 60.2, P99: 90, Max: 1200},
			Floor: &lat, FloorLabel: "src | cat | cat | sink", FloorLatency: &LatencyStats{Samples: 2000, P50: 30, P90: 50, P99: 80.4, Max: 900}},
	}
	r.Aims = Evaluate(Aims(), r.Workloads)
	return r
}
