package framing

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// roundTripPackets covers sizes (1 byte to the largest the Writer takes), paddings, several
// interfaces and link types, packets without an interface, directions, truncated captures and
// timestamps with nanosecond parts.
func roundTripPackets() []Packet {
	eth0 := &Interface{Name: "eth0", LinkType: LinkEthernet, SnapLen: MaxRecord}
	eth1 := &Interface{Name: "eth1", LinkType: LinkEthernet}
	raw := &Interface{Name: "tun0", LinkType: LinkRaw}
	eth0again := &Interface{Name: "eth0", LinkType: LinkEthernet} // same name and link: same interface
	return []Packet{
		{Data: frame(60, 1), Length: 60, Timestamp: 1_700_000_000_123_456_789, Interface: eth0, Direction: DirInbound},
		{Data: frame(1, 2), Length: 1, Timestamp: 1_700_000_000_123_456_790, Interface: eth1, Direction: DirOutbound},
		{Data: frame(2, 3), Length: 1514, Timestamp: 1_700_000_000_999_999_999, Interface: raw},
		{Data: frame(3, 4), Length: 0, Timestamp: 1_700_000_001_000_000_000, Interface: eth0again, Direction: DirInbound}, // Length 0: means len(Data)
		{Data: frame(1514, 5), Length: 1514, Timestamp: 1, Interface: nil},
		{Data: frame(MaxRecord-64, 6), Length: MaxRecord - 64, Timestamp: 4_102_444_800_000_000_001, Interface: eth0}, // 2100-01-01
		{Data: frame(61, 7), Length: 9000, Timestamp: 0, Interface: eth1, Direction: DirOutbound},
	}
}

func TestRoundTripPcapng(t *testing.T) {
	want := roundTripPackets()
	stream := encode(t, FormatPcapng, want)
	for _, batch := range []int{1, 3, 64} {
		got, rd, err := readAllFrom(bytes.NewReader(stream), batch)
		if err != nil {
			t.Fatal(err)
		}
		samePackets(t, got, want, 1, true)
		if rd.Format() != FormatPcapng {
			t.Errorf("Format() = %v", rd.Format())
		}
		// eth0 and eth0again are one interface; the packet without one gets an unnamed Ethernet one.
		var names []string
		for _, ifc := range rd.Interfaces() {
			names = append(names, fmt.Sprintf("%q/%s", ifc.Name, ifc.LinkType))
		}
		if got, want := strings.Join(names, " "), `"eth0"/EN10MB "eth1"/EN10MB "tun0"/RAW ""/EN10MB`; got != want {
			t.Errorf("Interfaces() = %s, want %s", got, want)
		}
		if got[0].iface != got[3].iface || got[0].iface != got[5].iface {
			t.Errorf("packets of eth0 have different *Interface values")
		}
		if got[0].iface.SnapLen != 0 {
			t.Errorf("eth0 SnapLen %d, want 0: pcapng output declares no snap length", got[0].iface.SnapLen)
		}
	}
}

func TestRoundTripPcap(t *testing.T) {
	want := roundTripPackets()
	eth := want[:2:2] // classic pcap holds one link type
	eth = append(eth, want[3:]...)
	stream := encode(t, FormatPcap, eth)
	got, rd, err := readAllFrom(bytes.NewReader(stream), 64)
	if err != nil {
		t.Fatal(err)
	}
	samePackets(t, got, eth, 1, false)
	for i, p := range got {
		if p.Dir != DirUnknown || p.IfName != "" {
			t.Errorf("packet %d: classic pcap has no direction or interface name, got %v", i, p)
		}
	}
	if rd.Format() != FormatPcap || le.Uint32(stream) != 0xa1b23c4d {
		t.Errorf("Format() = %v, magic %#x: want nanosecond pcap", rd.Format(), le.Uint32(stream))
	}
}

