package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Trace is a capture the benchmark generates with stdpkt-src --gen and keeps for later runs.
type Trace struct {
	Name       string // small, large, newflows, flows
	Spec       string // the stdpkt-src --gen spec
	Packets    int
	FrameBytes int
}

// File is the trace's file name: its name and a hash of its spec, so a changed spec or
// size makes a new file rather than reusing a stale one.
func (t Trace) File() string {
	sum := sha256.Sum256([]byte(t.Spec))
	return fmt.Sprintf("%s-%d-%s.pcapng", t.Name, t.Packets, hex.EncodeToString(sum[:4]))
}

// Sizes are the packet counts of a benchmark run.
type Sizes struct {
	Small    int // 64-byte frames over 1,000 flows
	Large    int // 1500-byte frames over 1,000 flows
	NewFlows int // every packet a new flow through NAT
	Flows    int // concurrent one-packet flows for the connection table's RSS
	Latency  int // paced packets through an idle chain, at LatencyRate per second
}

// LatencyRate is the pace of the idle-latency chains, packets per second: one at a time,
// a millisecond apart, so the chain is idle between them.
const LatencyRate = 1000

// FullSizes are the sizes of a real run (make bench). The throughput traces are long
// enough that a stage's start-up (about 25 ms: the Go runtime, netstack) is a few per cent
// of a run, not a fifth of it: a million 64-byte packets go through a stage in about
// 0.12 s.
func FullSizes() Sizes {
	return Sizes{Small: 5_000_000, Large: 1_000_000, NewFlows: 50_000, Flows: 1_000_000, Latency: 2000}
}

// QuickSizes are small sizes for tests and CI: seconds, not minutes. Their numbers say
// that everything runs, not how fast.
func QuickSizes() Sizes {
	return Sizes{Small: 20_000, Large: 5_000, NewFlows: 2_000, Flows: 20_000, Latency: 200}
}

// Traces returns the traces of a run of sizes s.
func Traces(s Sizes) []Trace {
	return []Trace{
		{Name: "small", Spec: fmt.Sprintf("udp,size=64,flows=1000,count=%d,seed=1", s.Small), Packets: s.Small, FrameBytes: 64},
		{Name: "large", Spec: fmt.Sprintf("udp,size=1500,flows=1000,count=%d,seed=1", s.Large), Packets: s.Large, FrameBytes: 1500},
		// One inside host, a new source port per flow: every packet a new flow (netstack
		// searches ports linearly on a collision, so many hosts sharing source ports is
		// quadratic: see docs/design-notes.md).
		{Name: "newflows", Spec: fmt.Sprintf("udp,size=64,flows=%d,count=%d,src=192.0.2.10,seed=1", s.NewFlows, s.NewFlows), Packets: s.NewFlows, FrameBytes: 64},
		// One packet per flow, every flow distinct: the 254 hosts of 192.0.2.0/24 with
		// about 4,000 consecutive source ports each (one host's 16-bit ports would wrap).
		// It goes through stdpkt-fw, which tracks without translating: one SNAT address
		// could not give a million UDP flows to one destination distinct ports, and the
		// NAT port search would be quadratic.
		{Name: "flows", Spec: fmt.Sprintf("udp,size=64,flows=%d,count=%d,src=192.0.2.0/24,seed=1", s.Flows, s.Flows), Packets: s.Flows, FrameBytes: 64},
	}
}

// EnsureTrace generates t into dir with the stdpkt-src in bin unless it is there already,
// and returns its path. It writes a temporary file and renames it, so an interrupted run
// leaves no truncated trace behind to be taken for a whole one.
func EnsureTrace(ctx context.Context, bin, dir string, t Trace) (string, error) {
	path := filepath.Join(dir, t.File())
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("trace directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".gen-"+t.Name+"-*")
	if err != nil {
		return "", fmt.Errorf("trace %s: %w", t.Name, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	var stderr strings.Builder
	gen := exec.CommandContext(ctx, filepath.Join(bin, "stdpkt-src"), "-q", "--timestamps", "keep", "--gen", t.Spec)
	gen.Stdout, gen.Stderr = tmp, &stderr
	err = gen.Run()
	if err == nil {
		err = tmp.Chmod(0o644) // CreateTemp's 0600 is for a file still being written
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("generating trace %s (stdpkt-src --gen %s): %w: %s", t.Name, t.Spec, err, strings.TrimSpace(stderr.String()))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("trace %s: %w", t.Name, err)
	}
	return path, nil
}
