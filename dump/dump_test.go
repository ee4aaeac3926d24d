package dump

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/nf"
)

// stream encodes the trace as pcapng on two named interfaces, with directions, by our own
// writer (the e2e tests use gopacket's and tcpdump's).
func stream(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := framing.NewWriter(&buf, framing.FormatPcapng)
	lan := &framing.Interface{Name: "lan0", LinkType: framing.LinkEthernet}
	wan := &framing.Interface{Name: "wan0", LinkType: framing.LinkEthernet}
	var pkts []framing.Packet
	for i, fr := range trace(t) {
		p := packet(fr, lan)
		if i%2 == 1 {
			p.Interface, p.Direction = wan, framing.DirOutbound
		}
		pkts = append(pkts, p)
	}
	if err := w.Write(pkts); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readAll(t *testing.T, b []byte) []framing.Packet {
	t.Helper()
	r := framing.NewReader(bytes.NewReader(b))
	var all []framing.Packet
	pkts := make([]framing.Packet, 64)
	for {
		n, err := r.Read(pkts)
		for _, p := range pkts[:n] {
			p.Data = append([]byte(nil), p.Data...)
			all = append(all, p)
		}
		if err == io.EOF {
			return all
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// --pass forwards every packet, selected or not, with its bytes, length, timestamp,
// interface and direction; the lines go elsewhere; the books count hidden packets as out.
func TestPassForwardsEverything(t *testing.T) {
	in := stream(t)
	fl, err := ParseFilter("icmp")
	if err != nil {
		t.Fatal(err)
	}
	var out, lines bytes.Buffer
	d := New(Config{Filter: fl, Pass: framing.NewWriter(&out, framing.FormatPcapng), PassName: "stdout",
		Lines: &lines, LinesName: "stderr", Style: Style{Location: time.UTC}})
	st := &nf.Stage{}
	if err := d.Run(context.Background(), bytes.NewReader(in), nil, st); err != nil {
		t.Fatal(err)
	}
	want, got := readAll(t, in), readAll(t, out.Bytes())
	if len(got) != len(want) {
		t.Fatalf("forwarded %d packets, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if !bytes.Equal(w.Data, g.Data) || w.Length != g.Length || w.Timestamp != g.Timestamp ||
			w.Interface.Name != g.Interface.Name || w.Direction != g.Direction {
			t.Errorf("packet %d changed: %+v, want %+v", i+1, g, w)
		}
	}
	if n := strings.Count(lines.String(), "\n"); n != 3 || !strings.Contains(lines.String(), "22:13:20.193456 wan0 Out IP 192.0.2.10 > 198.51.100.1: ICMP echo request") {
		t.Errorf("want the 3 ICMP lines, got:\n%s", lines.String())
	}
	snap := st.Books.Snapshot()
	if e := snap.East; e.In.Packets != 23 || e.Out.Packets != 23 || e.DroppedPackets() != 0 || !e.Balanced() {
		t.Errorf("books: %+v", e)
	}
	if d.Shown() != 3 {
		t.Errorf("shown %d, want 3", d.Shown())
	}
}

// Without --pass, what the filter hides is dropped by rule, and --count-only prints the
// number at the end.
func TestCountOnlyBooks(t *testing.T) {
	fl, err := ParseFilter("tcp port 80")
	if err != nil {
		t.Fatal(err)
	}
	var lines bytes.Buffer
	d := New(Config{Filter: fl, CountOnly: true, Lines: &lines, LinesName: "stdout"})
	st := &nf.Stage{}
	if err := d.Run(context.Background(), bytes.NewReader(stream(t)), nil, st); err != nil {
		t.Fatal(err)
	}
	if lines.String() != "5\n" {
		t.Errorf("count-only printed %q, want \"5\\n\"", lines.String())
	}
	e := st.Books.Snapshot().East
	if e.In.Packets != 23 || e.Out.Packets != 5 || e.Dropped["rule"].Packets != 18 || !e.Balanced() {
		t.Errorf("books: %+v", e)
	}
	// A second Finish (the runner's, on a signal) does not print the count again.
	if err := d.Finish(); err != nil || lines.String() != "5\n" {
		t.Errorf("after a second Finish: %q, %v", lines.String(), err)
	}
}

func TestJSONStream(t *testing.T) {
	var lines bytes.Buffer
	d := New(Config{JSON: true, Lines: &lines, LinesName: "stdout"})
	if err := d.Run(context.Background(), bytes.NewReader(stream(t)), nil, &nf.Stage{}); err != nil {
		t.Fatal(err)
	}
	ls := strings.Split(strings.TrimSuffix(lines.String(), "\n"), "\n")
	if len(ls) != 23 || !strings.Contains(ls[1], `"interface":"wan0","direction":"out"`) {
		t.Errorf("%d objects; second: %s", len(ls), ls[1])
	}
}

// A broken stream is an error naming stdin; what came before it was printed.
func TestBadStream(t *testing.T) {
	in := stream(t)
	var lines bytes.Buffer
	d := New(Config{Lines: &lines, LinesName: "stdout", Style: Style{Location: time.UTC}})
	err := d.Run(context.Background(), bytes.NewReader(in[:len(in)-10]), nil, &nf.Stage{})
	if err == nil || !strings.HasPrefix(err.Error(), "stdin: ") {
		t.Errorf("err = %v", err)
	}
	if n := strings.Count(lines.String(), "\n"); n != 22 {
		t.Errorf("%d lines before the error, want 22", n)
	}
}