func TestWriterPcapOneLinkType(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, FormatPcap)
	err := w.Write([]Packet{
		{Data: frame(60, 1), Interface: &Interface{LinkType: LinkEthernet}},
		{Data: frame(60, 2), Interface: &Interface{LinkType: LinkRaw}},
	})
	if err == nil || !strings.Contains(err.Error(), "RAW after EN10MB") {
		t.Errorf("Write of mixed link types to classic pcap: %v", err)
	}
}

func TestWriterRecordLimit(t *testing.T) {
	w := NewWriter(io.Discard, FormatPcapng)
	if err := w.Write([]Packet{{Data: make([]byte, MaxRecord-64)}}); err != nil {
		t.Errorf("Write of %d bytes: %v", MaxRecord-64, err)
	}
	for _, format := range []Format{FormatPcapng, FormatPcap} {
		w := NewWriter(io.Discard, format)
		err := w.Write([]Packet{{Data: make([]byte, MaxRecord-63)}})
		if err == nil || !strings.Contains(err.Error(), "exceeds") {
			t.Errorf("%v: Write of %d bytes: %v, want an error", format, MaxRecord-63, err)
		}
	}
}

// TestWriterOutputIsReadable: whatever the Writer accepts, the Reader accepts. An empty packet
// must be refused by Write rather than written as a record every reader rejects.
func TestWriterOutputIsReadable(t *testing.T) {
	for _, format := range []Format{FormatPcapng, FormatPcap} {
		t.Run(format.String(), func(t *testing.T) {
			var buf bytes.Buffer
			w := NewWriter(&buf, format)
			pkts := []Packet{{Data: frame(60, 1)}, {Data: nil}, {Data: frame(60, 3)}}
			var accepted []Packet
			for _, p := range pkts {
				if err := w.Write([]Packet{p}); err == nil {
					accepted = append(accepted, p)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			got, _, err := readAllFrom(bytes.NewReader(buf.Bytes()), 64)
			if err != nil {
				t.Fatalf("the Writer accepted %d packets but wrote a stream the Reader rejects: %v", len(accepted), err)
			}
			samePackets(t, got, accepted, 1, false)
		})
	}
}

// TestWriterSnapLen: an interface's snap length is written into its description; a packet
// longer than that must not produce a stream the Reader rejects.
func TestWriterSnapLen(t *testing.T) {
	ifc := &Interface{Name: "eth0", LinkType: LinkEthernet, SnapLen: 64}
	var buf bytes.Buffer
	w := NewWriter(&buf, FormatPcapng)
	werr := w.Write([]Packet{{Data: frame(60, 1), Interface: ifc}, {Data: frame(100, 2), Interface: ifc}})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got, _, err := readAllFrom(bytes.NewReader(buf.Bytes()), 64)
	if werr != nil || err != nil {
		t.Errorf("Write returned %v and wrote a stream the Reader rejects: %v", werr, err)
	}
	// The writer declares no snap length: a stage may forward a frame longer than its
	// source captured (a reassembled datagram), and no reader may refuse it.
	if len(got) != 2 || got[0].iface.SnapLen != 0 || len(got[1].Data) != 100 {
		t.Errorf("read %v: want both frames, eth0 with no snap length", got)
	}
}

// TestWriterUnnamedInterfaces: unnamed interfaces are told apart by pointer; named ones by
// name and link type.
func TestWriterUnnamedInterfaces(t *testing.T) {
	a, b := &Interface{LinkType: LinkEthernet}, &Interface{LinkType: LinkEthernet}
	n1, n2 := &Interface{Name: "x", LinkType: LinkEthernet}, &Interface{Name: "x", LinkType: LinkEthernet}
	stream := encode(t, FormatPcapng, []Packet{
		{Data: frame(60, 1), Interface: a}, {Data: frame(60, 2), Interface: b}, {Data: frame(60, 3), Interface: a},
		{Data: frame(60, 4), Interface: n1}, {Data: frame(60, 5), Interface: n2},
	})
	got, rd, err := readAllFrom(bytes.NewReader(stream), 64)
	if err != nil || len(got) != 5 {
		t.Fatalf("%d packets, %v", len(got), err)
	}
	if len(rd.Interfaces()) != 3 || got[0].iface != got[2].iface || got[0].iface == got[1].iface || got[3].iface != got[4].iface {
		t.Errorf("interfaces %v: want a, b, a, x, x with three interface descriptions", got)
	}
}

// TestWriterLongInterfaceName: a name survives the round trip, whatever its length: pcapng
// allows option values up to 65535 bytes and the Reader accepts them, so a stage that reads
// and writes must not rename (or merge) interfaces whose names are longer than 255 bytes.
func TestWriterLongInterfaceName(t *testing.T) {
	for _, n := range []int{1, 3, 4, 15, 255, 256, 1000} {
		name := strings.Repeat("n", n)
		stream := encode(t, FormatPcapng, []Packet{{Data: frame(60, 1), Interface: &Interface{Name: name, LinkType: LinkEthernet}}})
		got := readAll(t, stream)
		if len(got) != 1 || got[0].IfName != name {
			t.Errorf("name of %d bytes: read back a name of %d bytes", n, len(got[0].IfName))
		}
	}
	// Two interfaces whose names differ only after byte 255 stay two interfaces.
	a := &Interface{Name: strings.Repeat("a", 255) + "1", LinkType: LinkEthernet}
	b := &Interface{Name: strings.Repeat("a", 255) + "2", LinkType: LinkEthernet}
	got := readAll(t, encode(t, FormatPcapng, []Packet{{Data: frame(60, 1), Interface: a}, {Data: frame(60, 2), Interface: b}}))
	if len(got) != 2 || got[0].IfName == got[1].IfName {
		t.Errorf("interfaces %q... and %q... read back with one name", a.Name[250:], b.Name[250:])
	}
}

// TestWriterFlushEmpty: Flush without packets writes a valid stream with no packets, which
// our Reader and tcpdump both read as empty, not as an error.
func TestWriterFlushEmpty(t *testing.T) {
	for _, format := range []Format{FormatPcapng, FormatPcap} {
		t.Run(format.String(), func(t *testing.T) {
			var buf bytes.Buffer
			w := NewWriter(&buf, format)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if buf.Len() == 0 {
				t.Fatal("Flush of an empty Writer wrote nothing")
			}
			n, err := NewReader(bytes.NewReader(buf.Bytes())).Read(make([]Packet, 4))
			if n != 0 || err != io.EOF {
				t.Errorf("our Reader: %d, %v; want 0, io.EOF", n, err)
			}
			// A second Flush writes nothing more.
			before := buf.Len()
			if err := w.Flush(); err != nil || buf.Len() != before {
				t.Errorf("second Flush: %v, %d more bytes", err, buf.Len()-before)
			}

			tcpdump := needTool(t, "tcpdump", "tcpdump")
			file := filepath.Join(t.TempDir(), "empty."+format.String())
			if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			if out := run(t, nil, tcpdump, "-n", "-r", file); len(out) != 0 {
				t.Errorf("tcpdump -r printed %q for an empty stream", out)
			}
		})
	}
}

// TestWriterBuffersUntilLarge: Write keeps packets until about flushAt bytes are buffered,
// then writes them out in one call.
func TestWriterBuffersUntilLarge(t *testing.T) {
	cw := &countingWriter{}
	w := NewWriter(cw, FormatPcapng)
	p := []Packet{{Data: frame(1000, 1)}}
	for w.Buffered()+1100 < flushAt {
		if err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if cw.calls != 0 {
		t.Fatalf("Writer wrote %d times with %d bytes buffered", cw.calls, w.Buffered())
	}
	for cw.calls == 0 {
		if err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if cw.calls != 1 || cw.n < flushAt || w.Buffered() != 0 {
		t.Errorf("after crossing %d bytes: %d writes of %d bytes, %d buffered", flushAt, cw.calls, cw.n, w.Buffered())
	}
}

type countingWriter struct {
	calls int
	n     int
	buf   bytes.Buffer
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.calls++
	c.n += len(p)
	return c.buf.Write(p)
}

type failWriter struct{ err error }

func (f failWriter) Write(p []byte) (int, error) { return 0, f.err }

// TestWriterStickyError: after the destination fails, Write and Flush return that error.
func TestWriterStickyError(t *testing.T) {
	boom := errors.New("boom")
	w := NewWriter(failWriter{boom}, FormatPcapng)
	if err := w.Write([]Packet{{Data: frame(60, 1)}}); err != nil {
		t.Fatalf("buffered Write: %v", err)
	}
	if err := w.Flush(); !errors.Is(err, boom) {
		t.Errorf("Flush: %v, want %v", err, boom)
	}
	if err := w.Write([]Packet{{Data: frame(60, 1)}}); !errors.Is(err, boom) {
		t.Errorf("Write after a failed flush: %v, want %v", err, boom)
	}
	if err := w.Flush(); !errors.Is(err, boom) {
		t.Errorf("second Flush: %v, want %v", err, boom)
	}
}

// TestWriterConcurrent: several goroutines write at once (as netstack's timers do); every
// packet arrives whole and each goroutine's packets stay in its order. Run with -race.
func TestWriterConcurrent(t *testing.T) {
	const writers, each = 4, 600
	for _, format := range []Format{FormatPcapng, FormatPcap} {
		t.Run(format.String(), func(t *testing.T) {
			var buf bytes.Buffer
			w := NewWriter(&buf, format)
			var wg sync.WaitGroup
			for g := range writers {
				wg.Go(func() {
					ifc := &Interface{Name: fmt.Sprintf("g%d", g), LinkType: LinkEthernet}
					for i := range each {
						data := frame(60+i%200, byte(g))
						data[0], data[1], data[2] = byte(g), byte(i>>8), byte(i)
						p := []Packet{{Data: data, Timestamp: int64(i), Interface: ifc, Direction: Direction(1 + g%2)}}
						if err := w.Write(p); err != nil {
							t.Error(err)
							return
						}
						if i%50 == 0 {
							if err := w.Flush(); err != nil {
								t.Error(err)
								return
							}
						}
					}
				})
			}
			wg.Wait()
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			got := readAll(t, buf.Bytes())
			if len(got) != writers*each {
				t.Fatalf("read %d packets, wrote %d", len(got), writers*each)
			}
			next := make([]int, writers)
			for _, p := range got {
				g, i := int(p.Data[0]), int(p.Data[1])<<8|int(p.Data[2])
				if g >= writers || i != next[g] || len(p.Data) != 60+i%200 || p.Timestamp != int64(i) {
					t.Fatalf("packet %v from goroutine %d: want its packet %d", p, g, next[g])
				}
				if format == FormatPcapng && (p.IfName != fmt.Sprintf("g%d", g) || p.Dir != Direction(1+g%2)) {
					t.Fatalf("packet %d of goroutine %d on %q dir %v", i, g, p.IfName, p.Dir)
				}
				next[g]++
			}

			tshark := needTool(t, "tshark", "tshark")
			file := filepath.Join(t.TempDir(), "concurrent."+format.String())
			if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			out := run(t, nil, tshark, "-n", "-r", file, "-T", "fields", "-e", "frame.number")
			if n := len(strings.Fields(string(out))); n != writers*each {
				t.Errorf("tshark read %d packets, want %d", n, writers*each)
			}
		})
	}
}

func TestWriterAllocs(t *testing.T) {
	for _, format := range []Format{FormatPcapng, FormatPcap} {
		t.Run(format.String(), func(t *testing.T) {
			ifc := &Interface{Name: "eth0", LinkType: LinkEthernet}
			pkts := make([]Packet, 32)
			for i := range pkts {
				pkts[i] = Packet{Data: frame(64+i, byte(i)), Timestamp: int64(i), Interface: ifc, Direction: Direction(i % 3)}
			}
			w := NewWriter(io.Discard, format)
			write := func() {
				if err := w.Write(pkts); err != nil {
					t.Fatal(err)
				}
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			write() // warm up: header and interface description
			if a := testing.AllocsPerRun(1000, write); a != 0 {
				t.Errorf("Writer.Write+Flush: %v allocations per call, want 0", a)
			}
		})
	}
}

func BenchmarkWrite64(b *testing.B) {
	for _, format := range []Format{FormatPcapng, FormatPcap} {
		b.Run(format.String(), func(b *testing.B) {
			ifc := &Interface{Name: "eth0", LinkType: LinkEthernet}
			pkts := make([]Packet, 256)
			for i := range pkts {
				pkts[i] = Packet{Data: frame(64, byte(i)), Timestamp: int64(i), Interface: ifc}
			}
			w := NewWriter(io.Discard, format)
			b.SetBytes(64)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(len(pkts), b.N-done)
				if err := w.Write(pkts[:n]); err != nil {
					b.Fatal(err)
				}
				done += n
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkRoundTrip1500 writes batches of 1500-byte packets into a buffer and reads them back;
// one op is one packet written and read.
func BenchmarkRoundTrip1500(b *testing.B) {
	for _, format := range []Format{FormatPcapng, FormatPcap} {
		b.Run(format.String(), func(b *testing.B) {
			ifc := &Interface{Name: "eth0", LinkType: LinkEthernet}
			out := make([]Packet, 256)
			for i := range out {
				out[i] = Packet{Data: frame(1500, byte(i)), Timestamp: int64(i), Interface: ifc}
			}
			var pipe bytes.Buffer
			pipe.Grow(1 << 20)
			w := NewWriter(&pipe, format)
			rd := NewReader(&pipe)
			in := make([]Packet, 256)
			b.SetBytes(1500)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				batch := min(len(out), b.N-done)
				if err := w.Write(out[:batch]); err != nil {
					b.Fatal(err)
				}
				if err := w.Flush(); err != nil {
					b.Fatal(err)
				}
				// Read exactly what was written: never ask an empty bytes.Buffer, which says EOF.
				for got := 0; got < batch; {
					n, err := rd.Read(in[:batch-got])
					if err != nil {
						b.Fatal(err)
					}
					if len(in[0].Data) != 1500 {
						b.Fatalf("read %d bytes", len(in[0].Data))
					}
					got += n
				}
				done += batch
			}
		})
	}
}

// failAfter accepts n writes, then fails every one.
type failAfter struct{ n int }

func (f *failAfter) Write(b []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("pipe closed")
	}
	f.n--
	return len(b), nil
}

// Lost counts what Write took and a later failed write threw away, and never a batch whose
// own Write failed (its caller counts that one).
func TestWriterLost(t *testing.T) {
	pkt := func(n int) []Packet {
		ps := make([]Packet, n)
		for i := range ps {
			ps[i] = Packet{Data: make([]byte, 100)}
		}
		return ps
	}
	w := NewWriter(&failAfter{n: 1}, FormatPcapng)
	if err := w.Write(pkt(3)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil { // the one write that succeeds
		t.Fatal(err)
	}
	if err := w.Write(pkt(5)); err != nil {
		t.Fatal(err)
	}
	if l := w.Lost(); l != (Tally{5, 500}) {
		t.Errorf("buffered: Lost %+v, want 5 packets of 500 bytes", l)
	}
	// A batch large enough to be written out within Write fails there: the 5 before it
	// are lost, its own are its caller's to count.
	if err := w.Write(pkt(2000)); err == nil {
		t.Fatal("Write to a failed destination succeeded")
	}
	if err := w.Write(pkt(1)); err == nil {
		t.Fatal("Write after a failure succeeded")
	}
	if l := w.Lost(); l != (Tally{5, 500}) {
		t.Errorf("after the failure: Lost %+v, want 5 packets of 500 bytes", l)
	}
	// A bad packet refuses its whole batch before any of it is encoded.
	w2 := NewWriter(io.Discard, FormatPcapng)
	bad := append(pkt(2), Packet{})
	if err := w2.Write(bad); err == nil || w2.Buffered() != 0 {
		t.Errorf("batch with an empty packet: err %v, %d bytes buffered", err, w2.Buffered())
	}
}
