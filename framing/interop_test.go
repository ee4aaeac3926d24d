package framing

// Interoperability with the real tools: tshark, tcpdump (libpcap), editcap, mergecap read what
// the Writer writes, and the Reader reads what they write. Each test skips, naming the Debian
// package, when its tool is missing.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const traceStart = 1_700_000_000_123_456_789

// writeTrace writes pkts to a file in dir in the given format and returns its path.
func writeTrace(t *testing.T, dir, name string, format Format, pkts []Packet) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, encode(t, format, pkts), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// epochString formats a nanosecond timestamp as tshark's frame.time_epoch and tcpdump's
// -tt --time-stamp-precision=nano print it.
func epochString(ns int64) string { return fmt.Sprintf("%d.%09d", ns/1e9, ns%1e9) }

// tsharkFrames returns the raw bytes of every frame of a capture file, as tshark decodes them.
func tsharkFrames(t *testing.T, tshark, file string) [][]byte {
	t.Helper()
	out := run(t, nil, tshark, "-n", "-r", file, "-T", "json", "-x")
	var frames []struct {
		Source struct {
			Layers map[string]json.RawMessage `json:"layers"`
		} `json:"_source"`
	}
	if err := json.Unmarshal(out, &frames); err != nil {
		t.Fatalf("tshark -T json: %v", err)
	}
	res := make([][]byte, len(frames))
	for i, f := range frames {
		var raw []any
		if err := json.Unmarshal(f.Source.Layers["frame_raw"], &raw); err != nil || len(raw) == 0 {
			t.Fatalf("frame %d: no frame_raw in tshark's output (%v)", i, err)
		}
		s, _ := raw[0].(string)
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatalf("frame %d: frame_raw %q: %v", i, s, err)
		}
		res[i] = b
	}
	return res
}

// TestInteropTsharkFields: tshark reads our pcapng with the timestamps (to the nanosecond),
// lengths, interface ids and names, directions and frame bytes we wrote.
func TestInteropTsharkFields(t *testing.T) {
	tshark := needTool(t, "tshark", "tshark")
	west := &Interface{Name: "west", LinkType: LinkEthernet}
	east := &Interface{Name: "east", LinkType: LinkEthernet}
	pkts := genTrace(t, 30, traceStart, west, east)
	file := writeTrace(t, t.TempDir(), "ours.pcapng", FormatPcapng, pkts)

	out := run(t, nil, tshark, "-n", "-r", file, "-T", "fields", "-E", "separator=,",
		"-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.cap_len",
		"-e", "frame.interface_id", "-e", "frame.interface_name", "-e", "frame.packet_flags_direction")
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(pkts) {
		t.Fatalf("tshark printed %d lines, we wrote %d packets", len(lines), len(pkts))
	}
	for i, line := range lines {
		p := pkts[i]
		wantID, wantName := 0, "west"
		if p.Interface == east {
			wantID, wantName = 1, "east"
		}
		wantDir := ""
		if p.Direction != DirUnknown {
			wantDir = fmt.Sprintf("0x%08x", int(p.Direction))
		}
		want := fmt.Sprintf("%s,%d,%d,%d,%s,%s", epochString(p.Timestamp), max(p.Length, len(p.Data)), len(p.Data), wantID, wantName, wantDir)
		if line != want {
			t.Errorf("packet %d: tshark says %q, we wrote %q", i, line, want)
		}
	}
	frames := tsharkFrames(t, tshark, file)
	for i, f := range frames {
		if !bytes.Equal(f, pkts[i].Data) {
			t.Errorf("frame %d: tshark's bytes %x differ from ours %x", i, f, pkts[i].Data)
		}
	}
}

