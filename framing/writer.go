package framing

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// flushAt is the buffered size at which a Writer writes out without being asked: large
// enough that a busy chain moves many packets per syscall.
const flushAt = 128 << 10

// Writer writes packets as pcapng (one interface description per interface, nanosecond
// timestamps, epb_flags for known directions) or classic pcap with nanosecond magic.
// It buffers until Flush or until the buffer is large; it is safe for concurrent use, since a
// network stack sends from timer goroutines too.
type Writer struct {
	mu     sync.Mutex
	dst    io.Writer
	format Format
	buf    []byte
	err    error // sticky: after a failed write nothing more is written
	// held counts the packets (and their bytes) encoded in buf; lost those a failed write
	// threw away. Callers count a packet out when Write takes it; Lost lets them correct
	// that for what never reached dst.
	held, lost Tally

	headerDone bool
	ifaces     []*Interface // the interfaces written so far; index = pcapng interface id
	lastIface  *Interface
	lastID     uint32
	pcapLink   LinkType
	anon       Interface // stands for packets without an interface
}

// NewWriter returns a Writer of dst in the given format.
func NewWriter(dst io.Writer, format Format) *Writer {
	return &Writer{dst: dst, format: format, buf: make([]byte, 0, flushAt+MaxRecord+64),
		anon: Interface{LinkType: LinkEthernet}}
}

// Write encodes pkts into the buffer, writing out when it is large. A packet a Reader
// handed out whose block encoding would reproduce (only its frame's bytes changed, in
// place) is not encoded: its block is copied as it stands, and a long run of such blocks is
// written out at once from the Reader's buffer, with no copy. So Write keeps no reference
// to pkts when it returns. Packets longer than MaxRecord are an error, since no reader
// would accept them. On an error none of pkts is counted by Lost: the caller counts the
// whole batch as not written (though a write that failed part way may have delivered some
// of it).
func (w *Writer) Write(pkts []Packet) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if err := w.check(pkts); err != nil {
		return err
	}
	var mine Tally // this call's packets in buf
	var run passRun
	for i := range pkts {
		p := &pkts[i]
		if b := w.passable(p); b != nil {
			if !run.extend(b) {
				if err := w.endRun(&run, &mine); err != nil {
					return err
				}
				run.blocks = b
			}
			run.tally.Packets++
			run.tally.Bytes += len(p.Data)
			continue
		}
		if err := w.endRun(&run, &mine); err != nil {
			return err
		}
		w.encode(p)
		mine.Packets++
		mine.Bytes += len(p.Data)
		if len(w.buf) >= flushAt {
			if err := w.flushMine(&mine); err != nil {
				return err
			}
		}
	}
	if err := w.endRun(&run, &mine); err != nil {
		return err
	}
	w.held.Packets += mine.Packets
	w.held.Bytes += mine.Bytes
	return nil
}

// A passRun is consecutive blocks of a Reader's buffer that a Writer passes through as they
// stand, and the packets they hold.
type passRun struct {
	blocks []byte
	tally  Tally
}

// extend adds b to the run when b follows it in memory.
func (r *passRun) extend(b []byte) bool {
	n := len(r.blocks)
	if n == 0 || cap(r.blocks) <= n || &r.blocks[:n+1][n] != &b[0] {
		return false
	}
	r.blocks = r.blocks[:n+len(b)]
	return true
}

// minRun is the shortest run of passed-through blocks written straight from the input's
// buffer. Shorter runs are copied into the Writer's buffer, so small frames still go out
// in large writes, and frames passed through between frames encoded cost no write each.
const minRun = 64 << 10

// passable returns the block p was read from when writing that block as it stands is
// what encoding p would write: p's Data is still the block's (changed in place at most)
// and its timestamp, lengths, direction and interface (by this Writer's id) are those the
// block gives. The Reader hands out only blocks this Writer would write the same way
// otherwise (Packet.block). An interface whose description is not written yet is encoded.
func (w *Writer) passable(p *Packet) []byte {
	b := p.block
	if len(b) < 32 || len(p.Data) == 0 || &p.Data[0] != &b[28] || p.Interface == nil || w.format != FormatPcapng {
		return nil
	}
	le := binary.LittleEndian
	hdr := (*[28]byte)(b)
	if uint32(len(p.Data)) != le.Uint32(hdr[20:]) || uint32(p.Length) != le.Uint32(hdr[24:]) ||
		uint64(p.Timestamp) != uint64(le.Uint32(hdr[12:]))<<32|uint64(le.Uint32(hdr[16:])) {
		return nil
	}
	if id, ok := w.knownID(p.Interface); !ok || id != le.Uint32(hdr[8:]) {
		return nil
	}
	// The block's options are none, or the epb_flags of a direction (Reader.plainEPBs).
	if opts := len(b) - 32 - (len(p.Data)+3)&^3; (opts == 0) != (p.Direction == DirUnknown) ||
		(opts != 0 && le.Uint32(b[len(b)-12:]) != uint32(p.Direction)) {
		return nil
	}
	return b
}

