package dump

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/stdpkt/stdpkt/dump/dumptest"
	"github.com/stdpkt/stdpkt/framing"
)

var (
	udpSum   = regexp.MustCompile(`\[(udp sum ok|bad udp cksum [^]]*)\] `)
	ethIface = &framing.Interface{Name: "", LinkType: framing.LinkEthernet}
	utc      = &Style{Location: time.UTC}
)

func packet(fr dumptest.Frame, ifc *framing.Interface) framing.Packet {
	return framing.Packet{Data: fr.Data, Length: len(fr.Data), Timestamp: fr.TS.UnixNano(), Interface: ifc}
}

// line decodes fr and returns its line without the newline.
func line(d *Decoder, fr dumptest.Frame, ifc *framing.Interface, st *Style) string {
	p := packet(fr, ifc)
	d.Decode(&p)
	return strings.TrimSuffix(string(d.AppendLine(nil, st)), "\n")
}

func byNote(t *testing.T, frames []dumptest.Frame, note string) dumptest.Frame {
	t.Helper()
	for _, fr := range frames {
		if fr.Note == note {
			return fr
		}
	}
	t.Fatalf("no frame %q in the trace", note)
	return dumptest.Frame{}
}

// The parts of each line that must read as tcpdump -n -S prints them (checked against the
// real tcpdump by TestLinesLikeTcpdump; these hold without it).
func TestLineSubstrings(t *testing.T) {
	frames := trace(t)
	d := NewDecoder()
	verbose, link := &Style{Location: time.UTC, Verbose: true}, &Style{Location: time.UTC, Link: true}
	for _, c := range []struct {
		note  string
		style *Style
		want  []string
	}{
		{"udp", utc, []string{"22:13:20.123456 IP 192.0.2.10.40000 > 203.0.113.10.30000: UDP, length 20"}},
		{"tcp syn", utc, []string{"IP 192.0.2.10.40001 > 203.0.113.10.80: Flags [S], seq 1000, win 64240, length 0"}},
		{"tcp syn-ack", utc, []string{"Flags [S.], seq 5000, ack 1001, win 65160, length 0"}},
		{"tcp ack", utc, []string{": Flags [.], ack 5001, win 502, length 0"}},
		{"tcp psh-ack", utc, []string{"Flags [P.], seq 1001:1101, ack 5001, win 502, length 100"}},
		{"tcp fin-ack", utc, []string{"Flags [F.], seq 5001, ack 1101"}},
		{"tcp rst", utc, []string{"198.51.100.7.443 > 192.0.2.11.50000: Flags [R], seq 77, win 0, length 0"}},
		{"icmp echo request", utc, []string{"IP 192.0.2.10 > 198.51.100.1: ICMP echo request, id 7, seq 1, length 20"}},
		{"icmp echo reply", utc, []string{"ICMP echo reply, id 7, seq 1, length 20"}},
		{"icmp port unreachable", utc, []string{"ICMP 203.0.113.10 udp port 30000 unreachable, length 36"}},
		{"arp request", utc, []string{"ARP, Request who-has 192.0.2.1 tell 192.0.2.10, length 46"}},
		{"arp reply", utc, []string{"ARP, Reply 192.0.2.1 is-at 02:00:00:00:00:02, length 46"}},
		{"ipv6 udp", utc, []string{"IP6 2001:db8:1::10.40000 > 2001:db8:2::10.30000: UDP, length 3"}},
		{"ipv6 tcp syn", utc, []string{"IP6 2001:db8:1::10.40002 > 2001:db8:2::10.443: Flags [S], seq 42, win 64800, length 0"}},
		{"icmp6 echo request", utc, []string{"IP6 2001:db8:1::10 > 2001:db8:2::10: ICMP6, echo request, id 9, seq 2, length 13"}},
		{"vlan 100 udp", utc, []string{"IP 192.0.2.20.40000 > 203.0.113.20.30000: UDP, length 30"}},
		{"udp fragment 1", utc, []string{"IP 192.0.2.10.40001 > 198.51.100.7.30000: UDP, length 40"}},
		{"udp fragment 2", utc, []string{"IP 192.0.2.10 > 198.51.100.7: ip-proto-17"}},
		{"udp", link, []string{"02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 62: 192.0.2.10.40000 > "}},
		{"vlan 200 tcp syn", link, []string{"ethertype 802.1Q (0x8100), length 60: vlan 200, p 3, ethertype IPv4 (0x0800), 192.0.2.20.40003 > 203.0.113.20.80: Flags [S]"}},
		{"qinq 300/100 udp", link, []string{"ethertype 802.1Q-QinQ (0x88a8), length 62: vlan 300, p 0, ethertype 802.1Q (0x8100), vlan 100, p 0, ethertype IPv4 (0x0800), 192.0.2.20.40004 > 203.0.113.10.53: UDP, length 12"}},
		{"arp request", link, []string{"02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 60: Request who-has"}},
		{"udp", verbose, []string{"IP (tos 0x0, ttl 64, id 4660, offset 0, flags [DF], proto UDP (17), length 48) 192.0.2.10.40000 > 203.0.113.10.30000: [udp sum ok] UDP, length 20"}},
		{"tcp syn", verbose, []string{"Flags [S], cksum 0x1663 (correct), seq 1000"}},
		{"udp fragment 1", verbose, []string{"id 16962, offset 0, flags [+], proto UDP (17), length 44)"}},
		{"udp fragment 2", verbose, []string{"offset 24, flags [none]"}},
		{"udp bad checksum", verbose, []string{"[bad udp cksum 0x272e -> 0xd82e!] UDP, length 8"}},
		{"icmp6 echo request", verbose, []string{"IP6 (hlim 64, next-header ICMPv6 (58) payload length: 13) 2001:db8:1::10 > 2001:db8:2::10: [icmp6 sum ok] ICMP6, echo request"}},
		{"arp request", verbose, []string{"ARP, Ethernet (len 6), IPv4 (len 4), Request who-has"}},
	} {
		got := line(d, byNote(t, frames, c.note), ethIface, c.style)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s (%+v):\n got %s\nwant substring %s", c.note, *c.style, got, w)
			}
		}
		if strings.Contains(got, "malformed") {
			t.Errorf("%s: %s", c.note, got)
		}
	}
}

