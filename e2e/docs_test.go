package e2e

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docBlock is one fenced block of docs/tutorial.md whose info string is "sh tested" (run by
// TestTutorial) or "sh tested root" (run only as root).
type docBlock struct {
	line        int      // line of the opening fence, 1-based
	root        bool     // needs root: the live namespace lab
	script      string   // the block's text
	expect      []string // "# expect: TEXT": the output contains TEXT
	expectLines []string // "# expect-line: TEXT": the output has a line that is exactly TEXT
}

var (
	fenceTested = regexp.MustCompile("^```sh tested( root)?\\s*$")
	expectRe    = regexp.MustCompile(`^\s*# expect: (.+?)\s*$`)
	expectLine  = regexp.MustCompile(`^\s*# expect-line: (.+?)\s*$`)
)

// tutorialBlocks reads the tested blocks of a markdown file, in order.
func tutorialBlocks(t *testing.T, path string) []docBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []docBlock
	var cur *docBlock
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil:
			if m := fenceTested.FindStringSubmatch(line); m != nil {
				cur = &docBlock{line: n, root: m[1] != ""}
			} else if strings.HasPrefix(line, "```sh") && strings.Contains(line, "tested") {
				t.Errorf("%s:%d: %q: want \"```sh tested\" or \"```sh tested root\"", path, n, line)
			}
		case strings.HasPrefix(line, "```"):
			blocks = append(blocks, *cur)
			cur = nil
		default:
			cur.script += line + "\n"
			if m := expectRe.FindStringSubmatch(line); m != nil {
				cur.expect = append(cur.expect, m[1])
			}
			if m := expectLine.FindStringSubmatch(line); m != nil {
				cur.expectLines = append(cur.expectLines, m[1])
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s:%d: the block is never closed", path, cur.line)
	}
	return blocks
}

// blockTools are the programs a block may need that are not always installed, with the
// Debian package that has each: a block that names a missing one is skipped, loudly.
var blockTools = [][2]string{{"tcpdump", "tcpdump"}, {"tshark", "tshark"}, {"jq", "jq"}, {"curl", "curl"},
	{"traceroute", "traceroute"}, {"nc", "netcat-openbsd"}, {"socat", "socat"}, {"ip", "iproute2"},
	{"ethtool", "ethtool"}, {"ping", "iputils-ping"}, {"setsid", "util-linux"}, {"sha256sum", "coreutils"}}

// missingTool returns the first tool script names that is not installed, and its package.
func missingTool(script string) (string, string) {
	words := map[string]bool{}
	for _, w := range regexp.MustCompile(`[A-Za-z0-9_-]+`).FindAllString(script, -1) {
		words[w] = true
	}
	for _, tp := range blockTools {
		if words[tp[0]] {
			if _, err := exec.LookPath(tp[0]); err != nil {
				return tp[0], tp[1]
			}
		}
	}
	return "", ""
}

// checkOutput fails t unless out holds every expectation of b.
func checkOutput(t *testing.T, b docBlock, out string) {
	t.Helper()
	for _, e := range b.expect {
		if !strings.Contains(out, e) {
			t.Errorf("tutorial.md:%d: the output does not contain %q", b.line, e)
		}
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		lines[strings.TrimRight(l, " \t\r")] = true
	}
	for _, e := range b.expectLines {
		if !lines[e] {
			t.Errorf("tutorial.md:%d: no output line is exactly %q", b.line, e)
		}
	}
}

