package osinst

import (
	"encoding/binary"
	"slices"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
)

// fragTimeout is how long, in packet time, a datagram may wait for its fragments (Linux:
// net.ipv4.ipfrag_time, 30 s).
const fragTimeout = 30e9

// maxDatagram bounds a reassembled datagram.
const maxDatagram = 65535 + header.IPv6MinimumSize

type fragKey struct {
	dir      books.Dir
	v6       bool
	src, dst [16]byte
	id       uint32
	proto    uint8
}

type heldFrame struct {
	pkt framing.Packet // Data is the instance's copy
	l3  int
}

type piece struct{ off, end int }

// datagram is a datagram being reassembled: its frames as they came, and the fragments'
// payloads.
type datagram struct {
	key        fragKey
	first      int64 // timestamp of its first fragment
	frames     []heldFrame
	pieces     []piece
	payload    []byte // reassembled payload, grown as fragments arrive
	hdr        []byte // unfragmentable header of the first fragment
	next       uint8  // IPv6: the fragment header's next header
	total      int    // payload length, once the last fragment is seen; -1 before
	have       int
	firstFrame int    // index in frames of the offset-0 fragment
	datagram   []byte // the reassembled datagram, when complete
}

// reassembler holds fragments until their datagram is complete. It is bounded in datagrams.
type reassembler struct {
	max     int
	dgs     []*datagram // oldest first
	dropped []droppedDatagram
}

func newReassembler(max int) *reassembler { return &reassembler{max: max} }

// ipv6Fragment reports whether an IPv6 datagram carries a (non-atomic) fragment header.
func ipv6Fragment(b []byte) bool {
	_, fh, ok := ipv6FragHeader(b)
	if !ok || fh < 0 {
		return false
	}
	fo := binary.BigEndian.Uint16(b[fh+2:])
	return fo&0xfff9 != 0 // offset or M flag
}

// ipv6FragHeader walks the extension headers that may precede a fragment header (hop-by-hop,
// routing, destination options) and returns the offset of the byte holding the next-header
// value that names the fragment header, and the fragment header's offset (-1 if none).
func ipv6FragHeader(b []byte) (nhAt, fh int, ok bool) {
	nhAt, off := 6, header.IPv6MinimumSize
	for {
		switch b[nhAt] {
		case 0, 43, 60:
			if off+8 > len(b) {
				return 0, 0, false
			}
			nhAt, off = off, off+8*(int(b[off+1])+1)
			if off > len(b) {
				return 0, 0, false
			}
		case 44:
			if off+8 > len(b) {
				return 0, 0, false
			}
			return nhAt, off, true
		default:
			return nhAt, -1, true
		}
	}
}