func TestLineTimeInterfaceDirection(t *testing.T) {
	fr := trace(t)[0]
	d := NewDecoder()
	p := packet(fr, &framing.Interface{Name: "lan0", LinkType: framing.LinkEthernet})
	p.Direction = framing.DirOutbound
	d.Decode(&p)
	got := string(d.AppendLine(nil, &Style{Epoch: true}))
	if want := "1700000000.123456789 lan0 Out IP 192.0.2.10.40000 > "; !strings.HasPrefix(got, want) {
		t.Errorf("got %q, want prefix %q", got, want)
	}
	if got := string(d.AppendLine(nil, utc)); !strings.HasPrefix(got, "22:13:20.123456 lan0 Out IP ") {
		t.Errorf("got %q", got)
	}
}

// tcpdumpLines runs the real tcpdump -n -S on file with args and returns one line per packet
// without its time (continuation lines of -v joined).
func tcpdumpLines(t *testing.T, file string, args ...string) []string {
	t.Helper()
	cmd := exec.Command("tcpdump", append([]string{"-n", "-S", "-r", file}, args...)...)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tcpdump %v: %v", args, err)
	}
	text := regexp.MustCompile(`\n\s+`).ReplaceAllString(strings.TrimRight(string(out), "\n"), " ")
	lines := strings.Split(text, "\n")
	for i := range lines {
		lines[i] = lines[i][len("22:13:20.123456 "):]
	}
	return lines
}

// Every line, with -e and with -v, reads as the real tcpdump prints the same frame, on every
// link type: tcpdump's line starts with ours (it goes on to decode applications, which we
// do not). Known differences are normalized and listed here.
func TestLinesLikeTcpdump(t *testing.T) {
	needTool(t, "tcpdump")
	dir := t.TempDir()
	frames := trace(t)
	links := []struct {
		name   string
		link   layers.LinkType
		frames []dumptest.Frame
		// norm turns tcpdump's line into what we print: tcpdump names an SLL2 interface
		// from this host's interface list, and shows SLL's direction only with -e.
		norm func(theirs string, e bool) string
	}{
		{"ethernet", layers.LinkTypeEthernet, frames, nil},
		{"sll", layers.LinkTypeLinuxSLL, relink(frames, func(b []byte) []byte { return sll(b, 4) }),
			func(s string, e bool) string {
				if !e {
					return "Out " + s
				}
				return s
			}},
		{"sll2", layers.LinkType(framing.LinkLinuxSLL2), relink(frames, func(b []byte) []byte { return sll2(b, 0, 3) }),
			func(s string, _ bool) string { return regexp.MustCompile(`^\S+\s+In\s+`).ReplaceAllString(s, "In ") }},
		{"raw", layers.LinkTypeRaw, relink(frames, rawIP), nil},
	}
	for _, l := range links {
		file := filepath.Join(dir, l.name+".pcap")
		writePcap(t, file, l.link, l.frames)
		ifc := &framing.Interface{LinkType: framing.LinkType(l.link)}
		for _, mode := range []struct {
			args  []string
			style Style
		}{
			{nil, Style{}},
			{[]string{"-e"}, Style{Link: true}},
			{[]string{"-v"}, Style{Verbose: true}},
		} {
			theirs := tcpdumpLines(t, file, mode.args...)
			if len(theirs) != len(l.frames) {
				t.Fatalf("%s %v: tcpdump printed %d lines for %d frames", l.name, mode.args, len(theirs), len(l.frames))
			}
			d := NewDecoder()
			for i, fr := range l.frames {
				if strings.Contains(fr.Note, "qinq") {
					continue // to port 53: tcpdump decodes DNS from the first byte on
				}
				ours := line(d, fr, ifc, &mode.style)[len("22:13:20.123456 "):]
				if mode.style.Verbose && d.Frame().Net == NetIPv4 {
					// We judge IPv4 UDP checksums at -v; tcpdump waits for -vv.
					ours = udpSum.ReplaceAllString(ours, "")
				}
				want := theirs[i]
				if l.norm != nil {
					want = l.norm(want, mode.style.Link)
				}
				if !strings.HasPrefix(want, ours) {
					t.Errorf("%s %v frame %d (%s):\n ours    %s\n tcpdump %s", l.name, mode.args, i+1, fr.Note, ours, want)
				}
			}
		}
	}
}

