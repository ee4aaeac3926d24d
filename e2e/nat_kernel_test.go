package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// knatFlows and knatSteps are the conversation: two inside hosts behind the NAT talk to one
// outside server. A web connection; two connections from the same source port to the same
// server port (a collision the NAT must resolve by moving one of them), interleaved; a DNS
// query and answer; two ICMP echoes.
func knatFlows() map[string]knatFlow {
	tcp, udp, icmp := layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolICMPv4
	return map[string]knatFlow{
		"t1": {tcp, knatTuple{knatA, knatS, 40001, 80}},
		"c1": {tcp, knatTuple{knatA, knatS, 40000, 443}},
		"c2": {tcp, knatTuple{knatB, knatS, 40000, 443}}, // A's c1 holds 203.0.113.1:40000 to S:443
		"u1": {udp, knatTuple{knatA, knatS, 40002, 53}},
		"e1": {icmp, knatTuple{knatB, knatS, 0x4242, 0}},
	}
}

func knatSteps() []knatStep {
	steps := knatTCP("t1", 1000, 5000, "GET / HTTP/1.0\r\n\r\n", "HTTP/1.0 200 OK\r\n\r\nhello\n")
	c1 := knatTCP("c1", 2000, 6000, "hello from A", "hi A")
	c2 := knatTCP("c2", 3000, 7000, "hello from B, same port", "hi B")
	for i := range c1 { // interleaved: the collision is live the whole time
		steps = append(steps, c1[i], c2[i])
	}
	return append(steps,
		knatStep{name: "u1 query", flow: "u1", data: "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03net\x00\x00\x01\x00\x01"},
		knatStep{name: "u1 answer", flow: "u1", reply: true, data: "\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x07example\x03net\x00\x00\x01\x00\x01"},
		knatStep{name: "e1 echo request 1", flow: "e1", seq: 1, data: "ping-1"},
		knatStep{name: "e1 echo reply 1", flow: "e1", reply: true, seq: 1, data: "ping-1"},
		knatStep{name: "e1 echo request 2", flow: "e1", seq: 2, data: "ping-2"},
		knatStep{name: "e1 echo reply 2", flow: "e1", reply: true, seq: 2, data: "ping-2"},
	)
}

// knatRec is one step as the kernel router's two sides saw it: the frame its sender put on
// the wire (an outside reply addressed to the kernel's translation), and the datagram the
// kernel forwarded to the other side.
type knatRec struct {
	step   knatStep
	id     uint16
	ts     time.Time
	frame  []byte
	kernel []byte
}

// knatReplayed is what a two-sided replay through stdpkt-nat gave: the datagrams that
// reached the sink (away) and came home to the source (home), by IP ID, and the stages'
// stderr.
type knatReplayed struct {
	away, home map[uint16][]byte
	errs       string
}

// knatReplay writes recs as a pcapng trace and replays it, both sides, through stdpkt-nat
// with natArgs. The whole pipeline is bounded by timeout(1).
func knatReplay(t *testing.T, dir, tag string, recs []knatRec, natArgs string) knatReplayed {
	t.Helper()
	var frames []frame
	for _, r := range recs {
		frames = append(frames, frame{ts: r.ts, data: r.frame})
	}
	conv, home, away := "conv-"+tag+".pcapng", "home-"+tag+".pcapng", "away-"+tag+".pcapng"
	writePcapng(t, filepath.Join(dir, conv), "eth0", frames)
	chain := fmt.Sprintf("stdpkt-src -r %s --from-east src=203.0.113.0/24 --turnaround-wait 2s --west-out %s | stdpkt-nat %s | stdpkt-sink -w %s",
		conv, home, natArgs, away)
	t.Logf("%s: %s", tag, chain)
	_, errs := mustSh(t, dir, "timeout -k 5 120 bash -o pipefail -c '"+chain+"'")
	for _, line := range strings.Split(errs, "\n") {
		if strings.HasPrefix(line, "stdpkt-") && strings.Contains(line, "bound: in ") && !booksBalance(line) {
			t.Errorf("%s: books do not balance: %s", tag, line)
		}
	}
	natFields(t, dir, away) // tshark checks every IP, TCP, UDP and ICMP checksum
	natFields(t, dir, home)
	return knatReplayed{
		away: knatByID(t, tag+" "+away, fwReadFrames(t, filepath.Join(dir, away))),
		home: knatByID(t, tag+" "+home, fwReadFrames(t, filepath.Join(dir, home))),
		errs: errs,
	}
}

