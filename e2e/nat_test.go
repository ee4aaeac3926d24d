package e2e

import (
	"strconv"
	"strings"
	"testing"
)

// natFields returns tshark's view of a file: per frame "src sport dst dport", with every
// checksum checked; a malformed frame or a bad checksum fails the test.
func natFields(t *testing.T, dir, file string) []string {
	t.Helper()
	// Translated ports land on ports tshark gives to other protocols (CAPWAP, ...): decode
	// every UDP payload as data, so only our headers are judged.
	checks := "-d udp.port==1-65535,data -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE"
	bad := `_ws.malformed || ip.checksum.status == "Bad" || tcp.checksum.status == "Bad" || udp.checksum.status == "Bad" || icmp.checksum.status == "Bad"`
	out, _ := mustSh(t, dir, "tshark -r "+file+" "+checks+" -Y '"+bad+"' 2>/dev/null")
	if strings.TrimSpace(out) != "" {
		t.Errorf("%s: bad frames after NAT:\n%s", file, out)
	}
	out, _ = mustSh(t, dir, "tshark -r "+file+" -T fields -e ip.src -e tcp.srcport -e udp.srcport -e icmp.ident -e ip.dst -e tcp.dstport -e udp.dstport 2>/dev/null")
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return lines
}

// Source NAT of an outbound trace: every source becomes the NAT address, ports are kept
// where free and remapped on a collision (one external port per inside flow, for the whole
// flow), checksums stay valid, and no inside address reaches the outside.
func TestSNATOutbound(t *testing.T) {
	needTool(t, "tshark", "tshark")
	dir := tempDir(t)
	// 12 UDP flows from 12 inside hosts, all from port 10000: the first keeps 10000, the
	// others collide on 203.0.113.1:10000 and must get ports of their own. Plus ICMP echo.
	mustSh(t, dir, "stdpkt-src -q --gen 'udp,flows=12,count=60,src=192.0.2.0/24,dst=198.51.100.10' > udp.pcapng")
	mustSh(t, dir, "stdpkt-src -q --gen 'icmp,flows=3,count=9' > icmp.pcapng")
	_, errs := mustSh(t, dir, "stdpkt-src -r udp.pcapng | stdpkt-nat --snat 203.0.113.1 --stats-json nat.json | stdpkt-sink -w out.pcapng")
	in := natFields(t, dir, "udp.pcapng")
	out := natFields(t, dir, "out.pcapng")
	if len(out) != len(in) {
		t.Fatalf("%d frames out of %d", len(out), len(in))
	}
	flowPort := map[string]string{}
	ports := map[string]string{}
	for i := range in {
		fi, fo := strings.Fields(in[i]), strings.Fields(out[i])
		if fo[0] != "203.0.113.1" || fo[2] != fi[2] || fo[3] != fi[3] {
			t.Fatalf("frame %d: %s became %s", i+1, in[i], out[i])
		}
		key := fi[0] + ":" + fi[1]
		if p, ok := flowPort[key]; ok && p != fo[1] {
			t.Errorf("flow %s left from port %s, then %s", key, p, fo[1])
		}
		if other, ok := ports[fo[1]]; ok && other != key {
			t.Errorf("flows %s and %s share external port %s", other, key, fo[1])
		}
		flowPort[key], ports[fo[1]] = fo[1], key
	}
	if flowPort["192.0.2.1:10000"] != "10000" {
		t.Errorf("the first flow's free port was not kept: %v", flowPort)
	}
	if len(ports) != 12 {
		t.Errorf("%d external ports for 12 flows", len(ports))
	}
	if !strings.Contains(errs, "stdpkt-nat eastbound: in 60 ") || !strings.Contains(errs, "out 60 ") {
		t.Errorf("books:\n%s", errs)
	}
	// ICMP echo: the identifier is the port.
	mustSh(t, dir, "stdpkt-src -r icmp.pcapng | stdpkt-nat --snat 203.0.113.1 | stdpkt-sink -w icmp-out.pcapng")
	for _, l := range natFields(t, dir, "icmp-out.pcapng") {
		if !strings.HasPrefix(l, "203.0.113.1 ") {
			t.Errorf("ICMP echo not translated: %s", l)
		}
	}
}

