package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// A capture written by gopacket goes through src | sink and comes out with the same bytes,
// lengths and nanosecond timestamps, as the real tshark reads them.
func TestReplayRoundTrip(t *testing.T) {
	needTool(t, "tshark", "tshark")
	dir := tempDir(t)
	frames := testTrace(t)
	writePcap(t, filepath.Join(dir, "capture.pcap"), frames)
	_, errs := mustSh(t, dir, "stdpkt-src -r capture.pcap | stdpkt-sink -w out.pcapng")
	equalLines(t, "src | sink", tsharkFrames(t, dir, "out.pcapng"), want(frames, "unknown", ""))
	if !strings.Contains(errs, "stdpkt-sink eastbound: in 8 ") {
		t.Errorf("sink books missing from stderr:\n%s", errs)
	}
	// The same through stdin, and as classic pcap out.
	mustSh(t, dir, "stdpkt-src -r - < capture.pcap | stdpkt-sink --format pcap -w out.pcap")
	equalLines(t, "stdin, pcap out", tsharkFrames(t, dir, "out.pcap"), want(frames, "", ""))
}

// The real tcpdump feeds a sink, and reads what src writes.
func TestTcpdumpBothWays(t *testing.T) {
	needTool(t, "tcpdump", "tcpdump")
	needTool(t, "tshark", "tshark")
	dir := tempDir(t)
	frames := testTrace(t)
	writePcap(t, filepath.Join(dir, "capture.pcap"), frames)
	mustSh(t, dir, "tcpdump --time-stamp-precision=nano -r capture.pcap -w - 2>/dev/null | stdpkt-sink -w out.pcapng")
	equalLines(t, "tcpdump | sink", tsharkFrames(t, dir, "out.pcapng"), want(frames, "unknown", ""))

	out, _ := mustSh(t, dir, "stdpkt-src -r capture.pcap | tcpdump --time-stamp-precision=nano -tt -nr - 2>/dev/null")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(frames) {
		t.Fatalf("tcpdump printed %d lines, want %d:\n%s", len(lines), len(frames), out)
	}
	for i, fr := range frames {
		ts := strconv.FormatInt(fr.ts.Unix(), 10) + "." + strconv.Itoa(fr.ts.Nanosecond() + 1e9)[1:]
		if !strings.HasPrefix(lines[i], ts+" ") {
			t.Errorf("tcpdump line %d = %q, want timestamp %s", i+1, lines[i], ts)
		}
	}
	if !strings.Contains(lines[0], "IP 192.0.2.10.10000 > 203.0.113.10.53: ") {
		t.Errorf("tcpdump does not decode our frames: %q", lines[0])
	}
	out, _ = mustSh(t, dir, "stdpkt-src -r capture.pcap | tshark -r - 2>/dev/null | wc -l")
	if strings.TrimSpace(out) != strconv.Itoa(len(frames)) {
		t.Errorf("tshark -r - read %s frames, want %d", strings.TrimSpace(out), len(frames))
	}
}

// Two captures with different interfaces, merged by the real mergecap: each packet keeps its
// interface through src | sink.
func TestMergecapInterfaces(t *testing.T) {
	needTool(t, "mergecap", "wireshark-common")
	needTool(t, "tshark", "tshark")
	dir := tempDir(t)
	frames := testTrace(t)
	writePcapng(t, filepath.Join(dir, "a.pcapng"), "lan0", frames[:4])
	writePcapng(t, filepath.Join(dir, "b.pcapng"), "wan0", frames[4:])
	mustSh(t, dir, "mergecap -F pcapng -w merged.pcapng a.pcapng b.pcapng")
	mustSh(t, dir, "stdpkt-src -r merged.pcapng | stdpkt-sink -w out.pcapng")
	got := tsharkFrames(t, dir, "out.pcapng", "-e frame.interface_id")
	wantLines := append(want(frames[:4], "lan0", "\t0"), want(frames[4:], "wan0", "\t1")...)
	equalLines(t, "mergecap | src | sink", got, wantLines)
}