// docsRepo is the repository's root, as the tutorial's $repo.
func docsRepo(t *testing.T) string {
	t.Helper()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// The tutorial's tested blocks, in order, in one empty directory, with the built commands on
// PATH and $repo the repository, as its section 0 sets them up: each exits 0 and prints
// what its "# expect:" lines say. The blocks of the live lab run only as root; they use
// a lab name of this run's own (the text "splab" is replaced), so a lab someone else has
// up on this machine is left alone. Blocks run with set -e, except the lab's: a block that
// starts a chain in the background must reach its own kill, so it runs to its end and
// its expectations say whether each step worked.
func TestTutorial(t *testing.T) {
	repo := docsRepo(t)
	blocks := tutorialBlocks(t, filepath.Join(repo, "docs", "tutorial.md"))
	if len(blocks) < 15 {
		t.Fatalf("docs/tutorial.md has %d tested blocks; the parser or the document lost some", len(blocks))
	}
	dir := tempDir(t)
	t.Setenv("repo", repo)
	t.Setenv("STDPKT_BIN", binDir)
	for _, v := range []string{"STDPKT_STATS_INTERVAL", "STDPKT_STATS_JSON", "STDPKT_PROFILE", "STDPKT_VERBOSE",
		"STDPKT_QUIET", "STDPKT_FORMAT", "STDPKT_WEST_OUT", "STDPKT_EAST_IN"} {
		t.Setenv(v, "") // the reader's defaults, not the caller's
		os.Unsetenv(v)
	}
	prefix := fmt.Sprintf("spd%d", os.Getpid()%100000)
	if os.Geteuid() == 0 {
		t.Setenv("LAB_PREFIX", prefix)
		// Should a step fail, the lab still goes (lab.sh down is safe on no lab at all).
		t.Cleanup(func() {
			cmd := exec.Command("bash", filepath.Join(repo, "examples", "lab", "lab.sh"), "down")
			cmd.Env = append(os.Environ(), "LAB_PREFIX="+prefix, "STDPKT_BIN="+binDir)
			_ = cmd.Run()
		})
	}
	for i, b := range blocks {
		name := fmt.Sprintf("block%02d_line%d", i+1, b.line)
		ok := t.Run(name, func(t *testing.T) {
			script := "set -e\n" + b.script
			if b.root {
				if os.Geteuid() != 0 {
					t.Skipf("SKIPPED, NOT TESTED: tutorial.md:%d is the live namespace lab: it needs root (CI runs as root)", b.line)
				}
				script = strings.ReplaceAll(b.script, "splab", prefix)
				b.expect = replaceAll(b.expect, "splab", prefix)
				b.expectLines = replaceAll(b.expectLines, "splab", prefix)
			}
			needs := b.script
			if b.root { // every lab block needs what examples/lab/lab.sh needs
				needs += " ip ethtool ping nc socat traceroute setsid curl sha256sum"
			}
			if tool, pkg := missingTool(needs); tool != "" {
				t.Skipf("SKIPPED, NOT TESTED: tutorial.md:%d needs %s (Debian package %s; `make test` installs it when run as root)", b.line, tool, pkg)
			}
			out, errs, code := sh(t, dir, script)
			if code != 0 {
				t.Errorf("tutorial.md:%d: exit %d, want 0\nscript:\n%s\nstdout:\n%s\nstderr:\n%s", b.line, code, script, out, errs)
				return
			}
			checkOutput(t, b, out+errs)
			if t.Failed() {
				t.Logf("tutorial.md:%d:\nstdout:\n%s\nstderr:\n%s", b.line, out, errs)
			}
		})
		if !ok {
			break // the blocks after it work on what it should have made
		}
	}
}

func replaceAll(ss []string, old, new string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ReplaceAll(s, old, new)
	}
	return out
}

