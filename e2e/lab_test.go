package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// labChecks are the checks examples/lab/lab.sh run prints, each as "PASS NAME: ...".
var labChecks = []string{"ping", "http-transfer", "server-sees-nat", "traceroute", "telnet-refused",
	"chain-stopped", "books-printed", "books-balance", "books-agree", "fw-counters"}

// The teaching lab's script, as a student would run it: it builds its namespaces, runs the
// chain, passes every check, prints the books and removes everything it made.
func TestLabScript(t *testing.T) {
	needRoot(t)
	for _, tool := range [][2]string{{"socat", "socat"}, {"traceroute", "traceroute"}, {"nc", "netcat-openbsd"}, {"setsid", "util-linux"}, {"setpriv", "util-linux"}} {
		needTool(t, tool[0], tool[1])
	}
	script, err := filepath.Abs("../examples/lab/lab.sh")
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("spt%d", os.Getpid()%100000)
	env := append(os.Environ(), "STDPKT_BIN="+binDir, "LAB_PREFIX="+prefix)
	t.Cleanup(func() { // should there be anything left
		cmd := exec.Command("bash", script, "down")
		cmd.Env = env
		_ = cmd.Run()
	})

	// Not root: exit 2, saying why, before touching anything.
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", script, "run").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "needs root") {
		t.Errorf("lab.sh run as nobody: %v, want exit 2 and \"needs root\":\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script, "run")
	cmd.Dir = ".."
	cmd.Env = env
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Errorf("lab.sh run: %v", err)
	}
	for _, c := range labChecks {
		if !regexp.MustCompile(`(?m)^PASS ` + regexp.QuoteMeta(c) + `: `).Match(out) {
			t.Errorf("no PASS line for %s", c)
		}
	}
	if bytes.Contains(out, []byte("\nFAIL ")) || !bytes.Contains(out, []byte(fmt.Sprintf("\n%d passed, 0 failed\n", len(labChecks)))) {
		t.Errorf("lab.sh run reported failures")
	}
	if t.Failed() {
		t.Logf("lab.sh run said:\n%s", out)
	}
	// It cleaned up after itself.
	nss, _ := exec.Command("ip", "netns", "list").Output()
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	if bytes.Contains(nss, []byte(prefix+"-")) || bytes.Contains(links, []byte(prefix+"-")) {
		t.Errorf("lab.sh run left namespaces or links named %s-*:\n%s\n%s", prefix, nss, links)
	}
}

// quietIPv6 turns IPv6 off on a lab's interfaces, so no router solicitation or MLD report
// wanders into the chain while its books are compared.
func quietIPv6(t *testing.T, l *lab, rootDevs []string, nss ...string) {
	t.Helper()
	for _, d := range rootDevs {
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+d+"/disable_ipv6", []byte("1"), 0o644)
	}
	for _, ns := range nss {
		_ = exec.Command("ip", "netns", "exec", l.name(ns), "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1").Run()
	}
}

// sideBooks is one "STAGE eastbound|westbound: in ..." line of a stage's books.
type sideBooks struct {
	inP, inB, gen, outP, outB, drop uint64
	line                            string
}

var booksLine = regexp.MustCompile(`(?m)^stdpkt-(\w+) (eastbound|westbound): in (\d+) \((\d+) B\) generated (\d+) out (\d+) \((\d+) B\) dropped (\d+).*$`)

// parseBooks returns the books lines in stderr, keyed "STAGE DIRECTION" (e.g. "fw eastbound").
func parseBooks(t *testing.T, stderr string) map[string]sideBooks {
	t.Helper()
	m := map[string]sideBooks{}
	for _, s := range booksLine.FindAllStringSubmatch(stderr, -1) {
		var n [6]uint64
		for i := range n {
			v, err := strconv.ParseUint(s[3+i], 10, 64)
			if err != nil {
				t.Fatalf("books line %q: %v", s[0], err)
			}
			n[i] = v
		}
		key := s[1] + " " + s[2]
		if _, dup := m[key]; dup {
			t.Errorf("two books lines for %s", key)
		}
		m[key] = sideBooks{inP: n[0], inB: n[1], gen: n[2], outP: n[3], outB: n[4], drop: n[5], line: s[0]}
	}
	return m
}

