package bench

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

func TestJSONRoundTrip(t *testing.T) {
	r := fixedResults()
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(&b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, back) {
		t.Errorf("read back differs:\n%+v\nwant\n%+v", back, r)
	}
}

func TestJSONFields(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, fixedResults()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Runs      int `json:"runs"`
		StackRuns int `json:"stack_runs"`
		Workloads []struct {
			ID  string `json:"id"`
			Run struct {
				Seconds    float64 `json:"seconds"`
				CPUSeconds float64 `json:"cpu_seconds"`
				PeakRSSMiB float64 `json:"peak_rss_mib"`
				Mpps       float64 `json:"mpps"`
				Samples    []struct {
					PeakRSSKiB int64 `json:"peak_rss_kib"`
				} `json:"samples"`
			} `json:"run"`
			Floor *struct {
				Command string `json:"command"`
			} `json:"floor"`
			FloorShare  float64 `json:"floor_share"`
			Connections *struct {
				Tracked int64 `json:"tracked"`
			} `json:"connections"`
			Latency *struct {
				P99 float64 `json:"p99"`
			} `json:"latency_us"`
			FloorLatency *struct {
				P99 float64 `json:"p99"`
			} `json:"floor_latency_us"`
		} `json:"workloads"`
		Aims []struct {
			Workload string  `json:"workload"`
			Target   float64 `json:"target"`
			Value    float64 `json:"value"`
			Met      bool    `json:"met"`
		} `json:"aims"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Runs != 5 || doc.StackRuns != 3 || len(doc.Workloads) != 3 {
		t.Fatalf("runs %d, stack runs %d, %d workloads: want 5, 3, 3", doc.Runs, doc.StackRuns, len(doc.Workloads))
	}
	fw := doc.Workloads[0]
	if fw.ID != "fw-64" || fw.Run.Seconds != 2 || fw.Run.CPUSeconds != 1.9 || fw.Run.PeakRSSMiB != 30 || fw.Run.Mpps != 0.5 || len(fw.Run.Samples) != 3 ||
		fw.Run.Samples[0].PeakRSSKiB != 30<<10 || fw.Floor == nil || fw.Floor.Command != "cat f | cat > /dev/null" || fw.FloorShare != 0.025 {
		t.Errorf("fw-64: %+v", fw)
	}
	if c := doc.Workloads[1].Connections; c == nil || c.Tracked != 1_000_000 {
		t.Errorf("flows-rss connections: %+v", c)
	}
	if l, fl := doc.Workloads[2].Latency, doc.Workloads[2].FloorLatency; l == nil || l.P99 != 90 || fl == nil || fl.P99 != 80.4 {
		t.Errorf("latency-4: latency %+v, floor latency %+v: want p99 90, floor p99 80.4", l, fl)
	}
	if len(doc.Aims) != 3 {
		t.Errorf("%d aims, want the 3 of the workloads that ran: %+v", len(doc.Aims), doc.Aims)
	}
}
