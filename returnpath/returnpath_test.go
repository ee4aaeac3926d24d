package returnpath

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary, run again as a child, play a part: "ask" calls
// NeighborIsStage on its stdout and prints the answer on stderr; "read" reads its stdin to
// the end, as a stage east of the pipe would.
const helperEnv = "STDPKT_RETURNPATH_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "ask":
		// A minute of patience: a test fails by timing out, not by a wrong answer in time.
		fmt.Fprintln(os.Stderr, NeighborIsStage(os.Stdout, time.Minute))
		os.Exit(0)
	case "read":
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helper returns a command that runs this test binary as part (see helperEnv), by the
// name argv0 when it is not empty, behind the wrapper words if any.
func helper(t *testing.T, part, argv0 string, wrapper ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if argv0 != "" {
		link := filepath.Join(t.TempDir(), argv0)
		if err := os.Symlink(self, link); err != nil {
			t.Fatal(err)
		}
		self = link
	}
	args := append(wrapper, self, "-test.run=^$")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+part)
	return cmd
}

// answer waits for an "ask" helper and returns what it printed, failing the test when it
// spends more than half its patience.
func answer(t *testing.T, cmd *exec.Cmd, stderr *strings.Builder) string {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("helper: %v: %s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("NeighborIsStage spent its patience waiting")
	}
	return strings.TrimSpace(stderr.String())
}

// A wrapper that forks a stage and waits for it (time, timeout, strace) holds the stage's
// pipe, at the stage's own descriptor, as long as it runs. When the stage's input ends and
// it asks whether a stage reads its stdout, that parent is not a pipeline stage still to
// exec, so it is not waited for: the answer (no) comes at once, not after the whole
// patience, polling /proc all along.
func TestNeighborIsStageSkipsWrapperParent(t *testing.T) {
	if _, err := exec.LookPath("timeout"); err != nil {
		t.Skip("no timeout(1) to wrap the helper")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := helper(t, "ask", "", "timeout", "60")
	cmd.Stdout = w
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close() // only timeout and its child hold the write end now, as in a pipeline
	if got := answer(t, cmd, &stderr); got != "false" {
		t.Errorf("NeighborIsStage with only the wrapping parent holding the pipe: %q, want false", got)
	}
}

// A shell running `stdpkt-src ... | stdpkt-fw` forks the source, then the stage east of
// it, holding both ends of the pipe in between at descriptors of its own. A source whose
// short replay ends in that moment must wait for the stage, not conclude from the shell
// alone that nothing reads it: it would close its end and refuse the stage's return path.
func TestNeighborIsStageWaitsWhileShellForks(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ask := helper(t, "ask", "")
	ask.Stdout = w
	var stderr strings.Builder
	ask.Stderr = &stderr
	if err := ask.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the shell is slow to fork the next stage
	stage := helper(t, "read", "stdpkt-reader")
	stage.Stdin = r
	if err := stage.Start(); err != nil {
		_ = ask.Process.Kill()
		t.Fatal(err)
	}
	r.Close()
	w.Close()
	got := answer(t, ask, &stderr)
	if err := stage.Wait(); err != nil {
		t.Errorf("stage: %v", err)
	}
	if got != "true" {
		t.Errorf("NeighborIsStage while the parent shell held the pipe, then forked a stage: %q, want true", got)
	}
}

// A listener stays quiet about a peer that connected and then died (a stage whose own
// east neighbour went away, as with | head): exiting tells such a process from a live
// one, which a refusal is reported for.
func TestExiting(t *testing.T) {
	if exiting(os.Getpid()) {
		t.Error("this live process counts as exiting")
	}
	if exiting(0) {
		t.Error("an unknown pid counts as exiting")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Not yet waited for, the child ends as a zombie; wait for that state (a bound, not
	// a measurement: the test fails by timing out, however slow the machine).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d never became a zombie: %s", pid, stat)
		}
	}
	if !exiting(pid) {
		t.Errorf("a zombie (%d) does not count as exiting", pid)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !exiting(pid) {
		t.Errorf("a process that is gone (%d) does not count as exiting", pid)
	}
}
