package bench

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestRunnerPipeline(t *testing.T) {
	s, err := Runner{}.Run(context.Background(), "printf x | cat")
	if err != nil {
		t.Fatal(err)
	}
	if s.Seconds <= 0 || s.Seconds > 30 {
		t.Errorf("wall %v s", s.Seconds)
	}
	// A few milliseconds of CPU at most, perhaps too little to count: never negative, never
	// more than the wall time on every core.
	if s.CPUSeconds < 0 || s.CPUSeconds > s.Seconds*16 {
		t.Errorf("CPU %v s for %v s of wall time", s.CPUSeconds, s.Seconds)
	}
	// bash and cat take some memory; Linux also counts this test process's in bash's peak.
	if s.PeakRSSKiB <= 0 || s.PeakRSSKiB > 4<<20 {
		t.Errorf("peak RSS %d KiB", s.PeakRSSKiB)
	}
}

func TestRunnerCountsDescendants(t *testing.T) {
	if _, err := exec.LookPath("awk"); err != nil {
		t.Skip("no awk")
	}
	// A child of bash that builds a 64 MiB string by doubling: its CPU and memory are
	// bash's children's, which wait4 reports with bash's own.
	cmd := `awk 'BEGIN { s = "x"; for (i = 0; i < 26; i++) s = s s; print length(s) }' | cat > /dev/null`
	s, err := Runner{}.Run(context.Background(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	if s.PeakRSSKiB < 60<<10 {
		t.Errorf("peak RSS %d KiB, want the child's 64 MiB", s.PeakRSSKiB)
	}
	if s.CPUSeconds <= 0 {
		t.Errorf("CPU %v s, want the child's", s.CPUSeconds)
	}
}

func TestRunnerFailure(t *testing.T) {
	for _, cmd := range []string{"echo broken >&2; exit 3", "false | cat"} {
		_, err := Runner{}.Run(context.Background(), cmd)
		if err == nil {
			t.Errorf("%q: no error", cmd)
			continue
		}
		if !strings.Contains(err.Error(), cmd) {
			t.Errorf("%q: error %q does not name the command", cmd, err)
		}
	}
	_, err := Runner{}.Run(context.Background(), "echo broken >&2; exit 3")
	if err == nil || !strings.Contains(err.Error(), "broken") {
		t.Errorf("error %v: want the stderr", err)
	}
}

func TestRunnerEnv(t *testing.T) {
	_, err := Runner{}.Run(context.Background(), `[ "$BENCH_STATS" = /x/y ]`, StatsEnv+"=/x/y")
	if err != nil {
		t.Errorf("the extra environment did not arrive: %v", err)
	}
	_, err = Runner{Env: []string{"A=1"}}.Run(context.Background(), `[ "$A" = 1 ] && [ -z "$HOME" ]`)
	if err != nil {
		t.Errorf("Env is not the whole environment: %v", err)
	}
}

func TestRunnerTimeout(t *testing.T) {
	start := time.Now()
	// sleep in a pipeline: killing bash alone would leave it holding the pipe.
	_, err := Runner{Timeout: 200 * time.Millisecond}.Run(context.Background(), "sleep 20 | cat")
	if err == nil {
		t.Fatal("no error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v: the process group was not killed", d)
	}
	if !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("error %q does not say it timed out", err)
	}
}

func TestTailBuffer(t *testing.T) {
	var b tailBuffer
	b.Write([]byte("start "))
	if b.String() != "start " {
		t.Errorf("%q", b.String())
	}
	b.Write([]byte(strings.Repeat("x", stderrLimit) + "end"))
	if s := b.String(); !strings.HasPrefix(s, "...") || !strings.HasSuffix(s, "end") || len(s) != stderrLimit+3 {
		t.Errorf("%d bytes, starting %q, want ... and the last %d bytes", len(s), s[:10], stderrLimit)
	}
}
