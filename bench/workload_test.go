package bench

import (
	"regexp"
	"strings"
	"testing"
)

func TestWorkloads(t *testing.T) {
	ws := Workloads(FullSizes(), "/traces dir", "/w/fw10.rules")
	ids := map[string]bool{}
	traces := map[string]bool{}
	for _, tr := range Traces(FullSizes()) {
		traces[tr.Name] = true
	}
	for _, w := range ws {
		if ids[w.ID] {
			t.Errorf("%s twice", w.ID)
		}
		ids[w.ID] = true
		if w.Packets <= 0 || w.FrameBytes <= 0 || w.Label == "" || w.Cmd == "" {
			t.Errorf("%s: %+v", w.ID, w)
		}
		if w.Kind != Latency && w.Floor == "" {
			t.Errorf("%s: kind %s: every throughput workload has a floor", w.ID, w.Kind)
		}
		if w.Kind == Latency && w.Floor != "" && (!strings.Contains(w.Floor, "| cat |") || !strings.Contains(w.Floor, `--stats-json "$BENCH_STATS"`) || w.FloorLabel == "") {
			t.Errorf("%s: latency floor %q (%q): want cat for the stages, the sink's stats, a label", w.ID, w.Floor, w.FloorLabel)
		}
		if w.Trace != "" && !traces[w.Trace] {
			t.Errorf("%s: unknown trace %q", w.ID, w.Trace)
		}
		if w.Trace != "" && !strings.Contains(w.Floor, "'/traces dir/"+w.Trace+"-") {
			t.Errorf("%s: floor %q does not read the trace by its quoted path", w.ID, w.Floor)
		}
		if w.Kind != Throughput && !strings.Contains(w.Cmd, `--stats-json "$BENCH_STATS"`) {
			t.Errorf("%s: %q writes no stats", w.ID, w.Cmd)
		}
		// The floor has as many pipes as the workload.
		if w.Floor != "" && strings.Count(w.Floor, "|") != strings.Count(w.Cmd, "|") {
			t.Errorf("%s: %q and floor %q have different numbers of pipes", w.ID, w.Cmd, w.Floor)
		}
	}
	for _, a := range Aims() {
		if !ids[a.Workload] {
			t.Errorf("aim %q: no workload %s", a.Name, a.Workload)
		}
	}
	f := ws[len(ws)-3]
	if f.ID != "flows-rss" || !strings.Contains(f.Label, "1M flows") || !strings.Contains(f.Cmd, "--max-flows 1100000") {
		t.Errorf("flows-rss: %+v", f)
	}
}

func TestWorkloadRuns(t *testing.T) {
	cfg := Config{Runs: 5, StackRuns: 3}
	for _, tc := range []struct {
		w    Workload
		want int
	}{
		{Workload{}, 5},
		{Workload{Stack: true}, 3},
		{Workload{Stack: true, MaxRuns: 1}, 1},
		{Workload{MaxRuns: 9}, 5},
	} {
		if got := tc.w.Runs(cfg); got != tc.want {
			t.Errorf("%+v: %d runs, want %d", tc.w, got, tc.want)
		}
	}
}

func TestSelect(t *testing.T) {
	ws := Workloads(QuickSizes(), "t", "r")
	if got := Select(ws, nil); len(got) != len(ws) {
		t.Errorf("nil selects %d of %d", len(got), len(ws))
	}
	got := Select(ws, regexp.MustCompile(`^(fw|nat)-64$`))
	if len(got) != 2 || got[0].ID != "fw-64" || got[1].ID != "nat-64" {
		t.Errorf("selected %+v", got)
	}
	if got := Select(ws, regexp.MustCompile("nothing")); len(got) != 0 {
		t.Errorf("selected %d", len(got))
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b.pcapng": "/a/b.pcapng",
		"/a b/c":      "'/a b/c'",
		"it's":        `'it'\''s'`,
		"":            "''",
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %q, want %q", in, got, want)
		}
	}
}
