package gen

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"

	"github.com/stdpkt/stdpkt/csum"
	"github.com/stdpkt/stdpkt/framing"
)

// MACs of the generated hosts: locally administered, so they clash with no real card.
var (
	clientMAC = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	serverMAC = [6]byte{0x02, 0, 0, 0, 0, 0x02}
)

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpPSH = 0x08
	tcpACK = 0x10
)

// Generator makes the frames of a Spec, a batch at a time, without allocating.
type Generator struct {
	spec      Spec
	west      *framing.Interface // client to server frames enter the chain from the west
	east      *framing.Interface // server to client frames (handshake replies) from the east
	slab      []byte
	rnd       *rand.Rand
	made      int
	flow      int
	firstLap  bool
	ipID      uint16
	srcHosts  uint64
	clientSeq []uint32 // next sequence number per flow (tcp), or echo sequence (icmp)
	serverSeq []uint32
	steps     [3]pending // the frames of the current visit to a flow: a handshake or one data frame
	step      int        // next of steps to emit
	nsteps    int
	proto     uint8 // IP protocol number
}

type pending struct {
	flags   uint8
	reverse bool
}

// maxFrame bounds one frame in the generator's slab.
const maxFrame = 9018

// New returns a generator of spec.
func New(spec Spec) *Generator {
	g := &Generator{
		spec:     spec,
		west:     &framing.Interface{Name: "west", LinkType: framing.LinkEthernet},
		east:     &framing.Interface{Name: "east", LinkType: framing.LinkEthernet},
		rnd:      rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x9e3779b97f4a7c15)),
		firstLap: true,
		proto:    map[string]uint8{"udp": 17, "tcp": 6, "icmp": 1}[spec.Proto],
	}
	if spec.IPv6 && spec.Proto == "icmp" {
		g.proto = 58
	}
	bits := spec.Src.Addr().BitLen() - spec.Src.Bits()
	g.srcHosts = 1
	if bits >= 2 {
		g.srcHosts = uint64(1)<<min(bits, 16) - 2 // skip the network and broadcast addresses
	}
	if spec.Proto != "udp" {
		g.clientSeq = make([]uint32, spec.Flows)
		g.serverSeq = make([]uint32, spec.Flows)
		for i := range g.clientSeq {
			if spec.Proto == "tcp" {
				g.clientSeq[i] = g.rnd.Uint32()
				g.serverSeq[i] = g.rnd.Uint32()
			}
		}
	}
	return g
}

// Remaining returns how many frames are still to come.
func (g *Generator) Remaining() int { return g.spec.Count - g.made }

// Next fills pkts with the next frames and returns how many; 0 when the count is reached.
// The frames alias the Generator's buffer until the next call; their Timestamp is zero.
func (g *Generator) Next(pkts []framing.Packet) int {
	if len(g.slab) < len(pkts)*maxFrame {
		g.slab = make([]byte, len(pkts)*maxFrame)
	}
	n := 0
	for n < len(pkts) && g.made < g.spec.Count {
		buf := g.slab[n*maxFrame : (n+1)*maxFrame]
		size, reverse := g.frame(buf)
		p := &pkts[n]
		p.Data = buf[:size:size]
		p.Length = size
		p.Timestamp = 0
		p.Interface, p.Direction = g.west, framing.DirInbound
		if reverse {
			p.Interface = g.east
		}
		n++
		g.made++
	}
	return n
}

func (g *Generator) size() int {
	sizes := g.spec.Sizes
	if len(sizes) == 1 {
		return sizes[0]
	}
	return sizes[g.rnd.IntN(len(sizes))]
}

// frame writes the next frame into buf and returns its size and whether it travels from
// the server back to the client.
func (g *Generator) frame(buf []byte) (int, bool) {
	if g.step == g.nsteps {
		g.step = 0
		if g.spec.Handshake && g.firstLap {
			g.steps, g.nsteps = [3]pending{{tcpSYN, false}, {tcpSYN | tcpACK, true}, {tcpACK, false}}, 3
		} else {
			g.steps[0], g.nsteps = pending{tcpPSH | tcpACK, false}, 1
		}
	}
	step := g.steps[g.step]
	g.step++
	flow := g.flow
	if g.step == g.nsteps {
		g.flow++
		if g.flow == g.spec.Flows {
			g.flow, g.firstLap = 0, false
		}
	}
	size := g.size()
	if step.flags&(tcpSYN|tcpFIN) != 0 || step.flags == tcpACK {
		// Handshakes carry no payload; over IPv4 the minimum Ethernet frame adds 6 bytes of padding.
		size = 14 + 20 + 20 + 6
		if g.spec.IPv6 {
			size = 14 + 40 + 20
		}
	}
	return g.build(buf, flow, size, step), step.reverse
}

