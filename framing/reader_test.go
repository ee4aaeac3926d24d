package framing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/sys/unix"
)

var (
	le appendOrder = binary.LittleEndian
	be appendOrder = binary.BigEndian
)

func orderName(o appendOrder) string {
	if o == be {
		return "big-endian"
	}
	return "little-endian"
}

func TestReadPcapngByteOrders(t *testing.T) {
	for _, order := range []appendOrder{le, be} {
		t.Run(orderName(order), func(t *testing.T) {
			s := newNG(order).shb().
				idb(LinkEthernet, 65535, optName("eth0"), optTsresol(9)).
				idb(LinkRaw, 0, optName("tun0")).
				epb(0, 1_700_000_000_123_456_789, frame(60, 1), 60, optFlags(order, 1)).
				epb(1, 1_700_000_000_654_321, frame(41, 2), 1500).
				epb(0, 1_700_000_001_000_000_001, frame(1514, 3), 1514, optFlags(order, 2))
			got := readAll(t, s.bytes())
			want := []rpkt{
				{Data: frame(60, 1), Length: 60, Timestamp: 1_700_000_000_123_456_789, IfName: "eth0", Link: LinkEthernet, Dir: DirInbound},
				{Data: frame(41, 2), Length: 1500, Timestamp: 1_700_000_000_654_321_000, IfName: "tun0", Link: LinkRaw, Dir: DirUnknown},
				{Data: frame(1514, 3), Length: 1514, Timestamp: 1_700_000_001_000_000_001, IfName: "eth0", Link: LinkEthernet, Dir: DirOutbound},
			}
			sameRead(t, got, want)
			if got[0].iface != got[2].iface {
				t.Errorf("packets on interface 0 have different *Interface values")
			}
			if got[0].iface.SnapLen != 65535 {
				t.Errorf("SnapLen %d, want 65535", got[0].iface.SnapLen)
			}
		})
	}
}

// sameRead compares packets read with the packets expected, field by field.
func sameRead(t *testing.T, got, want []rpkt) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d packets %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if !bytes.Equal(g.Data, w.Data) || g.Length != w.Length || g.Timestamp != w.Timestamp ||
			g.IfName != w.IfName || g.Link != w.Link || g.Dir != w.Dir {
			t.Errorf("packet %d: got %v, want %v (data equal: %v)", i, g, w, bytes.Equal(g.Data, w.Data))
		}
	}
}

// TestReadConcatenatedSections reads `cat a.pcapng b.pcapng`: the second section has its own
// byte order, its own interface ids and its own timestamp resolutions.
func TestReadConcatenatedSections(t *testing.T) {
	a := newNG(le).shb().
		idb(LinkEthernet, 0, optName("eth0"), optTsresol(9)).
		idb(LinkEthernet, 0, optName("eth1")). // microseconds
		epb(0, 10, frame(60, 1), 60).
		epb(1, 20, frame(60, 2), 60)
	b := newNG(be).shb().
		idb(LinkEthernet, 0, optName("eth1"), optTsresol(9)).
		idb(LinkEthernet, 0, optName("wlan0"), optTsresol(3)).
		epb(0, 30, frame(60, 3), 60).
		epb(1, 40, frame(60, 4), 60)
	stream := append(bytes.Clone(a.bytes()), b.bytes()...)
	for _, src := range []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(stream) }},
		{"one byte at a time", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) }},
	} {
		t.Run(src.name, func(t *testing.T) {
			got, rd, err := readAllFrom(src.r(), 3)
			if err != nil {
				t.Fatal(err)
			}
			sameRead(t, got, []rpkt{
				{Data: frame(60, 1), Length: 60, Timestamp: 10, IfName: "eth0", Link: LinkEthernet},
				{Data: frame(60, 2), Length: 60, Timestamp: 20_000, IfName: "eth1", Link: LinkEthernet},
				{Data: frame(60, 3), Length: 60, Timestamp: 30, IfName: "eth1", Link: LinkEthernet},
				{Data: frame(60, 4), Length: 60, Timestamp: 40_000_000, IfName: "wlan0", Link: LinkEthernet},
			})
			if got[1].iface != got[2].iface {
				t.Errorf("eth1 of both sections should be one *Interface")
			}
			var names []string
			for _, ifc := range rd.Interfaces() {
				names = append(names, ifc.Name)
			}
			if fmt.Sprint(names) != "[eth0 eth1 wlan0]" {
				t.Errorf("Interfaces() = %v, want [eth0 eth1 wlan0]", names)
			}
		})
	}

	// Interface ids restart in each section: id 1 of the first section does not exist in a
	// second section that declares one interface.
	c := newNG(le).shb().idb(LinkEthernet, 0, optName("x")).idb(LinkEthernet, 0, optName("x2")).epb(0, 1, frame(60, 5), 60).epb(1, 2, frame(60, 6), 60)
	short := newNG(le).shb().idb(LinkEthernet, 0, optName("y")).epb(0, 3, frame(60, 7), 60)
	short.epb(1, 4, frame(60, 8), 60)
	stream2 := append(bytes.Clone(c.bytes()), short.bytes()...)
	pkts, err := readErr(t, stream2)
	if len(pkts) != 3 {
		t.Errorf("read %d packets before the error, want 3", len(pkts))
	}
	wantFormatError(t, err, int64(len(c.bytes()))+short.last(), "packet on interface 1", "declares 1 interface")
}

