package nf

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// helperEnv makes the test binary, run again as a child with a pipe for stdout, close its
// stdout the way a stage does when its input ends (CloseStdout), report on stderr what
// its descriptors then name, and wait for its stdin to end.
const helperEnv = "STDPKT_NF_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "closestdout" {
		fd1, _ := os.Readlink("/proc/self/fd/1")
		r := &Return{}
		r.CloseStdout()
		after, _ := os.Readlink("/proc/self/fd/1")
		fmt.Fprintf(os.Stderr, "%s %s %d\n", fd1, after, namingPipe(os.Getpid(), fd1))
		_, _ = io.Copy(io.Discard, os.Stdin)
		r.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// namingPipe counts the descriptors of process pid that name link (pipe:[N]).
func namingPipe(pid int, link string) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join(dir, e.Name())); l == link {
			n++
		}
	}
	return n
}

// When a stage's input ends it ends its output, so the stage east of it sees the end of
// the stream, but goes on holding the pipe: the east stage, connecting to the return path
// at any moment, checks that its peer holds the pipe by listing the peer's descriptors.
// CloseStdout must therefore keep the pipe named at descriptor 1 throughout, the read end
// replacing the write end in one step: opening a read end, then closing stdout, left a
// moment in which a listing saw neither, and the east stage refused the return path.
func TestCloseStdoutEndsStreamKeepsPipe(t *testing.T) {
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
	cmd.Env = append(os.Environ(), helperEnv+"=closestdout")
	cmd.Stdout = w
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	w.Close()

	line, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	var before, after string
	var count int
	if _, err := fmt.Sscanf(line, "%s %s %d", &before, &after, &count); err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}
	if !strings.HasPrefix(before, "pipe:[") {
		t.Fatalf("helper's stdout was %q, not our pipe", before)
	}
	if after != before || count != 1 {
		t.Errorf("after CloseStdout descriptor 1 names %q and %d descriptors name the pipe; want %q at descriptor 1 alone", after, count, before)
	}
	// The stream has ended for its reader, though the helper still runs, holding the pipe.
	if n, err := io.Copy(io.Discard, r); err != nil || n != 0 {
		t.Errorf("reading the helper's stdout: %d bytes, %v; want the end at once", n, err)
	}
	if n := namingPipe(cmd.Process.Pid, before); n != 1 {
		t.Errorf("the helper holds the pipe at %d descriptors after the stream ended, want 1", n)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("helper: %v", err)
	}
}
