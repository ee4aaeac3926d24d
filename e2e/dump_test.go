package e2e

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stdpkt/stdpkt/dump/dumptest"
)

// dumpTrace writes the mixed trace of package dumptest (TCP, UDP, ICMP, ARP, IPv6, VLAN,
// fragments) as classic pcap to dir/mixed.pcap and returns its frames.
func dumpTrace(t *testing.T, dir string) []dumptest.Frame {
	t.Helper()
	frames, err := dumptest.Trace()
	if err != nil {
		t.Fatal(err)
	}
	var fs []frame
	for _, fr := range frames {
		fs = append(fs, frame{ts: fr.TS, data: fr.Data})
	}
	writePcap(t, filepath.Join(dir, "mixed.pcap"), fs)
	return frames
}

// --pass forwards the stream byte for byte: what comes out of stdpkt-dump is the very file
// stdpkt-src writes, and tcpdump reads the same packets, timestamps and bytes from both; the
// lines go to -o, and the books count every packet out.
func TestDumpPassIsByteIdentical(t *testing.T) {
	needTool(t, "tcpdump", "tcpdump")
	dir := tempDir(t)
	frames := dumpTrace(t, dir)
	mustSh(t, dir, "stdpkt-src -r mixed.pcap > direct.pcapng")
	_, errs := mustSh(t, dir, "stdpkt-src -q -r mixed.pcap | stdpkt-dump --pass -o seen.txt tcp | stdpkt-sink -q -w passed.pcapng")
	mustSh(t, dir, "stdpkt-src -q -r mixed.pcap | stdpkt-dump --pass -q > passed-raw.pcapng 2>/dev/null")
	if _, _, code := sh(t, dir, "cmp direct.pcapng passed-raw.pcapng"); code != 0 {
		t.Errorf("stdpkt-dump --pass changed the stream: cmp direct.pcapng passed-raw.pcapng differ")
	}
	tcpdump := "tcpdump -n -tt --time-stamp-precision=nano -xx -r %s 2>/dev/null"
	want, _ := mustSh(t, dir, strings.ReplaceAll(tcpdump, "%s", "mixed.pcap"))
	for _, f := range []string{"passed.pcapng", "passed-raw.pcapng"} {
		got, _ := mustSh(t, dir, strings.ReplaceAll(tcpdump, "%s", f))
		if got != want {
			t.Errorf("tcpdump reads %s differently from the input:\n%s\nwant\n%s", f, got, want)
		}
	}
	seen, _ := mustSh(t, dir, "cat seen.txt")
	if n := strings.Count(seen, "\n"); n != 7 || !strings.Contains(seen, "IP 192.0.2.10.40001 > 203.0.113.10.80: Flags [S], seq 1000, win 64240, length 0") {
		t.Errorf("seen.txt: want the 7 TCP lines, got:\n%s", seen)
	}
	n := strconv.Itoa(len(frames))
	if !strings.Contains(errs, "stdpkt-dump eastbound: in "+n+" ") || !strings.Contains(errs, " out "+n+" ") || !strings.Contains(errs, "dropped 0") {
		t.Errorf("dump books: every packet in and out, none dropped:\n%s", errs)
	}
}

// The filter selects what the real tcpdump selects, through the built commands.
func TestDumpFilterLikeTcpdump(t *testing.T) {
	needTool(t, "tcpdump", "tcpdump")
	dir := tempDir(t)
	dumpTrace(t, dir)
	for _, expr := range []string{"tcp", "udp", "icmp or icmp6", "arp", "ip6", "vlan and udp",
		"tcp port 80 and host 192.0.2.10", "not (tcp or udp) and len > 60", "vlan 100 or src net 198.51.100.0/24",
		"icmp or tcp and port 80", "portrange 30000-40000 && !ip6"} {
		q := "'" + expr + "'"
		ours, _ := mustSh(t, dir, "stdpkt-src -q -r mixed.pcap | stdpkt-dump -q --count-only "+q)
		theirs, _ := mustSh(t, dir, "tcpdump -n -r mixed.pcap "+q+" 2>/dev/null | wc -l")
		if strings.TrimSpace(ours) != strings.TrimSpace(theirs) {
			t.Errorf("%s: stdpkt-dump counts %s, tcpdump %s", expr, strings.TrimSpace(ours), strings.TrimSpace(theirs))
		}
		// The lines printed are as many as the count.
		lines, _ := mustSh(t, dir, "stdpkt-src -q -r mixed.pcap | stdpkt-dump -q "+q+" | wc -l")
		if strings.TrimSpace(lines) != strings.TrimSpace(theirs) {
			t.Errorf("%s: stdpkt-dump prints %s lines, tcpdump %s", expr, strings.TrimSpace(lines), strings.TrimSpace(theirs))
		}
	}
}

