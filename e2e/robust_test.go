package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/gen"
)

// stageStats is what a stage's --stats-json says about its books and its process.
type stageStats struct {
	Stage string
	Books struct {
		East dirStats `json:"eastbound"`
		West dirStats `json:"westbound"`
	}
	Process struct {
		PeakRSS int64 `json:"peak_rss_bytes"`
	}
	Connections struct {
		Limit, Refused, Tracked int
	}
}

type dirStats struct {
	In, Generated, Out counted
	Dropped            map[string]counted
	Balanced           bool
}

type counted struct{ Packets, Bytes int64 }

// readStats reads a stage's --stats-json and fails the test unless its books balance.
func readStats(t *testing.T, path string) stageStats {
	t.Helper()
	var s stageStats
	readJSON(t, path, &s)
	if !s.Books.East.Balanced || !s.Books.West.Balanced {
		t.Errorf("%s: books do not balance: %+v", path, s.Books)
	}
	return s
}

// genTrace writes a pcapng file of the frames of spec, with one frame of the flow of every
// (when set) after each `every` frames of spec, starting with one.
func genTrace(t *testing.T, path, spec, every string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := framing.NewWriter(f, framing.FormatPcapng)
	mustGen := func(s string) *gen.Generator {
		sp, err := gen.ParseSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		return gen.New(sp)
	}
	flood := mustGen(spec)
	var steady *gen.Generator
	if every != "" {
		steady = mustGen(every)
	}
	batch := make([]framing.Packet, max(n, 1))
	for {
		if steady != nil {
			if steady.Next(batch[:1]) == 1 {
				if err := w.Write(batch[:1]); err != nil {
					t.Fatal(err)
				}
			}
		}
		k := flood.Next(batch)
		if k == 0 {
			break
		}
		if err := w.Write(batch[:k]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// readFrames returns the frames of a pcapng file, read with gopacket's reader.
func readFrames(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(bufio.NewReader(f), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: frame %d: %v", path, len(out)+1, err)
		}
		out = append(out, data)
	}
}

// A flood of 2,000,000 new flows through stdpkt-fw and stdpkt-nat with a bounded table:
// the excess is refused and counted, memory stays bounded, and a flow admitted before the
// flood is served throughout it.
func TestFloodOfNewFlowsIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("2M-packet flood")
	}
	dir := tempDir(t)
	const flows, every, limit = 2_000_000, 100, 50_000
	// The steady flow sends one frame before the flood and one after every 100 flood frames.
	genTrace(t, filepath.Join(dir, "flood.pcapng"),
		fmt.Sprintf("udp,size=64,flows=%d,count=%d,seed=1", flows, flows),
		fmt.Sprintf("udp,size=64,src=192.0.2.250/32,sport=5000,dst=198.51.100.20,dport=53,count=%d", flows/every+1), every)
	steady := flows/every + 1
	for _, stage := range []string{
		"stdpkt-fw --allow udp --policy drop",
		"stdpkt-nat --snat 203.0.113.1",
	} {
		name := strings.Fields(stage)[0]
		// An hour's timeout: on a slow machine no admitted flow may idle out mid-flood and
		// free a place, which would change the counts.
		mustSh(t, dir, fmt.Sprintf("%s --max-flows %d --timeout udp=1h --stats-json %s.json < flood.pcapng > %s.pcapng", stage, limit, name, name))
		st := readStats(t, filepath.Join(dir, name+".json"))
		e := st.Books.East
		// Admitted: the steady flow and the first limit-1 flood flows, each one frame.
		admitted := int64(limit - 1)
		if e.In.Packets != int64(flows+steady) || e.Out.Packets != admitted+int64(steady) ||
			e.Dropped["full"].Packets != int64(flows)-admitted || st.Connections.Refused != flows-int(admitted) {
			t.Errorf("%s: books %+v, refused %d; want in %d, out %d, full %d", name, e, st.Connections.Refused,
				flows+steady, admitted+int64(steady), int64(flows)-admitted)
		}
		if st.Connections.Tracked != limit {
			t.Errorf("%s: %d connections tracked, want the limit %d", name, st.Connections.Tracked, limit)
		}
		// The bound: a table of 50,000 flows costs tens of MiB; before flows were refused
		// ahead of netstack, the refused ones alone took 300 MiB.
		if mib := st.Process.PeakRSS >> 20; mib > 160 {
			t.Errorf("%s: peak RSS %d MiB for a table of %d flows", name, mib, limit)
		} else {
			t.Logf("%s: peak RSS %d MiB", name, mib)
		}
		served := 0
		for _, fr := range readFrames(t, filepath.Join(dir, name+".pcapng")) {
			p := gopacket.NewPacket(fr, layers.LayerTypeEthernet, gopacket.NoCopy)
			if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && u.DstPort == 53 {
				served++
			}
		}
		if served != steady {
			t.Errorf("%s: the steady flow got %d of its %d frames through the flood", name, served, steady)
		}
	}
}