func TestReadSkipsAndSimpleBlocks(t *testing.T) {
	for _, order := range []appendOrder{le, be} {
		t.Run(orderName(order), func(t *testing.T) {
			s := newNG(order).shb().
				raw(0x00000BAD, []byte("custom block, skipped")).
				idb(LinkEthernet, 0, optName("eth0"), optTsresol(9)).
				raw(0x40000BAD, frame(13, 9)). // custom, "may be copied" bit
				spb(60, frame(60, 1)).
				isb(0, 12345).
				opb(0, 777, frame(54, 2), 1500).
				raw(4, frame(8, 0)).      // name resolution block
				spb(1514, frame(100, 3)). // truncated capture: original 1514
				raw(0x0A, nil).           // decryption secrets-ish unknown type, empty body
				epb(0, 888, frame(61, 4), 61)
			got := readAll(t, s.bytes())
			sameRead(t, got, []rpkt{
				{Data: frame(60, 1), Length: 60, Timestamp: 0, IfName: "eth0", Link: LinkEthernet},
				{Data: frame(54, 2), Length: 1500, Timestamp: 777, IfName: "eth0", Link: LinkEthernet},
				{Data: frame(100, 3), Length: 1514, Timestamp: 0, IfName: "eth0", Link: LinkEthernet},
				{Data: frame(61, 4), Length: 61, Timestamp: 888, IfName: "eth0", Link: LinkEthernet},
			})
		})
	}
}

// TestReadSPBSnapLen: a simple packet block holds min(original length, snap length) bytes;
// the rest of its body is padding.
func TestReadSPBSnapLen(t *testing.T) {
	s := newNG(le).shb().idb(LinkEthernet, 64, optName("eth0")).spb(100, frame(64, 1)).spb(3, frame(3, 2))
	got := readAll(t, s.bytes())
	sameRead(t, got, []rpkt{
		{Data: frame(64, 1), Length: 100, IfName: "eth0", Link: LinkEthernet},
		{Data: frame(3, 2), Length: 3, IfName: "eth0", Link: LinkEthernet},
	})
}

func TestReadTimestampResolution(t *testing.T) {
	const sec = 1_700_000_000
	cases := []struct {
		name string
		opts []ngOpt
		ts   uint64
		want int64
	}{
		{"default microseconds", nil, sec*1e6 + 123456, sec*1e9 + 123456000},
		{"decimal 6", []ngOpt{optTsresol(6)}, sec*1e6 + 123456, sec*1e9 + 123456000},
		{"decimal 9", []ngOpt{optTsresol(9)}, sec*1e9 + 123456789, sec*1e9 + 123456789},
		{"decimal 3", []ngOpt{optTsresol(3)}, sec*1e3 + 999, sec*1e9 + 999_000_000},
		{"decimal 0 (seconds)", []ngOpt{optTsresol(0)}, sec, sec * 1e9},
		{"decimal 12 (picoseconds)", []ngOpt{optTsresol(12)}, 1_000_000_000_005_999, 1_000_000_000_005},
		{"binary 2^-20 half second", []ngOpt{optTsresol(0x80 | 20)}, sec<<20 | 1<<19, sec*1e9 + 500_000_000},
		// (sec<<20 + 1) * 1e9 / 2^20 = sec*1e9 + 953.67..., rounded down
		{"binary 2^-20 one tick", []ngOpt{optTsresol(0x80 | 20)}, sec<<20 | 1, sec*1e9 + 953},
		{"binary 2^-30", []ngOpt{optTsresol(0x80 | 30)}, 3<<30 | 1<<29, 3_500_000_000},
		{"binary 2^0", []ngOpt{optTsresol(0x80)}, 42, 42e9},
		{"if_tsoffset with nanoseconds", []ngOpt{optTsresol(9), optTsoffset(le, sec)}, 5, sec*1e9 + 5},
		{"if_tsoffset before if_tsresol, microseconds", []ngOpt{optTsoffset(le, 100), optTsresol(6)}, 7, 100e9 + 7000},
		{"negative if_tsoffset", []ngOpt{optTsoffset(le, -10), optTsresol(9)}, 20e9 + 1, 10e9 + 1},
	}
	for _, c := range cases {
		for _, order := range []appendOrder{le, be} {
			t.Run(c.name+"/"+orderName(order), func(t *testing.T) {
				opts := make([]ngOpt, len(c.opts))
				for i, o := range c.opts {
					opts[i] = o
					if o.code == 14 { // re-encode the offset in this section's byte order
						opts[i].val = order.AppendUint64(nil, le.Uint64(o.val))
					}
				}
				s := newNG(order).shb().idb(LinkEthernet, 0, opts...).
					epb(0, c.ts, frame(60, 1), 60).
					opb(0, c.ts, frame(60, 2), 60)
				got := readAll(t, s.bytes())
				if len(got) != 2 {
					t.Fatalf("read %d packets, want 2", len(got))
				}
				for i, p := range got {
					if p.Timestamp != c.want {
						t.Errorf("packet %d: timestamp %d, want %d", i, p.Timestamp, c.want)
					}
				}
			})
		}
	}
}

