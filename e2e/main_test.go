// Package e2e runs the built commands in real shell pipelines, next to the real tcpdump and
// tshark, and checks what comes out.
package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// binDir holds the commands built once for all tests.
var binDir string

func TestMain(m *testing.M) {
	if os.Getenv("STDPKT_DIAL") != "" { // a helper process run as another user: no build
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "stdpkt-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", dir+"/", "../cmd/...")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the commands:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// sh runs a shell pipeline with the commands on PATH and returns stdout, stderr and the
// exit status of the pipeline (pipefail: the first stage that failed).
func sh(t *testing.T, dir, script string) (string, string, int) {
	t.Helper()
	cmd := exec.Command("bash", "-o", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return out.String(), errb.String(), code
}

// mustSh runs script and fails the test unless it exits 0.
func mustSh(t *testing.T, dir, script string) (string, string) {
	t.Helper()
	out, errs, code := sh(t, dir, script)
	if code != 0 {
		t.Fatalf("%s: exit %d\nstderr:\n%s", script, code, errs)
	}
	return out, errs
}

// needTool skips the test, loudly, when a real tool it compares against is missing.
func needTool(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("SKIPPED, NOT TESTED: %s is not installed (Debian package %s; `make test` installs it when run as root)", tool, pkg)
	}
}

// frame is one test frame with its timestamp.
type frame struct {
	ts   time.Time
	data []byte
}

// testTrace builds a small trace by hand with gopacket: UDP, TCP and ICMP over IPv4 and
// IPv6, documentation addresses only, timestamps 10 ms apart with nanosecond parts.
func testTrace(t *testing.T) []frame {
	t.Helper()
	eth := func(ethType layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: ethType}
	}
	ip4 := func(proto layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: []byte{192, 0, 2, 10}, DstIP: []byte{203, 0, 113, 10}}
	}
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
		SrcIP: []byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10},
		DstIP: []byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}}
	var frames []frame
	base := time.Unix(1700000000, 123456789)
	add := func(ls ...gopacket.SerializableLayer) {
		for _, l := range ls {
			switch l := l.(type) {
			case *layers.TCP:
				l.SetNetworkLayerForChecksum(ls[1].(gopacket.NetworkLayer))
			case *layers.UDP:
				l.SetNetworkLayerForChecksum(ls[1].(gopacket.NetworkLayer))
			}
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, frame{ts: base.Add(time.Duration(len(frames)) * 10 * time.Millisecond), data: append([]byte(nil), buf.Bytes()...)})
	}
	for i := range 4 {
		add(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: layers.UDPPort(10000 + i), DstPort: 53}, gopacket.Payload(bytes.Repeat([]byte{byte(i)}, 20+i*100)))
	}
	add(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Seq: 1000, Window: 64240})
	add(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1}, gopacket.Payload([]byte("ping")))
	add(eth(layers.EthernetTypeIPv6), ip6, &layers.UDP{SrcPort: 5353, DstPort: 5353}, gopacket.Payload([]byte("six")))
	add(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 1, DstPort: 2}, gopacket.Payload(bytes.Repeat([]byte{0xab}, 1400)))
	return frames
}

// writePcapng writes frames as pcapng on one interface named iface, by gopacket's writer.
func writePcapng(t *testing.T, path, iface string, frames []frame) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := pcapgo.NewNgWriterInterface(f, pcapgo.NgInterface{Name: iface, LinkType: layers.LinkTypeEthernet, SnapLength: 65536, TimestampResolution: 9}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: fr.ts, CaptureLength: len(fr.data), Length: len(fr.data)}
		if err := w.WritePacket(ci, fr.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// writePcap writes frames as classic pcap with nanosecond timestamps, by gopacket's writer,
// not ours.
func writePcap(t *testing.T, path string, frames []frame) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: fr.ts, CaptureLength: len(fr.data), Length: len(fr.data)}
		if err := w.WritePacket(ci, fr.data); err != nil {
			t.Fatal(err)
		}
	}
}

// tsharkFrames returns, per frame, "epoch-time length interface extra... hexbytes": the
// fields as tshark prints them, and the bytes of tshark's own re-encoding of the file, read
// back by gopacket's reader (this tshark has no frame.bytes field).
func tsharkFrames(t *testing.T, dir, file string, extra ...string) []string {
	t.Helper()
	fields := "-e frame.time_epoch -e frame.len -e frame.interface_name"
	out, _ := mustSh(t, dir, fmt.Sprintf("tshark -r %s -T fields %s %s 2>/dev/null", file, fields, strings.Join(extra, " ")))
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	raw, _ := mustSh(t, dir, fmt.Sprintf("tshark -r %s -F pcap -w - 2>/dev/null", file))
	r, err := pcapgo.NewReader(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("reading tshark's re-encoding of %s: %v", file, err)
	}
	for i := range lines {
		data, _, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("tshark's re-encoding of %s: frame %d: %v", file, i+1, err)
		}
		lines[i] += fmt.Sprintf("\t%x", data)
	}
	return lines
}

// want returns the lines tsharkFrames gives for frames, with interface name iface and the
// extra fields (tab-led) extra.
func want(frames []frame, iface, extra string) []string {
	var lines []string
	for _, fr := range frames {
		lines = append(lines, fmt.Sprintf("%d.%09d\t%d\t%s%s\t%x", fr.ts.Unix(), fr.ts.Nanosecond(), len(fr.data), iface, extra, fr.data))
	}
	return lines
}

func equalLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d frames, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%s: frame %d:\n got %.200s\nwant %.200s", what, i+1, got[i], want[i])
		}
	}
}

func tempDir(t *testing.T) string {
	t.Helper()
	return filepath.Clean(t.TempDir())
}