// 10,000,000 packets through src | fw | nat | sink: every stage's books are exact and agree
// with its neighbours'.
func TestTenMillionPacketsExactBooks(t *testing.T) {
	if testing.Short() {
		t.Skip("10M packets")
	}
	dir := tempDir(t)
	const n = 10_000_000
	mustSh(t, dir, fmt.Sprintf("stdpkt-src --stats-json src.json --gen udp,size=64,flows=1000,count=%d "+
		"| stdpkt-fw --stats-json fw.json --allow udp --policy drop "+
		"| stdpkt-nat --stats-json nat.json --snat 203.0.113.1 "+
		"| stdpkt-sink --stats-json sink.json", n))
	var prevOut int64 = n
	for _, name := range []string{"src", "fw", "nat", "sink"} {
		e := readStats(t, filepath.Join(dir, name+".json")).Books.East
		in := e.In.Packets + e.Generated.Packets
		if in != prevOut || e.Out.Packets != n || len(e.Dropped) != 0 {
			t.Errorf("%s: in %d (previous stage out %d), out %d, dropped %v; want all %d through",
				name, in, prevOut, e.Out.Packets, e.Dropped, n)
		}
		prevOut = e.Out.Packets
	}
}

// A slow reader at the end of a chain fed from a file: nothing is lost (the pipes push
// back to the file's reader) and no stage buffers what the reader has not taken.
func TestSlowReaderLosesNothing(t *testing.T) {
	dir := tempDir(t)
	const n = 1_000_000 // 84 MB of pcapng: more than any stage may hold
	mustSh(t, dir, fmt.Sprintf("stdpkt-src -q --gen udp,size=64,flows=1000,count=%d > in.pcapng", n))
	cmd := exec.Command("bash", "-o", "pipefail", "-c",
		"stdpkt-src -q --stats-json src.json -r in.pcapng | stdpkt-fw -q --stats-json fw.json --allow udp "+
			"| stdpkt-nat -q --stats-json nat.json --snat 203.0.113.1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sink, err := os.Create(filepath.Join(dir, "out.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	// About 25 MB/s: a few seconds for the whole stream, far slower than the chain.
	slowCopy(sink, out, 64<<10, 2*time.Millisecond)
	sink.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("chain: %v\n%s", err, stderr.String())
	}
	if got := len(readFrames(t, filepath.Join(dir, "out.pcapng"))); got != n {
		t.Errorf("the slow reader got %d frames of %d", got, n)
	}
	for _, name := range []string{"src", "fw", "nat"} {
		st := readStats(t, filepath.Join(dir, name+".json"))
		if st.Books.East.Out.Packets != n {
			t.Errorf("%s: out %d of %d", name, st.Books.East.Out.Packets, n)
		}
		if mib := st.Process.PeakRSS >> 20; mib > 64 {
			t.Errorf("%s: peak RSS %d MiB while its reader was slow", name, mib)
		} else {
			t.Logf("%s: peak RSS %d MiB", name, mib)
		}
	}
}

// `... | head -c 100000` ends the whole chain: each stage notices its downstream is gone,
// prints its books and exits 0 (README: downstream going away is a normal end), with no
// stack trace, long before the endless source would end.
func TestHeadEndsChain(t *testing.T) {
	dir := tempDir(t)
	mustSh(t, dir, "stdpkt-src -q --gen udp,size=64,flows=100,count=100000 > in.pcapng")
	start := time.Now()
	_, errs, code := sh(t, dir, "stdpkt-src --loop 1000 -r in.pcapng | stdpkt-fw --allow udp "+
		"| stdpkt-nat --snat 203.0.113.1 | head -c 100000 > /dev/null")
	took := time.Since(start)
	t.Logf("chain ended %v after start", took.Round(time.Millisecond))
	if code != 0 || strings.Contains(errs, "goroutine") || strings.Contains(errs, "panic") {
		t.Errorf("exit %d, stderr:\n%s", code, errs)
	}
	for _, name := range []string{"stdpkt-src", "stdpkt-fw", "stdpkt-nat"} {
		if !strings.Contains(errs, name+" eastbound: in ") {
			t.Errorf("%s printed no books:\n%s", name, errs)
		}
	}
}

