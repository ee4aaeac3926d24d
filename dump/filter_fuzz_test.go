package dump

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stdpkt/stdpkt/framing"
)

// filterFuzzSeeds are the expressions of the package's tests, valid and not.
func filterFuzzSeeds() []string {
	seeds := []string{
		// TestParseFilter
		"", "tcp", "tcp port 80", "port 80", "src port 80", "udp dst portrange 40000-30000", "host 192.0.2.10",
		"src or dst host 192.0.2.10", "src and dst net 192.0.2.0/24", "net 192.0.2", "net 198.51.100.0 mask 255.255.255.0",
		"ip6 net 2001:db8::/32", "arp host 192.0.2.1", "ether src 02:00:00:00:00:01", `ip proto \udp`, "proto 1",
		"len > 100", "less 60", "greater 1000", "not tcp and udp", "tcp or udp and port 80", "icmp or tcp and port 80",
		"tcp and port 80 or icmp", "tcp and (port 80 or icmp)", "! tcp && (udp || icmp)", "not not ip",
		"host 192.0.2.10 or 192.0.2.11", "tcp dst port 80 or 443 and not 8080", "vlan and udp",
		"udp or vlan 100 and vlan and host 192.0.2.1", "port http or domain", "inbound and ifname eth0",
		// TestParseFilterErrors
		"foo", "tcp and foo", "host 192.0.2.1 and foo", "192.0.2.10", "tcp port", "tcp port 99999", "tcp and",
		"(tcp or udp", "tcp)", "tcp udp", "tcp host 192.0.2.1", "ip host 2001:db8::1", "arp port 80",
		"net 192.0.2.1/24", "net 192.0.2.0/33", "len 100", "vlan 5000", "tcp[13] & 2 != 0", "tcp & udp",
		"broadcast", "ether 02:00:00:00:00:01", "host www.example.com", "ip proto 300", "not",
		// edge cases
		"outbound or on west", "len != 0x3c", "ether dst ff:ff:ff:ff:ff:ff or ether host 02-00-00-00-00-02",
		"ip6 proto 58 or icmp6", "src net 10 and dst net 2001:db8::/0", "portrange 1-", "net 10 mask 255.0.0.0",
		"((((tcp))))", "host ::ffff:192.0.2.1", "host fe80::1%eth0", "TCP PORT 80", "sctp src portrange 1-2",
		"len>=60&&len<=1500||!vlan", "\tip\n", "(", ")", "!", "&&", "==", "vlan 0x10 and vlan 4095",
	}
	// TestFilterCounts
	for _, c := range filterExprs {
		seeds = append(seeds, c.expr)
	}
	return seeds
}

