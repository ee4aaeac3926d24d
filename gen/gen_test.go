package gen

import (
	"bytes"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/stdpkt/stdpkt/csum"
	"github.com/stdpkt/stdpkt/framing"
)

func TestParseSpec(t *testing.T) {
	s, err := ParseSpec("tcp,handshake,size=imix,flows=10,count=500,rate=1000,ipv6,seed=7,dport=443")
	if err != nil {
		t.Fatal(err)
	}
	if s.Proto != "tcp" || !s.Handshake || !s.IPv6 || s.Flows != 10 || s.Count != 500 || s.Rate != 1000 || s.Seed != 7 || s.DstPort != 443 {
		t.Errorf("parsed %+v", s)
	}
	if s.Sizes[0] != 74 || s.Sizes[len(s.Sizes)-1] != 1514 {
		t.Errorf("imix over IPv6/TCP: sizes %v, want the small ones raised to 74", s.Sizes)
	}
	for _, bad := range []string{"udp,size=59", "udp,count=0", "udp,flows=x", "icmp,handshake", "udp,bogus",
		"udp,src=2001:db8::/64", "tcp,ipv6,size=70", "udp,count", "udp,ipv6=1", "udp,rate=-1"} {
		if _, err := ParseSpec(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// decode checks every frame of spec with gopacket: it parses, and the checksums verify.
func decode(t *testing.T, spec string) [][]byte {
	t.Helper()
	s, err := ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	g := New(s)
	pkts := make([]framing.Packet, 7)
	var frames [][]byte
	for {
		n := g.Next(pkts)
		if n == 0 {
			break
		}
		for _, p := range pkts[:n] {
			frames = append(frames, append([]byte(nil), p.Data...))
			pk := gopacket.NewPacket(p.Data, layers.LayerTypeEthernet, gopacket.Default)
			if el := pk.ErrorLayer(); el != nil {
				t.Fatalf("%s: frame %d: %v", spec, len(frames), el.Error())
			}
			verifyChecksums(t, pk)
		}
	}
	if len(frames) != s.Count {
		t.Fatalf("%s: %d frames, want %d", spec, len(frames), s.Count)
	}
	return frames
}

func verifyChecksums(t *testing.T, pk gopacket.Packet) {
	t.Helper()
	if ip, ok := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		if csum.Fold(csum.Sum(ip.Contents, 0)) != 0 {
			t.Errorf("bad IPv4 header checksum")
		}
	}
	for _, l := range pk.Layers() {
		if v, ok := l.(interface {
			VerifyChecksum() (gopacket.ChecksumVerificationResult, error)
		}); ok {
			if r, err := v.VerifyChecksum(); err != nil || !r.Valid {
				t.Errorf("%s checksum: %+v %v", l.LayerType(), r, err)
			}
		}
	}
}

func TestFramesValid(t *testing.T) {
	for _, spec := range []string{
		"udp,size=64,flows=30,count=100",
		"udp,size=imix,flows=3,count=40,ipv6",
		"tcp,handshake,flows=4,count=50,size=imix",
		"tcp,handshake,flows=2,count=20,ipv6",
		"icmp,flows=3,count=12,size=100",
		"icmp,flows=3,count=12,ipv6",
	} {
		decode(t, spec)
	}
}

func TestHandshakeAndFlows(t *testing.T) {
	frames := decode(t, "tcp,handshake,flows=2,count=8,src=192.0.2.0/24")
	flags := func(b []byte) string {
		tcp := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeTCP).(*layers.TCP)
		switch {
		case tcp.SYN && tcp.ACK:
			return "SA"
		case tcp.SYN:
			return "S"
		case tcp.PSH:
			return "PA"
		}
		return "A"
	}
	var got []string
	for _, f := range frames {
		got = append(got, flags(f))
	}
	want := []string{"S", "SA", "A", "S", "SA", "A", "PA", "PA"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("flags %v, want %v", got, want)
		}
	}
	// The second flow comes from the next source address; data continues each flow's sequence.
	ip := func(b []byte) *layers.IPv4 {
		return gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	}
	if ip(frames[0]).SrcIP.String() != "192.0.2.1" || ip(frames[3]).SrcIP.String() != "192.0.2.2" {
		t.Errorf("flow sources %s, %s", ip(frames[0]).SrcIP, ip(frames[3]).SrcIP)
	}
	tcp := func(b []byte) *layers.TCP {
		return gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeTCP).(*layers.TCP)
	}
	if syn, data := tcp(frames[0]), tcp(frames[6]); data.Seq != syn.Seq+1 || data.Ack != tcp(frames[1]).Seq+1 {
		t.Errorf("data seq %d ack %d after SYN seq %d", data.Seq, data.Ack, syn.Seq)
	}
}

func TestDeterministic(t *testing.T) {
	a := decode(t, "tcp,handshake,flows=5,count=40,size=imix,seed=9")
	b := decode(t, "tcp,handshake,flows=5,count=40,size=imix,seed=9")
	c := decode(t, "tcp,handshake,flows=5,count=40,size=imix,seed=10")
	if !bytes.Equal(bytes.Join(a, nil), bytes.Join(b, nil)) {
		t.Error("same seed, different frames")
	}
	if bytes.Equal(bytes.Join(a, nil), bytes.Join(c, nil)) {
		t.Error("different seeds, same frames")
	}
}

func TestNextAllocates0(t *testing.T) {
	s, _ := ParseSpec("tcp,size=imix,flows=100,count=1000000000")
	g := New(s)
	pkts := make([]framing.Packet, 256)
	g.Next(pkts)
	if n := testing.AllocsPerRun(100, func() { g.Next(pkts) }); n != 0 {
		t.Errorf("Next allocates %.1f times per batch", n)
	}
}

func BenchmarkNext64(b *testing.B) {
	s, _ := ParseSpec("udp,size=64,flows=1000,count=1000000000")
	g := New(s)
	pkts := make([]framing.Packet, 256)
	b.ReportAllocs()
	for b.Loop() {
		g.Next(pkts)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*256), "ns/frame")
}
