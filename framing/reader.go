package framing

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Format is an encoding of the stream.
type Format uint8

// Formats a Reader detects and a Writer writes.
const (
	FormatPcapng Format = iota
	FormatPcap
)

func (f Format) String() string {
	if f == FormatPcap {
		return "pcap"
	}
	return "pcapng"
}

// ParseFormat parses "pcapng" or "pcap".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "pcapng", "":
		return FormatPcapng, nil
	case "pcap":
		return FormatPcap, nil
	}
	return 0, fmt.Errorf("unknown format %q (want pcapng or pcap)", s)
}

const (
	readBufSize = 2 * MaxRecord

	blockSHB = 0x0A0D0D0A
	blockIDB = 1
	blockOPB = 2 // obsolete packet block
	blockSPB = 3
	blockEPB = 6

	magicPcapMicro = 0xa1b2c3d4
	magicPcapNano  = 0xa1b23c4d
	magicByteOrder = 0x1A2B3C4D
)

// sectionIface is an interface as one pcapng section declares it: the shared *Interface and
// how that section's timestamps convert to nanoseconds.
type sectionIface struct {
	iface    *Interface
	mul, div uint64 // decimal resolution: ns = ts*mul/div
	shift    uint   // binary resolution 2^-shift, used when mul == 0
	offsetNS int64
	// exactNanos: timestamps are nanoseconds as they stand, what a Writer declares, so
	// this interface's blocks can be passed through.
	exactNanos bool
}

func (s *sectionIface) nanos(ts uint64) int64 {
	var ns uint64
	switch {
	case s.mul == 0:
		hi, lo := bits.Mul64(ts, 1e9)
		if s.shift == 0 {
			ns = lo
		} else {
			ns = hi<<(64-s.shift) | lo>>s.shift
		}
	case s.div == 1:
		ns = ts * s.mul
	default:
		ns = ts / s.div
	}
	return int64(ns) + s.offsetNS
}

// Reader reads packets from a pcapng or classic pcap stream, detected from its first bytes.
// It is not safe for concurrent use.
type Reader struct {
	src  io.Reader
	fd   int // for a zero-timeout poll when the last read filled the buffer; -1 if none
	buf  []byte
	r, w int   // unread bytes are buf[r:w]
	base int64 // stream offset of buf[0]

	eof       bool
	readErr   error // a read error that came with data, returned once that data is parsed
	shortRead bool  // the last read returned less than it asked for: the input was drained
	started   bool
	err       error

	format  Format
	order   byteOrder
	snap    uint32
	nanoRes bool // classic pcap with nanosecond magic

	section []sectionIface // current pcapng section's interfaces, by interface id
	ifaces  []*Interface   // every interface seen, in order of first appearance
	packets int64

	generalOnly bool // tests: read every block the general way, never through plainEPBs
}

// NewReader returns a Reader of src. The format is detected on the first Read.
func NewReader(src io.Reader) *Reader {
	rd := &Reader{src: src, fd: -1, buf: make([]byte, readBufSize)}
	if f, ok := src.(*os.File); ok {
		rd.fd = int(f.Fd())
	}
	return rd
}

// Format reports the detected format; valid after the first successful Read.
func (rd *Reader) Format() Format { return rd.format }

// Interfaces returns every interface the stream has declared so far.
func (rd *Reader) Interfaces() []*Interface { return rd.ifaces }

// Packets returns how many packets have been read.
func (rd *Reader) Packets() int64 { return rd.packets }

// Offset returns the stream offset of the next unread byte.
func (rd *Reader) Offset() int64 { return rd.base + int64(rd.r) }

// Read fills pkts with the next packets and returns how many it filled. It blocks only until
// at least one packet is available, then returns what is already buffered, so a caller that
// writes after each Read adds no latency. The packets' Data alias the Reader's buffer and are
// valid until the next Read. At the end of the stream Read returns 0, io.EOF; a malformed
// stream gives a *FormatError after the packets before it have been returned.
func (rd *Reader) Read(pkts []Packet) (int, error) {
	n := 0
	for n < len(pkts) {
		if rd.err != nil {
			break
		}
		if rd.format == FormatPcapng && !rd.order.big && !rd.generalOnly {
			if k := rd.plainEPBs(pkts[n:]); k > 0 {
				n += k
				rd.packets += int64(k)
				continue
			}
		}
		ok, err := rd.next(&pkts[n])
		if err != nil {
			rd.err = err
			break
		}
		if ok {
			n++
			rd.packets++ // before the next record, so an error names the packets before it
			continue
		}
		if n > 0 {
			return n, nil // never move the buffer under packets already handed out
		}
		if err := rd.fill(); err != nil {
			rd.err = err
			break
		}
	}
	if n > 0 {
		return n, nil
	}
	return 0, rd.err
}

