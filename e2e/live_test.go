package e2e

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stopChain interrupts a background chain as Ctrl-C would and returns its stderr.
func stopChain(t *testing.T, cmd *exec.Cmd, stderr *strings.Builder) string {
	t.Helper()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("chain exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("chain did not stop on SIGINT:\n%s", stderr.String())
	}
	return stderr.String()
}

// background starts a pipeline in its own process group, stderr collected.
func background(t *testing.T, dir, script string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	return cmd, &stderr
}

// pingAfterWarmUp pings 192.0.2.20 from namespace a once the chain carries a first ping
// (the stages may still be starting), and returns the output of three more.
func pingAfterWarmUp(t *testing.T, l *lab, dir string) string {
	t.Helper()
	mustSh(t, dir, l.in("a", "ping -c 1 -w 10 192.0.2.20"))
	out, _, _ := sh(t, dir, l.in("a", "ping -c 3 -i 0.2 -w 10 192.0.2.20"))
	return out
}

// The two ends alone make a wire between two namespaces: requests go east through the
// pipe, replies come back west over the return path the stages found themselves.
func TestLiveWireWithReturnPath(t *testing.T) {
	l := newLab(t, "w")
	west := l.host("a", "192.0.2.10/24", "")
	east := l.host("b", "192.0.2.20/24", "")
	dir := tempDir(t)
	cmd, stderr := background(t, dir, "stdpkt-src "+west+" | stdpkt-sink "+east)
	out := pingAfterWarmUp(t, l, dir)
	if !strings.Contains(out, "3 received, 0% packet loss") {
		t.Errorf("ping through src | sink:\n%s", out)
	}
	errs := stopChain(t, cmd, stderr)
	for _, want := range []string{"stdpkt-src westbound: in ", "stdpkt-sink westbound: in "} {
		if !strings.Contains(errs, want) {
			t.Errorf("no %q in:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, "no return path") || strings.Contains(errs, "dropped 1") {
		t.Errorf("unexpected drops:\n%s", errs)
	}
}

// Across a program that is not a stage (| cat |) there is no return path: the sink says so
// once and counts the replies it cannot send as dropped; requests still go east.
func TestNoReturnPathAcrossCat(t *testing.T) {
	l := newLab(t, "c")
	west := l.host("a", "192.0.2.10/24", "")
	east := l.host("b", "192.0.2.20/24", "")
	dir := tempDir(t)
	cmd, stderr := background(t, dir, "stdpkt-src "+west+" | cat | stdpkt-sink "+east)
	out, _, _ := sh(t, dir, l.in("a", "ping -c 2 -i 0.2 -w 3 192.0.2.20"))
	if !strings.Contains(out, " 0 received") {
		t.Errorf("ping got replies without a return path:\n%s", out)
	}
	errs := stopChain(t, cmd, stderr)
	if strings.Count(errs, "no return path") != 1 {
		t.Errorf("want the no-return-path message once:\n%s", errs)
	}
	if !strings.Contains(errs, "(no-return-path ") {
		t.Errorf("westbound drops not counted:\n%s", errs)
	}
}

// Only the process holding the other end of the pipe can attach: while the source waits for
// its east neighbour (here cat, which never comes), a connection from this test process
// (same user) and one from another user are refused, and the chain is unaffected.
func TestReturnPathRefusesForeignProcess(t *testing.T) {
	needTool(t, "setpriv", "util-linux")
	dir := tempDir(t)
	cmd, stderr := background(t, dir, "stdpkt-src --gen 'udp,count=3000,rate=1000,seed=4242' | cat > out.pcapng")
	name := waitForSocket(t, cmd.Process.Pid, stderr)
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	// The kernel accepts; the stage checks who we are and hangs up.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
		t.Errorf("a foreign process stayed connected to the return path: %v", err)
	}
	c.Close()
	other := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		os.Args[0], "-test.run=^TestHelperDial$", "-test.v")
	other.Env = append(os.Environ(), "STDPKT_DIAL="+name)
	out, _ := other.CombinedOutput()
	if !strings.Contains(string(out), "HUNG-UP") {
		t.Errorf("another user was not hung up on: %s", out)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("chain: %v\n%s", err, stderr)
	}
	if n := strings.Count(stderr.String(), "return path: refused process"); n != 2 {
		t.Errorf("%d refusal messages, want 2:\n%s", n, stderr)
	}
	got, _ := mustSh(t, dir, "stdpkt-sink < out.pcapng 2>&1")
	if !strings.Contains(got, "stdpkt-sink: 3000 packets") {
		t.Errorf("the chain lost packets: %s", got)
	}
}