// knatCompare compares a replay with the kernel, step by step. far is the kernel's
// external tuple per flow (as its first packet left the outside); replyPort is the port the
// trace's outside replies of a flow are addressed to. It returns stdpkt's external tuples.
//
// Every packet the inside sent must leave as the kernel's did, except for the external
// port: where the kernel kept the inside port, stdpkt must too; where the kernel moved it,
// stdpkt may pick another (both pick at random), one per flow. Replies addressed to the port
// stdpkt gave the flow must come home exactly as the kernel delivered them inside (but for
// the TTL: the kernel routes, stdpkt-nat without addresses is a bump in the wire); replies
// addressed to a port stdpkt did not give the flow must reach no inside host.
func knatCompare(t *testing.T, tag string, flows map[string]knatFlow, recs []knatRec, far map[string]knatTuple, replyPort map[string]uint16, got knatReplayed) map[string]knatTuple {
	t.Helper()
	sx := map[string]knatTuple{}
	ids := map[uint16]bool{}
	var table []string
	for _, r := range recs {
		ids[r.id] = true
		if r.step.reply {
			continue
		}
		if _, seen := sx[r.step.flow]; !seen {
			if ip := got.away[r.id]; ip != nil {
				sx[r.step.flow], _ = knatTupleOf(ip)
			}
		}
	}
	for _, r := range recs {
		s := r.step
		kdesc := knatDesc(r.kernel, knatExt(far[s.flow].sport))
		var sdesc, mark string
		switch {
		case !s.reply:
			ip := got.away[r.id]
			if ip == nil {
				t.Errorf("%s: %s: the kernel sent it out as %s; stdpkt-nat did not", tag, s.name, knatDesc(r.kernel, knatPlain))
				mark = "  <- DIFFERENCE"
				break
			}
			sdesc = knatDesc(ip, knatExt(sx[s.flow].sport))
			if sdesc != kdesc {
				t.Errorf("%s: %s, out on the outside:\n  kernel: %s\n  stdpkt: %s", tag, s.name, kdesc, sdesc)
				mark = "  <- DIFFERENCE"
			}
			if ip[8] != 64 {
				t.Errorf("%s: %s: stdpkt-nat (no addresses: a bump in the wire) sent it with TTL %d, want the inside host's 64", tag, s.name, ip[8])
			}
		case replyPort[s.flow] == sx[s.flow].sport:
			kdesc = knatDesc(r.kernel, knatPlain)
			ip := got.home[r.id]
			if ip == nil {
				t.Errorf("%s: %s: the kernel delivered it inside as %s; it did not come home through stdpkt-nat", tag, s.name, kdesc)
				mark = "  <- DIFFERENCE"
				break
			}
			if sdesc = knatDesc(ip, knatPlain); sdesc != kdesc {
				t.Errorf("%s: %s, delivered inside:\n  kernel: %s\n  stdpkt: %s", tag, s.name, kdesc, sdesc)
				mark = "  <- DIFFERENCE"
			}
		default:
			// Built for the kernel's port, which stdpkt did not give this flow.
			kdesc = knatDesc(r.kernel, knatPlain)
			mark = fmt.Sprintf("  <- addressed to the kernel's port %d, stdpkt gave the flow %d: must not reach the inside", replyPort[s.flow], sx[s.flow].sport)
			if ip := got.home[r.id]; ip != nil {
				sdesc = knatDesc(ip, knatPlain)
				for _, a := range knatAddrs(ip) {
					if knatInside.Contains(a) {
						t.Errorf("%s: %s, addressed to 203.0.113.1:%d, which stdpkt-nat never handed out, reached the inside: %s", tag, s.name, replyPort[s.flow], sdesc)
					}
				}
			}
		}
		where := "out"
		if s.reply {
			where = "in "
		}
		table = append(table, fmt.Sprintf("%-24s kernel %s: %s\n%-24s stdpkt %s: %s%s", s.name, where, kdesc, "", where, sdesc, mark))
	}
	for flow, f := range flows {
		k, kok := far[flow]
		st, sok := sx[flow]
		if !kok || !sok {
			if kok != sok {
				t.Errorf("%s: flow %s: the kernel translated its first packet: %v, stdpkt: %v", tag, flow, kok, sok)
			}
			continue
		}
		if st.src != knatRO {
			t.Errorf("%s: flow %s: stdpkt translated the source to %s, want %s", tag, flow, st.src, knatRO)
		}
		if k.sport == f.sport && st.sport != f.sport {
			t.Errorf("%s: flow %s: the kernel kept port %d, stdpkt moved it to %d", tag, flow, f.sport, st.sport)
		}
	}
	if a, b := sx["c1"], sx["c2"]; a.sport == b.sport {
		t.Errorf("%s: stdpkt gave the colliding flows c1 and c2 one external tuple %s:%d to %s:%d", tag, a.src, a.sport, a.dst, a.dport)
	}
	for id, ip := range got.away {
		if !ids[id] {
			t.Errorf("%s: stdpkt sent out a datagram not in the trace: %s", tag, knatDesc(ip, knatPlain))
		}
		for _, a := range knatAddrs(ip) {
			if knatInside.Contains(a) {
				t.Errorf("%s: inside address %s on the outside: %s", tag, a, knatDesc(ip, knatPlain))
			}
		}
	}
	for id, ip := range got.home {
		if !ids[id] {
			t.Errorf("%s: a datagram not in the trace came home: %s", tag, knatDesc(ip, knatPlain))
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("%s, step by step (EXT: the flow's external port on each side):\n%s", tag, strings.Join(table, "\n"))
		t.Logf("%s: the stages said:\n%s", tag, got.errs)
	}
	return sx
}

// TestNATKernelTwoSided: a two-sided replay of a trace with TCP handshakes through
// stdpkt-nat gives the same translations as the Linux kernel router on the same trace.
//
// A kernel NAT router (MASQUERADE out of its outside interface) in a namespace between two
// wires whose far ends have no addresses: the test injects frames there and captures what
// the router forwards (AF_PACKET). The conversation is played step by step; each outside
// reply is built from what the kernel put on the outside (its translated address and port).
// The trace of both sides, as the router's sides saw it, is then replayed through
//
//	stdpkt-src -r conv.pcapng --from-east src=203.0.113.0/24 --west-out home.pcapng |
//	stdpkt-nat --snat 203.0.113.1 | stdpkt-sink -w away.pcapng
//
// and compared: away holds what the kernel put on the outside, home what it delivered inside.
//
// The collision: both NATs keep 40000 for the first connection and move the second one to a
// port picked at random, so the two picks differ (almost always), and the trace's replies
// to the second one, addressed to the kernel's port, are not stdpkt's: the first replay
// checks that they reach no inside host. A second replay of the two colliding connections
// pins stdpkt's pick with --ports 40000-40001 (40000 taken, so 40001), addresses the
// second connection's replies to it, and compares everything exactly.
func TestNATKernelTwoSided(t *testing.T) {
	needRoot(t)
	needTool(t, "iptables", "iptables")
	needTool(t, "tshark", "tshark")
	needTool(t, "timeout", "coreutils")
	l := newLab(t, "m") // "n" is TestLiveNATForward's
	r, w, e := l.name("r"), l.name("w"), l.name("e")
	rw, re := l.name("rw"), l.name("re")
	for _, ns := range []string{r, w, e} {
		l.run("ip", "netns", "add", ns)
		l.run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
		l.run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	l.run("ip", "-n", r, "link", "add", rw, "address", knatMACs.routerIn.String(), "type", "veth", "peer", "name", "eth0", "address", knatMACs.in.String(), "netns", w)
	l.run("ip", "-n", r, "link", "add", re, "address", knatMACs.routerOut.String(), "type", "veth", "peer", "name", "eth0", "address", knatMACs.out.String(), "netns", e)
	l.run("ip", "-n", r, "addr", "add", "192.0.2.1/24", "dev", rw)
	l.run("ip", "-n", r, "addr", "add", "203.0.113.1/24", "dev", re)
	for _, c := range [][]string{{r, rw}, {r, re}, {w, "eth0"}, {e, "eth0"}} {
		l.run("ip", "netns", "exec", c[0], "ethtool", "-K", c[1], "rx", "off", "tx", "off", "tso", "off", "gso", "off", "gro", "off")
		l.run("ip", "-n", c[0], "link", "set", c[1], "up")
	}
	for _, a := range []string{knatA.String(), knatB.String()} {
		l.run("ip", "-n", r, "neigh", "replace", a, "lladdr", knatMACs.in.String(), "dev", rw, "nud", "permanent")
	}
	l.run("ip", "-n", r, "neigh", "replace", knatS.String(), "lladdr", knatMACs.out.String(), "dev", re, "nud", "permanent")
	l.run("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.run("ip", "netns", "exec", r, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", re, "-j", "MASQUERADE")
	for _, ns := range []string{w, e} {
		if out, err := execOut("ip", "-n", ns, "-o", "addr", "show", "dev", "eth0"); err != nil || strings.Contains(out, "inet") {
			t.Fatalf("eth0 in %s must have no address (%v): %s", ns, err, out)
		}
	}

	// Play the conversation through the kernel, step by step: each packet from its own
	// side, then a bounded wait until the router has forwarded it (found by its IP ID).
	flows, steps := knatFlows(), knatSteps()
	in, out := openFwPort(t, w, "eth0"), openFwPort(t, e, "eth0")
	far := map[string]knatTuple{}
	var recs []knatRec
	for i, s := range steps {
		f := flows[s.flow]
		tu := f.knatTuple
		if s.reply {
			k, ok := far[s.flow]
			if !ok {
				t.Fatalf("%s: the kernel emitted nothing for flow %s to reply to", s.name, s.flow)
			}
			tu = k.reverse()
		}
		id := uint16(0x6100 + i)
		rec := knatRec{step: s, id: id, ts: time.Now(), frame: knatBuild(t, f, s, tu, id)}
		from, to := in, out
		if s.reply {
			from, to = out, in
		}
		from.send(t, rec.frame)
		if rec.kernel = knatWaitID(to, id, 2*time.Second); rec.kernel == nil {
			t.Fatalf("the kernel router let nothing out for %s in 2 s: the namespace router does not work, nothing to compare with", s.name)
		}
		if _, seen := far[s.flow]; !s.reply && !seen {
			far[s.flow], _ = knatTupleOf(rec.kernel)
		}
		recs = append(recs, rec)
	}
	time.Sleep(200 * time.Millisecond) // bounded: anything else the router would send
	ids := map[uint16]bool{}
	for _, rec := range recs {
		ids[rec.id] = true
	}
	for side, p := range map[string]*fwPort{"inside": in, "outside": out} {
		for _, fr := range knatFrames(p) {
			if ip := knatIP(fr); ip == nil || !ids[knatID(ip)] {
				t.Errorf("the kernel router sent a frame %s that is not in the conversation: % x", side, fr[:min(len(fr), 48)])
			}
		}
	}
	// The lab did what the conversation needs: every flow masqueraded, the first colliding
	// connection kept its port, the second was moved.
	for name, tu := range far {
		if tu.src != knatRO {
			t.Fatalf("flow %s: the kernel sent it out from %s, want %s (MASQUERADE)", name, tu.src, knatRO)
		}
	}
	if far["c1"].sport != 40000 || far["c2"].sport == 40000 {
		t.Fatalf("the kernel gave c1 port %d and c2 port %d: the collision was not set up", far["c1"].sport, far["c2"].sport)
	}
	t.Logf("the kernel's external ports: t1 %d, c1 %d, c2 %d, u1 %d, e1 id %d",
		far["t1"].sport, far["c1"].sport, far["c2"].sport, far["u1"].sport, far["e1"].sport)

	// Replay 1: the whole trace, replies addressed as the kernel addressed them.
	dir := tempDir(t)
	kernelPorts := map[string]uint16{}
	for name, tu := range far {
		kernelPorts[name] = tu.sport
	}
	got := knatReplay(t, dir, "full", recs, "--snat 203.0.113.1")
	sx := knatCompare(t, "full trace", flows, recs, far, kernelPorts, got)
	t.Logf("stdpkt's external ports: t1 %d, c1 %d, c2 %d, u1 %d, e1 id %d",
		sx["t1"].sport, sx["c1"].sport, sx["c2"].sport, sx["u1"].sport, sx["e1"].sport)
	if sx["c2"].sport != far["c2"].sport {
		var strays []string
		for _, rec := range recs {
			if rec.step.flow == "c2" && rec.step.reply {
				if ip := got.home[rec.id]; ip != nil {
					strays = append(strays, knatDesc(ip, knatPlain))
				}
			}
		}
		t.Logf("c2's replies, addressed to the kernel's port %d, not stdpkt's %d: %d of 3 came back west untranslated (to no inside host): %s",
			far["c2"].sport, sx["c2"].sport, len(strays), strings.Join(strays, " | "))
	}

	// Replay 2: the colliding connections, stdpkt's pick pinned to 40001, c2's replies
	// addressed to it.
	var coll []knatRec
	for _, rec := range recs {
		if rec.step.flow != "c1" && rec.step.flow != "c2" {
			continue
		}
		if rec.step.flow == "c2" && rec.step.reply {
			rec.frame = knatBuild(t, flows["c2"], rec.step, knatTuple{knatS, knatRO, 443, 40001}, rec.id)
		}
		coll = append(coll, rec)
	}
	collFlows := map[string]knatFlow{"c1": flows["c1"], "c2": flows["c2"]}
	got2 := knatReplay(t, dir, "collision", coll, "--snat 203.0.113.1 --ports 40000-40001")
	sx2 := knatCompare(t, "collision, --ports 40000-40001", collFlows, coll,
		map[string]knatTuple{"c1": far["c1"], "c2": far["c2"]}, map[string]uint16{"c1": 40000, "c2": 40001}, got2)
	if sx2["c1"].sport != 40000 || sx2["c2"].sport != 40001 {
		t.Errorf("with --ports 40000-40001 stdpkt gave c1 port %d and c2 port %d, want 40000 (kept) and 40001 (the only other)", sx2["c1"].sport, sx2["c2"].sport)
	}
	var home []uint16
	for id := range got2.home {
		home = append(home, id)
	}
	if len(home) != 6 {
		slices.Sort(home)
		t.Errorf("collision replay: %d replies came home (IP IDs %#04x), want 6: SYN-ACK, response and FIN-ACK of each connection", len(home), home)
	}
}