func TestReadEPBFlagsDirection(t *testing.T) {
	for _, order := range []appendOrder{le, be} {
		t.Run(orderName(order), func(t *testing.T) {
			comment := ngOpt{1, []byte("a comment before the flags")}
			s := newNG(order).shb().idb(LinkEthernet, 0, optName("eth0")).
				epb(0, 1, frame(60, 1), 60, optFlags(order, 0)).
				epb(0, 2, frame(60, 2), 60, optFlags(order, 1)).
				epb(0, 3, frame(61, 3), 61, optFlags(order, 2)).
				epb(0, 4, frame(62, 4), 62, comment, optFlags(order, 0x0001_0004|1)). // inbound, unicast, a link-layer error bit
				epb(0, 5, frame(63, 5), 63, comment).
				epb(0, 6, frame(64, 6), 64)
			got := readAll(t, s.bytes())
			want := []Direction{DirUnknown, DirInbound, DirOutbound, DirInbound, DirUnknown, DirUnknown}
			if len(got) != len(want) {
				t.Fatalf("read %d packets, want %d", len(got), len(want))
			}
			for i, p := range got {
				if p.Dir != want[i] {
					t.Errorf("packet %d: direction %v, want %v", i, p.Dir, want[i])
				}
				if p.Timestamp != int64(i+1)*1000 || len(p.Data) != []int{60, 60, 61, 62, 63, 64}[i] {
					t.Errorf("packet %d: %v", i, p)
				}
			}
		})
	}
}

func TestReadClassicPcap(t *testing.T) {
	for _, order := range []appendOrder{le, be} {
		for _, nano := range []bool{false, true} {
			name := fmt.Sprintf("%s/nano=%v", orderName(order), nano)
			t.Run(name, func(t *testing.T) {
				frac1, frac2 := uint32(123456), uint32(999999)
				want1, want2 := int64(1_700_000_000_123_456_000), int64(1_700_000_001_999_999_000)
				if nano {
					frac1, frac2 = 123456789, 999999999
					want1, want2 = 1_700_000_000_123_456_789, 1_700_000_001_999_999_999
				}
				s := newPcap(order, nano, 65535, LinkRaw).
					rec(1_700_000_000, frac1, frame(40, 1), 40).
					rec(1_700_000_001, frac2, frame(100, 2), 1500)
				got, rd, err := readAllFrom(bytes.NewReader(s.bytes()), 8)
				if err != nil {
					t.Fatal(err)
				}
				sameRead(t, got, []rpkt{
					{Data: frame(40, 1), Length: 40, Timestamp: want1, Link: LinkRaw},
					{Data: frame(100, 2), Length: 1500, Timestamp: want2, Link: LinkRaw},
				})
				if rd.Format() != FormatPcap {
					t.Errorf("Format() = %v, want pcap", rd.Format())
				}
				if ifs := rd.Interfaces(); len(ifs) != 1 || ifs[0].SnapLen != 65535 || ifs[0].LinkType != LinkRaw {
					t.Errorf("Interfaces() = %+v", ifs)
				}
				if rd.Packets() != 2 {
					t.Errorf("Packets() = %d, want 2", rd.Packets())
				}
			})
		}
	}
}

// formatErrorCases are streams with one defect each, after two good packets where the format
// allows it. Shared with the fuzz seed corpus.
type formatErrorCase struct {
	name    string
	stream  []byte
	off     int64    // byte offset the error must name
	msgs    []string // what the message must say
	before  int      // packets returned before the error
	hugeLen bool     // the defect is a length over MaxRecord
}

func goodNG(order appendOrder, snap uint32) *ngStream {
	return newNG(order).shb().
		idb(LinkEthernet, snap, optName("eth0"), optTsresol(9)).
		epb(0, 1, frame(60, 1), 60).
		epb(0, 2, frame(60, 2), 60)
}

func goodPcap(order appendOrder, snap uint32) *pcapStream {
	return newPcap(order, true, snap, LinkEthernet).rec(1, 1, frame(60, 1), 60).rec(1, 2, frame(60, 2), 60)
}