// runExample runs examples/NAME with args, the built commands as STDPKT_BIN, and returns
// its stdout, stderr and exit status.
func runExample(t *testing.T, name string, args ...string) (string, string, int) {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	q := []string{"STDPKT_BIN=" + shellQuote(binDir), "bash", shellQuote(script)}
	for _, a := range args {
		q = append(q, shellQuote(a))
	}
	return sh(t, tempDir(t), strings.Join(q, " "))
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// wantLines fails t unless out has a line matching each regular expression.
func wantLines(t *testing.T, what, out string, res ...string) {
	t.Helper()
	for _, re := range res {
		if !regexp.MustCompile(`(?m)` + re).MatchString(out) {
			t.Errorf("%s: no line matches %q", what, re)
		}
	}
}

// examples/offline-nat.sh: every inside source is translated to 203.0.113.1, and both
// stdpkt-dump and tshark count no packet of 192.0.2.0/24 leaving.
func TestExampleOfflineNAT(t *testing.T) {
	needTool(t, "tshark", "tshark")
	needTool(t, "jq", "jq")
	out, errs, code := runExample(t, "offline-nat.sh")
	if code != 0 {
		t.Fatalf("offline-nat.sh: exit %d, want 0\n%s\n%s", code, out, errs)
	}
	wantLines(t, "offline-nat.sh", out,
		`^   \.\.\. 20 packets in lan\.pcapng$`,
		`^   stdpkt-nat eastbound: in 20 \(1280 B\) generated 0 out 20 \(1280 B\) dropped 0$`,
		`^   udp  192\.0\.2\.1\.10000 +-> 203\.0\.113\.1\.\d+$`,
		`^   tcp  192\.0\.2\.4\.10000 +-> 203\.0\.113\.1\.\d+$`,
		`^   icmp 192\.0\.2\.2 +-> 203\.0\.113\.1$`,
		`^   10 connections  -A POSTROUTING -o east -j SNAT --to-source 203\.0\.113\.1$`,
		`^   stdpkt-dump --count-only 'net 192\.0\.2\.0/24' < wan\.pcapng: 0$`,
		`^   tshark -r wan\.pcapng -Y 'ip\.addr == 192\.0\.2\.0/24': 0$`,
		`^   packets from 203\.0\.113\.1: 20 of 20$`,
		`^PASS: no inside address left; every packet leaves as 203\.0\.113\.1$`)
	// 10 flows, 10 translations, each to 203.0.113.1, no inside source twice per protocol.
	tr := regexp.MustCompile(`(?m)^   (udp|tcp|icmp) +(\S+) +-> (\S+)$`).FindAllStringSubmatch(out, -1)
	if len(tr) != 10 {
		t.Errorf("offline-nat.sh printed %d translations, want 10 (4 UDP, 4 TCP, 2 ICMP flows)", len(tr))
	}
	seen := map[string]bool{}
	for _, m := range tr {
		if !strings.HasPrefix(m[3], "203.0.113.1") || seen[m[1]+m[2]] {
			t.Errorf("translation %q", m[0])
		}
		seen[m[1]+m[2]] = true
	}
	if t.Failed() {
		t.Logf("offline-nat.sh said:\n%s\n%s", out, errs)
	}

	// A directory of one's own keeps the files.
	dir := tempDir(t)
	if out, errs, code := runExample(t, "offline-nat.sh", dir); code != 0 {
		t.Fatalf("offline-nat.sh DIR: exit %d\n%s\n%s", code, out, errs)
	}
	for _, f := range []string{"lan.pcapng", "wan.pcapng", "nat.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("offline-nat.sh DIR: %v", err)
		}
	}
}

// examples/firewall-audit.sh against examples/firewall-audit-rules.txt: each rule counts
// the packets of its kind, the counters agree with the books, the resets come home.
func TestExampleFirewallAudit(t *testing.T) {
	needTool(t, "jq", "jq")
	out, errs, code := runExample(t, "firewall-audit.sh")
	if code != 0 {
		t.Fatalf("firewall-audit.sh: exit %d, want 0\n%s\n%s", code, out, errs)
	}
	wantLines(t, "firewall-audit.sh", out,
		`^   46 packets$`,
		`^   stdpkt-fw eastbound: in 46 \(2860 B\) generated 0 out 38 \(2348 B\) dropped 8 `,
		`^   stdpkt-fw westbound: in 0 \(0 B\) generated 2 out 2 \(108 B\) dropped 0$`,
		// every rule: packets, bytes, verdict, rule
		`^ +22 +960  ACCEPT +-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT$`,
		`^ +0 +0  DROP +-A FORWARD -m conntrack --ctstate INVALID -j DROP$`,
		`^ +3 +150  ACCEPT +-A FORWARD -p icmp --icmp-type 8 -j ACCEPT$`,
		`^ +5 +200  ACCEPT +-A FORWARD -i west -o east -p tcp --dport 80 -m comment --comment web -j ACCEPT$`,
		`^ +2 +80  ACCEPT +-A FORWARD -i west -o east -p tcp --dport 443 .*-j ACCEPT$`,
		`^ +6 +300  ACCEPT +-A FORWARD -i west -o east -p udp --dport 53 .*-j ACCEPT$`,
		`^ +2 +100  REJECT +-A FORWARD -p tcp --dport 23 .*-j REJECT --reject-with tcp-reset$`,
		`^ +4 +200  DROP +-A FORWARD -s 192\.0\.2\.128/25 .*-j DROP$`,
		`^ +2 +100  DROP \(policy\) FORWARD policy DROP$`,
		`^   FORWARD decided 46 packets: 38 accepted, 8 dropped or rejected$`,
		`^   IP 192\.0\.2\.129\.10000 > 198\.51\.100\.10\.5000: UDP, length 22$`,
		`^   west IP 198\.51\.100\.10\.23 > 192\.0\.2\.2\.10000: Flags \[R\], `,
		`^PASS: 46 packets, 38 accepted, 8 dropped or rejected, 2 answers came home$`)
	if strings.Contains(out, "FAIL") {
		t.Errorf("firewall-audit.sh reported a failed check")
	}
	if n := strings.Count(out, "\n   ok   "); n != 7 {
		t.Errorf("firewall-audit.sh: %d checks ok, want 7", n)
	}
	// The guest's web browsing was accepted by the web rule before the guest DROP saw it.
	if regexp.MustCompile(`(?m)^   IP 192\.0\.2\.200\.`).MatchString(out) {
		t.Errorf("firewall-audit.sh: the guest host's web traffic did not get through")
	}
	if t.Failed() {
		t.Logf("firewall-audit.sh said:\n%s\n%s", out, errs)
	}

	// Usage errors: exit 2, saying why.
	if _, errs, code := runExample(t, "firewall-audit.sh", "/nonexistent/rules.txt"); code != 2 || !strings.Contains(errs, "cannot read /nonexistent/rules.txt") {
		t.Errorf("firewall-audit.sh with a missing rules file: exit %d, want 2 and \"cannot read\":\n%s", code, errs)
	}
}

