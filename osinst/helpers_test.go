package osinst

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/rules"
)

// recorder is an Output that keeps copies of what it is given.
type recorder struct {
	mu   sync.Mutex
	pkts []framing.Packet
}

func (r *recorder) Write(pkts []framing.Packet) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range pkts {
		p.Data = bytes.Clone(p.Data)
		r.pkts = append(r.pkts, p)
	}
	return nil
}

func (r *recorder) take() []framing.Packet {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.pkts
	r.pkts = nil
	return out
}

var (
	macA   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a} // a host on the west side
	macB   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b} // a host (or gateway) on the east side
	ifWest = &framing.Interface{Name: "lan", LinkType: framing.LinkEthernet}
	ifEast = &framing.Interface{Name: "wan", LinkType: framing.LinkEthernet}
	ipA    = net.IP{192, 0, 2, 10}
	ipB    = net.IP{198, 51, 100, 20}
)

// harness is an instance with recording outputs and its books.
type harness struct {
	t          *testing.T
	in         *Instance
	east, west recorder
	bk         books.Books
	ts         int64
	wall       atomic.Int64 // the instance's wall clock once stopClock has stopped it
}

// stopClock stops the instance's wall clock (timeouts, sweeps, fast-path refreshes) at the
// present: from then on only advance moves it, so a test's idleness is exact however slowly
// the machine runs it.
func (h *harness) stopClock() {
	h.wall.Store(time.Now().UnixNano())
	h.in.wall = h.wall.Load
}

// advance moves the stopped clock on by d.
func (h *harness) advance(d time.Duration) { h.wall.Add(int64(d)) }

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t}
	in, err := New(cfg, &h.east, &h.west, &h.bk)
	if err != nil {
		t.Fatal(err)
	}
	h.in = in
	return h
}

// send gives one frame to the instance and returns what came out eastbound and westbound.
func (h *harness) send(dir books.Dir, frame []byte) (east, west []framing.Packet) {
	h.t.Helper()
	h.ts += 1000
	ifc := ifWest
	if dir == books.West {
		ifc = ifEast
	}
	h.in.Input(dir, []framing.Packet{{Data: frame, Length: len(frame), Timestamp: h.ts, Interface: ifc}})
	return h.east.take(), h.west.take()
}

// close stops the instance and checks that the books balance.
func (h *harness) close() books.Snapshot {
	h.t.Helper()
	if err := h.in.Close(); err != nil {
		h.t.Fatal(err)
	}
	snap := h.bk.Snapshot()
	if err := snap.Check(); err != nil {
		h.t.Fatal(err)
	}
	return snap
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

func ethL(src, dst net.HardwareAddr, et layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: et}
}

func ip4L(src, dst net.IP, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0x1234, Protocol: proto, SrcIP: src, DstIP: dst}
}

type tcpSeg struct {
	sport, dport       uint16
	seq, ack           uint32
	syn, ack_, fin, rs bool
	payload            string
}

// tcpFrame builds an Ethernet/IPv4/TCP frame.
func tcpFrame(t testing.TB, smac, dmac net.HardwareAddr, src, dst net.IP, s tcpSeg) []byte {
	ip := ip4L(src, dst, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport), Seq: s.seq, Ack: s.ack,
		SYN: s.syn, ACK: s.ack_, FIN: s.fin, RST: s.rs, Window: 65535}
	tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ethL(smac, dmac, layers.EthernetTypeIPv4), ip, tcp, gopacket.Payload(s.payload))
}

func udpFrame(t testing.TB, smac, dmac net.HardwareAddr, src, dst net.IP, sport, dport uint16, payload string) []byte {
	ip := ip4L(src, dst, layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ethL(smac, dmac, layers.EthernetTypeIPv4), ip, udp, gopacket.Payload(payload))
}

func icmpFrame(t testing.TB, smac, dmac net.HardwareAddr, src, dst net.IP, typ, code uint8, id, seq uint16) []byte {
	ip := ip4L(src, dst, layers.IPProtocolICMPv4)
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: id, Seq: seq}
	return serialize(t, ethL(smac, dmac, layers.EthernetTypeIPv4), ip, ic, gopacket.Payload("ping-payload"))
}

// fragments splits an IPv4 UDP datagram into fragments of at most size payload bytes.
func fragments(t testing.TB, smac, dmac net.HardwareAddr, src, dst net.IP, sport, dport uint16, payload string, size int) [][]byte {
	whole := udpFrame(t, smac, dmac, src, dst, sport, dport, payload)
	l4 := whole[14+20:]
	var out [][]byte
	for off := 0; off < len(l4); off += size {
		end := min(off+size, len(l4))
		ip := ip4L(src, dst, layers.IPProtocolUDP)
		ip.FragOffset = uint16(off / 8)
		if end < len(l4) {
			ip.Flags = layers.IPv4MoreFragments
		}
		out = append(out, serialize(t, ethL(smac, dmac, layers.EthernetTypeIPv4), ip, gopacket.Payload(l4[off:end])))
	}
	return out
}

func mustRules(t testing.TB, text string) *rules.Ruleset {
	t.Helper()
	rs, err := rules.Parse("test.rules", strings.NewReader(text), rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func decode(b []byte) gopacket.Packet {
	return gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
}
