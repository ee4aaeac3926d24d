package bench

import (
	"math"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1, 9, 7}, 5},
	} {
		in := append([]float64(nil), tc.in...)
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Fatalf("Median changed its input: %v, was %v", tc.in, in)
			}
		}
	}
	if got := Median(nil); !math.IsNaN(got) {
		t.Errorf("Median(nil) = %v, want NaN", got)
	}
}

func TestSummarize(t *testing.T) {
	m := Summarize("cmd", []Sample{{2, 1.5, 100}, {1, 1, 300}, {4, 2, 200}}, 1_000_000, 64)
	if m.Runs != 3 || m.Seconds != 2 || m.CPUSeconds != 1.5 {
		t.Errorf("runs %d, seconds %v, CPU %v: want 3, the median 2, the median 1.5", m.Runs, m.Seconds, m.CPUSeconds)
	}
	if want := 300.0 / 1024; m.PeakRSSMiB != want {
		t.Errorf("peak RSS %v MiB, want the largest, %v", m.PeakRSSMiB, want)
	}
	if m.Mpps != 0.5 || m.Gbps != 0.256 {
		t.Errorf("%v Mpps, %v Gbit/s: want 0.5 and 0.256", m.Mpps, m.Gbps)
	}
	if z := Summarize("cmd", nil, 10, 64); z.Runs != 0 || z.Seconds != 0 || z.Mpps != 0 {
		t.Errorf("no samples: %+v, want zeros", z)
	}
}
