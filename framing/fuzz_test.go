package framing

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"testing/iotest"
)

// fuzzSeeds are small valid streams of every shape the Reader knows, and the broken ones of
// the error tests.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, order := range []appendOrder{le, be} {
		seeds = append(seeds,
			goodNG(order, 0).bytes(),
			goodNG(order, 64).epb(0, 3, frame(64, 3), 100, optFlags(order, 2)).bytes(),
			goodPcap(order, 0).bytes(),
			newPcap(order, false, 100, LinkRaw).rec(5, 999999, frame(20, 1), 40).bytes(),
			newNG(order).shb().
				idb(LinkEthernet, 0, optName("eth0"), optTsresol(0x80|20), optTsoffset(order, 100)).
				idb(LinkLinuxSLL2, 0, optName("any"), optTsresol(6)).
				spb(60, frame(60, 1)).isb(0, 1).opb(1, 2, frame(30, 2), 30).
				raw(0xBAD, frame(5, 0)).epb(1, 3, frame(7, 3), 7, optFlags(order, 1)).bytes(),
		)
	}
	a := newNG(le).shb().idb(LinkEthernet, 0, optName("x")).epb(0, 1, frame(60, 1), 60)
	b := newNG(be).shb().idb(LinkEthernet, 10, optName("x")).epb(0, 2, frame(10, 2), 60)
	seeds = append(seeds, append(bytes.Clone(a.bytes()), b.bytes()...))
	small := roundTripPackets()[:5]
	seeds = append(seeds, encode(t, FormatPcapng, small), encode(t, FormatPcap, append(small[:2:2], small[3:]...)))
	seeds = append(seeds, encode(t, FormatPcapng, genTrace(t, 4, traceStart, &Interface{Name: "west", LinkType: LinkEthernet})))
	for _, c := range formatErrorCases() {
		seeds = append(seeds, c.stream)
	}
	// A block over the limit that fits the Reader's buffer: refused however it is read.
	seeds = append(seeds, goodNG(le, 0).epb(0, 3, frame(MaxRecord, 3), MaxRecord, optFlags(le, 1)).bytes())
	g := goodNG(le, 0).bytes()
	seeds = append(seeds, nil, g[:3], g[:20], g[:len(g)-1], goodPcap(be, 0).bytes()[:30])
	return seeds
}

// FuzzReader: no input makes the Reader panic or return an empty or over-long packet; the
// result does not depend on how the input is split into reads, nor on whether the common
// blocks are read by the Reader's fast loop; writing what was read gives
// what encoding it gives (blocks passed through only where that is the same); and every
// packet read re-encodes through the Writer and reads back identical.
func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, _, err := readAllFrom(bytes.NewReader(in), 5)
		if err != nil {
			var fe *FormatError
			switch {
			case errors.As(err, &fe):
				if fe.Offset < 0 || fe.Offset > int64(len(in)) {
					t.Fatalf("error offset %d outside the %d-byte input: %v", fe.Offset, len(in), err)
				}
				if fe.Packet != int64(len(got)) {
					t.Fatalf("error says %d packets before it, %d were returned: %v", fe.Packet, len(got), err)
				}
			case errors.Is(err, ErrEmptyStream):
				if len(in) != 0 {
					t.Fatalf("ErrEmptyStream for %d bytes", len(in))
				}
			default:
				t.Fatalf("error %v (%T) is neither a *FormatError nor ErrEmptyStream", err, err)
			}
		}
		for i, p := range got {
			if len(p.Data) == 0 || len(p.Data) > MaxRecord || p.Length < len(p.Data) {
				t.Fatalf("packet %d: %d bytes, length %d", i, len(p.Data), p.Length)
			}
		}

		// Read the general way only, the same packets and error.
		if err := sameAsGeneral(in); err != nil {
			t.Fatal(err)
		}

		// The same input one byte per read gives the same packets and the same error.
		got1, _, err1 := readAllFrom(iotest.OneByteReader(bytes.NewReader(in)), 3)
		if errString(err) != errString(err1) || len(got1) != len(got) {
			t.Fatalf("whole input: %d packets, %v; one byte per read: %d packets, %v", len(got), err, len(got1), err1)
		}
		for i := range got {
			if g, h := got[i], got1[i]; !bytes.Equal(g.Data, h.Data) || g.String() != h.String() {
				t.Fatalf("packet %d: %v whole, %v one byte per read", i, g, h)
			}
		}

		if len(got) == 0 {
			return
		}
		passThroughAsEncoded(t, in)
		pkts := make([]Packet, len(got))
		for i, p := range got {
			pkts[i] = Packet{Data: p.Data, Length: p.Length, Timestamp: p.Timestamp, Interface: p.iface, Direction: p.Dir}
		}
		var buf bytes.Buffer
		w := NewWriter(&buf, FormatPcapng)
		if err := w.Write(pkts); err != nil {
			for _, p := range pkts {
				if len(p.Data) > MaxRecord-64 {
					return // the Writer's limit leaves room for headers and options
				}
			}
			t.Fatalf("Writer refused what the Reader read: %v", err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		back, _, err := readAllFrom(bytes.NewReader(buf.Bytes()), 64)
		if err != nil {
			t.Fatalf("re-encoded stream: %v", err)
		}
		if len(back) != len(got) {
			t.Fatalf("re-encoded stream: %d packets, want %d", len(back), len(got))
		}
		for i := range got {
			if g, h := got[i], back[i]; !bytes.Equal(g.Data, h.Data) || g.String() != h.String() {
				t.Fatalf("packet %d read %v, re-encoded and read again %v", i, g, h)
			}
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// passThroughAsEncoded writes the packets of a stream as a Reader hands them out, and as
// copies that have no block to pass through, and requires the same bytes of both.
func passThroughAsEncoded(t *testing.T, in []byte) {
	_, _ = newTwoWriters().copyStream(t, in, 5, nil) // a malformed stream ends it early
}

// sameAsGeneral reads in twice, the second time with every block read by the general
// code, and says how the two differ.
func sameAsGeneral(in []byte) error {
	fast, general := NewReader(bytes.NewReader(in)), NewReader(bytes.NewReader(in))
	general.generalOnly = true
	pf, pg := make([]Packet, 7), make([]Packet, 7)
	for total := 0; ; {
		nf, errF := fast.Read(pf)
		ng, errG := general.Read(pg)
		if nf != ng || errString(errF) != errString(errG) {
			return fmt.Errorf("after %d packets: %d packets, %v; the general way %d, %v", total, nf, errF, ng, errG)
		}
		for i := range pf[:nf] {
			f, g := &pf[i], &pg[i]
			if !bytes.Equal(f.Data, g.Data) || f.Length != g.Length || f.Timestamp != g.Timestamp ||
				f.Interface.Name != g.Interface.Name || f.Direction != g.Direction {
				return fmt.Errorf("packet %d: %+v; the general way %+v", total+i, *f, *g)
			}
		}
		total += nf
		if errF != nil {
			return nil
		}
	}
}