// endRun ends a run of passed-through blocks: a short one is copied into the buffer, a
// long one written out after the buffer, straight from the input's.
func (w *Writer) endRun(r *passRun, mine *Tally) error {
	blocks, t := r.blocks, r.tally
	*r = passRun{}
	switch {
	case len(blocks) == 0:
		return nil
	case len(blocks) < minRun:
		w.buf = append(w.buf, blocks...)
		mine.Packets += t.Packets
		mine.Bytes += t.Bytes
		if len(w.buf) >= flushAt {
			return w.flushMine(mine)
		}
		return nil
	}
	if err := w.flushMine(mine); err != nil {
		return err
	}
	if _, err := w.dst.Write(blocks); err != nil {
		w.err = err // this call's packets are its caller's to count
		return err
	}
	return nil
}

// flushMine writes out the buffer, in which mine are the current Write's packets: once
// written, they are no longer the call's to count.
func (w *Writer) flushMine(mine *Tally) error {
	if err := w.flush(); err != nil {
		return err
	}
	*mine = Tally{}
	return nil
}

// check refuses a batch holding a packet no reader would accept, before any is encoded.
func (w *Writer) check(pkts []Packet) error {
	link, linkSet := w.pcapLink, w.headerDone
	for i := range pkts {
		p := &pkts[i]
		n := len(p.Data)
		if n == 0 {
			return fmt.Errorf("empty packet: no reader accepts a zero-length record")
		}
		if n > MaxRecord-64 {
			return fmt.Errorf("packet of %d bytes exceeds the stream's record limit %d", n, MaxRecord-64)
		}
		if w.format != FormatPcap {
			continue
		}
		l := w.anon.LinkType
		if p.Interface != nil {
			l = p.Interface.LinkType
		}
		if !linkSet {
			link, linkSet = l, true
		}
		if l != link {
			return fmt.Errorf("classic pcap holds one link type: packet of %s after %s (use pcapng)", l, link)
		}
	}
	return nil
}

// Flush writes out everything buffered, and the header if nothing was written yet, so an
// empty stream is still a valid one.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if !w.headerDone {
		w.header(w.anon.LinkType)
		if w.format == FormatPcapng {
			w.ifaceID(&w.anon) // libpcap refuses a pcapng without an interface description
		}
	}
	return w.flush()
}

// Buffered returns the number of bytes waiting for a flush.
func (w *Writer) Buffered() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.buf)
}

// Lost returns the packets (and their bytes) Write took that never reached the
// destination: those buffered when a write failed, and those still buffered.
func (w *Writer) Lost() Tally {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Tally{w.lost.Packets + w.held.Packets, w.lost.Bytes + w.held.Bytes}
}

// Tally is a number of packets and their bytes.
type Tally struct{ Packets, Bytes int }

func (w *Writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.dst.Write(w.buf)
	w.buf = w.buf[:0]
	if err != nil {
		w.err = err
		w.lost.Packets += w.held.Packets
		w.lost.Bytes += w.held.Bytes
	}
	w.held = Tally{}
	return err
}

func (w *Writer) header(link LinkType) {
	w.headerDone = true
	le := binary.LittleEndian
	if w.format == FormatPcap {
		w.pcapLink = link
		h := w.grow(24)
		le.PutUint32(h, magicPcapNano)
		le.PutUint16(h[4:], 2)
		le.PutUint16(h[6:], 4)
		le.PutUint32(h[8:], 0)
		le.PutUint32(h[12:], 0)
		le.PutUint32(h[16:], MaxRecord)
		le.PutUint32(h[20:], uint32(link))
		return
	}
	h := w.grow(28)
	le.PutUint32(h, blockSHB)
	le.PutUint32(h[4:], 28)
	le.PutUint32(h[8:], magicByteOrder)
	le.PutUint16(h[12:], 1)
	le.PutUint16(h[14:], 0)
	le.PutUint64(h[16:], ^uint64(0)) // section length unknown
	le.PutUint32(h[24:], 28)
}

// grow extends the buffer by n bytes and returns them.
func (w *Writer) grow(n int) []byte {
	l := len(w.buf)
	if l+n > cap(w.buf) {
		w.buf = append(w.buf, make([]byte, n)...)
	}
	w.buf = w.buf[:l+n]
	return w.buf[l : l+n]
}