// Drained reports whether the input had nothing more to read at the last look: no complete
// record is buffered and the last read came back short. Writers flush when it is true, so
// batches are full under load and an idle chain adds no latency.
func (rd *Reader) Drained() bool {
	if rd.err != nil {
		return true
	}
	if rd.complete() {
		return false
	}
	if rd.eof {
		return true
	}
	if rd.shortRead || rd.fd < 0 {
		return true
	}
	fds := []unix.PollFd{{Fd: int32(rd.fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err != nil || n == 0
}

// complete reports whether a whole record is buffered.
func (rd *Reader) complete() bool {
	avail := rd.w - rd.r
	if !rd.started || !rd.order.known {
		return false
	}
	if rd.format == FormatPcap {
		if avail < 16 {
			return false
		}
		return avail >= 16+int(rd.order.Uint32(rd.buf[rd.r+8:]))
	}
	if avail < 12 {
		return false
	}
	b := rd.buf[rd.r:]
	order := rd.order
	if binary.LittleEndian.Uint32(b) == blockSHB {
		order = shbOrder(b)
		if !order.known {
			return true // an error is complete enough to report
		}
	}
	return avail >= int(order.Uint32(b[4:]))
}

// fill makes room and reads more input.
func (rd *Reader) fill() error {
	if rd.eof {
		return rd.atEOF()
	}
	if rd.readErr != nil {
		return rd.readErr
	}
	if rd.r > 0 {
		copy(rd.buf, rd.buf[rd.r:rd.w])
		rd.base += int64(rd.r)
		rd.w -= rd.r
		rd.r = 0
	}
	want := len(rd.buf) - rd.w
	n, err := rd.src.Read(rd.buf[rd.w:])
	rd.w += n
	rd.shortRead = n < want
	if err == io.EOF || (n == 0 && err == nil) {
		if err == io.EOF {
			rd.eof = true
			rd.shortRead = true
		}
		if n == 0 && rd.eof {
			return rd.atEOF()
		}
		return nil
	}
	if err != nil {
		rd.readErr = fmt.Errorf("reading stream at byte offset %d: %w", rd.base+int64(rd.w), err)
		if n > 0 {
			return nil // parse what arrived with the error first
		}
		return rd.readErr
	}
	return nil
}

func (rd *Reader) atEOF() error {
	avail := rd.w - rd.r
	switch {
	case rd.base == 0 && rd.w == 0:
		return ErrEmptyStream
	case avail == 0 && rd.started:
		return io.EOF
	case !rd.started:
		return rd.truncated("header", avail)
	}
	return rd.truncated("record", avail)
}

func (rd *Reader) truncated(what string, have int) error {
	return &FormatError{Offset: rd.Offset(), Packet: rd.packets,
		Msg: fmt.Sprintf("truncated %s: stream ends after %d bytes of it", what, have), Err: io.ErrUnexpectedEOF}
}

func (rd *Reader) fail(off int, format string, args ...any) error {
	return &FormatError{Offset: rd.base + int64(off), Packet: rd.packets, Msg: fmt.Sprintf(format, args...)}
}

// next parses the next packet out of the buffer. It returns false with no error when the
// buffer does not hold a whole record.
func (rd *Reader) next(p *Packet) (bool, error) {
	if !rd.started {
		ok, err := rd.detect()
		if !ok || err != nil {
			return false, err
		}
	}
	if rd.format == FormatPcap {
		return rd.nextPcap(p)
	}
	return rd.nextPcapng(p)
}

func (rd *Reader) detect() (bool, error) {
	if rd.w-rd.r < 4 {
		return false, nil
	}
	m := binary.LittleEndian.Uint32(rd.buf[rd.r:])
	switch {
	case m == blockSHB:
		rd.format = FormatPcapng
		rd.started = true // the SHB itself is parsed as a block
		return true, nil
	case m == magicPcapMicro || m == magicPcapNano:
		rd.order = byteOrder{known: true}
	case bits.ReverseBytes32(m) == magicPcapMicro || bits.ReverseBytes32(m) == magicPcapNano:
		rd.order = byteOrder{known: true, big: true}
	default:
		return false, rd.fail(rd.r, "bad magic 0x%08x: not a pcap or pcapng stream (hint: stages read what tcpdump -w - writes)", bits.ReverseBytes32(m))
	}
	if rd.w-rd.r < 24 {
		return false, nil
	}
	h := rd.buf[rd.r : rd.r+24]
	rd.format = FormatPcap
	rd.nanoRes = rd.order.Uint32(h) == magicPcapNano
	if major := rd.order.Uint16(h[4:]); major != 2 {
		return false, rd.fail(rd.r, "unsupported pcap version %d.%d", major, rd.order.Uint16(h[6:]))
	}
	rd.snap = rd.order.Uint32(h[16:])
	link := LinkType(rd.order.Uint32(h[20:]) & 0xffff)
	iface := &Interface{LinkType: link, SnapLen: rd.snap}
	rd.ifaces = append(rd.ifaces, iface)
	rd.section = append(rd.section[:0], sectionIface{iface: iface})
	rd.r += 24
	rd.started = true
	return true, nil
}

func (rd *Reader) nextPcap(p *Packet) (bool, error) {
	if rd.w-rd.r < 16 {
		return false, nil
	}
	h := rd.buf[rd.r : rd.r+16]
	caplen := rd.order.Uint32(h[8:])
	switch {
	case caplen > MaxRecord:
		return false, rd.fail(rd.r, "record length %d exceeds the limit of %d", caplen, MaxRecord)
	case caplen == 0:
		return false, rd.fail(rd.r, "zero-length record")
	case rd.snap != 0 && caplen > rd.snap:
		return false, rd.fail(rd.r, "record length %d exceeds the snap length %d", caplen, rd.snap)
	}
	if rd.w-rd.r < 16+int(caplen) {
		return false, nil
	}
	frac := int64(rd.order.Uint32(h[4:]))
	if !rd.nanoRes {
		frac *= 1000
	}
	p.Timestamp = int64(rd.order.Uint32(h))*1e9 + frac
	p.Length = max(int(rd.order.Uint32(h[12:])), int(caplen))
	p.Data = rd.buf[rd.r+16 : rd.r+16+int(caplen) : rd.r+16+int(caplen)]
	p.Interface = rd.section[0].iface
	p.Direction = DirUnknown
	rd.r += 16 + int(caplen)
	return true, nil
}

// shbOrder returns the byte order a section header block declares, not known if its magic
// is bad.
func shbOrder(b []byte) byteOrder {
	switch binary.LittleEndian.Uint32(b[8:]) {
	case magicByteOrder:
		return byteOrder{known: true}
	case bits.ReverseBytes32(magicByteOrder):
		return byteOrder{known: true, big: true}
	}
	return byteOrder{}
}

// byteOrder is the byte order of a stream or section. It is a value, not a
// binary.ByteOrder: those methods are calls through an interface, several per packet,
// where these inline to a load and a branch the CPU predicts.
type byteOrder struct {
	known bool // a header has declared it
	big   bool
}

func (o byteOrder) Uint16(b []byte) uint16 {
	if o.big {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (o byteOrder) Uint32(b []byte) uint32 {
	if o.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

func (o byteOrder) Uint64(b []byte) uint64 {
	if o.big {
		return binary.BigEndian.Uint64(b)
	}
	return binary.LittleEndian.Uint64(b)
}

func (rd *Reader) nextPcapng(p *Packet) (bool, error) {
	for {
		avail := rd.w - rd.r
		if avail < 12 {
			return false, nil
		}
		b := rd.buf[rd.r:rd.w]
		btype := binary.LittleEndian.Uint32(b)
		if btype == blockSHB {
			order := shbOrder(b)
			if !order.known {
				return false, rd.fail(rd.r, "bad section header byte-order magic 0x%08x", binary.BigEndian.Uint32(b[8:]))
			}
			rd.order = order
		} else {
			btype = rd.order.Uint32(b)
		}
		blen := rd.order.Uint32(b[4:])
		switch {
		case blen > MaxRecord:
			return false, rd.fail(rd.r, "block length %d exceeds the limit of %d", blen, MaxRecord)
		case blen < 12 || blen%4 != 0:
			return false, rd.fail(rd.r, "bad block length %d (block type 0x%x)", blen, btype)
		}
		if avail < int(blen) {
			return false, nil
		}
		b = b[:blen]
		if trail := rd.order.Uint32(b[blen-4:]); trail != blen {
			return false, rd.fail(rd.r, "block length %d does not match its trailing copy %d", blen, trail)
		}
		var ok bool
		var err error
		switch btype {
		case blockEPB:
			ok, err = rd.epb(p, b)
		case blockSPB:
			ok, err = rd.spb(p, b)
		case blockOPB:
			ok, err = rd.opb(p, b)
		case blockIDB:
			err = rd.idb(b)
		case blockSHB:
			err = rd.shb(b)
		}
		if err != nil {
			return false, err
		}
		rd.r += int(blen)
		if ok {
			return true, nil
		}
	}
}

func (rd *Reader) shb(b []byte) error {
	if len(b) < 28 {
		return rd.fail(rd.r, "section header block too short (%d bytes)", len(b))
	}
	if major := rd.order.Uint16(b[12:]); major != 1 {
		return rd.fail(rd.r, "unsupported pcapng version %d.%d", major, rd.order.Uint16(b[14:]))
	}
	rd.section = rd.section[:0]
	return nil
}

func (rd *Reader) idb(b []byte) error {
	if len(b) < 20 {
		return rd.fail(rd.r, "interface description block too short (%d bytes)", len(b))
	}
	if !rd.order.known {
		return rd.fail(rd.r, "interface description before any section header")
	}
	link := LinkType(rd.order.Uint16(b[8:]))
	snap := rd.order.Uint32(b[12:])
	si := sectionIface{mul: 1000, div: 1} // default resolution: microseconds
	var name string
	err := rd.options(b[16:len(b)-4], func(code uint16, val []byte) error {
		switch code {
		case 2: // if_name
			name = string(val)
		case 9: // if_tsresol
			if len(val) < 1 {
				return rd.fail(rd.r, "empty if_tsresol option")
			}
			v := val[0]
			switch {
			case v&0x80 != 0:
				si.mul, si.shift = 0, uint(v&0x7f)
				if si.shift > 63 {
					return rd.fail(rd.r, "if_tsresol 2^-%d out of range", si.shift)
				}
			case v <= 9:
				si.mul, si.div = pow10(9-uint(v)), 1
			case v <= 19:
				si.mul, si.div = 1, pow10(uint(v)-9)
			default:
				return rd.fail(rd.r, "if_tsresol 10^-%d out of range", v)
			}
		case 14: // if_tsoffset, seconds
			if len(val) < 8 {
				return rd.fail(rd.r, "short if_tsoffset option")
			}
			si.offsetNS = int64(rd.order.Uint64(val)) * 1e9
		}
		return nil
	})
	if err != nil {
		return err
	}
	si.iface = rd.intern(name, link, snap)
	si.exactNanos = si.mul == 1 && si.div == 1 && si.offsetNS == 0
	rd.section = append(rd.section, si)
	return nil
}

// intern returns the interface seen before with this name and link type that the current
// section has not declared yet, or a new one: concatenated captures of one interface share it.
func (rd *Reader) intern(name string, link LinkType, snap uint32) *Interface {
next:
	for _, ifc := range rd.ifaces {
		if ifc.Name != name || ifc.LinkType != link {
			continue
		}
		for _, s := range rd.section {
			if s.iface == ifc {
				continue next
			}
		}
		if ifc.SnapLen != 0 && (snap == 0 || snap > ifc.SnapLen) {
			ifc.SnapLen = snap
		}
		return ifc
	}
	ifc := &Interface{Name: name, LinkType: link, SnapLen: snap, Turnaround: strings.HasPrefix(name, TurnaroundPrefix)}
	rd.ifaces = append(rd.ifaces, ifc)
	return ifc
}

func pow10(n uint) uint64 {
	v := uint64(1)
	for range n {
		v *= 10
	}
	return v
}

// options walks a pcapng option list; each value is passed without its padding.
func (rd *Reader) options(b []byte, f func(code uint16, val []byte) error) error {
	for {
		code, val, rest, err := rd.option(b)
		if code == 0 || err != nil {
			return err
		}
		if err := f(code, val); err != nil {
			return err
		}
		b = rest
	}
}

// option splits the first option off a pcapng option list: its code, its value without
// padding, and the options after it. Code 0 (opt_endofopt, or no room for another) ends
// the list.
func (rd *Reader) option(b []byte) (code uint16, val, rest []byte, err error) {
	if len(b) < 4 {
		return 0, nil, nil, nil
	}
	code, n := rd.order.Uint16(b), int(rd.order.Uint16(b[2:]))
	if code == 0 {
		return 0, nil, nil, nil
	}
	if 4+n > len(b) {
		return 0, nil, nil, rd.fail(rd.r, "option %d length %d overruns its block", code, n)
	}
	return code, b[4 : 4+n], b[min(len(b), 4+(n+3)&^3):], nil
}

func (rd *Reader) packetIface(id uint32) (*sectionIface, error) {
	if int(id) >= len(rd.section) {
		return nil, rd.fail(rd.r, "packet on interface %d, but the section declares %d interface(s)", id, len(rd.section))
	}
	return &rd.section[id], nil
}

// lenOK reports whether a captured length is one a packet block may hold: not zero,
// within the room its block has, within the interface's snap length (0: none).
func lenOK(caplen uint32, room int, snap uint32) bool {
	return caplen != 0 && int64(caplen) <= int64(room) && (snap == 0 || caplen <= snap)
}

// checkLen says why lenOK refuses a captured length, or nil.
func (rd *Reader) checkLen(caplen uint32, room int, snap uint32) error {
	switch {
	case caplen == 0:
		return rd.fail(rd.r, "zero-length packet")
	case int64(caplen) > int64(room):
		return rd.fail(rd.r, "captured length %d overruns its block (room for %d)", caplen, room)
	case snap != 0 && caplen > snap:
		return rd.fail(rd.r, "captured length %d exceeds the snap length %d", caplen, snap)
	}
	return nil
}

func (rd *Reader) epb(p *Packet, b []byte) (bool, error) {
	// Every packet comes this way: the checks are inline, their messages out of line.
	if len(b) < 32 {
		return false, rd.fail(rd.r, "enhanced packet block too short (%d bytes)", len(b))
	}
	id := rd.order.Uint32(b[8:])
	if uint64(id) >= uint64(len(rd.section)) {
		_, err := rd.packetIface(id)
		return false, err
	}
	si := &rd.section[id]
	caplen := rd.order.Uint32(b[20:])
	if !lenOK(caplen, len(b)-32, si.iface.SnapLen) {
		return false, rd.checkLen(caplen, len(b)-32, si.iface.SnapLen)
	}
	end := 28 + int(caplen)
	ts := uint64(rd.order.Uint32(b[12:]))<<32 | uint64(rd.order.Uint32(b[16:]))
	p.Timestamp = si.nanos(ts)
	p.Length = max(int(rd.order.Uint32(b[24:])), int(caplen))
	p.Data = b[28:end:end]
	p.Interface = si.iface
	p.Direction = DirUnknown
	p.block = nil // only plainEPBs decides that a block may pass through as it stands
	if opts := b[min(len(b)-4, (end+3)&^3) : len(b)-4]; len(opts) >= 4 {
		flags, err := rd.epbFlags(opts)
		if err != nil {
			return false, err
		}
		p.Direction = Direction(flags & 3)
	}
	return true, nil
}

// plainEPBs reads the blocks a Writer writes, one after another, into pkts: little-endian
// enhanced packet blocks of a nanosecond interface with no option but the direction. They
// are nearly every block of a chain's stream, so they are read here with the fewest checks
// that give epb's result, and marked as blocks a Writer may pass through as they stand
// (Packet.block); a block epb reads (the first after an interface description, say) is
// encoded again, which costs a little and changes nothing. It stops at the first block of any other kind, or not whole in
// the buffer, or with anything wrong, and leaves it to next (which says what is wrong).
func (rd *Reader) plainEPBs(pkts []Packet) int {
	le := binary.LittleEndian
	n := 0
	for n < len(pkts) {
		b := rd.buf[rd.r:rd.w]
		if len(b) < 32 {
			break
		}
		hdr := (*[28]byte)(b)
		blen := le.Uint32(hdr[4:])
		id := le.Uint32(hdr[8:])
		caplen := le.Uint32(hdr[20:])
		if le.Uint32(hdr[0:]) != blockEPB || blen > uint32(len(b)) || blen > MaxRecord || blen%4 != 0 || uint64(id) >= uint64(len(rd.section)) {
			break
		}
		end := 28 + int(caplen)
		data := (int(caplen) + 3) &^ 3
		opts := int(blen) - 32 - data // 0, or 12: epb_flags and the end of options
		si := &rd.section[id]
		if caplen == 0 || opts < 0 || (opts != 0 && opts != 12) || !si.exactNanos || le.Uint32(b[blen-4:]) != blen ||
			(si.iface.SnapLen != 0 && caplen > si.iface.SnapLen) || le.Uint32(hdr[24:]) < caplen || !zeroPad(b[end:28+data]) {
			break
		}
		dir := DirUnknown
		if opts != 0 {
			o := (*[12]byte)(b[28+data:])
			flags := le.Uint32(o[4:])
			if le.Uint32(o[0:]) != 2|4<<16 || flags&^3 != 0 || flags == 0 || le.Uint32(o[8:]) != 0 {
				break
			}
			dir = Direction(flags)
		}
		p := &pkts[n]
		p.Data = b[28:end:end]
		p.Length = int(le.Uint32(hdr[24:]))
		p.Timestamp = int64(uint64(le.Uint32(hdr[12:]))<<32 | uint64(le.Uint32(hdr[16:])))
		p.Interface = si.iface
		p.Direction = dir
		p.block = b[:blen]
		rd.r += int(blen)
		n++
	}
	return n
}

// zeroPad reports whether a packet's padding to 32 bits is zero, as a Writer writes it.
func zeroPad(pad []byte) bool {
	for _, c := range pad {
		if c != 0 {
			return false
		}
	}
	return true
}

// epbFlags returns the epb_flags option of an enhanced packet block's options, 0 if none.
// It runs for every packet, so it walks them itself rather than through a callback.
func (rd *Reader) epbFlags(b []byte) (uint32, error) {
	// As stdpkt, tcpdump and tshark write them: epb_flags, then the end of the options.
	if len(b) >= 8 && rd.order.Uint16(b) == 2 && rd.order.Uint16(b[2:]) == 4 && (len(b) < 12 || rd.order.Uint16(b[8:]) == 0) {
		return rd.order.Uint32(b[4:]), nil
	}
	var flags uint32
	for {
		code, val, rest, err := rd.option(b)
		if code == 0 || err != nil {
			return flags, err
		}
		if code == 2 && len(val) == 4 {
			flags = rd.order.Uint32(val)
		}
		b = rest
	}
}

func (rd *Reader) spb(p *Packet, b []byte) (bool, error) {
	if len(b) < 16 {
		return false, rd.fail(rd.r, "simple packet block too short (%d bytes)", len(b))
	}
	si, err := rd.packetIface(0)
	if err != nil {
		return false, err
	}
	orig := rd.order.Uint32(b[8:])
	caplen := min(orig, uint32(len(b)-16))
	if si.iface.SnapLen != 0 {
		caplen = min(caplen, si.iface.SnapLen)
	}
	if err := rd.checkLen(caplen, len(b)-16, 0); err != nil {
		return false, err
	}
	p.Data = b[12 : 12+caplen : 12+caplen]
	p.Length = int(orig)
	p.Timestamp = 0
	p.Interface = si.iface
	p.Direction = DirUnknown
	return true, nil
}

func (rd *Reader) opb(p *Packet, b []byte) (bool, error) {
	if len(b) < 32 {
		return false, rd.fail(rd.r, "packet block too short (%d bytes)", len(b))
	}
	si, err := rd.packetIface(uint32(rd.order.Uint16(b[8:])))
	if err != nil {
		return false, err
	}
	caplen := rd.order.Uint32(b[20:])
	if err := rd.checkLen(caplen, len(b)-32, si.iface.SnapLen); err != nil {
		return false, err
	}
	ts := uint64(rd.order.Uint32(b[12:]))<<32 | uint64(rd.order.Uint32(b[16:]))
	p.Timestamp = si.nanos(ts)
	p.Length = max(int(rd.order.Uint32(b[24:])), int(caplen))
	p.Data = b[28 : 28+caplen : 28+caplen]
	p.Interface = si.iface
	p.Direction = DirUnknown
	return true, nil
}