func (g *Generator) addrs(flow int) (src, dst netip.Addr, sport, dport uint16) {
	s := g.spec
	host := uint64(flow) % g.srcHosts
	if g.srcHosts > 1 {
		host++
	}
	src = addAddr(s.Src.Addr(), host)
	dst = s.Dst.Addr()
	sport = uint16(uint64(s.SrcPort) + uint64(flow)/g.srcHosts)
	return src, dst, sport, s.DstPort
}

func addAddr(a netip.Addr, n uint64) netip.Addr {
	b := a.As16()
	lo := binary.BigEndian.Uint64(b[8:]) + n
	binary.BigEndian.PutUint64(b[8:], lo)
	r := netip.AddrFrom16(b)
	if a.Is4() {
		return r.Unmap()
	}
	return r
}

func (g *Generator) build(buf []byte, flow, size int, step pending) int {
	s := g.spec
	src, dst, sport, dport := g.addrs(flow)
	smac, dmac := clientMAC, serverMAC
	if step.reverse {
		src, dst, sport, dport = dst, src, dport, sport
		smac, dmac = dmac, smac
	}
	copy(buf[0:6], dmac[:])
	copy(buf[6:12], smac[:])
	l3 := buf[14:size]
	var proto uint8
	var l4 []byte
	var pseudo uint32
	if s.IPv6 {
		binary.BigEndian.PutUint16(buf[12:], 0x86dd)
		l4 = l3[40:]
		proto = g.proto
		l3[0], l3[1], l3[2], l3[3] = 0x60, 0, 0, 0
		binary.BigEndian.PutUint16(l3[4:], uint16(len(l4)))
		l3[6], l3[7] = proto, 64
		s16, d16 := src.As16(), dst.As16()
		copy(l3[8:24], s16[:])
		copy(l3[24:40], d16[:])
		pseudo = csum.Sum(l3[8:40], 0) + uint32(len(l4)) + uint32(proto)
	} else {
		binary.BigEndian.PutUint16(buf[12:], 0x0800)
		proto = g.proto
		ipLen := len(l3)
		if step.flags != tcpPSH|tcpACK && s.Proto == "tcp" {
			ipLen = 40 // handshake segment; the rest of the frame is Ethernet padding
			clear(l3[40:])
		}
		l4 = l3[20:ipLen]
		g.ipID++
		l3[0], l3[1] = 0x45, 0
		binary.BigEndian.PutUint16(l3[2:], uint16(ipLen))
		binary.BigEndian.PutUint16(l3[4:], g.ipID)
		l3[6], l3[7] = 0x40, 0 // don't fragment
		l3[8], l3[9] = 64, proto
		l3[10], l3[11] = 0, 0
		s4, d4 := src.As4(), dst.As4()
		copy(l3[12:16], s4[:])
		copy(l3[16:20], d4[:])
		binary.BigEndian.PutUint16(l3[10:], csum.Fold(csum.Sum(l3[:20], 0)))
		pseudo = csum.Sum(l3[12:20], 0) + uint32(len(l4)) + uint32(proto)
	}
	switch s.Proto {
	case "udp":
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		l4[6], l4[7] = 0, 0
		payload(l4[8:], flow)
		c := csum.Fold(csum.Sum(l4, pseudo))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[6:], c)
	case "tcp":
		seq, ack := &g.clientSeq[flow], &g.serverSeq[flow]
		if step.reverse {
			seq, ack = ack, seq
		}
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint32(l4[4:], *seq)
		ackNum := *ack
		if step.flags&tcpACK == 0 {
			ackNum = 0
		}
		binary.BigEndian.PutUint32(l4[8:], ackNum)
		l4[12], l4[13] = 5<<4, step.flags
		binary.BigEndian.PutUint16(l4[14:], 64240)
		l4[16], l4[17], l4[18], l4[19] = 0, 0, 0, 0
		payload(l4[20:], flow)
		binary.BigEndian.PutUint16(l4[16:], csum.Fold(csum.Sum(l4, pseudo)))
		*seq += uint32(len(l4) - 20)
		if step.flags&(tcpSYN|tcpFIN) != 0 {
			*seq++
		}
	case "icmp":
		typ := uint8(8)
		if s.IPv6 {
			typ = 128
		} else {
			pseudo = 0 // ICMPv4 has no pseudo-header
		}
		l4[0], l4[1], l4[2], l4[3] = typ, 0, 0, 0
		binary.BigEndian.PutUint16(l4[4:], uint16(flow))
		binary.BigEndian.PutUint16(l4[6:], uint16(g.clientSeq[flow]))
		g.clientSeq[flow]++
		payload(l4[8:], flow)
		binary.BigEndian.PutUint16(l4[2:], csum.Fold(csum.Sum(l4, pseudo)))
	}
	return size
}

// payload fills b with a pattern that names the flow, so a capture shows whose bytes they are.
func payload(b []byte, flow int) {
	for i := range b {
		b[i] = byte(i + flow)
	}
}