// --ports keeps translated source ports inside the range.
func TestSNATPortRange(t *testing.T) {
	needTool(t, "tshark", "tshark")
	dir := tempDir(t)
	mustSh(t, dir, "stdpkt-src -q --gen 'tcp,handshake,flows=8,count=40,sport=40000' | stdpkt-nat --snat 203.0.113.1 --ports 20000-20099 | stdpkt-sink -w out.pcapng")
	for _, l := range natFields(t, dir, "out.pcapng") {
		f := strings.Fields(l)
		if f[0] == "198.51.100.10" {
			continue // the handshake's server side, which the trace holds too
		}
		if f[0] != "203.0.113.1" || f[1] < "20000" || f[1] > "20099" || len(f[1]) != 5 {
			t.Errorf("source %s:%s outside 203.0.113.1:20000-20099", f[0], f[1])
		}
	}
}

// Port forwarding (DNAT) from the outside, here the west side (--inside east): packets to
// the forwarded port reach the inside server, others keep their destination.
func TestDNATForward(t *testing.T) {
	needTool(t, "tshark", "tshark")
	dir := tempDir(t)
	mustSh(t, dir, "stdpkt-src -q --gen 'tcp,handshake,flows=2,count=10,src=198.51.100.0/24,dst=192.0.2.1,dport=8080' > in.pcapng")
	mustSh(t, dir, "stdpkt-src -r in.pcapng | stdpkt-nat --inside east --forward tcp:8080=203.0.113.10:80 | stdpkt-sink -w out.pcapng")
	for i, l := range natFields(t, dir, "out.pcapng") {
		f := strings.Fields(l)
		if f[0] == "192.0.2.1" {
			continue // the server side of the handshake in the trace
		}
		if f[2] != "203.0.113.10" || f[3] != "80" {
			t.Errorf("frame %d: %s: not forwarded to 203.0.113.10:80", i+1, l)
		}
	}
}

// Bad NAT rules and flags are usage errors that name the line or the flag.
func TestNATUsageErrors(t *testing.T) {
	dir := tempDir(t)
	write := func(name, text string) {
		mustSh(t, dir, "cat > "+name+" <<'EOF'\n"+text+"EOF")
	}
	write("masq-pre.txt", "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -j MASQUERADE\nCOMMIT\n")
	write("drop.txt", "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j DROP\nCOMMIT\n")
	write("port.txt", "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j SNAT --to-source 203.0.113.1:1000-2000\nCOMMIT\n")
	for _, c := range []struct{ cmd, msg string }{
		{"stdpkt-nat -f masq-pre.txt", "masq-pre.txt:4: option -j: MASQUERADE works only in POSTROUTING"},
		{"stdpkt-nat -f drop.txt", "drop.txt:3: option -j: DROP in the nat table"},
		{"stdpkt-nat -f port.txt", "port.txt:3: option --to-source: a port needs -p tcp or -p udp"},
		{"stdpkt-nat --masquerade", "MASQUERADE takes the stage's own address"},
		{"stdpkt-nat --snat 203.0.113.1 --forward tcp:80", "--forward \"tcp:80\""},
		{"stdpkt-nat", "nothing to translate"},
		{"stdpkt-nat --snat nowhere", "--snat \"nowhere\""},
	} {
		_, errs, code := sh(t, dir, c.cmd+" < /dev/null > /dev/null")
		if code != 2 || !strings.Contains(errs, c.msg) {
			t.Errorf("%s: exit %d, want 2 with %q:\n%s", c.cmd, code, c.msg, errs)
		}
	}
}

