package osinst

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
	"github.com/stdpkt/stdpkt/rules"
)

const webRules = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -i west -p tcp -m multiport --dports 80,443 -j ACCEPT
-A FORWARD -i west -p udp -m udp --dport 53 -j ACCEPT
-A FORWARD -i west -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 25 -j REJECT --reject-with tcp-reset
-A FORWARD -p udp -m udp --dport 9 -j REJECT --reject-with icmp-port-unreachable
COMMIT
`

func TestTransparentNoFilterPassesEverything(t *testing.T) {
	h := newHarness(t, Config{})
	frames := [][]byte{
		tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 1000, dport: 23, syn: true}),
		{1, 2, 3}, // not even Ethernet: a stage without rules does not look
	}
	for _, f := range frames {
		east, west := h.send(books.East, f)
		if len(east) != 1 || !bytes.Equal(east[0].Data, f) || len(west) != 0 {
			t.Fatalf("frame %x: east %d west %d", f, len(east), len(west))
		}
	}
	snap := h.close()
	if snap.East.In.Packets != 2 || snap.East.Out.Packets != 2 {
		t.Errorf("books %+v", snap.East)
	}
}

// A stateful trace: allowed connections and their replies pass byte for byte, everything else
// is dropped against the rule that dropped it.
func TestTransparentStateful(t *testing.T) {
	h := newHarness(t, Config{Filter: mustRules(t, webRules)})
	pass := func(dir books.Dir, f []byte, what string) {
		t.Helper()
		east, west := h.send(dir, f)
		got, other := east, west
		if dir == books.West {
			got, other = west, east
		}
		if len(got) != 1 || len(other) != 0 {
			t.Fatalf("%s: passed %d, other way %d; want it to pass", what, len(got), len(other))
		}
		if !bytes.Equal(got[0].Data, f) {
			t.Fatalf("%s: bytes changed:\n got %x\nwant %x", what, got[0].Data, f)
		}
		if got[0].Timestamp != h.ts || got[0].Interface == nil {
			t.Fatalf("%s: timestamp %d interface %v: not the input frame's", what, got[0].Timestamp, got[0].Interface)
		}
	}
	drop := func(dir books.Dir, f []byte, what string) {
		t.Helper()
		east, west := h.send(dir, f)
		if len(east)+len(west) != 0 {
			t.Fatalf("%s: passed (east %d, west %d); want it dropped", what, len(east), len(west))
		}
	}
	// TCP handshake and data to port 80.
	pass(books.East, tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 40000, dport: 80, seq: 100, syn: true}), "SYN :80")
	pass(books.West, tcpFrame(t, macB, macA, ipB, ipA, tcpSeg{sport: 80, dport: 40000, seq: 500, ack: 101, syn: true, ack_: true}), "SYN-ACK")
	pass(books.East, tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 40000, dport: 80, seq: 101, ack: 501, ack_: true}), "ACK")
	pass(books.East, tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 40000, dport: 80, seq: 101, ack: 501, ack_: true, payload: "GET / HTTP/1.0\r\n\r\n"}), "request")
	pass(books.West, tcpFrame(t, macB, macA, ipB, ipA, tcpSeg{sport: 80, dport: 40000, seq: 501, ack: 119, ack_: true, payload: "HTTP/1.0 200 OK\r\n\r\n"}), "response")
	// Denied port, unsolicited inbound, a reply to nothing.
	drop(books.East, tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 40001, dport: 23, seq: 1, syn: true}), "SYN :23")
	drop(books.West, tcpFrame(t, macB, macA, ipB, ipA, tcpSeg{sport: 5555, dport: 22, seq: 1, syn: true}), "unsolicited inbound SYN")
	drop(books.West, udpFrame(t, macB, macA, ipB, ipA, 53, 33333, "unsolicited"), "unsolicited UDP")
	// UDP query and its answer; ICMP echo and its reply.
	pass(books.East, udpFrame(t, macA, macB, ipA, ipB, 33333, 53, "query"), "DNS query")
	pass(books.West, udpFrame(t, macB, macA, ipB, ipA, 53, 33333, "answer"), "DNS answer")
	pass(books.East, icmpFrame(t, macA, macB, ipA, ipB, 8, 0, 7, 1), "echo request")
	pass(books.West, icmpFrame(t, macB, macA, ipB, ipA, 0, 0, 7, 1), "echo reply")
	drop(books.West, icmpFrame(t, macB, macA, ipB, ipA, 0, 0, 99, 1), "unsolicited echo reply")
	// An ICMP error about the DNS flow is RELATED.
	quoted := udpFrame(t, macA, macB, ipA, ipB, 33333, 53, "query")[14:]
	ip := ip4L(ipB, ipA, layers.IPProtocolICMPv4)
	icmpErr := serialize(t, ethL(macB, macA, layers.EthernetTypeIPv4), ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(quoted[:28]))
	pass(books.West, icmpErr, "related ICMP error")
	// Malformed: bad IP header checksum, truncated TCP header; bad TCP checksum is INVALID.
	bad := tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 40002, dport: 80, syn: true})
	bad[14+10] ^= 0xff
	drop(books.East, bad, "bad IP checksum")
	short := tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 40003, dport: 80, syn: true})[:14+20+10]
	short[14+3] = 30 // total length 30: 10 bytes of TCP header
	header.IPv4(short[14:]).SetChecksum(0)
	header.IPv4(short[14:]).SetChecksum(^header.IPv4(short[14:]).CalculateChecksum())
	drop(books.East, short, "truncated TCP")
	badSum := tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 40004, dport: 80, syn: true})
	badSum[14+20+16] ^= 0xff
	drop(books.East, badSum, "bad TCP checksum (INVALID)")
	// Non-IP passes, as on a bridge.
	arpReq := serialize(t, ethL(macA, layers.EthernetBroadcast, layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: ipA,
		DstHwAddress: make([]byte, 6), DstProtAddress: ipB})
	pass(books.East, arpReq, "ARP")

	snap := h.close()
	if got := snap.East.Dropped["malformed"].Packets; got != 2 {
		t.Errorf("eastbound malformed drops = %d, want 2", got)
	}
	if got := snap.East.Dropped["rule"].Packets; got != 2 {
		t.Errorf("eastbound rule drops = %d, want 2 (SYN :23, bad TCP checksum)", got)
	}
	if got := snap.West.Dropped["rule"].Packets; got != 3 {
		t.Errorf("westbound rule drops = %d, want 3", got)
	}
	cs := h.in.RuleCounters()
	want := map[string]uint64{"FORWARD 1": 7, "FORWARD 2": 2, "FORWARD 3": 1, "FORWARD 4": 1, "FORWARD 5": 1, "FORWARD policy": 3}
	if len(cs) != 7+3 {
		t.Errorf("%d counters, want 10 (7 FORWARD rules, 3 policies)", len(cs))
	}
	for _, c := range cs {
		name := c.Chain + " policy"
		if c.Rule != nil {
			name = c.Chain + " " + strconv.Itoa(c.Rule.Num)
		}
		if w, ok := want[name]; ok && c.Packets != w {
			t.Errorf("%s counted %d packets, want %d", name, c.Packets, w)
		}
	}
	var dump strings.Builder
	h.in.DumpState(&dump)
	for _, s := range []string{"FORWARD policy DROP", "TCP 192.0.2.10:40000 -> 198.51.100.20:80 established", "connections: 3 tracked"} {
		if !strings.Contains(dump.String(), s) {
			t.Errorf("dump lacks %q:\n%s", s, dump.String())
		}
	}
}

func TestRejectAnswers(t *testing.T) {
	h := newHarness(t, Config{Filter: mustRules(t, webRules)})
	syn := tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 40000, dport: 25, seq: 1000, syn: true})
	east, west := h.send(books.East, syn)
	if len(east) != 0 || len(west) != 1 {
		t.Fatalf("REJECT tcp-reset: east %d west %d", len(east), len(west))
	}
	rst := west[0]
	if rst.Interface != ifWest || rst.Timestamp == h.ts {
		t.Errorf("reset interface %v timestamp %d: want the input's interface and a fresh time", rst.Interface, rst.Timestamp)
	}
	p := decode(rst.Data)
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !bytes.Equal(eth.SrcMAC, macB) || !bytes.Equal(eth.DstMAC, macA) || !ip.SrcIP.Equal(ipB) || !ip.DstIP.Equal(ipA) {
		t.Errorf("reset addressed %s>%s %s>%s", eth.SrcMAC, eth.DstMAC, ip.SrcIP, ip.DstIP)
	}
	if !tcp.RST || !tcp.ACK || tcp.Ack != 1001 || tcp.Seq != 0 || tcp.SrcPort != 25 || tcp.DstPort != 40000 {
		t.Errorf("reset %+v", tcp)
	}
	checkSums(t, rst.Data[14:])

	udp := udpFrame(t, macA, macB, ipA, ipB, 4444, 9, "discard me")
	_, west = h.send(books.East, udp)
	if len(west) != 1 {
		t.Fatalf("REJECT icmp-port-unreachable sent %d", len(west))
	}
	p = decode(west[0].Data)
	ic := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ic.TypeCode != layers.CreateICMPv4TypeCode(3, 3) || !bytes.Equal(ic.Payload, udp[14:14+38]) {
		t.Errorf("icmp %v payload %x", ic.TypeCode, ic.Payload)
	}
	checkSums(t, west[0].Data[14:])
	snap := h.close()
	if snap.West.Generated.Packets != 2 || snap.West.Out.Packets != 2 || snap.East.Dropped["rule"].Packets != 2 {
		t.Errorf("books %+v", snap)
	}
}

// checkSums verifies the IPv4 header and transport checksums.
func checkSums(t *testing.T, ip []byte) {
	t.Helper()
	h := header.IPv4(ip)
	if !h.IsChecksumValid() {
		t.Error("bad IPv4 header checksum")
	}
	payload := ip[h.HeaderLength():h.TotalLength()]
	switch h.TransportProtocol() {
	case header.TCPProtocolNumber:
		x := header.PseudoHeaderChecksum(header.TCPProtocolNumber, h.SourceAddress(), h.DestinationAddress(), uint16(len(payload)))
		if c := checksum.Checksum(payload, x); c != 0xffff { // header and data
			t.Errorf("bad TCP checksum (sum %#x)", c)
		}
	case header.ICMPv4ProtocolNumber:
		if c := checksum.Checksum(payload, 0); c != 0xffff {
			t.Errorf("bad ICMP checksum (sum %#x)", c)
		}
	}
}

func TestFragmentsDecidedTogether(t *testing.T) {
	h := newHarness(t, Config{Filter: mustRules(t, webRules)})
	long := strings.Repeat("0123456789abcdef", 40) // 640 bytes: three fragments of 256
	frags := fragments(t, macA, macB, ipA, ipB, 33000, 53, long, 256)
	if len(frags) != 3 {
		t.Fatalf("%d fragments", len(frags))
	}
	var out []framing.Packet
	for i, f := range frags {
		east, _ := h.send(books.East, f)
		if i < len(frags)-1 && len(east) != 0 {
			t.Fatalf("fragment %d passed before its datagram was complete", i)
		}
		out = append(out, east...)
	}
	if len(out) != 3 {
		t.Fatalf("allowed datagram: %d of 3 fragments passed", len(out))
	}
	for i := range out {
		if !bytes.Equal(out[i].Data, frags[i]) {
			t.Errorf("fragment %d changed", i)
		}
	}
	// The same to a denied port: all dropped, counted against the policy.
	for _, f := range fragments(t, macA, macB, ipA, ipB, 33001, 5353, long, 256) {
		if east, _ := h.send(books.East, f); len(east) != 0 {
			t.Fatal("fragment of a denied datagram passed")
		}
	}
	// An incomplete datagram is held, and counted unsent at the end.
	h.send(books.East, fragments(t, macA, macB, ipA, ipB, 33002, 53, long, 256)[0])
	snap := h.close()
	if snap.East.Dropped["rule"].Packets != 3 || snap.East.Dropped["unsent"].Packets != 1 || snap.East.Out.Packets != 3 {
		t.Errorf("books %+v", snap.East)
	}
}

// The same policy as an iptables-save file and as one-liner flags gives the same output.
func TestFileAndFlagsSameOutput(t *testing.T) {
	file := mustRules(t, `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -p tcp -m multiport --dports 80,443 -j ACCEPT
