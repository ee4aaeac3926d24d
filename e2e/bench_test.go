package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stdpkt-bench --quick runs every workload on small traces and writes the report: the JSON
// has each workload with packets and seconds, the Markdown the table with a row for each,
// and the chart is there.
func TestBenchQuick(t *testing.T) {
	dir := tempDir(t)
	out := filepath.Join(dir, "results")
	stdout, stderr := mustSh(t, dir, "stdpkt-bench --quick --runs 1 --stack-runs 1 --traces traces --out results")
	if !strings.Contains(stderr, "wrote "+filepath.Join("results", "report.json")) {
		t.Errorf("stderr does not say where the report went:\n%s", stderr)
	}

	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Quick     bool `json:"quick"`
		Workloads []struct {
			ID      string `json:"id"`
			Label   string `json:"label"`
			Kind    string `json:"kind"`
			Packets int    `json:"packets"`
			Run     struct {
				Seconds    float64 `json:"seconds"`
				CPUSeconds float64 `json:"cpu_seconds"`
				PeakRSSMiB float64 `json:"peak_rss_mib"`
			} `json:"run"`
			Floor *struct {
				Seconds float64 `json:"seconds"`
			} `json:"floor"`
			Connections *struct {
				Tracked int64 `json:"tracked"`
				Refused int64 `json:"refused"`
			} `json:"connections"`
			Latency *struct {
				Samples uint64  `json:"samples"`
				P99     float64 `json:"p99"`
			} `json:"latency_us"`
			FloorLatency *struct {
				Samples uint64  `json:"samples"`
				P99     float64 `json:"p99"`
			} `json:"floor_latency_us"`
		} `json:"workloads"`
		Aims []struct {
			Workload string `json:"workload"`
			Measured bool   `json:"measured"`
		} `json:"aims"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if !doc.Quick {
		t.Error("report.json does not say the run was quick")
	}
	want := []string{"src-sink-64", "src-sink-1500", "gen-sink-64", "fw-64", "nat-64", "fw-nat-64", "fw-nat-1500",
		"chain-64", "new-flows", "flows-rss", "latency-2", "latency-4"}
	got := map[string]int{}
	for i, w := range doc.Workloads {
		got[w.ID] = i
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "| workload ") || !strings.Contains(string(md), "| packets | seconds |") {
		t.Errorf("report.md has no table header:\n%s", md)
	}
	if string(md) != stdout {
		t.Error("the report on stdout differs from report.md")
	}
	for _, id := range want {
		i, ok := got[id]
		if !ok {
			t.Errorf("report.json: no workload %s", id)
			continue
		}
		w := doc.Workloads[i]
		if w.Packets <= 0 || w.Run.Seconds <= 0 || w.Run.CPUSeconds < 0 || w.Run.PeakRSSMiB <= 0 {
			t.Errorf("%s: packets %d, seconds %v, CPU %v, RSS %v MiB", id, w.Packets, w.Run.Seconds, w.Run.CPUSeconds, w.Run.PeakRSSMiB)
		}
		// Every throughput workload runs next to its floor; of the idle chains, the 4-stage
		// one, next to the same chain with cat for fw and nat.
		if wantFloor := w.Kind != "latency" || id == "latency-4"; wantFloor != (w.Floor != nil) || (w.Floor != nil && w.Floor.Seconds <= 0) {
			t.Errorf("%s (%s): floor %+v", id, w.Kind, w.Floor)
		}
		if !strings.Contains(string(md), "| "+id+" ") {
			t.Errorf("report.md: no row for %s", id)
		}
	}
	if i, ok := got["flows-rss"]; ok {
		if c := doc.Workloads[i].Connections; c == nil || c.Tracked != int64(doc.Workloads[i].Packets) || c.Refused != 0 {
			t.Errorf("flows-rss: connections %+v, want all %d flows tracked, none refused", c, doc.Workloads[i].Packets)
		}
	}
	for _, id := range []string{"latency-2", "latency-4"} {
		if i, ok := got[id]; ok {
			if l := doc.Workloads[i].Latency; l == nil || l.Samples != uint64(doc.Workloads[i].Packets) || l.P99 <= 0 {
				t.Errorf("%s: latency %+v, want a p99 over all %d packets", id, l, doc.Workloads[i].Packets)
			}
		}
	}
	if i, ok := got["latency-4"]; ok {
		if l := doc.Workloads[i].FloorLatency; l == nil || l.Samples != uint64(doc.Workloads[i].Packets) || l.P99 <= 0 {
			t.Errorf("latency-4: floor latency %+v, want a p99 over all %d packets", l, doc.Workloads[i].Packets)
		}
	}
	if len(doc.Aims) < 7 {
		t.Errorf("%d aims evaluated", len(doc.Aims))
	}
	for _, a := range doc.Aims {
		if !a.Measured {
			t.Errorf("aim of %s: not measured", a.Workload)
		}
	}
	if fi, err := os.Stat(filepath.Join(out, "throughput.svg")); err != nil || fi.Size() == 0 {
		t.Errorf("the chart: %v", err)
	}
}

// --only picks workloads by id; a bad expression or none matching is an error.
func TestBenchOnly(t *testing.T) {
	dir := tempDir(t)
	mustSh(t, dir, "stdpkt-bench --quick --runs 1 --stack-runs 1 --traces traces --out r --only '^src-sink-64$' > /dev/null")
	b, err := os.ReadFile(filepath.Join(dir, "r", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), `"id":`); n != 1 || !strings.Contains(string(b), `"id": "src-sink-64"`) {
		t.Errorf("--only '^src-sink-64$': %d workloads ran", n)
	}
	if _, errs, code := sh(t, dir, "stdpkt-bench --only '('"); code != 2 || !strings.Contains(errs, "--only") {
		t.Errorf("--only '(': exit %d, want 2:\n%s", code, errs)
	}
	if _, errs, code := sh(t, dir, "stdpkt-bench --quick --only nothing-matches --traces traces --out r"); code != 1 || !strings.Contains(errs, "no workload matches") {
		t.Errorf("--only nothing-matches: exit %d, want 1:\n%s", code, errs)
	}
}
