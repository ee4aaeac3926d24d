package bench

import "fmt"

// Metric names the number an aim is about.
type Metric string

// The metrics aims are about.
const (
	MetricMpps       Metric = "mpps"         // millions of packets per second
	MetricGbps       Metric = "gbps"         // Gbit/s of frames
	MetricPPS        Metric = "pps"          // packets per second
	MetricP99        Metric = "p99_us"       // 99th percentile latency, microseconds
	MetricRSS        Metric = "peak_rss_mib" // peak resident set, MiB
	MetricFloorShare Metric = "floor_share"  // floor seconds / workload seconds
)

// Format writes v with the metric's unit.
func (m Metric) Format(v float64) string {
	switch m {
	case MetricMpps:
		return fmt.Sprintf("%.3g Mpps", v)
	case MetricGbps:
		return fmt.Sprintf("%.3g Gbit/s", v)
	case MetricPPS:
		return fmt.Sprintf("%.0f/s", v)
	case MetricP99:
		return fmt.Sprintf("%.0f us", v)
	case MetricRSS:
		return fmt.Sprintf("%.0f MiB", v)
	case MetricFloorShare:
		return fmt.Sprintf("%.0f%% of the floor", 100*v)
	}
	return fmt.Sprintf("%g %s", v, m)
}

// Value returns r's value of the metric, and whether r has one.
func (m Metric) Value(r Result) (float64, bool) {
	switch m {
	case MetricMpps:
		return r.Run.Mpps, r.Run.Runs > 0
	case MetricGbps:
		return r.Run.Gbps, r.Run.Runs > 0
	case MetricPPS:
		return r.Run.Mpps * 1e6, r.Run.Runs > 0
	case MetricP99:
		if r.Latency == nil {
			return 0, false
		}
		return r.Latency.P99, true
	case MetricRSS:
		return r.Run.PeakRSSMiB, r.Run.Runs > 0
	case MetricFloorShare:
		return r.FloorShare, r.Floor != nil
	}
	return 0, false
}

// Aim is a number stdpkt aims at (docs/design.md, "Numbers we aim at").
type Aim struct {
	Name     string  `json:"name"`
	Workload string  `json:"workload"` // the ID of the workload that measures it
	Metric   Metric  `json:"metric"`
	Target   float64 `json:"target"`
	Below    bool    `json:"below"` // the value must stay below Target; otherwise reach at least Target
	// MinTracked, when not 0, also wants at least that many connections tracked and none
	// refused: a small RSS means nothing if the flows were turned away.
	MinTracked int64 `json:"min_tracked,omitempty"`
	// Scaled aims at 64 B were set on the machine where `cat f | cat` moved
	// DesignFloorMpps: the note scales them to this machine's floor, since a VM's speed
	// varies by a quarter from day to day (met stays the aim as written).
	Scaled bool `json:"scaled,omitempty"`
}

// DesignFloorMpps is `cat f | cat > /dev/null` with 64-byte frames on the machine
// docs/design.md section 7 measured, next to Click's 6.7 Mpps and the aims.
const DesignFloorMpps = 21.6

// machineFloor is the workload whose floor is that command, this run's yardstick.
const machineFloor = "fw-64"

// TargetText writes the aim's target: ">= 10 Mpps", "< 100 us".
func (a Aim) TargetText() string {
	op := ">="
	if a.Below {
		op = "<"
	}
	return op + " " + a.Metric.Format(a.Target)
}

// AimResult is an aim next to what was measured.
type AimResult struct {
	Aim
	Measured bool    `json:"measured"`
	Value    float64 `json:"value"`
	Met      bool    `json:"met"`
	Note     string  `json:"note,omitempty"`
}

