package bench

import (
	"strings"
	"testing"
)

func TestEvaluate(t *testing.T) {
	res := []Result{
		{ID: "fw-64", Run: Measurement{Runs: 1, Mpps: 12}},
		{ID: "nat-64", Run: Measurement{Runs: 1, Mpps: 9.99}},
		{ID: "fw-nat-1500", FrameBytes: 1500, Run: Measurement{Runs: 1, Gbps: 12}},
		{ID: "latency-4", Latency: &LatencyStats{P99: 100}},
		{ID: "new-flows", Run: Measurement{Runs: 1, Mpps: 0.25}},
		{ID: "src-sink-64", Run: Measurement{Runs: 1}, Floor: &Measurement{Runs: 1}, FloorShare: 0.49},
		{ID: "flows-rss", Run: Measurement{Runs: 1, PeakRSSMiB: 250}, Connections: &ConnectionsStats{Tracked: 999_999}},
	}
	got := map[string]AimResult{}
	for _, a := range Evaluate(Aims(), res) {
		got[a.Workload] = a
	}
	for id, met := range map[string]bool{
		"fw-64":       true,
		"nat-64":      false,
		"fw-nat-1500": true,  // at least
		"latency-4":   false, // below, not equal
		"new-flows":   true,
		"src-sink-64": false,
		"flows-rss":   false, // small, but not all flows tracked
	} {
		a, ok := got[id]
		if !ok {
			t.Errorf("%s: no aim evaluated", id)
			continue
		}
		if !a.Measured || a.Met != met {
			t.Errorf("%s: measured %v, met %v (value %v, target %s): want measured, met %v", id, a.Measured, a.Met, a.Value, a.TargetText(), met)
		}
	}
	if a := got["new-flows"]; a.Value != 250_000 {
		t.Errorf("new flows: value %v, want 250000 per second", a.Value)
	}
	if n := got["flows-rss"].Note; !strings.Contains(n, "999999 tracked") {
		t.Errorf("flows-rss note %q: want the tracked count", n)
	}
	if _, ok := got["fw-nat-64"]; ok {
		t.Error("an aim of a workload that did not run was evaluated")
	}

	res[6].Connections.Tracked = 1_000_000
	for _, a := range Evaluate(Aims(), res) {
		if a.Workload == "flows-rss" && !a.Met {
			t.Errorf("flows-rss with 1M tracked, none refused, 250 MiB: not met (%s)", a.Note)
		}
	}
	res[6].Connections.Refused = 1
	for _, a := range Evaluate(Aims(), res) {
		if a.Workload == "flows-rss" && a.Met {
			t.Error("flows-rss with a refused flow: met")
		}
	}
}

// The 64 B aims' notes scale them to this run's cat f | cat; met stays the aim as written.
func TestEvaluateScaledNote(t *testing.T) {
	one := "cat small | cat > /dev/null"
	res := []Result{
		{ID: "fw-64", Run: Measurement{Runs: 1, Mpps: 9}, Floor: &Measurement{Command: one, Runs: 1, Mpps: 16.2}},
		{ID: "fw-nat-64", Run: Measurement{Runs: 1, Mpps: 6}, Floor: &Measurement{Command: "cat small | cat | cat > /dev/null", Runs: 1, Mpps: 12}},
		{ID: "fw-nat-1500", Run: Measurement{Runs: 1, Gbps: 10}, Floor: &Measurement{Runs: 1, Gbps: 11}},
		{ID: "nat-64", Run: Measurement{Runs: 1, Mpps: 9}, Floor: &Measurement{Command: one, Runs: 1, Mpps: 10}},
		{ID: "src-sink-64", Run: Measurement{Runs: 1, Mpps: 9}, Floor: &Measurement{Command: one, Runs: 1, Mpps: 17}},
	}
	want := map[string][]string{
		"fw-64":       {"16.2 Mpps here (median of 3 workloads' floors), 75% of design.md's 21.6", "scaled: 7.5 Mpps, met"},
		"fw-nat-64":   {"scaled: 5.62 Mpps, met"},
		"fw-nat-1500": {"floor (cat through the same pipes): 11 Gbit/s"},
	}
	for _, a := range Evaluate(Aims(), res) {
		if a.Met {
			t.Errorf("%s: met, though %v is under the aim as written", a.Workload, a.Value)
		}
		for _, w := range want[a.Workload] {
			if !strings.Contains(a.Note, w) {
				t.Errorf("%s: note %q does not say %q", a.Workload, a.Note, w)
			}
		}
	}
	for _, i := range []int{0, 3} {
		res[i].Floor.Mpps = 21.6 * 1.2 // a faster machine scales the aim up
	}
	for _, a := range Evaluate(Aims(), res) {
		if a.Workload == "fw-nat-64" && !strings.Contains(a.Note, "scaled: 9 Mpps, missed") {
			t.Errorf("fw-nat-64 on a faster machine: note %q", a.Note)
		}
	}
}

func TestEvaluateUnmeasured(t *testing.T) {
	out := Evaluate(Aims(), []Result{{ID: "latency-4"}})
	if len(out) != 1 || out[0].Measured || out[0].Met || out[0].Note == "" {
		t.Errorf("latency without percentiles: %+v, want one aim, not measured, not met, with a note", out)
	}
}

func TestTargetText(t *testing.T) {
	for _, tc := range []struct {
		a    Aim
		want string
	}{
		{Aim{Metric: MetricMpps, Target: 7.5}, ">= 7.5 Mpps"},
		{Aim{Metric: MetricP99, Target: 100, Below: true}, "< 100 us"},
		{Aim{Metric: MetricRSS, Target: 300, Below: true}, "< 300 MiB"},
		{Aim{Metric: MetricPPS, Target: 200000}, ">= 200000/s"},
	} {
		if got := tc.a.TargetText(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.a, got, tc.want)
		}
	}
}