// Lines read as tcpdump -n -S prints them (it goes on to decode HTTP, we stop at TCP).
func TestDumpLinesLikeTcpdump(t *testing.T) {
	needTool(t, "tcpdump", "tcpdump")
	dir := tempDir(t)
	frames := dumpTrace(t, dir)
	ours, _ := mustSh(t, dir, "stdpkt-src -q -r mixed.pcap | TZ=UTC stdpkt-dump -q")
	theirs, _ := mustSh(t, dir, "TZ=UTC tcpdump -n -S -r mixed.pcap 2>/dev/null")
	o, w := strings.Split(strings.TrimSpace(ours), "\n"), strings.Split(strings.TrimSpace(theirs), "\n")
	if len(o) != len(frames) || len(w) != len(frames) {
		t.Fatalf("%d lines, tcpdump %d, for %d frames", len(o), len(w), len(frames))
	}
	for i := range o {
		if strings.Contains(frames[i].Note, "qinq") {
			continue // to port 53: tcpdump decodes DNS
		}
		if !strings.HasPrefix(w[i], o[i]) {
			t.Errorf("frame %d:\n ours    %s\n tcpdump %s", i+1, o[i], w[i])
		}
	}
}

func TestDumpJSON(t *testing.T) {
	dir := tempDir(t)
	dumpTrace(t, dir)
	out, _ := mustSh(t, dir, "stdpkt-src -q -r mixed.pcap | stdpkt-dump -q --json udp")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d objects, want 6:\n%s", len(lines), out)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if m["proto"] != "udp" && m["proto"] != 17.0 {
			t.Errorf("not UDP: %s", l)
		}
	}
	if !strings.Contains(lines[0], `"ip":{"version":4,"src":"192.0.2.10","dst":"203.0.113.10"`) ||
		!strings.Contains(lines[0], `"sport":40000,"dport":30000,"length":20`) {
		t.Errorf("first object: %s", lines[0])
	}
}

// A bad filter, an unknown flag or an -o that cannot be created is a usage error (exit 2)
// that says what is wrong; downstream going away (| head) is a quiet stop.
func TestDumpUsageAndHead(t *testing.T) {
	dir := tempDir(t)
	dumpTrace(t, dir)
	for _, c := range []struct{ cmd, msg string }{
		{"stdpkt-dump 'tcp and foo' < mixed.pcap", "stdpkt-dump: filter: at 'foo' (column 9): expected a primitive"},
		{"stdpkt-dump tcp port < mixed.pcap", "filter: at end of expression (column 9): expected an address"},
		{"stdpkt-dump --bogus < mixed.pcap", "flag provided but not defined: -bogus"},
		{"stdpkt-dump -o /nonexistent/x tcp < mixed.pcap", "-o: open /nonexistent/x"},
	} {
		out, errs, code := sh(t, dir, c.cmd)
		if code != 2 || !strings.Contains(errs, c.msg) {
			t.Errorf("%s: exit %d, stderr %q; want exit 2 and %q", c.cmd, code, errs, c.msg)
		}
		if strings.Contains(out, "IP ") {
			t.Errorf("%s: printed packets: %s", c.cmd, out)
		}
	}
	out, errs, code := sh(t, dir, "stdpkt-src -q -r mixed.pcap --loop 5000 | stdpkt-dump -q | head -3")
	if code != 0 || strings.Count(out, "\n") != 3 || errs != "" {
		t.Errorf("| head -3: exit %d, %d lines, stderr %q", code, strings.Count(out, "\n"), errs)
	}
	help, _ := mustSh(t, dir, "stdpkt-dump --help")
	for _, w := range []string{"DESCRIPTION", "Examples:", "stdpkt-dump --pass", "Output", "Pass-through", "Common", "--stats-json"} {
		if !strings.Contains(help, w) {
			t.Errorf("--help lacks %q:\n%s", w, help)
		}
	}
}
