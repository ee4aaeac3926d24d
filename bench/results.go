package bench

import "time"

// Results is one benchmark run: what ran where, each workload's numbers and the aims.
type Results struct {
	Version   string    `json:"version"` // of stdpkt-bench, which is built with the stages
	Started   time.Time `json:"started"`
	Seconds   float64   `json:"seconds"` // how long the whole run took
	Host      Host      `json:"host"`
	Quick     bool      `json:"quick"` // small sizes: the numbers say that it runs, not how fast
	Runs      int       `json:"runs"`
	StackRuns int       `json:"stack_runs"` // runs of the network-stage and latency workloads
	// RunnerRSSMiB is the peak RSS measured for bash -c true: Linux counts the memory of the
	// process that starts bash (this one) in bash's peak, so a peak at or below this says
	// only "no more than this".
	RunnerRSSMiB float64       `json:"runner_rss_mib"`
	Workloads    []Result      `json:"workloads"`
	Aims         []AimResult   `json:"aims"`
	Traces       []TraceResult `json:"traces"`
}

// Host says where a run ran, and how busy the machine was around it.
type Host struct {
	Name      string     `json:"name"`
	CPUs      int        `json:"cpus"`
	OS        string     `json:"os"`
	Arch      string     `json:"arch"`
	Kernel    string     `json:"kernel"`
	LoadStart [3]float64 `json:"load_start"` // /proc/loadavg before the run: 1, 5 and 15 minutes
	LoadEnd   [3]float64 `json:"load_end"`   // and after it
}

// TraceResult names a trace a run used.
type TraceResult struct {
	Name    string `json:"name"`
	Spec    string `json:"spec"`
	Path    string `json:"path"`
	Packets int    `json:"packets"`
}

// Result is one workload's numbers.
type Result struct {
	ID         string       `json:"id"`
	Label      string       `json:"label"`
	FloorLabel string       `json:"floor_label,omitempty"` // "" for the floor's command
	Kind       Kind         `json:"kind"`
	Packets    int          `json:"packets"`
	FrameBytes int          `json:"frame_bytes"`
	Run        Measurement  `json:"run"`
	Floor      *Measurement `json:"floor,omitempty"`
	// FloorShare is the floor's seconds over the workload's: 1 is as fast as cat.
	FloorShare  float64           `json:"floor_share,omitempty"`
	Connections *ConnectionsStats `json:"connections,omitempty"`
	Latency     *LatencyStats     `json:"latency_us,omitempty"`
	// FloorLatency is the latency of the same paced chain with cat in place of the
	// stages between source and sink: what the pipes and wake-ups alone cost.
	FloorLatency *LatencyStats `json:"floor_latency_us,omitempty"`
}

// ConnectionsStats is a stage's connection table at the end of a Connections workload,
// from its --stats-json: the fewest tracked and the most refused over the runs.
type ConnectionsStats struct {
	Tracked int64 `json:"tracked"`
	Refused int64 `json:"refused"` // new connections dropped because the table was full
	Limit   int64 `json:"limit"`
}

// LatencyStats are the sink's percentiles of arrival time minus send time, in
// microseconds, each the median over the runs.
type LatencyStats struct {
	Samples uint64  `json:"samples"`
	P50     float64 `json:"p50"`
	P90     float64 `json:"p90"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
}

// Find returns the result of workload id, or nil.
func (r *Results) Find(id string) *Result {
	for i := range r.Workloads {
		if r.Workloads[i].ID == id {
			return &r.Workloads[i]
		}
	}
	return nil
}