// TestHelperDial is run as another user by TestReturnPathRefusesForeignProcess.
func TestHelperDial(t *testing.T) {
	name := os.Getenv("STDPKT_DIAL")
	if name == "" {
		t.Skip("helper for TestReturnPathRefusesForeignProcess")
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != nil && !os.IsTimeout(err) {
		t.Log("HUNG-UP")
	}
}

// waitForSocket finds the return-path socket a process of the process group pgid listens
// on: the socket inodes among their fds, looked up in /proc/net/unix.
func waitForSocket(t *testing.T, pgid int, stderr *strings.Builder) string {
	t.Helper()
	for range 1000 { // 10 s: the chain starts while other test packages load the machine
		procs, _ := os.ReadDir("/proc")
		for _, p := range procs {
			stat, err := os.ReadFile("/proc/" + p.Name() + "/stat")
			if err != nil {
				continue
			}
			// pid (comm) state ppid pgrp ...: comm may hold spaces, so count from ')'.
			f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
			if len(f) < 3 || f[2] != strconv.Itoa(pgid) {
				continue
			}
			inodes := map[string]bool{}
			fds, _ := os.ReadDir("/proc/" + p.Name() + "/fd")
			for _, fd := range fds {
				if l, err := os.Readlink("/proc/" + p.Name() + "/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, "socket:[") {
					inodes[strings.Trim(l[len("socket:"):], "[]")] = true
				}
			}
			// That process's own view: this test's threads may have visited other
			// network namespaces (the lab tests), and /proc/net follows the thread.
			b, _ := os.ReadFile("/proc/" + p.Name() + "/net/unix")
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) >= 8 && inodes[f[6]] && strings.HasPrefix(f[7], "@stdpkt/return/") {
					return f[7]
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no stdpkt return-path socket in process group %d; the chain said:\n%s", pgid, stderr)
	return ""
}

// A chain across "hosts": eastbound over a TCP byte stream (as ssh or socat would carry it),
// westbound over the explicit --east-in/--west-out TCP wiring.
func TestChainAcrossHosts(t *testing.T) {
	needTool(t, "socat", "socat")
	l := newLab(t, "h")
	west := l.host("a", "192.0.2.10/24", "")
	east := l.host("b", "192.0.2.20/24", "")
	dir := tempDir(t)
	c1, e1 := background(t, dir, "socat -u TCP-LISTEN:39541,bind=127.0.0.1,reuseaddr - | stdpkt-sink --west-out tcp:127.0.0.1:39542 "+east)
	c2, e2 := background(t, dir, "stdpkt-src --east-in tcp-listen:127.0.0.1:39542 "+west+" | socat -u - TCP:127.0.0.1:39541,retry=100,interval=0.05")
	out := pingAfterWarmUp(t, l, dir)
	if !strings.Contains(out, "3 received, 0% packet loss") {
		t.Errorf("ping across the TCP-joined chain:\n%s", out)
	}
	_ = syscall.Kill(-c2.Process.Pid, syscall.SIGINT)
	_ = syscall.Kill(-c1.Process.Pid, syscall.SIGINT)
	_ = c2.Wait()
	_ = c1.Wait()
	if !strings.Contains(e2.String(), "stdpkt-src westbound: in ") || !strings.Contains(e1.String(), "stdpkt-sink westbound: in ") {
		t.Errorf("no westbound traffic:\nsrc:\n%s\nsink:\n%s", e2, e1)
	}
}

// Two inside hosts on two interfaces of one source, through a router NAT: each host's replies
// leave by the interface its MAC was heard on, as a bridge would send them.
func TestLiveTwoInterfaces(t *testing.T) {
	l := newLab(t, "2")
	a := l.host("a", "192.0.2.10/24", "192.0.2.1")
	c := l.host("c", "192.0.2.11/24", "192.0.2.1")
	b := l.host("b", "203.0.113.10/24", "")
	dir := tempDir(t)
	cmd, stderr := background(t, dir, "stdpkt-src "+a+" "+c+" | stdpkt-nat --west 192.0.2.1/24 --east 203.0.113.1/24 --masquerade | stdpkt-sink "+b)
	for _, ns := range []string{"a", "c"} {
		mustSh(t, dir, l.in(ns, "ping -c 1 -w 10 203.0.113.10"))
		out, _, _ := sh(t, dir, l.in(ns, "ping -c 3 -i 0.2 -w 10 203.0.113.10"))
		if !strings.Contains(out, "3 received, 0% packet loss") {
			t.Errorf("ping from %s through a two-interface source:\n%s", ns, out)
		}
	}
	errs := stopChain(t, cmd, stderr)
	for _, line := range strings.Split(errs, "\n") {
		if strings.Contains(line, "bound: in") && !booksBalance(line) {
			t.Errorf("books do not balance: %s", line)
		}
	}
}