// Every kind of broken stream stops the sink with exit status 1 and a message that says what
// and where; what came before the error is written and the message says how much.
func TestBadStreams(t *testing.T) {
	dir := tempDir(t)
	frames := testTrace(t)
	writePcap(t, filepath.Join(dir, "good.pcap"), frames)
	good, err := os.ReadFile(filepath.Join(dir, "good.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	le32 := func(b []byte, off int, v uint32) []byte {
		c := append([]byte(nil), b...)
		c[off], c[off+1], c[off+2], c[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		return c
	}
	rec2 := 24 + 16 + len(frames[0].data) // offset of the second record
	cases := []struct {
		name, msg string
		data      []byte
		before    int
	}{
		{"bad magic", "bad magic 0x504f5354", []byte("POST / HTTP/1.1\r\n\r\n......"), 0},
		{"truncated header", "truncated header: stream ends after 10 bytes of it at byte offset 0", good[:10], 0},
		{"truncated record", "truncated record: stream ends after 1453 bytes of it at byte offset 1169 (after packet 7)", good[:len(good)-5], len(frames) - 1},
		{"huge record", "record length 4294967295 exceeds the limit of 262144 at byte offset " + strconv.Itoa(rec2), le32(good, rec2+8, 0xffffffff), 1},
		{"zero-length record", "zero-length record at byte offset " + strconv.Itoa(rec2), le32(good, rec2+8, 0), 1},
		{"over snap length", "exceeds the snap length 65536", le32(good, rec2+8, 70000), 1},
		{"empty", "empty stream", nil, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := filepath.Join(dir, "bad.pcap")
			if err := os.WriteFile(in, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, errs, code := sh(t, dir, "stdpkt-sink -w out.pcapng < bad.pcap")
			if code != 1 {
				t.Errorf("exit status %d, want 1; stderr:\n%s", code, errs)
			}
			if !strings.Contains(errs, c.msg) {
				t.Errorf("stderr lacks %q:\n%s", c.msg, errs)
			}
			if !strings.Contains(errs, "out.pcapng holds the "+strconv.Itoa(c.before)+" packets before it") {
				t.Errorf("stderr does not say what was written:\n%s", errs)
			}
			if strings.Contains(errs, "goroutine") {
				t.Errorf("stack trace on stderr:\n%s", errs)
			}
			// The same stream through src: the same error, with the file name.
			_, errs, code = sh(t, dir, "stdpkt-src -r bad.pcap | stdpkt-sink")
			if code != 1 || !strings.Contains(errs, "stdpkt-src: bad.pcap: ") || !strings.Contains(errs, c.msg) {
				t.Errorf("src: exit %d, stderr:\n%s", code, errs)
			}
		})
	}
}

// The generator's frames decode in tshark without a malformed frame or a bad checksum.
func TestGeneratorValidInTshark(t *testing.T) {
	needTool(t, "tshark", "tshark")
	dir := tempDir(t)
	for _, spec := range []string{
		"udp,size=64,flows=50,count=200",
		"udp,size=imix,flows=7,count=100,ipv6",
		"tcp,handshake,flows=5,count=60,size=imix",
		"tcp,handshake,flows=3,count=30,ipv6,size=1514",
		"icmp,flows=4,count=20,size=98",
		"icmp,flows=2,count=10,ipv6",
	} {
		t.Run(spec, func(t *testing.T) {
			mustSh(t, dir, "stdpkt-src -q --gen '"+spec+"' > g.pcapng")
			checks := "-o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE"
			bad := `_ws.malformed || _ws.expert.severity >= error || ip.checksum.status == "Bad" || tcp.checksum.status == "Bad" || udp.checksum.status == "Bad" || icmp.checksum.status == "Bad" || icmpv6.checksum.status == "Bad"`
			out, _ := mustSh(t, dir, "tshark -r g.pcapng "+checks+" -Y '"+bad+"' 2>&1 | grep -v 'Running as user' || true")
			if strings.TrimSpace(out) != "" {
				t.Errorf("tshark finds bad frames:\n%s", out)
			}
			out, _ = mustSh(t, dir, "tshark -r g.pcapng 2>/dev/null | wc -l")
			count := regexp.MustCompile(`count=(\d+)`).FindStringSubmatch(spec)[1]
			if strings.TrimSpace(out) != count {
				t.Errorf("tshark reads %s frames, want %s", strings.TrimSpace(out), count)
			}
		})
	}
	// The same seed makes the same frames.
	a, _ := mustSh(t, dir, "stdpkt-src -q --gen 'tcp,handshake,flows=9,count=50,size=imix,seed=3' | tshark -r - -x 2>/dev/null")
	b, _ := mustSh(t, dir, "stdpkt-src -q --gen 'tcp,handshake,flows=9,count=50,size=imix,seed=3' | tshark -r - -x 2>/dev/null")
	if a != b || !strings.Contains(a, "0000  02 00 00 00 00 02 02 00 00 00 00 01 08 00") {
		t.Error("the same seed gave different frames")
	}
}

// --loop replays a file again, --pps and --realtime keep the count, and --stats-json and
// --latency report what the sink saw.
func TestReplayModes(t *testing.T) {
	dir := tempDir(t)
	frames := testTrace(t)
	writePcap(t, filepath.Join(dir, "capture.pcap"), frames)
	mustSh(t, dir, "stdpkt-src -r capture.pcap --loop 3 | stdpkt-sink --stats-json loop.json")
	if got := sinkPackets(t, filepath.Join(dir, "loop.json")); got != 3*len(frames) {
		t.Errorf("--loop 3: sink saw %d packets, want %d", got, 3*len(frames))
	}
	mustSh(t, dir, "stdpkt-src -r capture.pcap --pps 2000 | stdpkt-sink --latency --stats-json pps.json")
	if got := sinkPackets(t, filepath.Join(dir, "pps.json")); got != len(frames) {
		t.Errorf("--pps: sink saw %d packets, want %d", got, len(frames))
	}
	_, errs := mustSh(t, dir, "stdpkt-src -r capture.pcap --realtime | stdpkt-sink --latency -w rt.pcapng --stats-json rt.json")
	if !regexp.MustCompile(`latency \(arrival - timestamp\) over 8 packets: p50 [0-9.]+ us`).MatchString(errs) {
		t.Errorf("no latency line:\n%s", errs)
	}
	if strings.Contains(errs, "warning") {
		t.Errorf("paced replay stamps send times, yet the sink warns:\n%s", errs)
	}
	// Paced frames leave with their send time; --realtime keeps the trace's spacing, so no
	// two frames are closer than their originals (10 ms).
	var doc struct {
		Summary struct {
			Latency struct{ Samples int } `json:"latency_us"`
		}
	}
	readJSON(t, filepath.Join(dir, "rt.json"), &doc)
	if doc.Summary.Latency.Samples != len(frames) {
		t.Errorf("latency samples %d, want %d", doc.Summary.Latency.Samples, len(frames))
	}
	// The pacer sends a frame up to 50 us early rather than sleep for less.
	out, _ := mustSh(t, dir, "tshark -r rt.pcapng -T fields -e frame.time_relative 2>/dev/null")
	for i, d := range strings.Fields(out) {
		if v, _ := strconv.ParseFloat(d, 64); v < float64(i)*0.01-50e-6 {
			t.Errorf("--realtime: frame %d sent %s s after the first, the trace has %.2f s", i+1, d, float64(i)*0.01)
		}
	}
	// Unpaced replays keep the trace's timestamps; the sink says they are not send times.
	_, errs = mustSh(t, dir, "stdpkt-src -r capture.pcap | stdpkt-sink --latency")
	if !strings.Contains(errs, "the timestamps are not send times") {
		t.Errorf("no warning for trace timestamps:\n%s", errs)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
}

func sinkPackets(t *testing.T, path string) int {
	t.Helper()
	var doc struct {
		Summary struct{ Packets int }
		Books   struct {
			East struct {
				Balanced bool
			} `json:"eastbound"`
		}
	}
	readJSON(t, path, &doc)
	if !doc.Books.East.Balanced {
		t.Errorf("%s: books do not balance", path)
	}
	return doc.Summary.Packets
}

// Usage errors exit 2 and name the flag; binary output to a terminal is refused.
func TestUsageErrors(t *testing.T) {
	dir := tempDir(t)
	for _, c := range []struct{ cmd, msg string }{
		{"stdpkt-src", "nothing to send"},
		{"stdpkt-src -r nosuch.pcap", "-r: open nosuch.pcap"},
		{"stdpkt-src --gen 'udp,size=20'", "size=20"},
		{"stdpkt-src --gen 'udp,bogus'", `unknown item "bogus"`},
		{"stdpkt-src --gen udp --timestamps later", "--timestamps"},
		{"stdpkt-src -r - --loop 2", "--loop needs a file"},
		{"stdpkt-sink --format pcapx", "unknown format"},
		{"stdpkt-sink --nosuchflag", "nosuchflag"},
		{"stdpkt-src --gen udp --profile gpu", "--profile"},
	} {
		_, errs, code := sh(t, dir, c.cmd+" > /dev/null < /dev/null")
		if code != 2 || !strings.Contains(errs, c.msg) {
			t.Errorf("%s: exit %d, want 2 with %q; stderr:\n%s", c.cmd, code, c.msg, errs)
		}
	}
	needTool(t, "script", "bsdutils")
	out, _, _ := sh(t, dir, "script -qec 'stdpkt-src --gen udp' /dev/null")
	if !strings.Contains(out, "refusing to write binary packets to a terminal") {
		t.Errorf("src writes binary to a terminal: %q", out)
	}
}

// When downstream goes away, src stops quietly with status 0 and no stack trace.
func TestDownstreamGone(t *testing.T) {
	dir := tempDir(t)
	_, errs, code := sh(t, dir, "stdpkt-src --gen 'udp,count=10000000' | head -c 100000 > /dev/null")
	if code != 0 || strings.Contains(errs, "goroutine") || strings.Contains(errs, "broken pipe") {
		t.Errorf("exit %d, stderr:\n%s", code, errs)
	}
	if !strings.Contains(errs, "dropped") {
		t.Errorf("no books on exit:\n%s", errs)
	}
}

// The bash completion script completes flags from the commands themselves.
func TestBashCompletion(t *testing.T) {
	dir := tempDir(t)
	script := "source " + filepath.Join(mustAbs(t, ".."), "scripts/stdpkt-completion.bash") +
		"; COMP_WORDS=(stdpkt-src --rea); COMP_CWORD=1; _stdpkt_complete; echo ${COMPREPLY[@]}" +
		"; COMP_WORDS=(stdpkt-nat --max); COMP_CWORD=1; _stdpkt_complete; echo ${COMPREPLY[@]}"
	out, _ := mustSh(t, dir, script)
	if out != "--read --realtime\n--max-flows\n" {
		t.Errorf("completions: %q", out)
	}
	help, _ := mustSh(t, dir, "stdpkt-fw --help")
	for _, want := range []string{"Examples:", "Exit status:", "STDPKT_STATS_JSON", "stdpkt-fw [options]"} {
		if !strings.Contains(help, want) {
			t.Errorf("stdpkt-fw --help lacks %q", want)
		}
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