// TestInteropTcpdumpToPcap: libpcap reads our pcapng; its classic pcap output, written with
// nanosecond precision, reads back with our Reader as the same frames and timestamps.
func TestInteropTcpdumpToPcap(t *testing.T) {
	tcpdump := needTool(t, "tcpdump", "tcpdump")
	west := &Interface{Name: "west", LinkType: LinkEthernet}
	east := &Interface{Name: "east", LinkType: LinkEthernet}
	pkts := genTrace(t, 40, traceStart, west, east)
	dir := t.TempDir()
	ours := writeTrace(t, dir, "ours.pcapng", FormatPcapng, pkts)

	// tcpdump prints our timestamps to the nanosecond.
	out := run(t, nil, tcpdump, "-n", "-tt", "--time-stamp-precision=nano", "-r", ours)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(pkts) {
		t.Fatalf("tcpdump printed %d lines for %d packets", len(lines), len(pkts))
	}
	for i, l := range lines {
		if ts, _, _ := strings.Cut(l, " "); ts != epochString(pkts[i].Timestamp) {
			t.Errorf("packet %d: tcpdump says %s, we wrote %s", i, ts, epochString(pkts[i].Timestamp))
		}
	}

	pcap := run(t, nil, tcpdump, "-r", ours, "--time-stamp-precision=nano", "-w", "-")
	if m := le.Uint32(pcap); m != 0xa1b23c4d {
		t.Fatalf("tcpdump -w - wrote magic %#x, want nanosecond pcap", m)
	}
	got, rd, err := readAllFrom(bytes.NewReader(pcap), 7)
	if err != nil {
		t.Fatal(err)
	}
	if rd.Format() != FormatPcap {
		t.Errorf("Format() = %v", rd.Format())
	}
	samePackets(t, got, pkts, 1, false) // pcap keeps no interface names or directions

	// And in microseconds, tcpdump's default: timestamps are rounded down to the microsecond.
	pcapMicro := run(t, nil, tcpdump, "-r", ours, "-w", "-")
	if m := le.Uint32(pcapMicro); m != 0xa1b2c3d4 {
		t.Fatalf("tcpdump -w - wrote magic %#x, want microsecond pcap", m)
	}
	got, _, err = readAllFrom(bytes.NewReader(pcapMicro), 64)
	if err != nil {
		t.Fatal(err)
	}
	samePackets(t, got, pkts, 1000, false)
}

// TestInteropTsharkRewrite: tshark rewrites our pcapng as pcapng, nanosecond pcap and
// microsecond pcap on stdout; our Reader reads each back with the same frames.
func TestInteropTsharkRewrite(t *testing.T) {
	tshark := needTool(t, "tshark", "tshark")
	west := &Interface{Name: "west", LinkType: LinkEthernet}
	east := &Interface{Name: "east", LinkType: LinkEthernet}
	pkts := genTrace(t, 40, traceStart, west, east)
	ours := writeTrace(t, t.TempDir(), "ours.pcapng", FormatPcapng, pkts)
	for _, c := range []struct {
		format  string
		want    Format
		tsUnit  int64
		withDir bool
	}{
		{"pcapng", FormatPcapng, 1, true},
		{"nsecpcap", FormatPcap, 1, false},
		{"pcap", FormatPcap, 1000, false},
	} {
		t.Run(c.format, func(t *testing.T) {
			out := run(t, nil, tshark, "-n", "-r", ours, "-F", c.format, "-w", "-")
			got, rd, err := readAllFrom(bytes.NewReader(out), 64)
			if err != nil {
				t.Fatal(err)
			}
			if rd.Format() != c.want {
				t.Errorf("Format() = %v, want %v", rd.Format(), c.want)
			}
			samePackets(t, got, pkts, c.tsUnit, c.withDir)
		})
	}
}

