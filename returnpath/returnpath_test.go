package returnpath

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary, run again as a child, call NeighborIsStage on its
// stdout and print what it returned.
const helperEnv = "STDPKT_RETURNPATH_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		// A minute of patience: NeighborIsStage must not spend it on our parent.
		fmt.Fprintln(os.Stderr, NeighborIsStage(os.Stdout, time.Minute))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A wrapper that forks a stage and waits for it (time, timeout, strace) holds the stage's
// pipes as long as it runs. When the stage's input ends and it asks whether a stage reads
// its stdout, that parent is not a pipeline stage still to exec, so it is not waited for:
// the answer (no) comes at once, not after the whole patience, polling /proc all along.
func TestNeighborIsStageSkipsWrapperParent(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stdout = w // we keep w open too, as a wrapper does
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("helper: %v: %s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("NeighborIsStage waited on the parent that forked it (a wrapper) for its whole patience")
	}
	w.Close()
	if got := strings.TrimSpace(stderr.String()); got != "false" {
		t.Errorf("NeighborIsStage with only the wrapping parent holding the pipe: %q, want false", got)
	}
}