func jsonOf(t *testing.T, d *Decoder, fr dumptest.Frame, ifc *framing.Interface) map[string]any {
	t.Helper()
	p := packet(fr, ifc)
	d.Decode(&p)
	b := d.AppendJSON(nil)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v\n%s", fr.Note, err, b)
	}
	if b[len(b)-1] != '\n' || strings.Count(string(b), "\n") != 1 {
		t.Errorf("%s: want one line: %q", fr.Note, b)
	}
	return m
}

func TestJSON(t *testing.T) {
	frames := trace(t)
	d := NewDecoder()
	ifc := &framing.Interface{Name: "lan\"0", LinkType: framing.LinkEthernet}
	for _, c := range []struct {
		note string
		want map[string]any // a path a.b: value as encoding/json decodes it
	}{
		{"udp", map[string]any{"time_ns": 1.700000000123456789e18, "interface": "lan\"0", "len": 62.0, "caplen": 62.0,
			"link": "EN10MB", "eth.src": "02:00:00:00:00:01", "eth.dst": "02:00:00:00:00:02", "eth.type": "0x0800",
			"ip.version": 4.0, "ip.src": "192.0.2.10", "ip.dst": "203.0.113.10", "ip.ttl": 64.0, "ip.id": 4660.0,
			"ip.len": 48.0, "ip.proto": 17.0, "proto": "udp", "sport": 40000.0, "dport": 30000.0, "length": 20.0}},
		{"tcp syn-ack", map[string]any{"proto": "tcp", "sport": 80.0, "flags": "S.", "seq": 5000.0, "ack": 1001.0, "win": 65160.0, "length": 0.0}},
		{"tcp psh-ack", map[string]any{"flags": "P.", "length": 100.0}},
		{"icmp echo request", map[string]any{"proto": "icmp", "icmp.type": 8.0, "icmp.code": 0.0, "icmp.id": 7.0, "icmp.seq": 1.0}},
		{"icmp6 echo request", map[string]any{"proto": "icmp6", "ip.version": 6.0, "ip.src": "2001:db8:1::10", "icmp.type": 128.0, "icmp.id": 9.0}},
		{"arp reply", map[string]any{"proto": "arp", "arp.op": "reply", "arp.sender_ip": "192.0.2.1", "arp.sender_mac": "02:00:00:00:00:02", "arp.target_ip": "192.0.2.10"}},
		{"qinq 300/100 udp", map[string]any{"vlan": []any{300.0, 100.0}, "eth.type": "0x88a8", "dport": 53.0}},
		{"udp fragment 2", map[string]any{"proto": 17.0, "ip.frag_offset": 24.0, "ip.more_fragments": false}},
	} {
		m := jsonOf(t, d, byNote(t, frames, c.note), ifc)
		for path, want := range c.want {
			var got any = m
			for _, k := range strings.Split(path, ".") {
				got = got.(map[string]any)[k]
				if got == nil {
					break
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: %s = %v, want %v", c.note, path, got, want)
			}
		}
	}
	// The time is exact to the nanosecond, which a float64 cannot hold: check the text.
	p := packet(frames[0], ifc)
	d.Decode(&p)
	if b := d.AppendJSON(nil); !strings.HasPrefix(string(b), `{"time_ns":1700000000123456789,"interface":"lan\"0",`) {
		t.Errorf("JSON starts %s", b[:60])
	}
}

// Truncated and corrupt packets print a clear marker and never panic, whatever the cut.
func TestMalformed(t *testing.T) {
	frames := trace(t)
	d := NewDecoder()
	for _, fr := range frames {
		for n := 0; n < len(fr.Data); n++ {
			p := framing.Packet{Data: fr.Data[:n], Length: len(fr.Data), Timestamp: 1, Interface: ethIface}
			f := d.Decode(&p)
			l := string(d.AppendLine(nil, &Style{Verbose: true, Link: true}))
			j := d.AppendJSON(nil)
			if !json.Valid(j) {
				t.Fatalf("%s cut at %d: invalid JSON %s", fr.Note, n, j)
			}
			if f.Err != nil && !strings.Contains(l, "[malformed: ") {
				t.Errorf("%s cut at %d: error %v but line %q", fr.Note, n, f.Err, l)
			}
		}
	}
	for _, c := range []struct {
		name string
		data []byte
		link framing.LinkType
		want string
	}{
		{"short ethernet", []byte{1, 2, 3}, framing.LinkEthernet, "[malformed: Ethernet packet too small]"},
		{"ip header cut", append(append([]byte(nil), frames[0].Data[:14]...), 0x45, 0, 0, 48), framing.LinkEthernet, "IP [malformed: Invalid ip4 header. Length 4 less than 20]"},
		{"tcp header cut", frames[1].Data[:14+20+10], framing.LinkEthernet, "IP 192.0.2.10 > 203.0.113.10: [malformed: Invalid TCP header. Length 10 less than 20]"},
		{"bad ihl", func() []byte {
			b := append([]byte(nil), frames[0].Data...)
			b[14] = 0x43
			return b
		}(), framing.LinkEthernet, "[malformed: Invalid (too small) IP header length (3 < 5)]"},
		{"raw version 5", []byte{0x50, 0, 0, 20}, framing.LinkRaw, "[malformed: raw IP packet with an IP version other than 4 or 6]"},
		{"unknown link", []byte{1, 2, 3, 4}, framing.LinkType(147), "link type 147, 4 bytes"},
		{"short sll", []byte{0, 0, 0, 1}, framing.LinkLinuxSLL, "[malformed: Linux SLL packet too small]"},
	} {
		p := framing.Packet{Data: c.data, Length: len(c.data), Interface: &framing.Interface{LinkType: c.link}}
		d.Decode(&p)
		if got := line(d, dumptest.Frame{Data: c.data}, &framing.Interface{LinkType: c.link}, utc); !strings.Contains(got, c.want) {
			t.Errorf("%s: got %q, want %q in it", c.name, got, c.want)
		}
	}
}

// Decoding and filtering a UDP packet, and formatting its line and its JSON into a reused
// buffer, allocate nothing.
func TestNoAllocations(t *testing.T) {
	fr := trace(t)[0]
	p := packet(fr, ethIface)
	d := NewDecoder()
	fl, err := ParseFilter("udp and host 192.0.2.10 and not port 53 and len > 10 or vlan")
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if !fl.Match(d.Decode(&p)) {
			t.Fatal("filter does not match")
		}
	}); n != 0 {
		t.Errorf("decode + filter: %v allocations per packet, want 0", n)
	}
	buf := make([]byte, 0, 512)
	st := &Style{Location: time.UTC, Verbose: true}
	if n := testing.AllocsPerRun(1000, func() {
		d.Decode(&p)
		buf = d.AppendLine(buf[:0], st)
		buf = d.AppendJSON(buf[:0])
	}); n != 0 {
		t.Errorf("decode + line + JSON: %v allocations per packet, want 0", n)
	}
}

