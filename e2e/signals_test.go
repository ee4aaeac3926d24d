package e2e

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// startChain starts a pipeline in its own process group, as a terminal would, and returns it
// with a reader of its stderr.
func startChain(t *testing.T, dir, script string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	return cmd, bufio.NewReader(stderr)
}

// waitFor reads stderr lines until one contains s, and returns the lines read.
func waitFor(t *testing.T, r *bufio.Reader, s string) string {
	t.Helper()
	return waitForLine(t, r, regexp.MustCompile(regexp.QuoteMeta(s)))
}

// sinkHasPackets matches a sink's stats line once a packet has reached it: every stage of
// the chain has then set up its signal handling, which comes before its first packet.
var sinkHasPackets = regexp.MustCompile(`Gbit/s \| in [1-9]`)

// waitForLine reads stderr lines until one matches re, and returns the lines read.
func waitForLine(t *testing.T, r *bufio.Reader, re *regexp.Regexp) string {
	t.Helper()
	var seen strings.Builder
	for {
		line, err := r.ReadString('\n')
		seen.WriteString(line)
		if re.MatchString(line) {
			return seen.String()
		}
		if err != nil {
			t.Fatalf("stderr ended without a line matching %q:\n%s", re, seen.String())
		}
	}
}

// Ctrl-C on a running chain: every stage flushes, prints balanced books and exits 0.
func TestInterruptChain(t *testing.T) {
	needTool(t, "tcpdump", "tcpdump")
	dir := tempDir(t)
	cmd, stderr := startChain(t, dir,
		"stdpkt-src --gen 'udp,count=60000,rate=2000' | stdpkt-sink --stats-interval 20ms -w out.pcapng --stats-json s.json")
	// Stats lines: the first gives totals, the later ones rates too.
	waitFor(t, stderr, "stdpkt-sink: in ")
	// SIGUSR1 prints the books and the stage carries on.
	if err := exec.Command("pkill", "-USR1", "-f", "^stdpkt-sink --stats-interval").Run(); err != nil {
		t.Fatalf("pkill -USR1: %v", err)
	}
	waitFor(t, stderr, "stdpkt-sink eastbound: in ")
	waitForLine(t, stderr, sinkHasPackets)
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stderr)
	err := cmd.Wait()
	if err != nil {
		t.Fatalf("chain exit: %v\n%s", err, rest)
	}
	for _, want := range []string{"stdpkt-src eastbound: in 0 (0 B) generated ", "stdpkt-sink eastbound: in "} {
		if !strings.Contains(string(rest), want) {
			t.Errorf("no books %q on exit:\n%s", want, rest)
		}
	}
	if strings.Contains(string(rest), "goroutine") {
		t.Errorf("stack trace:\n%s", rest)
	}
	n := sinkPackets(t, dir+"/s.json")
	if n == 0 || n >= 60000 {
		t.Errorf("sink saw %d packets before the interrupt", n)
	}
	// What the sink counted is what its file holds: flushed, not half-written.
	out, _ := mustSh(t, dir, "tcpdump -r out.pcapng 2>/dev/null | wc -l")
	if strings.TrimSpace(out) != strconv.Itoa(n) {
		t.Errorf("out.pcapng holds %s packets, the sink counted %d", strings.TrimSpace(out), n)
	}
}