// The lab's chain, src | fw -f examples/lab/rules.txt | nat --masquerade | sink, between two
// namespaces of its own: a 12 MiB upload arrives whole at 203.0.113.10 and comes from
// 203.0.113.1; telnet is reset by the firewall although a server listens; pings get their
// replies; on SIGINT every stage prints books that balance, and each stage took in exactly
// what its neighbour put out, in both directions.
func TestLabChain(t *testing.T) {
	l := newLab(t, "L")
	west := l.host("a", "192.0.2.10/24", "192.0.2.1")
	east := l.host("b", "203.0.113.10/24", "")
	quietIPv6(t, l, []string{west, east}, "a", "b")
	l.run("ip", "-n", l.name("b"), "addr", "add", "203.0.113.11/24", "dev", "eth0") // a second server address
	rules, err := filepath.Abs("../examples/lab/rules.txt")
	if err != nil {
		t.Fatal(err)
	}
	dir := tempDir(t)

	// The servers, in namespace b: :80 hashes what it is sent and answers with the hash and
	// the client's address as it saw it; :23 would greet anyone who got through.
	var web, telnet net.Listener
	if err := inNetns(l.name("b"), func() (err error) {
		if web, err = net.Listen("tcp4", "203.0.113.10:80"); err != nil {
			return err
		}
		telnet, err = net.Listen("tcp4", "203.0.113.10:23")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	defer telnet.Close()
	type upload struct {
		peer string
		n    int64
		sum  [32]byte
		err  error
	}
	uploads := make(chan upload, 1)
	go func() {
		c, err := web.Accept()
		if err != nil {
			uploads <- upload{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		h := sha256.New()
		u := upload{peer: c.RemoteAddr().String()}
		u.n, u.err = io.Copy(h, c)
		copy(u.sum[:], h.Sum(nil))
		if u.err == nil {
			_, u.err = fmt.Fprintf(c, "%x %s\n", u.sum, u.peer)
		}
		uploads <- u
	}()
	telnetAccepts := make(chan string, 16)
	go func() {
		for {
			c, err := telnet.Accept()
			if err != nil {
				close(telnetAccepts)
				return
			}
			telnetAccepts <- c.RemoteAddr().String()
			c.Close()
		}
	}()

	cmd, stderr := background(t, dir, "stdpkt-src "+west+" | stdpkt-fw -f "+rules+" --alias eth0=west --alias eth1=east --list"+
		" | stdpkt-nat --west 192.0.2.1/24 --east 203.0.113.1/24 --masquerade | stdpkt-sink "+east)
	// The first echo reply says every stage is up (bounded by ping's own deadline).
	if _, errs, code := sh(t, dir, l.in("a", "ping -n -c 1 -w 15 203.0.113.10")); code != 0 {
		stopChain(t, cmd, stderr)
		t.Fatalf("no echo reply through the chain: %s\nchain:\n%s", errs, stderr)
	}

	// 12 MiB, deterministic, hashed as it is sent.
	const size = 12 << 20
	var conn net.Conn
	if err := inNetns(l.name("a"), func() (err error) {
		conn, err = (&net.Dialer{Timeout: 10 * time.Second}).Dial("tcp4", "203.0.113.10:80")
		return err
	}); err != nil {
		t.Fatalf("connect to 203.0.113.10:80 through the chain: %v\nchain:\n%s", err, stderr)
	}
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	sent := sha256.New()
	rng := rand.NewChaCha8([32]byte{'s', 't', 'd', 'p', 'k', 't', 'l', 'a', 'b'})
	n, err := io.Copy(io.MultiWriter(conn, sent), io.LimitReader(rng, size))
	if err != nil || n != size {
		t.Errorf("sent %d of %d bytes: %v", n, size, err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Error(err)
	}
	answer, err := io.ReadAll(conn)
	conn.Close()
	if err != nil {
		t.Errorf("reading the server's answer: %v", err)
	}
	u := <-uploads
	wantSum := fmt.Sprintf("%x", sent.Sum(nil))
	switch {
	case u.err != nil:
		t.Errorf("server: %v (after %d bytes)", u.err, u.n)
	case u.n != size || fmt.Sprintf("%x", u.sum) != wantSum:
		t.Errorf("server received %d bytes, sha256 %x; sent %d bytes, sha256 %s", u.n, u.sum, size, wantSum)
	}
	if host, _, _ := net.SplitHostPort(u.peer); host != "203.0.113.1" {
		t.Errorf("the server saw the client as %q, want 203.0.113.1 (masquerade)", u.peer)
	}
	if got := strings.Fields(string(answer)); len(got) != 2 || got[0] != wantSum || got[1] != u.peer {
		t.Errorf("the server's answer came back as %q, want %q", answer, wantSum+" "+u.peer)
	}

	// Port 23 is listened on, but the firewall's REJECT --reject-with tcp-reset answers first.
	err = inNetns(l.name("a"), func() error {
		c, err := (&net.Dialer{Timeout: 10 * time.Second}).Dial("tcp4", "203.0.113.10:23")
		if err == nil {
			c.Close()
		}
		return err
	})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connect to 203.0.113.10:23: %v, want connection refused (tcp-reset from the firewall)", err)
	}

	// One echo request to a host the NAT stage has not met: it must resolve the neighbour and
	// send the held request on by itself, with no further input to push its frames out.
	if out, _, _ := sh(t, dir, l.in("a", "ping -n -c 1 -W 5 203.0.113.11")); !strings.Contains(out, "1 packets transmitted, 1 received") {
		t.Errorf("a lone ping to a new neighbour of the NAT stage got no reply (frames netstack writes "+
			"outside an input batch, its ARP request and the packets it held, wait for the next input to be flushed):\n%s", out)
	}

	// Pings last: when they have their replies, nothing is in flight in the chain.
	out, _, _ := sh(t, dir, l.in("a", "ping -n -c 3 -i 0.2 -w 10 203.0.113.10"))
	if !strings.Contains(out, "3 packets transmitted, 3 received") {
		t.Errorf("ping 203.0.113.10 through the chain:\n%s", out)
	}

	errs := stopChain(t, cmd, stderr)
	telnet.Close()
	for peer := range telnetAccepts {
		t.Errorf("the telnet server accepted a connection from %s through the firewall", peer)
	}

	bk := parseBooks(t, errs)
	stages := []string{"src", "fw", "nat", "sink"}
	for _, s := range stages {
		for _, d := range []string{"eastbound", "westbound"} {
			b, ok := bk[s+" "+d]
			if !ok {
				t.Errorf("no %s books from stdpkt-%s", d, s)
				continue
			}
			if b.inP+b.gen != b.outP+b.drop {
				t.Errorf("stdpkt-%s %s does not balance: %d in + %d generated != %d out + %d dropped", s, d, b.inP, b.gen, b.outP, b.drop)
			}
		}
	}
	// Between neighbours there is only a pipe (eastbound) or the return path (westbound):
	// what one put out, the other took in, packet for packet and byte for byte.
	for i := 0; i+1 < len(stages); i++ {
		a, b := stages[i], stages[i+1]
		if x, y := bk[a+" eastbound"], bk[b+" eastbound"]; x.outP != y.inP || x.outB != y.inB {
			t.Errorf("eastbound: stdpkt-%s put out %d (%d B), stdpkt-%s took in %d (%d B)", a, x.outP, x.outB, b, y.inP, y.inB)
		}
		if x, y := bk[b+" westbound"], bk[a+" westbound"]; x.outP != y.inP || x.outB != y.inB {
			t.Errorf("westbound: stdpkt-%s put out %d (%d B), stdpkt-%s took in %d (%d B)", b, x.outP, x.outB, a, y.inP, y.inB)
		}
	}
	// The upload crossed every stage eastbound and its ACKs westbound.
	if b := bk["sink eastbound"]; b.outB < size {
		t.Errorf("stdpkt-sink sent %d bytes east, less than the %d-byte upload", b.outB, size)
	}
	// The telnet SYN is the firewall's one rule drop, answered by one generated reset.
	if b := bk["fw eastbound"]; b.drop != 1 || !strings.Contains(b.line, "(rule 1)") {
		t.Errorf("stdpkt-fw eastbound drops: %q, want the telnet SYN alone: dropped 1 (rule 1)", b.line)
	}
	if b := bk["fw westbound"]; b.gen != 1 {
		t.Errorf("stdpkt-fw westbound: %q, want 1 generated (the reset)", b.line)
	}
	if !regexp.MustCompile(`(?m)^\s+1\s+\d+\s+-A FORWARD -p tcp --dport 23 .*-j REJECT --reject-with tcp-reset`).MatchString(errs) {
		t.Errorf("stdpkt-fw --list: want 1 packet on the telnet REJECT rule")
	}
	if t.Failed() {
		t.Logf("the chain's stderr:\n%s", errs)
	}
}

// The lab's README suggests a tap to watch what the source captures (| tee FILE | or
// | cat |): across it there is no return path, and the source, whose east neighbour never
// connects, must still stop cleanly on SIGINT, every time.
func TestLabTapStopsCleanly(t *testing.T) {
	l := newLab(t, "T")
	west := l.host("a", "192.0.2.10/24", "192.0.2.1")
	quietIPv6(t, l, []string{west}, "a")
	dir := tempDir(t)
	// The shell and cat ignore SIGINT, so cat drains the source and the shell reports its
	// status; the source catches SIGINT as it always does.
	for i := range 25 {
		errFile := filepath.Join(dir, fmt.Sprintf("src%d.err", i))
		cmd, stderr := background(t, dir, "trap '' INT; stdpkt-src --stats-interval 10ms "+west+" 2>"+errFile+
			" | cat >/dev/null; echo src-status ${PIPESTATUS[0]} >>"+errFile)
		for range 1000 { // until its first stats line: the source is running
			if b, _ := os.ReadFile(errFile); bytes.Contains(b, []byte("stdpkt-src: ")) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		stopChain(t, cmd, stderr)
		b, _ := os.ReadFile(errFile)
		if bytes.Contains(b, []byte("panic:")) || !bytes.Contains(b, []byte("src-status 0\n")) {
			t.Fatalf("stop %d of stdpkt-src %s | cat: want exit status 0 and no panic:\n%s", i+1, west, b)
		}
	}
}
