package bench

import (
	"math"
	"slices"
)

// Measurement sums up the runs of one command.
type Measurement struct {
	Command    string   `json:"command"`
	Runs       int      `json:"runs"`
	Seconds    float64  `json:"seconds"`      // median wall time
	CPUSeconds float64  `json:"cpu_seconds"`  // median CPU time (user + system, every process)
	PeakRSSMiB float64  `json:"peak_rss_mib"` // the largest process's resident set, largest over the runs
	Mpps       float64  `json:"mpps"`         // packets / median seconds, in millions
	Gbps       float64  `json:"gbps"`         // frame bytes / median seconds, in Gbit/s
	Samples    []Sample `json:"samples"`
}

// Median returns the middle value of xs (the mean of the two middle values when there is
// an even number of them), or NaN for none. xs is not changed.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid]
	}
	return (s[mid-1] + s[mid]) / 2
}

// Summarize makes a Measurement of cmd's samples; packets and frameBytes give the rates.
func Summarize(cmd string, samples []Sample, packets, frameBytes int) Measurement {
	m := Measurement{Command: cmd, Runs: len(samples), Samples: samples}
	secs := make([]float64, len(samples))
	cpu := make([]float64, len(samples))
	var rss int64
	for i, s := range samples {
		secs[i], cpu[i] = s.Seconds, s.CPUSeconds
		rss = max(rss, s.PeakRSSKiB)
	}
	if len(samples) == 0 {
		return m
	}
	m.Seconds, m.CPUSeconds = Median(secs), Median(cpu)
	m.PeakRSSMiB = float64(rss) / 1024
	if m.Seconds > 0 {
		m.Mpps = float64(packets) / m.Seconds / 1e6
		m.Gbps = float64(packets) * float64(frameBytes) * 8 / m.Seconds / 1e9
	}
	return m
}
