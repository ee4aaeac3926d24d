package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// lab is a set of network namespaces and veth pairs made by one test and removed when it
// ends, also on failure. Test traffic stays inside them, on documentation addresses.
type lab struct {
	t      *testing.T
	prefix string
}

// needRoot skips, loudly, a test that makes namespaces when it cannot.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED, NOT TESTED: live interfaces need root to make network namespaces and veth pairs (CI runs as root)")
	}
	needTool(t, "ip", "iproute2")
	needTool(t, "ethtool", "ethtool")
	needTool(t, "ping", "iputils-ping")
}

// newLab returns an empty lab whose names start with a prefix unique to this test run.
func newLab(t *testing.T, short string) *lab {
	t.Helper()
	needRoot(t)
	l := &lab{t: t, prefix: fmt.Sprintf("sp%d%s", os.Getpid()%10000, short)}
	t.Cleanup(l.teardown)
	return l
}

// name returns the lab's name for a namespace or a root-side interface (at most 15 bytes).
func (l *lab) name(s string) string { return l.prefix + s }

func (l *lab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// host makes namespace ns with interface eth0 at addr (CIDR), linked by a veth pair to the
// root namespace's interface l.name(ns), which is returned. Offloads are off on both ends,
// since a packet socket sees what the wire would not: unchecksummed and oversized segments.
func (l *lab) host(ns, addr, gateway string) string {
	l.t.Helper()
	nsName, outer := l.name(ns), l.name(ns)
	l.run("ip", "netns", "add", nsName)
	l.run("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", nsName)
	l.run("ip", "link", "set", outer, "up")
	l.run("ip", "-n", nsName, "addr", "add", addr, "dev", "eth0")
	l.run("ip", "-n", nsName, "link", "set", "eth0", "up")
	l.run("ip", "-n", nsName, "link", "set", "lo", "up")
	if gateway != "" {
		l.run("ip", "-n", nsName, "route", "add", "default", "via", gateway)
	}
	for _, cmd := range [][]string{
		{"ethtool", "-K", outer, "tx", "off", "tso", "off", "gso", "off", "gro", "off"},
		{"ip", "netns", "exec", nsName, "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off", "gro", "off"},
	} {
		l.run(cmd...)
	}
	return outer
}

// in runs a shell command inside namespace ns.
func (l *lab) in(ns, script string) string {
	return "ip netns exec " + l.name(ns) + " " + script
}

func (l *lab) teardown() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], l.prefix) {
			_ = exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, line := range strings.Split(string(links), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			name := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
			if strings.HasPrefix(name, l.prefix) {
				_ = exec.Command("ip", "link", "del", name).Run()
			}
		}
	}
}

// inNetns runs f on an OS thread that has joined the network namespace ns, so the sockets f
// makes belong to ns (and stay there when used from other threads). The thread goes back
// to the test's own namespace afterwards: a thread left behind could be the process's main
// thread, and /proc/net and abstract sockets would then follow it into a deleted lab.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return // locked: this thread ends with the goroutine
		}
		defer unix.Close(home)
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		err = f()
		if unix.Setns(home, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