// Aims returns the aims of issue 6 and docs/design.md.
func Aims() []Aim {
	return []Aim{
		{Name: "one stage at 64 B (fw)", Workload: "fw-64", Metric: MetricMpps, Target: 10, Scaled: true},
		{Name: "one stage at 64 B (nat)", Workload: "nat-64", Metric: MetricMpps, Target: 10, Scaled: true},
		{Name: "fw | nat at 64 B", Workload: "fw-nat-64", Metric: MetricMpps, Target: 7.5, Scaled: true},
		{Name: "fw | nat at 1500 B", Workload: "fw-nat-1500", Metric: MetricGbps, Target: 12},
		{Name: "src -r f | sink: half the floor or better (64 B)", Workload: "src-sink-64", Metric: MetricFloorShare, Target: 0.5},
		{Name: "src -r f | sink: half the floor or better (1500 B)", Workload: "src-sink-1500", Metric: MetricFloorShare, Target: 0.5},
		{Name: "added latency of an idle 4-stage chain, p99", Workload: "latency-4", Metric: MetricP99, Target: 100, Below: true},
		{Name: "new flows per second through nat", Workload: "new-flows", Metric: MetricPPS, Target: 200_000},
		{Name: "peak RSS with 1M tracked flows", Workload: "flows-rss", Metric: MetricRSS, Target: 300, Below: true, MinTracked: 1_000_000},
	}
}

// Evaluate sets each aim next to the results; aims whose workload did not run are left
// out.
func Evaluate(aims []Aim, results []Result) []AimResult {
	var out []AimResult
	for _, a := range aims {
		var r *Result
		for i := range results {
			if results[i].ID == a.Workload {
				r = &results[i]
			}
		}
		if r == nil {
			continue
		}
		ar := AimResult{Aim: a}
		ar.Value, ar.Measured = a.Metric.Value(*r)
		switch {
		case !ar.Measured:
			ar.Note = "not measured"
		case a.Below:
			ar.Met = ar.Value < a.Target
			if l := r.FloorLatency; a.Metric == MetricP99 && l != nil {
				ar.Note = fmt.Sprintf("floor (cat for the stages): p99 %.0f us", l.P99)
			}
		default:
			ar.Met = ar.Value >= a.Target
			ar.Note = throughputNote(a, r, ar.Value, results)
		}
		if a.MinTracked > 0 && ar.Measured {
			c := r.Connections
			switch {
			case c == nil:
				ar.Met, ar.Note = false, "the connection count is unknown"
			case c.Tracked < a.MinTracked || c.Refused > 0:
				ar.Met = false
				ar.Note = fmt.Sprintf("%d tracked, %d refused: the aim is about %d", c.Tracked, c.Refused, a.MinTracked)
			default:
				ar.Note = fmt.Sprintf("%d tracked, none refused", c.Tracked)
			}
		}
		out = append(out, ar)
	}
	return out
}

// throughputNote puts a throughput aim in this machine's terms: the aim scaled to its
// floor (Scaled aims), or the floor of the workload itself.
func throughputNote(a Aim, r *Result, value float64, results []Result) string {
	if a.Scaled {
		if floor, n := machineFloorMpps(results); n > 0 {
			f := floor / DesignFloorMpps
			verdict := "met"
			if value < a.Target*f {
				verdict = "missed"
			}
			return fmt.Sprintf("cat f | cat at 64 B: %.1f Mpps here (median of %d workloads' floors), %.0f%% of design.md's %.1f; the aim scaled: %s, %s",
				floor, n, 100*f, DesignFloorMpps, a.Metric.Format(a.Target*f), verdict)
		}
	}
	if r.Floor != nil && r.Floor.Runs > 0 && (a.Metric == MetricMpps || a.Metric == MetricGbps) {
		if v, ok := a.Metric.Value(Result{Run: *r.Floor}); ok && v > 0 {
			return "floor (cat through the same pipes): " + a.Metric.Format(v)
		}
	}
	return ""
}

// machineFloorMpps is this run's `cat f | cat > /dev/null` at 64 B: the median over every
// workload measured next to that same command (one alone moves by a fifth on a busy VM),
// and how many there were.
func machineFloorMpps(results []Result) (float64, int) {
	var cmd string
	for _, r := range results {
		if r.ID == machineFloor && r.Floor != nil {
			cmd = r.Floor.Command
		}
	}
	var mpps []float64
	for _, r := range results {
		if cmd != "" && r.Floor != nil && r.Floor.Command == cmd && r.Floor.Mpps > 0 {
			mpps = append(mpps, r.Floor.Mpps)
		}
	}
	if len(mpps) == 0 {
		return 0, 0
	}
	return Median(mpps), len(mpps)
}