// add files a fragment. It returns the datagram when this fragment completes it, nil while
// it is incomplete, or the reason+1 this fragment is dropped.
func (r *reassembler) add(dir books.Dir, p *framing.Packet, l3 int, ip []byte, v6 bool) (*datagram, books.Reason) {
	key := fragKey{dir: dir, v6: v6}
	var off, end int
	var more bool
	var hdr, payload []byte
	var next uint8
	if v6 {
		nhAt, fh, ok := ipv6FragHeader(ip)
		if !ok || fh < 0 {
			return nil, books.Malformed + 1
		}
		copy(key.src[:], ip[8:24])
		copy(key.dst[:], ip[24:40])
		fo := binary.BigEndian.Uint16(ip[fh+2:])
		key.id = binary.BigEndian.Uint32(ip[fh+4:])
		next = ip[fh]
		off, more = int(fo&0xfff8), fo&1 != 0
		hdr = slices.Clone(ip[:fh])
		hdr[nhAt] = next // the reassembled datagram has no fragment header
		payload = ip[fh+8:]
	} else {
		h := header.IPv4(ip)
		copy(key.src[:], ip[12:16])
		copy(key.dst[:], ip[16:20])
		key.id = uint32(h.ID())
		key.proto = h.Protocol()
		fo := binary.BigEndian.Uint16(ip[6:])
		off, more = int(fo&0x1fff)*8, fo&0x2000 != 0
		hl := int(h.HeaderLength())
		hdr, payload = ip[:hl], ip[hl:]
	}
	end = off + len(payload)
	// The whole datagram may not be longer than an IP datagram can be: IPv4 counts its
	// header in the 65535 bytes, IPv6 only what follows the fixed header.
	limit := maxDatagram - header.IPv6MinimumSize
	if v6 {
		limit = maxDatagram
	}
	if len(hdr)+end > limit || (more && len(payload)%8 != 0) || len(payload) == 0 {
		return nil, books.Malformed + 1
	}
	r.expire(p.Timestamp)
	dg := r.find(key)
	if dg == nil {
		if len(r.dgs) >= r.max {
			r.drop(r.dgs[0], books.Full)
		}
		dg = &datagram{key: key, first: p.Timestamp, total: -1, firstFrame: -1}
		r.dgs = append(r.dgs, dg)
	}
	if !more {
		// The last fragment: the datagram ends here, so nothing held may lie beyond.
		if (dg.total >= 0 && dg.total != end) || slices.ContainsFunc(dg.pieces, func(pc piece) bool { return pc.end > end }) {
			r.drop(dg, books.Malformed)
			return nil, books.Malformed + 1
		}
		dg.total = end
	}
	if dg.total >= 0 && end > dg.total {
		r.drop(dg, books.Malformed)
		return nil, books.Malformed + 1
	}
	for _, pc := range dg.pieces {
		if pc.off <= off && end <= pc.end {
			// It repeats (part of) a fragment held, as a duplicated frame does: Linux drops
			// it alone (IPFRAG_DUP) and the datagram goes on with what came first, which is
			// all that is passed on, so no receiver can put it together otherwise.
			return nil, books.Duplicate + 1
		}
	}
	for _, pc := range dg.pieces {
		if off < pc.end && pc.off < end {
			// Overlapping fragments are an attack on reassembly (RFC 5722): drop them all.
			r.drop(dg, books.Malformed)
			return nil, books.Malformed + 1
		}
	}
	data := slices.Clone(p.Data)
	held := heldFrame{pkt: *p, l3: l3}
	held.pkt.Data = data
	dg.frames = append(dg.frames, held)
	if off == 0 {
		dg.hdr = slices.Clone(hdr)
		dg.next = next
		dg.firstFrame = len(dg.frames) - 1
	}
	if len(dg.payload) < end {
		dg.payload = append(dg.payload, make([]byte, end-len(dg.payload))...)
	}
	copy(dg.payload[off:end], payload)
	dg.pieces = append(dg.pieces, piece{off, end})
	dg.have += end - off
	if dg.total < 0 || dg.have != dg.total || dg.hdr == nil {
		return nil, 0
	}
	r.remove(dg)
	dg.datagram = dg.build()
	return dg, 0
}

// build assembles the whole datagram: the first fragment's header, fixed up, and the payload.
func (dg *datagram) build() []byte {
	b := append(slices.Clip(dg.hdr), dg.payload...)
	if dg.key.v6 {
		binary.BigEndian.PutUint16(b[4:], uint16(len(b)-header.IPv6MinimumSize))
		return b
	}
	h := header.IPv4(b)
	h.SetTotalLength(uint16(len(b)))
	h.SetFlagsFragmentOffset(h.Flags()&^header.IPv4FlagMoreFragments, 0)
	h.SetChecksum(0)
	h.SetChecksum(^h.CalculateChecksum())
	return b
}

func (r *reassembler) find(k fragKey) *datagram {
	for _, dg := range r.dgs {
		if dg.key == k {
			return dg
		}
	}
	return nil
}

func (r *reassembler) remove(dg *datagram) {
	if i := slices.Index(r.dgs, dg); i >= 0 {
		r.dgs = slices.Delete(r.dgs, i, i+1)
	}
}

// drop discards a datagram; its frames are counted by the caller of flushDrops.
func (r *reassembler) drop(dg *datagram, why books.Reason) {
	r.remove(dg)
	r.dropped = append(r.dropped, droppedDatagram{dg, why})
}

// expire drops datagrams that have waited longer than fragTimeout in packet time.
func (r *reassembler) expire(ts int64) {
	for len(r.dgs) > 0 && ts-r.dgs[0].first > fragTimeout {
		r.drop(r.dgs[0], books.Malformed)
	}
}

type droppedDatagram struct {
	dg  *datagram
	why books.Reason
}

// dropAll drops every datagram still held, counting its frames for reason why.
func (r *reassembler) dropAll(in *Instance, why books.Reason) {
	for len(r.dgs) > 0 {
		r.drop(r.dgs[0], why)
	}
	r.count(in)
}

// count books the frames of dropped datagrams.
func (r *reassembler) count(in *Instance) {
	for _, d := range r.dropped {
		for _, f := range d.dg.frames {
			in.bk.Dir[d.dg.key.dir].Drop(d.why, 1, len(f.pkt.Data))
		}
	}
	clear(r.dropped)
	r.dropped = r.dropped[:0]
}
