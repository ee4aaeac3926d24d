package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

// The kernel router of TestFwKernelRouter: namespace r forwards between its interfaces rw
// (west, 192.0.2.1/24) and re (east, 198.51.100.1/24). The far ends, eth0 in namespaces w
// and e, have no addresses and no IPv6, so no host stack answers what the test injects
// there or what the router forwards; they are where frames are injected and captured.
var fwKMACs = fwMACs{
	west:       net.HardwareAddr{2, 0, 0, 0, 0x1a, 1},
	routerWest: net.HardwareAddr{2, 0, 0, 0, 0x1a, 2},
	east:       net.HardwareAddr{2, 0, 0, 0, 0x1b, 1},
	routerEast: net.HardwareAddr{2, 0, 0, 0, 0x1b, 2},
}

// fwKernelRules is the rule set both the kernel and stdpkt-fw load; {RW} and {RE} stand for the
// router's interface names.
const fwKernelRules = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DNS - [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i {RW} -p tcp -m tcp --dport 80 -j ACCEPT
-A FORWARD -i {RE} -p tcp -m tcp --dport 8080 -j ACCEPT
-A FORWARD -p udp -j DNS
-A FORWARD -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 23 -j REJECT --reject-with tcp-reset
-A DNS -p udp -m udp --dport 53 -j ACCEPT
-A DNS -j RETURN
COMMIT
`

// fwKnownDiff is a packet on which stdpkt-fw in a one-way replay is expected to differ from
// the kernel, and why.
type fwKnownDiff struct{ kernel, stdpkt bool }

// fwKernelTrace is the two-sided conversation: every packet says which side sends it and
// whether the kernel passes it (the test checks that too, so a lab that does not do what
// this says fails loudly rather than compares nothing). Packets on which a one-way replay
// through stdpkt-fw is expected to differ are in diffs.
// nft says whether iptables is the nf_tables variant, which translates "-p tcp --dport 80"
// to a native payload match instead of the xt_tcp match.
func fwKernelTrace(t *testing.T, nft bool) (*fwTrace, map[string]string) {
	tr := newFwTrace(t, fwKMACs)
	diffs := map[string]string{}
	const w, e = fwWest, fwEast
	udp := func(name string, fromEast, pass bool, src, dst string, sp, dp uint16, payload string) *fwPkt {
		return tr.add(name, fromEast, pass, tr.ip(src, dst, layers.IPProtocolUDP), &layers.UDP{SrcPort: layers.UDPPort(sp), DstPort: layers.UDPPort(dp)}, gopacket.Payload(payload))
	}
	icmp := func(name string, fromEast, pass bool, src, dst string, typ, code uint8, id uint16, payload []byte) *fwPkt {
		seq := uint16(1) // echo; errors have 4 unused bytes, zero
		if typ != 0 && typ != 8 {
			seq = 0
		}
		return tr.add(name, fromEast, pass, tr.ip(src, dst, layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: id, Seq: seq}, gopacket.Payload(payload))
	}

	// A web connection west to east, allowed by -i RW --dport 80, and its replies.
	web := tr.tcp("web", w, 40001, e, 80, false)
	web.handshake()
	web.exchange("GET / HTTP/1.1\r\nHost: example.net\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	// A connection east to west, allowed by -i RE --dport 8080.
	alt := tr.tcp("alt east->west", e, 50001, w, 8080, true)
	alt.handshake()
	alt.exchange("PUT /x HTTP/1.1\r\n\r\n", "HTTP/1.1 201 Created\r\n\r\n")
	for _, s := range []string{"SYN", "SYN-ACK", "ACK", "request", "ACK of request", "response", "ACK of response"} {
		diffs["alt east->west "+s] = "one-way replay: every frame enters stdpkt-fw by its west side, so -i RE (east) never matches; the SYN is dropped by the policy and the rest of the connection with it"
	}
	// Telnet: rejected with a reset.
	telnet := tr.tcp("telnet", w, 40002, e, 23, false)
	telnet.passC = false
	telnet.seg("SYN", false, true, false, false, false, "")
	// Unsolicited inbound: to ssh (no rule) and to the web port (only allowed from the west).
	ssh := tr.tcp("ssh inbound", e, 55555, w, 22, true)
	ssh.passC = false
	ssh.seg("SYN", false, true, false, false, false, "")
	in80 := tr.tcp("web inbound", e, 55556, w, 80, true)
	in80.passC = false
	in80.seg("SYN", false, true, false, false, false, "")
	diffs["web inbound SYN"] = "one-way replay: the SYN enters stdpkt-fw by its west side, so -i RW matches it"
	// DNS through the user chain, a UDP port the chain returns from, and the policy.
	udp("dns query", false, true, w, e, 33333, 53, "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03net\x00\x00\x01\x00\x01")
	udp("dns answer", true, true, e, w, 53, 33333, "\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x07example\x03net\x00\x00\x01\x00\x01")
	udp("udp 5000", false, false, w, e, 33334, 5000, "denied")
	// Echo request and reply; an unsolicited echo reply.
	icmp("echo request", false, true, w, e, 8, 0, 7, []byte("ping"))
	icmp("echo reply", true, true, e, w, 0, 0, 7, []byte("ping"))
	icmp("unsolicited echo reply", true, false, e, w, 0, 0, 99, []byte("pong"))
	// An ICMP error about a datagram that passed (RELATED), and one about nothing known.
	q := udp("dns query 2", false, true, w, e, 33335, 53, "query two")
	icmp("port unreachable (related)", true, true, e, w, 3, 3, 0, q.data[14:])
	ghost := fwIPv4UDP(t, w, e, 44444, 9999, 0x4444, "never sent")
	icmp("port unreachable (unrelated)", true, false, e, w, 3, 3, 0, ghost)
	// Fragmented datagrams: to DNS (passes whole) and to a closed port (dropped whole).
	tr.fragments("dns fragments", false, true, w, e, 33336, 53, 3000)
	tr.fragments("udp 5001 fragments", false, false, w, e, 33337, 5001, 3000)
	// Malformed: a bad IP header checksum on a datagram that would pass, a TCP header cut
	// short, a bad TCP checksum and a segment far outside the window in the established web
	// connection (the kernel's conntrack calls the last two INVALID, so only the policy
	// could take them, and it drops).
	bad := udp("dns query, bad IP checksum", false, false, w, e, 33338, 53, "bad")
	bad.data[14+10] ^= 0xff
	cut := web.seg("truncated TCP header to port 80", false, false, true, false, false, "")
	fwTruncateTCP(cut, 12)
	cut.pass = nft
	if nft {
		diffs[cut.name] = "iptables-nft compiles -p tcp --dport 80 to nft's 'tcp dport', which reads the 2 port bytes and matches a header cut to 12 bytes " +
			"(conntrack calls it INVALID, so only that rule can pass it); stdpkt-fw drops a truncated TCP header as malformed before any rule, " +
			"as iptables-legacy's xt_tcp match would (hotdrop)"
	}
	cut = web.seg("truncated TCP header from port 80", true, false, true, false, false, "")
	fwTruncateTCP(cut, 12)
	cut.pass = false
	badsum := web.seg("response with bad TCP checksum", true, false, true, false, false, "junk")
	badsum.data[14+20+16] ^= 0xff
	badsum.pass = false
	web.sseq -= 4 // the receiver never took it
	// A known gap of stdpkt-fw, kept visible here until it is closed: netstack's tcpconntrack
	// ignores a segment outside the window for its state, yet still reports the packet
	// ESTABLISHED; Linux's tcp_in_window calls it INVALID, so the ESTABLISHED rule does not
	// take it and the policy drops it. Closing it means window tracking in osinst (see the
	// closing notes); the test then fails on "expected to differ, yet agrees" and this entry
	// goes.
	ooo := web.seg("response far outside the window", true, false, true, false, false, "late")
	diffs[ooo.name] = "no TCP window tracking: netstack's conntrack passes a segment far outside the window as ESTABLISHED, Linux marks it INVALID"
	binary.BigEndian.PutUint32(ooo.data[14+20+4:], web.sseq-4+0x40000000)
	fwFixTCPChecksum(ooo)
	ooo.pass = false
	web.sseq -= 4
	web.close()
	return tr, diffs
}

// fragments adds a UDP datagram of n payload bytes as IPv4 fragments of at most 1500 bytes,
// in order, all with one IP ID.
func (tr *fwTrace) fragments(name string, fromEast, pass bool, src, dst string, sp, dp uint16, n int) {
	tr.id++
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i)
	}
	dg := fwIPv4UDP(tr.t, src, dst, sp, dp, tr.id, string(payload))
	body := dg[20:]
	for off := 0; off < len(body); off += 1480 {
		end := min(off+1480, len(body))
		ip := append(append([]byte(nil), dg[:20]...), body[off:end]...)
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		fo := uint16(off / 8)
		if end < len(body) {
			fo |= 0x2000 // more fragments
		}
		binary.BigEndian.PutUint16(ip[6:], fo)
		fwIPv4Checksum(ip)
		tr.raw(fmt.Sprintf("%s @%d", name, off), fromEast, pass, tr.id, ip)
		tr.pkts[len(tr.pkts)-1].frag = off
	}
}

// fwIPv4UDP returns an IPv4 UDP datagram with ID id, checksums right.
func fwIPv4UDP(t *testing.T, src, dst string, sp, dp, id uint16, payload string) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: id, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	u := &layers.UDP{SrcPort: layers.UDPPort(sp), DstPort: layers.UDPPort(dp)}
	u.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, u, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func fwIPv4Checksum(ip []byte) {
	ip[10], ip[11] = 0, 0
	hl := int(ip[0]&0xf) * 4
	binary.BigEndian.PutUint16(ip[10:], ^fwSum(ip[:hl], 0))
}

func fwSum(b []byte, s uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// fwFixTCPChecksum recomputes the TCP checksum of an untagged-Ethernet IPv4 frame.
func fwFixTCPChecksum(p *fwPkt) {
	ip := p.data[14:]
	seg := ip[20:binary.BigEndian.Uint16(ip[2:])]
	seg[16], seg[17] = 0, 0
	pseudo := append(append(append([]byte(nil), ip[12:20]...), 0, 6), byte(len(seg)>>8), byte(len(seg)))
	binary.BigEndian.PutUint16(seg[16:], ^fwSum(seg, uint32(fwSum(pseudo, 0))))
}

// fwTruncateTCP cuts the TCP header of an IPv4 frame to n bytes.
func fwTruncateTCP(p *fwPkt, n int) {
	ip := p.data[14 : 14+20+n]
	binary.BigEndian.PutUint16(ip[2:], uint16(20+n))
	fwIPv4Checksum(ip)
	p.data = p.data[:14+20+n]
}

// fwKey names what a captured frame is: a trace packet by IP ID (and fragment offset), or,
// for a frame the router made, a summary of its fields.
func fwKey(data []byte) (string, bool) {
	pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.NoCopy)
	ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ok {
		return "", false
	}
	if ip.Id > 0x5100 && ip.Id < 0x5400 {
		return fmt.Sprintf("%04x@%d", ip.Id, int(ip.FragOffset)*8), true
	}
	if tcp, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		return fmt.Sprintf("generated TCP %s:%d > %s:%d seq %d ack %d RST %v ACK %v SYN %v win %d len %d ttl %d df %v",
			ip.SrcIP, tcp.SrcPort, ip.DstIP, tcp.DstPort, tcp.Seq, tcp.Ack, tcp.RST, tcp.ACK, tcp.SYN, tcp.Window, len(tcp.Payload), ip.TTL, ip.Flags&layers.IPv4DontFragment != 0), true
	}
	return fmt.Sprintf("generated IPv4 %s > %s proto %d len %d", ip.SrcIP, ip.DstIP, ip.Protocol, ip.Length), true
}

// fwPort is an AF_PACKET socket on an interface of a namespace: the test writes frames to
// the wire with it and collects what arrives.
type fwPort struct {
	fd  int
	mu  sync.Mutex
	got [][]byte
}

// openFwPort opens the socket from a thread that has entered the namespace; the thread is
// never handed back to the scheduler (the goroutine ends locked, so it exits), and the
// socket stays in that namespace.
func openFwPort(t *testing.T, ns, ifname string) *fwPort {
	t.Helper()
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		var fd int
		err := inNetns(ns, func() error {
			proto := int(htons(unix.ETH_P_ALL))
			var err error
			fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
			if err != nil {
				return err
			}
			ifi, err := net.InterfaceByName(ifname)
			if err == nil {
				err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
			}
			if err == nil {
				err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50000})
			}
			if err != nil {
				unix.Close(fd)
			}
			return err
		})
		if err != nil {
			fd = -1
		}
		ch <- res{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("packet socket on %s in %s: %v", ifname, ns, r.err)
	}
	p := &fwPort{fd: r.fd}
	done := make(chan struct{})
	stop := make(chan struct{})
	go func() { // collect what arrives (not what we send) until stopped
		defer close(done)
		buf := make([]byte, 65536)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, from, err := unix.Recvfrom(p.fd, buf, 0)
			if err != nil {
				continue // timeout: look at stop again
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			p.mu.Lock()
			p.got = append(p.got, append([]byte(nil), buf[:n]...))
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		unix.Close(p.fd)
	})
	return p
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (p *fwPort) send(t *testing.T, frame []byte) {
	t.Helper()
	if _, err := unix.Write(p.fd, frame); err != nil {
		t.Fatalf("injecting a frame: %v", err)
	}
}

// has reports whether a frame with key k has arrived.
func (p *fwPort) has(k string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.got {
		if got, ok := fwKey(f); ok && got == k {
			return true
		}
	}
	return false
}

func (p *fwPort) keys() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, f := range p.got {
		if k, ok := fwKey(f); ok {
			out = append(out, k)
		}
	}
	return out
}

func (p *fwPkt) key() string { return fmt.Sprintf("%04x@%d", p.id, p.frag) }

// TestFwKernelRouter replays one two-sided conversation packet by packet through a Linux
// router in network namespaces (iptables-restore of a rule file, conntrack) and the same
// trace, one way, through stdpkt-fw with the same file, and compares which packets passed:
// packets are told by their IP ID, since the kernel routes (TTL, MACs) and stdpkt-fw does not.
func TestFwKernelRouter(t *testing.T) {
	needRoot(t)
	needTool(t, "iptables", "iptables")
	needTool(t, "iptables-restore", "iptables")
	l := newLab(t, "k")
	r, w, e := l.name("r"), l.name("w"), l.name("e")
	rw, re := l.name("rw"), l.name("re")
	for _, ns := range []string{r, w, e} {
		l.run("ip", "netns", "add", ns)
		l.run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
		l.run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	l.run("ip", "-n", r, "link", "add", rw, "address", fwKMACs.routerWest.String(), "type", "veth", "peer", "name", "eth0", "address", fwKMACs.west.String(), "netns", w)
	l.run("ip", "-n", r, "link", "add", re, "address", fwKMACs.routerEast.String(), "type", "veth", "peer", "name", "eth0", "address", fwKMACs.east.String(), "netns", e)
	l.run("ip", "-n", r, "addr", "add", "192.0.2.1/24", "dev", rw)
	l.run("ip", "-n", r, "addr", "add", "198.51.100.1/24", "dev", re)
	// No offloads: the kernel must check every checksum (veth would otherwise mark frames
	// CHECKSUM_UNNECESSARY and conntrack would trust a bad TCP checksum), and fragments
	// must not be merged.
	for _, c := range [][]string{{r, rw}, {r, re}, {w, "eth0"}, {e, "eth0"}} {
		l.run("ip", "netns", "exec", c[0], "ethtool", "-K", c[1], "rx", "off", "tx", "off", "tso", "off", "gso", "off", "gro", "off")
		l.run("ip", "-n", c[0], "link", "set", c[1], "up")
	}
	l.run("ip", "-n", r, "neigh", "replace", fwWest, "lladdr", fwKMACs.west.String(), "dev", rw, "nud", "permanent")
	l.run("ip", "-n", r, "neigh", "replace", fwEast, "lladdr", fwKMACs.east.String(), "dev", re, "nud", "permanent")
	l.run("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	dir := tempDir(t)
	rulesText := strings.NewReplacer("{RW}", rw, "{RE}", re).Replace(fwKernelRules)
	if err := os.WriteFile(filepath.Join(dir, "rules.txt"), []byte(rulesText), 0o644); err != nil {
		t.Fatal(err)
	}
	mustSh(t, dir, "ip netns exec "+r+" iptables-restore < rules.txt")
	if out, _ := mustSh(t, dir, "ip netns exec "+r+" sysctl -n net.netfilter.nf_conntrack_tcp_loose"); strings.TrimSpace(out) != "1" {
		t.Fatalf("nf_conntrack_tcp_loose is %s, want the default 1", out)
	}
	for ns, mac := range map[string]net.HardwareAddr{w: fwKMACs.west, e: fwKMACs.east} {
		if out, _ := mustSh(t, dir, "ip -n "+ns+" -o link show eth0"); !strings.Contains(out, "link/ether "+mac.String()) {
			t.Fatalf("eth0 in %s: want MAC %s: %s", ns, mac, out)
		}
	}

	ver, _ := mustSh(t, dir, "iptables --version")
	tr, diffs := fwKernelTrace(t, strings.Contains(ver, "nf_tables"))
	for name := range diffs {
		if !slices.ContainsFunc(tr.pkts, func(p fwPkt) bool { return p.name == name }) {
			t.Fatalf("known difference %q names no packet of the trace", name)
		}
	}
	west, east := openFwPort(t, w, "eth0"), openFwPort(t, e, "eth0")
	// Inject in trace order, each packet from its own side, and wait (boundedly) until it
	// is out on the far side, so the router meets the conversation in order.
	for i := range tr.pkts {
		p := &tr.pkts[i]
		from, to := west, east
		if p.fromEast {
			from, to = east, west
		}
		from.send(t, p.data)
		for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline) && !to.has(p.key()); {
			time.Sleep(time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond) // the last frames' answers
	kernel := map[string]bool{}
	var kernelGen []string
	for side, port := range map[string]*fwPort{"west": west, "east": east} {
		for _, k := range port.keys() {
			if strings.HasPrefix(k, "generated") {
				kernelGen = append(kernelGen, side+": "+k)
				continue
			}
			kernel[side+" "+k] = true
		}
	}

	// The same trace and rule file through stdpkt-fw, one way; the reset comes home to the
	// source's --west-out.
	writePcapng(t, filepath.Join(dir, "trace.pcapng"), "eth0", tr.frames(nil))
	_, errs := mustSh(t, dir, fmt.Sprintf("stdpkt-src -r trace.pcapng --west-out home.pcapng | stdpkt-fw -f rules.txt --alias %s=west --alias %s=east --list --stats-json fw.json | stdpkt-sink -w out.pcapng", rw, re))
	stdpkt := map[string]bool{}
	for _, f := range fwReadFrames(t, filepath.Join(dir, "out.pcapng")) {
		if k, ok := fwKey(f); ok {
			stdpkt[k] = true
		}
	}
	var stdpktGen []string
	for _, f := range fwReadFrames(t, filepath.Join(dir, "home.pcapng")) {
		if k, ok := fwKey(f); ok {
			stdpktGen = append(stdpktGen, "west: "+k)
		}
	}

	// Compare, packet by packet.
	var table []string
	for _, p := range tr.pkts {
		far := "east"
		if p.fromEast {
			far = "west"
		}
		k, s := kernel[far+" "+p.key()], stdpkt[p.key()]
		mark := ""
		switch why, known := diffs[p.name]; {
		case k != p.pass:
			mark = "  <- the kernel differs from what the trace expects"
			t.Errorf("%s (%s): the kernel router passed it: %v, the trace says %v", p.name, p.key(), k, p.pass)
		case known && (s == k):
			mark = "  <- expected to differ, yet agrees"
			t.Errorf("%s (%s): expected stdpkt-fw to differ from the kernel (%s), yet both passed: %v", p.name, p.key(), why, k)
		case known:
			mark = "  <- known: " + why
		case s != k:
			mark = "  <- DIFFERENCE"
			t.Errorf("%s (%s): kernel passed %v, stdpkt-fw passed %v", p.name, p.key(), k, s)
		}
		table = append(table, fmt.Sprintf("%-40s %s kernel %-5v stdpkt-fw %-5v%s", p.name, p.key(), k, s, mark))
	}
	for k := range kernel {
		if !slices.ContainsFunc(tr.pkts, func(p fwPkt) bool { return strings.HasSuffix(k, " "+p.key()) }) {
			t.Errorf("the kernel router forwarded a frame not in the trace: %s", k)
		}
	}
	sort.Strings(kernelGen)
	sort.Strings(stdpktGen)
	wantGen := fmt.Sprintf("west: generated TCP %s:23 > %s:40002 seq 0 ack %d RST true ACK true SYN false win 0 len 0 ttl 64 df true", fwEast, fwWest, 1000000+40002*7+1)
	if strings.Join(kernelGen, "\n") != wantGen {
		t.Errorf("the kernel router generated:\n%s\nwant:\n%s", strings.Join(kernelGen, "\n"), wantGen)
	}
	if strings.Join(stdpktGen, "\n") != strings.Join(kernelGen, "\n") {
		t.Errorf("generated frames differ:\nkernel:\n%s\nstdpkt-fw:\n%s", strings.Join(kernelGen, "\n"), strings.Join(stdpktGen, "\n"))
	}
	// The rules no known difference touches count alike, packets and bytes (a fragmented
	// datagram counts once, whole, in both).
	kc, _ := mustSh(t, dir, "ip netns exec "+r+" iptables-save -c -t filter")
	kcount := map[string]string{}
	num := map[string]int{}
	for _, line := range strings.Split(kc, "\n") {
		var pk, by uint64
		var chain string
		if n, _ := fmt.Sscanf(line, "[%d:%d] -A %s", &pk, &by, &chain); n == 3 {
			num[chain]++
			kcount[fmt.Sprintf("%s#%d", chain, num[chain])] = fmt.Sprintf("%d packets %d bytes", pk, by)
		}
	}
	var st fwStats
	readJSON(t, filepath.Join(dir, "fw.json"), &st)
	scount := map[string]string{}
	for _, c := range st.Rules {
		if c.Rule != "" {
			scount[fmt.Sprintf("%s#%d", c.Chain, c.Num)] = fmt.Sprintf("%d packets %d bytes", c.Packets, c.Bytes)
		}
	}
	for _, rule := range []string{"FORWARD#4", "FORWARD#5", "FORWARD#6", "DNS#1", "DNS#2"} {
		if kcount[rule] == "" || kcount[rule] != scount[rule] {
			t.Errorf("rule %s: the kernel counted %q, stdpkt-fw %q", rule, kcount[rule], scount[rule])
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("per packet:\n%s", strings.Join(table, "\n"))
		out, _, _ := sh(t, dir, "ip netns exec "+r+" iptables -L FORWARD -v -n -x; ip netns exec "+r+" iptables -L DNS -v -n -x")
		t.Logf("kernel counters:\n%s\nstdpkt-fw:\n%s", out, errs)
	}
}

// fwReadFrames reads the frames of a pcapng file.
func fwReadFrames(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		out = append(out, append([]byte(nil), data...))
	}
	return out
}