func formatErrorCases() []formatErrorCase {
	var cs []formatErrorCase
	add := func(name string, b []byte, off int64, before int, msgs ...string) {
		cs = append(cs, formatErrorCase{name: name, stream: bytes.Clone(b), off: off, msgs: msgs, before: before})
	}
	add("bad magic", []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), 0, 0, "bad magic 0x47455420")
	add("bad magic pcap-like", []byte{0xd4, 0xc3, 0xb2, 0xa2, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0}, 0, 0, "bad magic 0xd4c3b2a2")
	for _, order := range []appendOrder{le, be} {
		o := orderName(order)
		s := goodNG(order, 0)
		s.rawLen(6, s.epbBody(0, 3, frame(60, 3), 60, 60), MaxRecord+4, MaxRecord+4)
		add(o+" pcapng block length over MaxRecord", s.bytes(), s.last(), 2, "block length 262148 exceeds the limit of 262144")
		cs[len(cs)-1].hugeLen = true

		s = goodNG(order, 0)
		s.rawLen(6, s.epbBody(0, 3, frame(60, 3), 60, 60), 0xfffffffc, 0xfffffffc)
		add(o+" pcapng block claiming 4 GiB", s.bytes(), s.last(), 2, "block length 4294967292 exceeds the limit")
		cs[len(cs)-1].hugeLen = true

		s = goodNG(order, 0)
		s.rawLen(6, nil, 13, 13)
		add(o+" pcapng block length not a multiple of 4", s.bytes(), s.last(), 2, "bad block length 13")

		s = goodNG(order, 0)
		s.rawLen(6, nil, 8, 8)
		add(o+" pcapng block length under 12", s.bytes(), s.last(), 2, "bad block length 8")

		s = goodNG(order, 0).epb(0, 3, nil, 0)
		add(o+" EPB zero-length", s.bytes(), s.last(), 2, "zero-length packet")

		s = goodNG(order, 64).epb(0, 3, frame(65, 3), 65)
		add(o+" EPB longer than snap length", s.bytes(), s.last(), 2, "captured length 65 exceeds the snap length 64")

		s = goodNG(order, 0)
		s.raw(6, s.epbBody(0, 3, frame(8, 3), 100, 100))
		add(o+" EPB caplen overruns its block", s.bytes(), s.last(), 2, "captured length 100 overruns its block (room for 8)")

		s = goodNG(order, 0)
		s.raw(6, s.epbBody(0, 3, frame(8, 3), 0xffffffff, 100))
		add(o+" EPB caplen 4 GiB", s.bytes(), s.last(), 2, "captured length 4294967295 overruns its block")

		s = goodNG(order, 0)
		body := s.epbBody(0, 3, frame(60, 3), 60, 60)
		s.rawLen(6, body, uint32(12+len(body)), uint32(12+len(body)+4))
		add(o+" trailing block length mismatch", s.bytes(), s.last(), 2, fmt.Sprintf("block length %d does not match its trailing copy %d", 12+len(body), 16+len(body)))

		s = goodNG(order, 0).epb(1, 3, frame(60, 3), 60)
		add(o+" EPB on undeclared interface", s.bytes(), s.last(), 2, "packet on interface 1, but the section declares 1 interface(s)")

		s = goodNG(order, 0).opb(7, 3, frame(60, 3), 60)
		add(o+" OPB on undeclared interface", s.bytes(), s.last(), 2, "packet on interface 7")

		s = newNG(order).shb().spb(60, frame(60, 1))
		add(o+" SPB before any interface", s.bytes(), s.last(), 0, "packet on interface 0, but the section declares 0 interface(s)")

		s = goodNG(order, 0)
		s.raw(1, []byte{1, 0})
		add(o+" IDB too short", s.bytes(), s.last(), 2, "interface description block too short")

		s = goodNG(order, 0)
		s.raw(1, append(order.AppendUint32(order.AppendUint16(order.AppendUint16(nil, 1), 0), 0), order.AppendUint16(order.AppendUint16(nil, 2), 200)...))
		add(o+" IDB option overruns block", s.bytes(), s.last(), 2, "option 2 length 200 overruns its block")

		s = goodNG(order, 0)
		s.raw(1, append(order.AppendUint32(order.AppendUint16(order.AppendUint16(nil, 1), 0), 0), ngOpts(order, optTsresol(20))...))
		add(o+" if_tsresol 10^-20", s.bytes(), s.last(), 2, "if_tsresol 10^-20 out of range")

		s = goodNG(order, 0)
		s.raw(1, append(order.AppendUint32(order.AppendUint16(order.AppendUint16(nil, 1), 0), 0), ngOpts(order, optTsresol(0x80|64))...))
		add(o+" if_tsresol 2^-64", s.bytes(), s.last(), 2, "if_tsresol 2^-64 out of range")

		s = goodNG(order, 0)
		next := newNG(order).shb()
		bad := bytes.Clone(next.bytes())
		copy(bad[8:12], []byte{1, 2, 3, 4})
		add(o+" bad byte-order magic in second section", append(s.bytes(), bad...), int64(len(s.bytes())), 2, "bad section header byte-order magic 0x01020304")

		p := goodPcap(order, 0).recLen(1, 3, frame(60, 3), MaxRecord+1, MaxRecord+1)
		add(o+" pcap record length over MaxRecord", p.bytes(), p.last(), 2, "record length 262145 exceeds the limit of 262144")
		cs[len(cs)-1].hugeLen = true

		p = goodPcap(order, 0).recLen(1, 3, frame(60, 3), 0xffffffff, 0xffffffff)
		add(o+" pcap record claiming 4 GiB", p.bytes(), p.last(), 2, "record length 4294967295 exceeds the limit")
		cs[len(cs)-1].hugeLen = true

		p = goodPcap(order, 0).recLen(1, 3, nil, 0, 60)
		add(o+" pcap zero-length record", p.bytes(), p.last(), 2, "zero-length record")

		p = goodPcap(order, 64).rec(1, 3, frame(65, 3), 65)
		add(o+" pcap record longer than snap length", p.bytes(), p.last(), 2, "record length 65 exceeds the snap length 64")

		p = newPcap(order, false, 0, LinkEthernet)
		hdr := bytes.Clone(p.bytes())
		order.PutUint16(hdr[4:], 3)
		add(o+" pcap version 3", hdr, 0, 0, "unsupported pcap version 3.4")
	}
	return cs
}