// FuzzParseFilter: whatever the expression, ParseFilter
//   - either compiles it, or returns an error that names where it is wrong: "filter: at 'WORD'
//     (column N): ", WORD being the expression's text at byte column N, or "filter: at end of
//     expression (column N): ", N being just past the end;
//   - gives the same filter (String) or the same error twice;
//
// and a filter it compiles keeps its text (Text), and on every packet (the test trace, and the
// fuzzed bytes decoded as every link type, inbound or outbound, on a named interface) matching
// does not panic, gives the same answer twice, "not ( E )" gives the opposite answer, "( E )"
// the same tree, and, when E has no vlan (which moves what follows it a tag deeper),
// "( E ) and ( E )" and "( E ) or ( E )" the same answer as E.
func FuzzParseFilter(f *testing.F) {
	for i, s := range filterFuzzSeeds() {
		f.Add(s, []byte(nil))
		if i%5 == 0 {
			f.Add(s, []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 192, 0, 2, 1, 192, 0, 2, 10})
		}
	}
	frames := trace(f)
	d := NewDecoder()
	// the link types the fuzzed bytes are decoded as
	links := []framing.LinkType{framing.LinkEthernet, framing.LinkRaw, framing.LinkLinuxSLL,
		framing.LinkLinuxSLL2, framing.LinkIPv4, framing.LinkIPv6, framing.LinkNull}
	f.Fuzz(func(t *testing.T, expr string, pkt []byte) {
		fl, err := ParseFilter(expr)
		fl2, err2 := ParseFilter(expr)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() || err == nil && fl.String() != fl2.String() {
			t.Fatalf("%q: two parses differ: %v %v, then %v %v", expr, fl, err, fl2, err2)
		}
		if err != nil {
			checkFilterError(t, expr, err)
			return
		}
		if fl.Text() != expr || fl.String() == "" {
			t.Fatalf("%q: text %q, tree %q", expr, fl.Text(), fl.String())
		}
		if strings.TrimSpace(expr) == "" {
			if fl.String() != "all" {
				t.Fatalf("%q parsed as %s", expr, fl.String())
			}
			return
		}
		wrapped := mustFilter(t, "( "+expr+" )")
		if wrapped.String() != fl.String() {
			t.Fatalf("%q is %s, in parentheses %s", expr, fl.String(), wrapped.String())
		}
		not := mustFilter(t, "not ( "+expr+" )")
		if not.String() != "(not "+fl.String()+")" {
			t.Fatalf("%q is %s, negated %s", expr, fl.String(), not.String())
		}
		var and, or *Filter
		if !strings.Contains(strings.ToLower(expr), "vlan") {
			and, or = mustFilter(t, "( "+expr+" ) and ( "+expr+" )"), mustFilter(t, "( "+expr+" ) or ( "+expr+" )")
		}
		check := func(p *framing.Packet, what string) {
			got := fl.Match(d.Decode(p))
			if fl.Match(d.Decode(p)) != got || fl2.Match(d.Decode(p)) != got {
				t.Fatalf("%q on %s: two matches differ", expr, what)
			}
			if not.Match(d.Decode(p)) == got {
				t.Fatalf("%q on %s: %v, and its negation too", expr, what, got)
			}
			if and != nil && (and.Match(d.Decode(p)) != got || or.Match(d.Decode(p)) != got) {
				t.Fatalf("%q on %s: %v, but E and E %v, E or E %v", expr, what, got, and.Match(d.Decode(p)), or.Match(d.Decode(p)))
			}
		}
		west := &framing.Interface{Name: "west", LinkType: framing.LinkEthernet}
		for i, fr := range frames {
			p := framing.Packet{Data: fr.Data, Length: len(fr.Data), Timestamp: fr.TS.UnixNano(), Interface: west,
				Direction: framing.Direction(i % 3)}
			check(&p, "trace frame "+strconv.Itoa(i))
		}
		for i, link := range links {
			ifc := &framing.Interface{Name: "eth0", LinkType: link}
			p := framing.Packet{Data: pkt, Length: len(pkt) + i, Interface: ifc, Direction: framing.Direction(i % 3)}
			check(&p, fmt.Sprintf("the fuzzed bytes as %s", link))
		}
		check(&framing.Packet{Data: pkt, Length: len(pkt)}, "the fuzzed bytes with no interface")
	})
}

// mustFilter parses an expression built from one that parses, which must parse too.
func mustFilter(t *testing.T, expr string) *Filter {
	t.Helper()
	fl, err := ParseFilter(expr)
	if err != nil {
		t.Fatalf("%q: %v", expr, err)
	}
	return fl
}

// checkFilterError checks that err says where expr is wrong: the word at a column, with the
// word being the expression's text there, or the end of the expression.
func checkFilterError(t *testing.T, expr string, err error) {
	t.Helper()
	msg := err.Error()
	end := fmt.Sprintf("filter: at end of expression (column %d): ", len(expr)+1)
	if strings.HasPrefix(msg, end) && len(msg) > len(end) {
		return
	}
	const at = "filter: at '"
	if !strings.HasPrefix(msg, at) {
		t.Fatalf("%q: error %q does not say where", expr, msg)
	}
	// The word may hold "' (column", so try every place it could end.
	rest := msg[len(at):]
	for i := 0; i < len(rest); i++ {
		j := strings.Index(rest[i:], "' (column ")
		if j < 0 {
			break
		}
		word := rest[:i+j]
		var col int
		var tail string
		if n, _ := fmt.Sscanf(rest[i+j:], "' (column %d): %s", &col, &tail); n == 2 && word != "" &&
			col >= 1 && col-1+len(word) <= len(expr) && expr[col-1:col-1+len(word)] == word {
			return
		}
		i += j
	}
	t.Fatalf("%q: error %q does not name a word of the expression at its column", expr, msg)
}