func BenchmarkDecodeFilterLine(b *testing.B) {
	fr := trace(b)[1]
	p := packet(fr, ethIface)
	d := NewDecoder()
	fl, _ := ParseFilter("tcp port 80")
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		if fl.Match(d.Decode(&p)) {
			buf = d.AppendLine(buf[:0], utc)
		}
	}
}

// Whatever the bytes, on every link type, decoding, filtering and printing do not panic and
// the JSON stays valid.
func FuzzDecode(f *testing.F) {
	for _, fr := range trace(f) {
		f.Add(fr.Data, uint16(framing.LinkEthernet))
	}
	f.Add([]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2}, uint16(framing.LinkRaw))
	fl, err := ParseFilter("vlan and vlan and udp port 53 or tcp or icmp6 or host 192.0.2.1 or net 2001:db8::/32")
	if err != nil {
		f.Fatal(err)
	}
	d := NewDecoder()
	st := &Style{Verbose: true, Link: true, Location: time.UTC}
	f.Fuzz(func(t *testing.T, data []byte, link uint16) {
		p := framing.Packet{Data: data, Length: len(data) + int(link%3), Interface: &framing.Interface{LinkType: framing.LinkType(link)}}
		fl.Match(d.Decode(&p))
		d.AppendLine(nil, st)
		if j := d.AppendJSON(nil); !json.Valid(j) {
			t.Fatalf("invalid JSON: %s", j)
		}
	})
}