func TestReadFormatErrors(t *testing.T) {
	for _, c := range formatErrorCases() {
		t.Run(c.name, func(t *testing.T) {
			for _, src := range []struct {
				name string
				r    io.Reader
			}{
				{"whole", bytes.NewReader(c.stream)},
				{"one byte at a time", iotest.OneByteReader(bytes.NewReader(c.stream))},
			} {
				pkts, _, err := readAllFrom(src.r, 64)
				if err == nil {
					t.Fatalf("%s: no error after %d packets", src.name, len(pkts))
				}
				if len(pkts) != c.before {
					t.Errorf("%s: %d packets before the error, want %d", src.name, len(pkts), c.before)
				}
				fe := wantFormatError(t, err, c.off, c.msgs...)
				if fe.Packet != int64(c.before) {
					t.Errorf("%s: FormatError.Packet = %d, want %d", src.name, fe.Packet, c.before)
				}
				if errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("%s: a malformed stream is not a truncated one: %v", src.name, err)
				}
			}
		})
	}
}

// TestReadErrorIsSticky: after a FormatError every Read returns it again and no packets.
func TestReadErrorIsSticky(t *testing.T) {
	s := goodNG(le, 0).epb(0, 3, nil, 0).epb(0, 4, frame(60, 4), 60)
	rd := NewReader(bytes.NewReader(s.bytes()))
	pkts := make([]Packet, 8)
	if n, err := rd.Read(pkts); n != 2 || err != nil {
		t.Fatalf("first Read = %d, %v; want 2 packets and no error", n, err)
	}
	var first error
	for i := range 3 {
		n, err := rd.Read(pkts)
		if n != 0 || err == nil {
			t.Fatalf("Read %d after the bad block = %d, %v", i, n, err)
		}
		if first == nil {
			first = err
		} else if err != first {
			t.Errorf("Read %d returned %v, first error was %v", i, err, first)
		}
	}
}

func TestReadTruncated(t *testing.T) {
	type tcase struct {
		name   string
		stream []byte
		off    int64
		before int
		msgs   []string
	}
	var cs []tcase
	for _, order := range []appendOrder{le, be} {
		o := orderName(order)
		p := goodPcap(order, 0)
		cs = append(cs, tcase{o + " pcap header", p.bytes()[:10], 0, 0, []string{"truncated header", "after 10 bytes"}})
		cs = append(cs, tcase{o + " pcap header 3 bytes", p.bytes()[:3], 0, 0, []string{"truncated header", "after 3 bytes"}})
		full := goodPcap(order, 0).rec(1, 3, frame(60, 3), 60)
		cs = append(cs, tcase{o + " pcap record header", full.bytes()[:full.last()+10], full.last(), 2, []string{"truncated record", "after 10 bytes"}})
		cs = append(cs, tcase{o + " pcap record data", full.bytes()[:full.last()+36], full.last(), 2, []string{"truncated record", "after 36 bytes"}})

		ng := goodNG(order, 0)
		cs = append(cs, tcase{o + " pcapng 3 bytes", ng.bytes()[:3], 0, 0, []string{"truncated header", "after 3 bytes"}})
		cs = append(cs, tcase{o + " pcapng section header", ng.bytes()[:20], 0, 0, []string{"truncated", "after 20 bytes"}})
		nfull := goodNG(order, 0).epb(0, 3, frame(60, 3), 60)
		cs = append(cs, tcase{o + " pcapng block header", nfull.bytes()[:nfull.last()+8], nfull.last(), 2, []string{"truncated record", "after 8 bytes"}})
		cs = append(cs, tcase{o + " pcapng block body", nfull.bytes()[:nfull.last()+50], nfull.last(), 2, []string{"truncated record", "after 50 bytes"}})
		cs = append(cs, tcase{o + " pcapng trailing length", nfull.bytes()[:len(nfull.bytes())-1], nfull.last(), 2, []string{"truncated record"}})
	}
	for _, c := range cs {
		t.Run(c.name, func(t *testing.T) {
			pkts, err := readErr(t, c.stream)
			if len(pkts) != c.before {
				t.Errorf("%d packets before the error, want %d", len(pkts), c.before)
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("error %v is not io.ErrUnexpectedEOF", err)
			}
			wantFormatError(t, err, c.off, c.msgs...)
		})
	}
}