// SIGINT or SIGTERM to any one stage of src | fw | nat | sink: that stage flushes, prints
// its books and exits 0, and its neighbours notice (EOF, a closed pipe) and end the same
// way; what reached the sink is in its file, whole.
func TestSignalAnyStage(t *testing.T) {
	needTool(t, "tcpdump", "tcpdump")
	stages := []string{"stdpkt-src", "stdpkt-fw", "stdpkt-nat", "stdpkt-sink"}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		for _, target := range stages {
			t.Run(fmt.Sprintf("%s-%s", target, sig), func(t *testing.T) {
				dir := tempDir(t)
				cmd, stderr := startChain(t, dir,
					"stdpkt-src --stats-json src.json --gen 'udp,flows=10,count=1000000,rate=20000' "+
						"| stdpkt-fw --stats-json fw.json --allow udp "+
						"| stdpkt-nat --stats-json nat.json --snat 203.0.113.1 "+
						"| stdpkt-sink --stats-interval 50ms --stats-json sink.json -w out.pcapng")
				waitForLine(t, stderr, sinkHasPackets)
				pid := stagePid(t, cmd.Process.Pid, target)
				start := time.Now()
				if err := syscall.Kill(pid, sig); err != nil {
					t.Fatal(err)
				}
				rest, _ := io.ReadAll(stderr)
				err := cmd.Wait()
				t.Logf("chain ended %v after the signal", time.Since(start).Round(time.Millisecond))
				if err != nil {
					t.Errorf("chain exit: %v\n%s", err, rest)
				}
				if strings.Contains(string(rest), "goroutine") {
					t.Errorf("stack trace:\n%s", rest)
				}
				var sent int64
				for _, name := range []string{"src", "fw", "nat", "sink"} {
					st := readStats(t, filepath.Join(dir, name+".json"))
					if name == "src" {
						sent = st.Books.East.Out.Packets
					}
					if !strings.Contains(string(rest), "stdpkt-"+name+" eastbound: in ") {
						t.Errorf("%s printed no books on exit:\n%s", name, rest)
					}
				}
				if sent == 0 || sent >= 1_000_000 {
					t.Errorf("src sent %d packets before the signal", sent)
				}
				n := sinkPackets(t, filepath.Join(dir, "sink.json"))
				out, _ := mustSh(t, dir, "tcpdump -r out.pcapng 2>/dev/null | wc -l")
				if strings.TrimSpace(out) != fmt.Sprint(n) {
					t.Errorf("out.pcapng holds %s packets, the sink counted %d", strings.TrimSpace(out), n)
				}
			})
		}
	}
}

// slowCopy copies src to dst until src ends, a chunk at a time with a pause after each:
// a reader slower than the chain feeding it.
func slowCopy(dst io.Writer, src io.Reader, chunk int, pause time.Duration) {
	buf := make([]byte, chunk)
	for {
		k, err := src.Read(buf)
		dst.Write(buf[:k])
		if err != nil {
			return
		}
		time.Sleep(pause)
	}
}

// stagePid finds the process running command name among the children of the shell pid.
func stagePid(t *testing.T, shell int, name string) int {
	t.Helper()
	out, err := exec.Command("pgrep", "-P", fmt.Sprint(shell), "-x", name).Output()
	if err != nil {
		t.Fatalf("pgrep %s under %d: %v", name, shell, err)
	}
	var pid int
	if _, err := fmt.Sscan(string(out), &pid); err != nil {
		t.Fatalf("pgrep %s: %q", name, out)
	}
	return pid
}

// A live source facing a slow reader: the kernel's capture ring fills, the frames it could
// not hold are counted (ring-overrun) in the books, which balance; what the source did write
// reaches the reader whole; its memory does not grow with the backlog.
func TestLiveSourceSlowReaderCountsRingDrops(t *testing.T) {
	needRoot(t)
	l := newLab(t, "s")
	west := l.host("a", "192.0.2.10/24", "")
	dir := tempDir(t)
	cmd := exec.Command(filepath.Join(binDir, "stdpkt-src"), "--stats-json", "src.json", west)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	got := make(chan []byte, 1)
	go func() { // about 400 kB/s: a few thousand small frames a second
		var all bytes.Buffer
		slowCopy(&all, out, 4096, 10*time.Millisecond)
		got <- all.Bytes()
	}()
	// Half a million frames as fast as the namespace sends them: far more than the ring holds
	// while the reader is slow, however late the source starts capturing.
	const sent = 500_000
	// The whole pipeline runs in the namespace (l.in wraps one command, hence bash -c).
	mustSh(t, dir, l.in("a", fmt.Sprintf("bash -o pipefail -c 'stdpkt-src -q --gen udp,size=64,count=%d | stdpkt-sink -q eth0'", sent)))
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	data := <-got
	if err := cmd.Wait(); err != nil {
		t.Fatalf("stdpkt-src: %v\n%s", err, stderr.String())
	}
	st := readStats(t, filepath.Join(dir, "src.json"))
	e := st.Books.East
	overrun := e.Dropped["ring-overrun"].Packets
	if overrun == 0 || e.In.Packets > sent+100 { // in counts the overruns; +100: the namespace's own chatter
		t.Errorf("captured %d, ring overruns %d, of %d sent; want overruns counted", e.In.Packets, overrun, sent)
	}
	if err := os.WriteFile(filepath.Join(dir, "got.pcapng"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if n := int64(len(readFrames(t, filepath.Join(dir, "got.pcapng")))); n != e.Out.Packets {
		t.Errorf("the reader got %d frames, the source counted %d out", n, e.Out.Packets)
	}
	if mib := st.Process.PeakRSS >> 20; mib > 64 {
		t.Errorf("peak RSS %d MiB behind a slow reader", mib)
	}
	t.Logf("captured %d, overrun %d, out %d, dropped %v\n%s", e.In.Packets, overrun, e.Out.Packets, e.Dropped, stderr.String())
}