// encode appends p's record to the buffer; check has accepted p.
func (w *Writer) encode(p *Packet) {
	ifc := p.Interface
	if ifc == nil {
		ifc = &w.anon
	}
	n := len(p.Data)
	if !w.headerDone {
		w.header(ifc.LinkType)
	}
	le := binary.LittleEndian
	orig := max(p.Length, n)
	if w.format == FormatPcap {
		h := w.grow(16 + n)
		le.PutUint32(h, uint32(p.Timestamp/1e9))
		le.PutUint32(h[4:], uint32(p.Timestamp%1e9))
		le.PutUint32(h[8:], uint32(n))
		le.PutUint32(h[12:], uint32(orig))
		copy(h[16:], p.Data)
		return
	}
	id := w.ifaceID(ifc)
	data := (n + 3) &^ 3 // the packet padded to 32 bits
	size := 32 + data
	if p.Direction != DirUnknown {
		size += 12
	}
	h := w.grow(size)
	// Fixed-size views: one bounds check each, not one per field (this runs per packet).
	hdr := (*[28]byte)(h)
	le.PutUint32(hdr[0:], blockEPB)
	le.PutUint32(hdr[4:], uint32(size))
	le.PutUint32(hdr[8:], id)
	ts := uint64(p.Timestamp)
	le.PutUint32(hdr[12:], uint32(ts>>32))
	le.PutUint32(hdr[16:], uint32(ts))
	le.PutUint32(hdr[20:], uint32(n))
	le.PutUint32(hdr[24:], uint32(orig))
	le.PutUint32(h[28+data-4:], 0) // the padding: the packet's copy overwrites the rest
	copy(h[28:], p.Data)
	o := h[28+data:]
	if p.Direction != DirUnknown {
		opt := (*[12]byte)(o)
		le.PutUint32(opt[0:], 2<<0|4<<16) // epb_flags, 4 bytes
		le.PutUint32(opt[4:], uint32(p.Direction))
		le.PutUint32(opt[8:], 0) // opt_endofopt
		o = o[12:]
	}
	le.PutUint32(o, uint32(size))
}

// ifaceID returns the pcapng interface id for ifc, writing its description on first use.
func (w *Writer) ifaceID(ifc *Interface) uint32 {
	if id, ok := w.knownID(ifc); ok {
		return id
	}
	id := uint32(len(w.ifaces))
	w.ifaces = append(w.ifaces, ifc)
	w.idb(ifc)
	w.lastIface, w.lastID = ifc, id
	return id
}

// knownID returns the pcapng interface id of ifc if its description has been written.
func (w *Writer) knownID(ifc *Interface) (uint32, bool) {
	if ifc == w.lastIface {
		return w.lastID, true
	}
	for i, known := range w.ifaces {
		// Unnamed interfaces are told apart by pointer only: mergecap of two unnamed
		// captures must stay two interfaces.
		if known == ifc || (ifc.Name != "" && known.Name == ifc.Name && known.LinkType == ifc.LinkType) {
			w.lastIface, w.lastID = ifc, uint32(i)
			return uint32(i), true
		}
	}
	return 0, false
}

func (w *Writer) idb(ifc *Interface) {
	le := binary.LittleEndian
	name := ifc.Name
	if len(name) > 0xffff {
		name = name[:0xffff]
	}
	namePad := (4 - len(name)&3) & 3
	size := 16 + 8 + 4 // header + if_tsresol option + end of options
	if name != "" {
		size += 4 + len(name) + namePad
	}
	size += 4 // trailing length
	h := w.grow(size)
	le.PutUint32(h, blockIDB)
	le.PutUint32(h[4:], uint32(size))
	le.PutUint16(h[8:], uint16(ifc.LinkType))
	le.PutUint16(h[10:], 0)
	// No snap length: a stage may forward a frame longer than its source captured (a
	// reassembled datagram), and a reader must not refuse it.
	le.PutUint32(h[12:], 0)
	o := h[16:]
	if name != "" {
		le.PutUint16(o, 2) // if_name
		le.PutUint16(o[2:], uint16(len(name)))
		copy(o[4:], name)
		clear(o[4+len(name) : 4+len(name)+namePad])
		o = o[4+len(name)+namePad:]
	}
	le.PutUint16(o, 9) // if_tsresol
	le.PutUint16(o[2:], 1)
	o[4], o[5], o[6], o[7] = 9, 0, 0, 0 // nanoseconds
	le.PutUint32(o[8:], 0)              // opt_endofopt
	le.PutUint32(o[12:], uint32(size))
}