func TestReadEmpty(t *testing.T) {
	for _, src := range []io.Reader{bytes.NewReader(nil), iotest.DataErrReader(bytes.NewReader(nil))} {
		rd := NewReader(src)
		n, err := rd.Read(make([]Packet, 4))
		if n != 0 || !errors.Is(err, ErrEmptyStream) {
			t.Errorf("Read of empty input = %d, %v; want 0, ErrEmptyStream", n, err)
		}
	}
	// A valid stream with no packets ends with io.EOF, not ErrEmptyStream.
	for _, b := range [][]byte{newNG(le).shb().bytes(), newNG(be).shb().idb(LinkEthernet, 0).bytes(), newPcap(le, false, 0, LinkEthernet).bytes()} {
		n, err := NewReader(bytes.NewReader(b)).Read(make([]Packet, 4))
		if n != 0 || err != io.EOF {
			t.Errorf("Read of a %d-byte stream without packets = %d, %v; want 0, io.EOF", len(b), n, err)
		}
	}
}

// countingReader counts the bytes it hands out.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// zeros is an endless source of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestHugeLengthNoAllocation: a stream claiming a 4 GiB record is refused without allocating
// or reading anything near that size, even when the input would supply the bytes.
func TestHugeLengthNoAllocation(t *testing.T) {
	for _, c := range formatErrorCases() {
		if !c.hugeLen {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			src := &countingReader{r: io.MultiReader(bytes.NewReader(c.stream), zeros{})}
			rd := NewReader(src)
			pkts := make([]Packet, 64)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			var err error
			for range 4 {
				if _, err = rd.Read(pkts); err != nil {
					break
				}
			}
			runtime.ReadMemStats(&after)
			wantFormatError(t, err, c.off, "exceeds the limit")
			if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
				t.Errorf("reading allocated %d bytes", d)
			}
			if src.n > readBufSize {
				t.Errorf("reader consumed %d bytes of input, more than its %d-byte buffer", src.n, readBufSize)
			}
		})
	}
}

// errAfter is a source that returns all its data together with a non-EOF error.
type errAfter struct {
	data []byte
	err  error
	done bool
}

func (e *errAfter) Read(p []byte) (int, error) {
	if e.done {
		return 0, e.err
	}
	e.done = true
	return copy(p, e.data), e.err
}

// TestReadDataWithError: io.Reader says callers process the n > 0 bytes returned before
// considering the error. The complete packets that arrived with a read error must be returned
// before the error is.
func TestReadDataWithError(t *testing.T) {
	boom := errors.New("boom")
	s := goodNG(le, 0)
	pkts, _, err := readAllFrom(&errAfter{data: s.bytes(), err: boom}, 64)
	if !errors.Is(err, boom) {
		t.Errorf("error %v, want one wrapping %v", err, boom)
	}
	if len(pkts) != 2 {
		t.Errorf("read %d packets before the read error, want the 2 that arrived with it", len(pkts))
	}
}

// TestReadDataWithEOF: a source that returns its last bytes together with io.EOF.
func TestReadDataWithEOF(t *testing.T) {
	s := goodNG(be, 0).epb(0, 3, frame(1500, 3), 1500)
	for _, batch := range []int{1, 2, 64} {
		pkts, _, err := readAllFrom(iotest.DataErrReader(bytes.NewReader(s.bytes())), batch)
		if err != nil || len(pkts) != 3 {
			t.Errorf("batch %d: %d packets, %v; want 3, no error", batch, len(pkts), err)
		}
	}
}

// TestReadBatches: Read returns as many buffered packets as fit in pkts.
func TestReadBatches(t *testing.T) {
	s := newNG(le).shb().idb(LinkEthernet, 0)
	for i := range 10 {
		s.epb(0, uint64(i), frame(60+i, byte(i)), uint32(60+i))
	}
	rd := NewReader(bytes.NewReader(s.bytes()))
	pkts := make([]Packet, 4)
	var got []int
	for {
		n, err := rd.Read(pkts)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts[:n] {
			if p.Timestamp != int64(len(got))*1000 || !bytes.Equal(p.Data, frame(60+len(got), byte(len(got)))) {
				t.Errorf("packet %d: ts %d len %d", len(got), p.Timestamp, len(p.Data))
			}
			got = append(got, n)
		}
	}
	if fmt.Sprint(got) != "[4 4 4 4 4 4 4 4 2 2]" {
		t.Errorf("batch sizes per packet %v, want four, four, then two", got)
	}
	// One Read with room for all returns all ten.
	n, err := NewReader(bytes.NewReader(s.bytes())).Read(make([]Packet, 64))
	if n != 10 || err != nil {
		t.Errorf("Read with room for 64 = %d, %v; want 10", n, err)
	}
}

// TestReadDrained: Drained is false while complete records are buffered and true once the
// buffer holds none and the last read from the input came back short.
func TestReadDrained(t *testing.T) {
	s := newNG(le).shb().idb(LinkEthernet, 0)
	for i := range 10 {
		s.epb(0, uint64(i), frame(60, byte(i)), 60)
	}
	rd := NewReader(bytes.NewReader(s.bytes()))
	pkts := make([]Packet, 4)
	for i, want := range []struct {
		n       int
		drained bool
	}{{4, false}, {4, false}, {2, true}} {
		n, err := rd.Read(pkts)
		if n != want.n || err != nil {
			t.Fatalf("Read %d = %d, %v; want %d", i, n, err, want.n)
		}
		if d := rd.Drained(); d != want.drained {
			t.Errorf("after Read %d (%d packets): Drained() = %v, want %v", i, n, d, want.drained)
		}
	}
}

