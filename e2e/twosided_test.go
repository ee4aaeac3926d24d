package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// conversation builds a two-sided trace: the inside host 192.0.2.10 talks to
// 198.51.100.10, whose replies go to replyTo: the inside host itself (as a firewall's two
// sides see it) or a NAT's outside address 203.0.113.1 (as a NAT's two sides see it, ports
// kept, as a NAT keeps free ports). Plus one unsolicited packet from the outside.
func conversation(t *testing.T, replyTo []byte) []frame {
	t.Helper()
	in, out, nat, srv := []byte{192, 0, 2, 10}, []byte{198, 51, 100, 10}, replyTo, []byte{198, 51, 100, 10}
	var frames []frame
	base := time.Unix(1700000000, 0)
	add := func(src, dst []byte, l4 gopacket.SerializableLayer, payload string) {
		ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: src, DstIP: dst}
		switch l := l4.(type) {
		case *layers.TCP:
			ip.Protocol = layers.IPProtocolTCP
			l.SetNetworkLayerForChecksum(ip)
		case *layers.UDP:
			ip.Protocol = layers.IPProtocolUDP
			l.SetNetworkLayerForChecksum(ip)
		case *layers.ICMPv4:
			ip.Protocol = layers.IPProtocolICMPv4
		}
		eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, l4, gopacket.Payload(payload)); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, frame{ts: base.Add(time.Duration(len(frames)) * time.Millisecond), data: append([]byte(nil), buf.Bytes()...)})
	}
	add(in, out, &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Seq: 100, Window: 64240}, "")
	add(srv, nat, &layers.TCP{SrcPort: 80, DstPort: 40000, SYN: true, ACK: true, Seq: 500, Ack: 101, Window: 64240}, "")
	add(in, out, &layers.TCP{SrcPort: 40000, DstPort: 80, ACK: true, Seq: 101, Ack: 501, Window: 64240}, "")
	add(in, out, &layers.TCP{SrcPort: 40000, DstPort: 80, ACK: true, PSH: true, Seq: 101, Ack: 501, Window: 64240}, "GET / HTTP/1.0\r\n\r\n")
	add(srv, nat, &layers.TCP{SrcPort: 80, DstPort: 40000, ACK: true, PSH: true, Seq: 501, Ack: 119, Window: 64240}, "HTTP/1.0 200 OK\r\n\r\n")
	add(in, out, &layers.UDP{SrcPort: 40001, DstPort: 53}, "query")
	add(srv, nat, &layers.UDP{SrcPort: 53, DstPort: 40001}, "answer")
	add(in, out, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 77, Seq: 1}, "ping")
	add(srv, nat, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(0, 0), Id: 77, Seq: 1}, "ping")
	add(srv, nat, &layers.TCP{SrcPort: 4444, DstPort: 22, SYN: true, Seq: 9, Window: 64240}, "") // unsolicited
	return frames
}