// TestInteropEditcap: editcap converts our pcapng to classic pcap (micro and nano), and our
// hand-built big-endian pcapng and pcap read the same in our Reader and in tshark.
func TestInteropEditcap(t *testing.T) {
	editcap := needTool(t, "editcap", "wireshark-common")
	tshark := needTool(t, "tshark", "tshark")
	west := &Interface{Name: "west", LinkType: LinkEthernet}
	pkts := genTrace(t, 25, traceStart, west)
	dir := t.TempDir()
	ours := writeTrace(t, dir, "ours.pcapng", FormatPcapng, pkts)
	for _, c := range []struct {
		format string
		tsUnit int64
	}{{"pcap", 1000}, {"nsecpcap", 1}, {"pcapng", 1}} {
		out := filepath.Join(dir, "edit."+c.format)
		run(t, nil, editcap, "-F", c.format, ours, out)
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := readAllFrom(bytes.NewReader(b), 64)
		if err != nil {
			t.Fatalf("editcap -F %s: %v", c.format, err)
		}
		samePackets(t, got, pkts, c.tsUnit, c.format == "pcapng")
	}

	// Big-endian pcapng, built by hand (no tool here writes one): tshark and editcap read it as
	// we do, and editcap's little-endian rewrite reads back the same.
	s := newNG(be).shb().idb(LinkEthernet, 0, optName("bigend"), optTsresol(9))
	for _, p := range pkts {
		s.epb(0, uint64(p.Timestamp), p.Data, uint32(max(p.Length, len(p.Data))), optFlags(be, uint32(p.Direction)))
	}
	bePath := filepath.Join(dir, "be.pcapng")
	if err := os.WriteFile(bePath, s.bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ourRead := readAll(t, s.bytes())
	for i := range ourRead {
		if ourRead[i].IfName != "bigend" || ourRead[i].Dir != pkts[i].Direction {
			t.Errorf("big-endian packet %d: %v", i, ourRead[i])
		}
	}
	samePackets(t, ourRead, pkts, 1, false)
	frames := tsharkFrames(t, tshark, bePath)
	if len(frames) != len(ourRead) {
		t.Fatalf("tshark read %d frames of the big-endian file, we read %d", len(frames), len(ourRead))
	}
	for i := range frames {
		if !bytes.Equal(frames[i], ourRead[i].Data) {
			t.Errorf("big-endian frame %d differs between tshark and us", i)
		}
	}
	out := run(t, nil, tshark, "-n", "-r", bePath, "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.interface_name")
	for i, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if want := epochString(pkts[i].Timestamp) + "\tbigend"; l != want {
			t.Errorf("big-endian packet %d: tshark says %q, want %q", i, l, want)
		}
	}
	leOut := filepath.Join(dir, "le.pcapng")
	run(t, nil, editcap, "-F", "pcapng", bePath, leOut)
	b, err := os.ReadFile(leOut)
	if err != nil {
		t.Fatal(err)
	}
	if le.Uint32(b[8:]) != 0x1A2B3C4D {
		t.Errorf("editcap's rewrite is not little-endian")
	}
	sameRead(t, readAll(t, b), ourRead)

	// Big-endian classic pcap, microseconds: tshark's timestamps match ours.
	bp := newPcap(be, false, 65535, LinkEthernet)
	for _, p := range pkts {
		bp.rec(uint32(p.Timestamp/1e9), uint32(p.Timestamp%1e9/1000), p.Data, uint32(max(p.Length, len(p.Data))))
	}
	bpPath := filepath.Join(dir, "be.pcap")
	if err := os.WriteFile(bpPath, bp.bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, bp.bytes())
	samePackets(t, got, pkts, 1000, false)
	out = run(t, nil, tshark, "-n", "-r", bpPath, "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len")
	for i, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if want := fmt.Sprintf("%s\t%d", epochString(got[i].Timestamp), got[i].Length); l != want {
			t.Errorf("big-endian pcap packet %d: tshark says %q, we read %q", i, l, want)
		}
	}
}