// TestReadDrainedWithDataAndEOF: records buffered when the input has reported io.EOF are
// still records to read: Drained must be false until they are read.
func TestReadDrainedWithDataAndEOF(t *testing.T) {
	s := goodNG(le, 0).epb(0, 3, frame(60, 3), 60)
	rd := NewReader(iotest.DataErrReader(bytes.NewReader(s.bytes())))
	pkts := make([]Packet, 1)
	for i := range 3 {
		if n, err := rd.Read(pkts); n != 1 || err != nil {
			t.Fatalf("Read %d = %d, %v", i, n, err)
		}
		if want := i == 2; rd.Drained() != want {
			t.Errorf("after packet %d of 3: Drained() = %v, want %v", i+1, rd.Drained(), want)
		}
	}
}

// TestReadDoesNotWaitForMore: with one packet available, Read returns it without waiting for
// the input to fill its batch.
func TestReadDoesNotWaitForMore(t *testing.T) {
	s := newNG(le).shb().idb(LinkEthernet, 0, optName("eth0")).epb(0, 1, frame(60, 1), 60)
	first := bytes.Clone(s.bytes())
	s.epb(0, 2, frame(60, 2), 60).epb(0, 3, frame(60, 3), 60)
	half := s.last() + 30 // packet 2 and the first 30 bytes of packet 3
	all := s.bytes()

	pr, pw := io.Pipe()
	release := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		if _, err := pw.Write(first); err != nil {
			writerDone <- err
			return
		}
		<-release // wait until the reader has returned the first packet
		if _, err := pw.Write(all[len(first):half]); err != nil {
			writerDone <- err
			return
		}
		<-release
		_, err := pw.Write(all[half:])
		pw.Close()
		writerDone <- err
	}()
	defer pr.Close()
	// Not a timing assertion: if Read waits for packets that will never come, end the wait
	// with an error instead of hanging until the test binary's timeout.
	watchdog := time.AfterFunc(time.Minute, func() {
		pw.CloseWithError(errors.New("Read blocked waiting for more packets than were written"))
	})
	defer watchdog.Stop()

	rd := NewReader(pr)
	pkts := make([]Packet, 64)
	n, err := rd.Read(pkts) // must not block for more than the one packet written
	if n != 1 || err != nil || pkts[0].Timestamp != 1000 {
		t.Fatalf("first Read = %d, %v; want the one packet written", n, err)
	}
	if !rd.Drained() {
		t.Errorf("Drained() = false after a short read with no record left")
	}
	release <- struct{}{}
	// Packet 2 and half of packet 3 arrive: one packet, and a partial record is not complete.
	n, err = rd.Read(pkts)
	if n != 1 || err != nil || pkts[0].Timestamp != 2000 {
		t.Fatalf("second Read = %d, %v; want packet 2", n, err)
	}
	if !rd.Drained() {
		t.Errorf("Drained() = false with only a partial record buffered after a short read")
	}
	release <- struct{}{}
	n, err = rd.Read(pkts)
	if n != 1 || err != nil || pkts[0].Timestamp != 3000 {
		t.Fatalf("third Read = %d, %v; want packet 3", n, err)
	}
	if n, err = rd.Read(pkts); n != 0 || err != io.EOF {
		t.Errorf("Read at end = %d, %v; want 0, EOF", n, err)
	}
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
}

// TestReadDrainedPollsPipe: on an *os.File pipe, after a read that filled the whole buffer,
// Drained asks the kernel: data waiting in the pipe means not drained.
func TestReadDrainedPollsPipe(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	if _, err := unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 1<<20); err != nil {
		t.Skipf("cannot grow the pipe to 1 MiB (%v): the test needs a pipe larger than the reader's buffer", err)
	}
	s := newNG(le).shb().idb(LinkEthernet, 0)
	count := 0
	for len(s.bytes()) < readBufSize+100<<10 {
		s.epb(0, uint64(count), frame(1000, byte(count)), 1000)
		count++
	}
	if _, err := pw.Write(s.bytes()); err != nil { // fits in the pipe: does not block
		t.Fatal(err)
	}
	// The packets wholly inside the first readBufSize bytes.
	inFirst := 0
	epbSize := s.offs[3] - s.offs[2]
	for _, off := range s.offs[2:] {
		if off+epbSize <= readBufSize {
			inFirst++
		}
	}
	rd := NewReader(pr)
	pkts := make([]Packet, 1)
	for i := range inFirst {
		if n, err := rd.Read(pkts); n != 1 || err != nil {
			t.Fatalf("Read %d = %d, %v", i, n, err)
		}
		if i < inFirst-1 && rd.Drained() {
			t.Fatalf("Drained() true after packet %d with %d complete ones buffered", i, inFirst-1-i)
		}
	}
	if rd.Offset() != s.offs[2+inFirst] {
		t.Fatalf("Offset %d after %d packets, want %d", rd.Offset(), inFirst, s.offs[2+inFirst])
	}
	if rd.Drained() {
		t.Errorf("Drained() true after a full read while the pipe holds %d more bytes", len(s.bytes())-readBufSize)
	}
	pw.Close()
	rest := 0
	for {
		n, err := rd.Read(make([]Packet, 64))
		rest += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if inFirst+rest != count {
		t.Errorf("read %d+%d packets, wrote %d", inFirst, rest, count)
	}
	if !rd.Drained() {
		t.Errorf("Drained() false at EOF")
	}
}

