package osinst

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stdpkt/stdpkt/framing"
)

// Helpers for tests that compare an instance with the Linux kernel in network namespaces.
// Everything made here is named with a prefix unique to the test process and removed when
// the test ends, also on failure. Traffic stays in the namespaces, on documentation
// addresses.

// knNeedRoot skips, loudly, a test that needs namespaces and the kernel's tools.
func knNeedRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED, NOT TESTED: the kernel comparison needs root to make network namespaces, veth pairs and iptables rules (CI runs as root)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED, NOT TESTED: %s is not installed (apt-get install iproute2 iptables), so there is no kernel to compare with", tool)
		}
	}
}

// knLab is a set of network namespaces made by one test.
type knLab struct {
	t      *testing.T
	prefix string
}

func newKnLab(t *testing.T, short string) *knLab {
	t.Helper()
	l := &knLab{t: t, prefix: fmt.Sprintf("k%d%s", os.Getpid()%10000, short)}
	t.Cleanup(l.teardown)
	return l
}

// name is the lab's name for a namespace or an interface (at most 15 bytes).
func (l *knLab) name(s string) string {
	n := l.prefix + s
	if len(n) > 15 {
		l.t.Fatalf("name %q is longer than an interface name may be", n)
	}
	return n
}

// run runs a command and returns its standard output; a failure ends the test.
func (l *knLab) run(args ...string) string {
	l.t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

// netns makes a namespace with IPv6 off (no router solicitations or DAD on the wires the test
// captures) and lo up.
func (l *knLab) netns(short string) string {
	l.t.Helper()
	ns := l.name(short)
	l.run("ip", "netns", "add", ns)
	l.run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	l.run("ip", "-n", ns, "link", "set", "lo", "up")
	return ns
}

// veth links interface ifA in namespace nsA with ifB in nsB, both up, offloads off where
// ethtool is installed: a packet socket would otherwise see unchecksummed and merged
// segments that never exist on a wire.
func (l *knLab) veth(nsA, ifA, nsB, ifB string) {
	l.t.Helper()
	l.run("ip", "-n", nsA, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", nsB)
	for _, e := range [][2]string{{nsA, ifA}, {nsB, ifB}} {
		l.run("ip", "-n", e[0], "link", "set", e[1], "up")
		if _, err := exec.LookPath("ethtool"); err == nil {
			l.run("ip", "netns", "exec", e[0], "ethtool", "-K", e[1], "rx", "off", "tx", "off", "tso", "off", "gso", "off", "gro", "off")
		}
	}
}

// mac reads an interface's MAC address in a namespace.
func (l *knLab) mac(ns, ifname string) net.HardwareAddr {
	l.t.Helper()
	var links []struct {
		Address string `json:"address"`
	}
	out := l.run("ip", "-n", ns, "-j", "link", "show", "dev", ifname)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		l.t.Fatalf("ip -j link show %s in %s: %v: %s", ifname, ns, err, out)
	}
	m, err := net.ParseMAC(links[0].Address)
	if err != nil {
		l.t.Fatalf("MAC of %s in %s: %v", ifname, ns, err)
	}
	return m
}

func (l *knLab) teardown() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], l.prefix) {
			if err := exec.Command("ip", "netns", "del", f[0]).Run(); err != nil {
				l.t.Logf("removing namespace %s: %v", f[0], err)
			}
		}
	}
}

// knPort is an AF_PACKET socket bound to an interface in a namespace: the test writes frames
// to the wire with it and collects what arrives (not what it wrote itself).
type knPort struct {
	fd   int
	mu   sync.Mutex
	got  [][]byte
	stop chan struct{}
	done chan struct{}
}

func knHtons(v uint16) uint16 { return v<<8 | v>>8 }

// openKnPort opens the socket from a locked thread that enters the namespace and comes back;
// if it cannot come back, the thread stays locked and ends with its goroutine, so no thread
// in another namespace returns to the scheduler.
func openKnPort(t *testing.T, ns, ifname string) *knPort {
	t.Helper()
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{-1, err}
			return
		}
		defer home.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{-1, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- res{-1, fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(knHtons(unix.ETH_P_ALL)))
		if err == nil {
			var ifi *net.Interface
			ifi, err = net.InterfaceByName(ifname)
			if err == nil {
				err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: knHtons(unix.ETH_P_ALL), Ifindex: ifi.Index})
			}
			if err == nil {
				err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 20000})
			}
			if err != nil {
				unix.Close(fd)
				fd = -1
			}
		}
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- res{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("packet socket on %s in %s: %v", ifname, ns, r.err)
	}
	p := &knPort{fd: r.fd, stop: make(chan struct{}), done: make(chan struct{})}
	go p.collect()
	t.Cleanup(func() {
		close(p.stop)
		<-p.done
		unix.Close(p.fd)
	})
	return p
}

func (p *knPort) collect() {
	defer close(p.done)
	buf := make([]byte, 65536)
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		n, from, err := unix.Recvfrom(p.fd, buf, 0)
		if err != nil {
			continue // the read timed out: look at stop again
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		p.mu.Lock()
		p.got = append(p.got, bytes.Clone(buf[:n]))
		p.mu.Unlock()
	}
}

func (p *knPort) write(t *testing.T, frame []byte) {
	t.Helper()
	if _, err := unix.Write(p.fd, frame); err != nil {
		t.Fatalf("injecting a frame: %v", err)
	}
}

// take returns what has arrived since the last take.
func (p *knPort) take() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	got := p.got
	p.got = nil
	return got
}

func (p *knPort) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}

// knGather waits for frames on ports after something was sent: up to first for the first
// frame, then until quiet passes with nothing new, and never beyond limit in all. Every
// wait is bounded; what arrives later is reported by the next gather's caller.
func knGather(ports []*knPort, first, quiet, limit time.Duration) {
	start := time.Now()
	seen := 0
	var last time.Time
	for i := 0; i < 1000; i++ { // 1000 x 2 ms bounds the loop even if the clock misbehaves
		time.Sleep(2 * time.Millisecond)
		n := 0
		for _, p := range ports {
			n += p.count()
		}
		now := time.Now()
		if n != seen {
			seen, last = n, now
		}
		switch {
		case now.Sub(start) >= limit:
			return
		case seen == 0 && now.Sub(start) >= first:
			return
		case seen > 0 && now.Sub(last) >= quiet:
			return
		}
	}
}

// knRecorder is an Output that keeps copies of the frames it is given.
type knRecorder struct {
	mu   sync.Mutex
	pkts [][]byte
}

func (r *knRecorder) Write(pkts []framing.Packet) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range pkts {
		r.pkts = append(r.pkts, bytes.Clone(p.Data))
	}
	return nil
}

func (r *knRecorder) take() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.pkts
	r.pkts = nil
	return out
}

// knSum is the Internet checksum's one's complement sum of b, added to s and folded.
func knSum(b []byte, s uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// knSetIPSum writes the IPv4 header checksum.
func knSetIPSum(ip []byte) {
	hl := int(ip[0]&0x0f) * 4
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], ^knSum(ip[:hl], 0))
}