// TestInteropMergecap: mergecap of two of our captures with different interface names gives a
// multi-interface pcapng in which our Reader tags every packet with its capture's interface.
func TestInteropMergecap(t *testing.T) {
	mergecap := needTool(t, "mergecap", "wireshark-common")
	dir := t.TempDir()
	west := &Interface{Name: "west", LinkType: LinkEthernet}
	east := &Interface{Name: "east", LinkType: LinkEthernet}
	all := genTrace(t, 40, traceStart, west, east)
	var a, b []Packet
	for _, p := range all {
		if p.Interface == west {
			a = append(a, p)
		} else {
			b = append(b, p)
		}
	}
	pa := writeTrace(t, dir, "a.pcapng", FormatPcapng, a)
	pb := writeTrace(t, dir, "b.pcapng", FormatPcapng, b)
	merged := filepath.Join(dir, "merged.pcapng")
	run(t, nil, mergecap, "-w", merged, pa, pb)
	mb, err := os.ReadFile(merged)
	if err != nil {
		t.Fatal(err)
	}
	got, rd, err := readAllFrom(bytes.NewReader(mb), 64)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all) {
		t.Fatalf("read %d packets from the merge, wrote %d", len(got), len(all))
	}
	// mergecap interleaves by time, which is the order they were generated in.
	samePackets(t, got, all, 1, true)
	for i, p := range got {
		if idx := traceIndex(p.Data); idx != i {
			t.Errorf("merged packet %d is packet %d of the trace", i, idx)
		}
	}
	if n := len(rd.Interfaces()); n != 2 {
		t.Errorf("the merge declares %d interfaces to our Reader, want 2", n)
	}

	// Concatenated (mergecap -a) captures: two sections, interface ids restart.
	cat := filepath.Join(dir, "cat.pcapng")
	run(t, nil, mergecap, "-a", "-w", cat, pa, pb)
	cb, err := os.ReadFile(cat)
	if err != nil {
		t.Fatal(err)
	}
	got = readAll(t, cb)
	samePackets(t, got, append(append([]Packet(nil), a...), b...), 1, true)
}

// TestInteropPcapNanoForTcpdump: our classic pcap output (nanosecond magic) read by tcpdump
// with nanosecond precision gives our timestamps and lengths.
func TestInteropPcapNanoForTcpdump(t *testing.T) {
	tcpdump := needTool(t, "tcpdump", "tcpdump")
	tshark := needTool(t, "tshark", "tshark")
	pkts := genTrace(t, 30, traceStart)
	file := writeTrace(t, t.TempDir(), "ours.pcap", FormatPcap, pkts)
	out := run(t, nil, tcpdump, "-n", "-tt", "-e", "--time-stamp-precision=nano", "-r", file)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(pkts) {
		t.Fatalf("tcpdump printed %d lines for %d packets", len(lines), len(pkts))
	}
	for i, l := range lines {
		ts, _, _ := strings.Cut(l, " ")
		if ts != epochString(pkts[i].Timestamp) {
			t.Errorf("packet %d: tcpdump says %s, we wrote %s", i, ts, epochString(pkts[i].Timestamp))
		}
		// -e prints "..., length N:" with the wire length of the frame.
		if want := "length " + strconv.Itoa(max(pkts[i].Length, len(pkts[i].Data))) + ":"; !strings.Contains(l, want) {
			t.Errorf("packet %d: tcpdump line %q does not say %q", i, l, want)
		}
	}
	// Same bytes, as tshark decodes them, and a tcpdump rewrite reads back identical.
	for i, f := range tsharkFrames(t, tshark, file) {
		if !bytes.Equal(f, pkts[i].Data) {
			t.Errorf("frame %d: tshark's bytes differ from ours", i)
		}
	}
	again := run(t, nil, tcpdump, "-r", file, "--time-stamp-precision=nano", "-w", "-")
	got, _, err := readAllFrom(bytes.NewReader(again), 64)
	if err != nil {
		t.Fatal(err)
	}
	samePackets(t, got, pkts, 1, false)
}

// TestInteropTcpdumpStdinPipe: a real producer writing into a pipe (tcpdump -w - on stdout)
// read by our Reader from the pipe as it arrives.
func TestInteropTcpdumpStdinPipe(t *testing.T) {
	tcpdump := needTool(t, "tcpdump", "tcpdump")
	pkts := genTrace(t, 200, traceStart, &Interface{Name: "eth0", LinkType: LinkEthernet})
	ours := writeTrace(t, t.TempDir(), "ours.pcapng", FormatPcapng, pkts)
	cmd := exec.Command(tcpdump, "-r", ours, "--time-stamp-precision=nano", "-U", "-w", "-")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	got, _, rerr := readAllFrom(stdout, 16)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	if rerr != nil {
		t.Fatal(rerr)
	}
	samePackets(t, got, pkts, 1, false)
}