// loopStream is an endless source: a header once, then body over and over. Read stops at the
// end of body, so every read ends on a record boundary.
type loopStream struct {
	head, body []byte
	off        int
}

func (l *loopStream) Read(p []byte) (int, error) {
	if l.head != nil {
		n := copy(p, l.head)
		l.head = l.head[n:]
		if len(l.head) == 0 {
			l.head = nil
		}
		return n, nil
	}
	n := copy(p, l.body[l.off:])
	l.off = (l.off + n) % len(l.body)
	return n, nil
}

// loopOf builds a loopStream of count packets of size bytes in the given format.
func loopOf(t testing.TB, format Format, count, size int) *loopStream {
	t.Helper()
	ifc := &Interface{Name: "eth0", LinkType: LinkEthernet}
	pkts := make([]Packet, count)
	for i := range pkts {
		pkts[i] = Packet{Data: frame(size, byte(i)), Timestamp: int64(i) * 1000, Interface: ifc}
	}
	b := encode(t, format, pkts)
	// The header is the SHB and IDB (pcapng) or the file header (pcap).
	head := 24
	if format == FormatPcapng {
		head = 28 + int(le.Uint32(b[28+4:]))
	}
	return &loopStream{head: b[:head], body: b[head:]}
}

func TestReadAllocs(t *testing.T) {
	for _, format := range []Format{FormatPcapng, FormatPcap} {
		t.Run(format.String(), func(t *testing.T) {
			rd := NewReader(loopOf(t, format, 100, 64))
			pkts := make([]Packet, 32)
			total := 0
			read := func() {
				n, err := rd.Read(pkts)
				if err != nil || n == 0 {
					t.Fatalf("Read = %d, %v", n, err)
				}
				total += n
			}
			for range 100 { // warm up: detection, interface table
				read()
			}
			if a := testing.AllocsPerRun(1000, read); a != 0 {
				t.Errorf("Reader.Read: %v allocations per call, want 0", a)
			}
			if total < 1000 {
				t.Errorf("read only %d packets", total)
			}
		})
	}
}

func BenchmarkRead64(b *testing.B) {
	for _, format := range []Format{FormatPcapng, FormatPcap} {
		b.Run(format.String(), func(b *testing.B) {
			rd := NewReader(loopOf(b, format, 1000, 64))
			pkts := make([]Packet, 256)
			b.SetBytes(64)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				n, err := rd.Read(pkts[:min(len(pkts), b.N-done)])
				if err != nil {
					b.Fatal(err)
				}
				done += n
			}
		})
	}
}

// TestReadSnapLenAcrossSections: the interface shared by two concatenated captures must keep
// a snap length that admits the packets of both; 0 (no limit) stays 0.
func TestReadSnapLenAcrossSections(t *testing.T) {
	a := newNG(le).shb().idb(LinkEthernet, 0, optName("eth0")).epb(0, 1, frame(1500, 1), 1500)
	b := newNG(le).shb().idb(LinkEthernet, 100, optName("eth0")).epb(0, 2, frame(100, 2), 100)
	c := newNG(le).shb().idb(LinkEthernet, 200, optName("eth1")).epb(0, 3, frame(150, 3), 150)
	d := newNG(le).shb().idb(LinkEthernet, 300, optName("eth1")).epb(0, 4, frame(300, 4), 300)
	stream := bytes.Join([][]byte{a.bytes(), b.bytes(), c.bytes(), d.bytes()}, nil)
	got, rd, err := readAllFrom(bytes.NewReader(stream), 64)
	if err != nil || len(got) != 4 {
		t.Fatalf("read %d packets, %v", len(got), err)
	}
	ifs := rd.Interfaces()
	if len(ifs) != 2 || ifs[0].SnapLen != 0 || ifs[1].SnapLen != 300 {
		t.Errorf("Interfaces() = %+v %+v, want eth0 snap 0 (no limit, it carried 1500 bytes) and eth1 snap 300", *ifs[0], *ifs[len(ifs)-1])
	}
	// What was read must be writable and readable again.
	pkts := make([]Packet, len(got))
	for i, p := range got {
		pkts[i] = Packet{Data: p.Data, Length: p.Length, Timestamp: p.Timestamp, Interface: p.iface}
	}
	back, _, err := readAllFrom(bytes.NewReader(encode(t, FormatPcapng, pkts)), 64)
	if err != nil || len(back) != 4 {
		t.Errorf("re-encoded stream: %d packets, %v", len(back), err)
	}
}