// examples/bench-chain.sh: three chains, each delivers every packet; bad arguments and
// missing commands are usage errors.
func TestExampleBenchChain(t *testing.T) {
	out, errs, code := runExample(t, "bench-chain.sh", "20000")
	if code != 0 {
		t.Fatalf("bench-chain.sh 20000: exit %d, want 0\n%s\n%s", code, out, errs)
	}
	wantLines(t, "bench-chain.sh", out,
		`^generator: stdpkt-src --gen 'udp,size=64,flows=100,count=20000,seed=1'$`,
		`^chain +packets +seconds +Mpps +Gbit/s$`,
		`^src \| sink +20000 +(\d+\.\d{3} +\d+\.\d{3} +\d+\.\d{3}|- +too few +to time)$`,
		`^src \| fw \| sink +20000 `,
		`^src \| fw \| nat \| sink +20000 `,
		`^every chain delivered all 20000 packets$`)
	if out, _, code := runExample(t, "bench-chain.sh", "300", "imix", "3"); code != 0 || !strings.Contains(out, "every chain delivered all 300 packets") {
		t.Errorf("bench-chain.sh 300 imix 3: exit %d:\n%s", code, out)
	}
	for _, args := range [][]string{{"0"}, {"many"}, {"20000000"}, {"100", "big"}} {
		if _, _, code := runExample(t, "bench-chain.sh", args...); code != 2 {
			t.Errorf("bench-chain.sh %s: exit %d, want 2", strings.Join(args, " "), code)
		}
	}
	script, _ := filepath.Abs("../examples/bench-chain.sh")
	if _, errs, code := sh(t, tempDir(t), "STDPKT_BIN=/nonexistent bash "+shellQuote(script)+" 10"); code != 2 || !strings.Contains(errs, "run make build, or set STDPKT_BIN") {
		t.Errorf("bench-chain.sh without the commands: exit %d, want 2 and a hint:\n%s", code, errs)
	}
}

// The docs and examples speak of documentation addresses only (RFC 5737, RFC 3849).
func TestDocsAddresses(t *testing.T) {
	repo := docsRepo(t)
	files := []string{filepath.Join(repo, "docs", "tutorial.md"), filepath.Join(repo, "examples", "firewall-audit-rules.txt")}
	sh, _ := filepath.Glob(filepath.Join(repo, "examples", "*.sh"))
	files = append(files, sh...)
	doc := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	v4 := regexp.MustCompile(`(^|[^0-9.])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(/\d+)?`)
	v6 := regexp.MustCompile(`(?i)\b[0-9a-f]{1,4}:[0-9a-f:]*:[0-9a-f:]*[0-9a-f]\b`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for n, line := range strings.Split(string(b), "\n") {
			var addrs []string
			for _, m := range v4.FindAllStringSubmatch(line, -1) {
				addrs = append(addrs, m[2])
			}
			for _, m := range v6.FindAllString(line, -1) {
				if strings.Count(m, ":") >= 2 && !regexp.MustCompile(`^\d\d:\d\d:\d\d`).MatchString(m) {
					addrs = append(addrs, m)
				}
			}
			for _, a := range addrs {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue // a time of day, a MAC
				}
				ok := false
				for _, p := range doc {
					ok = ok || p.Contains(ip)
				}
				if !ok {
					t.Errorf("%s:%d: %s is not a documentation address", filepath.Base(f), n+1, a)
				}
			}
		}
	}
}