// A live port forward through a router-mode NAT: a client outside connects to the NAT's
// address on port 8080 and reaches the server inside on port 80; the server's replies are
// translated back (DNAT both ways), and the inside host still reaches out (masquerade).
func TestLiveNATForward(t *testing.T) {
	needTool(t, "nc", "netcat-openbsd")
	l := newLab(t, "n")
	in := l.host("i", "192.0.2.10/24", "192.0.2.1")
	out := l.host("o", "203.0.113.20/24", "")
	dir := tempDir(t)
	srv, _ := background(t, dir, l.in("i", "sh -c 'echo inside-server | nc -l -p 80'"))
	_ = srv
	cmd, stderr := background(t, dir, "stdpkt-src "+in+" | stdpkt-nat --west 192.0.2.1/24 --east 203.0.113.1/24 --masquerade --forward tcp:8080=192.0.2.10:80 | stdpkt-sink "+out)
	mustSh(t, dir, l.in("i", "ping -c 1 -w 10 203.0.113.20"))
	got, _, _ := sh(t, dir, l.in("o", "timeout 10 nc -w 3 203.0.113.1 8080 < /dev/null"))
	if !strings.Contains(got, "inside-server") {
		t.Errorf("port forward: got %q", got)
	}
	errs := stopChain(t, cmd, stderr)
	for _, line := range strings.Split(errs, "\n") {
		if strings.Contains(line, "stdpkt-nat") && strings.Contains(line, "bound: in") && !booksBalance(line) {
			t.Errorf("books do not balance: %s", line)
		}
	}
}

// booksBalance checks one books line: in + generated == out + dropped.
func booksBalance(line string) bool {
	f := strings.Fields(line)
	num := func(word string) int {
		for i := range f[:len(f)-1] {
			if f[i] == word {
				n := 0
				for _, c := range f[i+1] {
					if c < '0' || c > '9' {
						break
					}
					n = n*10 + int(c-'0')
				}
				return n
			}
		}
		return -1
	}
	return num("in")+num("generated") == num("out")+num("dropped")
}

// More flows than --max-flows: the excess is dropped and counted (full), the admitted flows
// keep being served, the translation table lists them, and memory stays bounded.
func TestNATMaxFlows(t *testing.T) {
	needTool(t, "/usr/bin/time", "time")
	dir := tempDir(t)
	// 5000 flows, 4 packets each, round robin: the first 1000 are admitted.
	mustSh(t, dir, "stdpkt-src -q --gen 'udp,flows=5000,count=20000,src=192.0.2.0/24' > flows.pcapng")
	_, errs := mustSh(t, dir, "stdpkt-src -q -r flows.pcapng | stdpkt-nat --snat 203.0.113.1 --max-flows 1000 --stats-json nat.json | stdpkt-sink --stats-json sink.json")
	var doc struct {
		Connections struct {
			Tracked, Refused, Limit int
			Table                   []struct{ Proto, Inside, Remote, Outside, State string }
		}
	}
	readJSON(t, dir+"/nat.json", &doc)
	c := doc.Connections
	if c.Tracked != 1000 || c.Refused != 16000 || c.Limit != 1000 || len(c.Table) != 1000 {
		t.Errorf("tracked %d refused %d limit %d listed %d, want 1000, 16000, 1000, 1000", c.Tracked, c.Refused, c.Limit, len(c.Table))
	}
	for _, f := range c.Table {
		if !strings.HasPrefix(f.Inside, "192.0.2.") || !strings.HasPrefix(f.Outside, "203.0.113.1:") || f.Proto != "UDP" {
			t.Errorf("table entry %+v", f)
			break
		}
	}
	if got := sinkPackets(t, dir+"/sink.json"); got != 4000 {
		t.Errorf("sink got %d packets, want the 4 packets of each of the 1000 admitted flows", got)
	}
	if !strings.Contains(errs, "dropped 16000 (full 16000)") {
		t.Errorf("books:\n%s", errs)
	}
	// A flood of 100000 new flows against a table of 1000: peak RSS stays far from what
	// 100000 connections would take.
	mustSh(t, dir, "stdpkt-src -q --gen 'udp,flows=100000,count=100000,src=192.0.2.0/24' > flood.pcapng")
	_, errs = mustSh(t, dir, "/usr/bin/time -f 'maxrss %M' stdpkt-nat -q --snat 203.0.113.1 --max-flows 1000 < flood.pcapng > /dev/null")
	var kb int
	for _, l := range strings.Split(errs, "\n") {
		if strings.HasPrefix(l, "maxrss ") {
			kb, _ = strconv.Atoi(strings.TrimPrefix(l, "maxrss "))
		}
	}
	if kb == 0 || kb > 200*1024 {
		t.Errorf("peak RSS %d KiB with a 1000-flow table under a 100000-flow flood, want under 200 MiB", kb)
	}
}