// Two-sided replay, offline and without root: requests go east through the NAT, replies enter
// from the east, are turned around by the sink and come home through the NAT, translated back
// to the inside host; what reaches the outside never holds the inside address.
func TestTwoSidedReplayThroughNAT(t *testing.T) {
	needTool(t, "tshark", "tshark")
	dir := tempDir(t)
	writePcapng(t, filepath.Join(dir, "conv.pcapng"), "lan0", conversation(t, []byte{203, 0, 113, 1}))
	_, errs := mustSh(t, dir, "stdpkt-src -r conv.pcapng --from-east src=198.51.100.0/24 --west-out home.pcapng | stdpkt-nat --snat 203.0.113.1 | stdpkt-sink -w away.pcapng")
	away := natFields(t, dir, "away.pcapng")
	home := natFields(t, dir, "home.pcapng")
	wantAway := []string{"203.0.113.1 40000 198.51.100.10 80", "203.0.113.1 40000 198.51.100.10 80",
		"203.0.113.1 40000 198.51.100.10 80", "203.0.113.1 40001 198.51.100.10 53", "203.0.113.1 77 198.51.100.10"}
	wantHome := []string{"198.51.100.10 80 192.0.2.10 40000", "198.51.100.10 80 192.0.2.10 40000",
		"198.51.100.10 53 192.0.2.10 40001", "198.51.100.10 77 192.0.2.10"}
	equalLines(t, "away (east of the NAT)", away, wantAway)
	// The unsolicited SYN to 203.0.113.1:22 matches no connection: netstack's NAT has no
	// rule for it, so it goes on untranslated to 203.0.113.1; it must not reach the inside.
	var homeNoUnsolicited []string
	for _, l := range home {
		if !strings.Contains(l, " 22") {
			homeNoUnsolicited = append(homeNoUnsolicited, l)
		}
	}
	equalLines(t, "home (west of the NAT)", homeNoUnsolicited, wantHome)
	for _, l := range home {
		if strings.Contains(l, "192.0.2.10 22") {
			t.Errorf("unsolicited packet reached the inside host: %s", l)
		}
	}
	for _, stage := range []string{"stdpkt-src", "stdpkt-nat", "stdpkt-sink"} {
		for _, dirn := range []string{"eastbound", "westbound"} {
			for _, line := range strings.Split(errs, "\n") {
				if strings.HasPrefix(line, stage+" "+dirn+":") && !booksBalance(line) {
					t.Errorf("books do not balance: %s", line)
				}
			}
		}
	}
	if !strings.Contains(errs, "stdpkt-src westbound: in ") {
		t.Errorf("nothing came home:\n%s", errs)
	}
}

// Through a stateful firewall, replies of allowed connections come home; an unsolicited
// packet from the outside is dropped by the policy and never comes home.
func TestTwoSidedReplayThroughFirewall(t *testing.T) {
	needTool(t, "tshark", "tshark")
	dir := tempDir(t)
	writePcapng(t, filepath.Join(dir, "conv.pcapng"), "lan0", conversation(t, []byte{192, 0, 2, 10}))
	_, errs := mustSh(t, dir, "stdpkt-src -r conv.pcapng --from-east src=198.51.100.0/24 --turnaround-wait 300ms --west-out home.pcapng | "+
		"stdpkt-fw --allow 'tcp dport 80' --allow 'udp dport 53' --allow 'icmp type echo-request' --policy drop | stdpkt-sink -w away.pcapng")
	home := natFields(t, dir, "home.pcapng")
	if len(home) != 4 {
		t.Errorf("%d replies came home, want 4 (SYN-ACK, HTTP answer, DNS answer, echo reply): %v", len(home), home)
	}
	for _, l := range home {
		if strings.Contains(l, " 22") {
			t.Errorf("unsolicited packet passed the firewall: %s", l)
		}
	}
	if !strings.Contains(errs, "stdpkt-fw westbound: in 5 ") || !strings.Contains(errs, "dropped 1 (rule 1)") {
		t.Errorf("firewall books:\n%s", errs)
	}
}

// stdpkt-dump --pass is a full stage: replies pass back through it (and are printed), so a
// dump anywhere in a chain does not cut the return path.
func TestDumpPassKeepsReturnPath(t *testing.T) {
	needTool(t, "tshark", "tshark")
	dir := tempDir(t)
	mustSh(t, dir, "stdpkt-src -q --gen 'tcp,flows=2,count=4,dport=23' > telnet.pcapng")
	_, errs := mustSh(t, dir, "stdpkt-src -r telnet.pcapng --west-out home.pcapng | stdpkt-dump --pass -o seen.txt | stdpkt-fw --reject 'tcp dport 23' | stdpkt-sink")
	home := natFields(t, dir, "home.pcapng")
	if len(home) != 4 {
		t.Fatalf("%d resets came home through the dump, want 4:\n%s", len(home), errs)
	}
	seen, _ := mustSh(t, dir, "cat seen.txt")
	if strings.Count(seen, "Flags [R]") != 4 || strings.Count(seen, "Flags [P.]") != 4 {
		t.Errorf("the dump did not show both directions:\n%s", seen)
	}
	if !strings.Contains(errs, "stdpkt-dump westbound: in 4 ") {
		t.Errorf("dump books:\n%s", errs)
	}
}