-A FORWARD -p udp -m udp --dport 53 -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 23 -j REJECT --reject-with tcp-reset
COMMIT
`)
	flags, err := rules.FromOneLiners([]rules.OneLiner{
		{Flag: "--allow", Target: rules.Accept, Spec: "tcp dport 80,443"},
		{Flag: "--allow", Target: rules.Accept, Spec: "udp dport 53"},
		{Flag: "--reject", Target: rules.Reject, Spec: "tcp dport 23 with tcp-reset"},
	}, rules.Drop, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	trace := []struct {
		dir books.Dir
		f   []byte
	}{
		{books.East, tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 40000, dport: 443, seq: 1, syn: true})},
		{books.West, tcpFrame(t, macB, macA, ipB, ipA, tcpSeg{sport: 443, dport: 40000, seq: 9, ack: 2, syn: true, ack_: true})},
		{books.East, tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 40000, dport: 443, seq: 2, ack: 10, ack_: true})},
		{books.East, tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 40001, dport: 23, seq: 1, syn: true})},
		{books.East, tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 40002, dport: 8080, seq: 1, syn: true})},
		{books.East, udpFrame(t, macA, macB, ipA, ipB, 5000, 53, "q")},
		{books.West, udpFrame(t, macB, macA, ipB, ipA, 53, 5000, "a")},
		{books.West, udpFrame(t, macB, macA, ipB, ipA, 53, 5001, "unasked")},
	}
	run := func(rs *rules.Ruleset) (out []string, snap books.Snapshot) {
		h := newHarness(t, Config{Filter: rs})
		for _, st := range trace {
			east, west := h.send(st.dir, st.f)
			for _, p := range east {
				out = append(out, "east "+string(p.Data))
			}
			for _, p := range west {
				if p.Timestamp != h.ts { // generated: the time differs run to run
					p.Timestamp = 0
				}
				out = append(out, "west "+string(p.Data))
			}
		}
		return out, h.close()
	}
	a, sa := run(file)
	b, sb := run(flags)
	if strings.Join(a, "\n") != strings.Join(b, "\n") || len(a) != 6 {
		t.Errorf("file passed %d frames, flags %d, or they differ", len(a), len(b))
	}
	if sa.East.Out != sb.East.Out || sa.West.Out != sb.West.Out || sa.West.Generated != sb.West.Generated {
		t.Errorf("books differ: %+v vs %+v", sa, sb)
	}
}

func TestRawIPLinkType(t *testing.T) {
	h := newHarness(t, Config{Filter: mustRules(t, webRules)})
	raw := &framing.Interface{Name: "tun0", LinkType: framing.LinkRaw}
	allowed := tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 1, dport: 80, syn: true})[14:]
	denied := tcpFrame(t, macA, macB, ipA, ipB, tcpSeg{sport: 1, dport: 81, syn: true})[14:]
	h.in.Input(books.East, []framing.Packet{{Data: allowed, Interface: raw}, {Data: denied, Interface: raw},
		{Data: []byte{1, 2}, Interface: &framing.Interface{LinkType: framing.LinkNull}}})
	east := h.east.take()
	if len(east) != 1 || !bytes.Equal(east[0].Data, allowed) {
		t.Fatalf("raw IP: %d passed", len(east))
	}
	snap := h.close()
	if snap.East.Dropped["link-type"].Packets != 1 || snap.East.Dropped["rule"].Packets != 1 {
		t.Errorf("books %+v", snap.East)
	}
}
