package dump

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

func TestParseFilter(t *testing.T) {
	for _, c := range []struct{ expr, tree string }{
		{"", "all"},
		{"tcp", "tcp"},
		{"tcp port 80", "(tcp port 80)"},
		{"port 80", "(port 80)"},
		{"src port 80", "(src port 80)"},
		{"udp dst portrange 40000-30000", "(udp dst portrange 30000-40000)"},
		{"host 192.0.2.10", "(host 192.0.2.10)"},
		{"src or dst host 192.0.2.10", "(host 192.0.2.10)"},
		{"src and dst net 192.0.2.0/24", "(src and dst net 192.0.2.0/24)"},
		{"net 192.0.2", "(net 192.0.2.0/24)"},
		{"net 198.51.100.0 mask 255.255.255.0", "(net 198.51.100.0/24)"},
		{"ip6 net 2001:db8::/32", "(ip6 net 2001:db8::/32)"},
		{"arp host 192.0.2.1", "(arp host 192.0.2.1)"},
		{"ether src 02:00:00:00:00:01", "(ether src host 02:00:00:00:00:01)"},
		{"ip proto \\udp", "ip proto 17"},
		{"proto 1", "proto 1"},
		{"len > 100", "(len > 100)"},
		{"less 60", "(len <= 60)"},
		{"greater 1000", "(len >= 1000)"},
		// Negation binds tightest; and and or are of equal precedence, left to right.
		{"not tcp and udp", "(and (not tcp) udp)"},
		{"tcp or udp and port 80", "(and (or tcp udp) (port 80))"},
		{"icmp or tcp and port 80", "(and (or icmp tcp) (port 80))"},
		{"tcp and port 80 or icmp", "(or (and tcp (port 80)) icmp)"},
		{"tcp and (port 80 or icmp)", "(and tcp (or (port 80) icmp))"},
		{"! tcp && (udp || icmp)", "(and (not tcp) (or udp icmp))"},
		{"not not ip", "(not (not ip))"},
		// Bare IDs take the qualifiers of the primitive before them.
		{"host 192.0.2.10 or 192.0.2.11", "(or (host 192.0.2.10) (host 192.0.2.11))"},
		{"tcp dst port 80 or 443 and not 8080", "(and (or (tcp dst port 80) (tcp dst port 443)) (not (tcp dst port 8080)))"},
		// Every vlan moves what follows it one tag deeper.
		{"vlan and udp", "(and vlan udp@1)"},
		{"udp or vlan 100 and vlan and host 192.0.2.1", "(and (and (or udp vlan 100) vlan@1) (host 192.0.2.1)@2)"},
		{"port http or domain", "(or (port 80) (port 53))"},
		{"inbound and ifname eth0", "(and inbound (ifname eth0))"},
	} {
		fl, err := ParseFilter(c.expr)
		if err != nil {
			t.Errorf("%q: %v", c.expr, err)
			continue
		}
		if got := fl.String(); got != c.tree {
			t.Errorf("%q parsed as %s, want %s", c.expr, got, c.tree)
		}
	}
}

func TestParseFilterErrors(t *testing.T) {
	for _, c := range []struct{ expr, err string }{
		{"foo", "filter: at 'foo' (column 1): expected a primitive (tcp, udp, host ADDR, net CIDR, port N, vlan, len > N, ...), 'not' or '('"},
		{"tcp and foo", "filter: at 'foo' (column 9): expected a primitive (tcp, udp, host ADDR, net CIDR, port N, vlan, len > N, ...), 'not' or '('"},
		{"host 192.0.2.1 and foo", "filter: at 'foo' (column 20): expected an IPv4 or IPv6 address (host names are not resolved)"},
		{"192.0.2.10", "filter: at '192.0.2.10' (column 1): expected a primitive before the address (host 192.0.2.10, net 192.0.2.10)"},
		{"tcp port", "filter: at end of expression (column 9): expected an address, a number or a name after 'port'"},
		{"tcp port 99999", "filter: at '99999' (column 10): expected a port number (0 to 65535) or a service name (http, https, domain, ssh, ...)"},
		{"tcp and", "filter: at end of expression (column 8): expected a primitive (tcp, udp, host ADDR, net CIDR, port N, vlan, len > N, ...), 'not' or '('"},
		{"(tcp or udp", "filter: at end of expression (column 12): expected ')' to close the '(' at column 1"},
		{"tcp)", "filter: at ')' (column 4): expected 'and', 'or' or the end of the expression"},
		{"tcp udp", "filter: at 'udp' (column 5): expected an IPv4 or IPv6 address (host names are not resolved)"},
		{"tcp host 192.0.2.1", "filter: at 'tcp' (column 1): 'tcp' modifier applied to host"},
		{"ip host 2001:db8::1", "filter: at '2001:db8::1' (column 9): 'ip' modifier applied to an IPv6 address"},
		{"arp port 80", "filter: at 'arp' (column 1): 'arp' modifier applied to port"},
		{"net 192.0.2.1/24", "filter: at '192.0.2.1/24' (column 5): non-network bits set in \"192.0.2.1/24\""},
		{"net 192.0.2.0/33", "filter: at '192.0.2.0/33' (column 5): expected a prefix length 0 to 32"},
		{"len 100", "filter: at '100' (column 5): expected a comparison after 'len' (>, >=, <, <=, =, !=)"},
		{"vlan 5000", "filter: at '5000' (column 6): expected a VLAN ID (0 to 4095)"},
		{"tcp[13] & 2 != 0", "filter: at 'tcp[13]' (column 1): packet data accessors (proto[offset]) are not supported"},
		{"tcp & udp", "filter: at '&' (column 5): expected '&&' (and, or); bitwise operators are not supported"},
		{"broadcast", "filter: at 'broadcast' (column 1): 'broadcast' is not supported by stdpkt-dump's filter (see --help)"},
		{"ether 02:00:00:00:00:01", "filter: at 'ether' (column 1): expected 'host', 'src' or 'dst' after 'ether'"},
		{"host www.example.com", "filter: at 'www.example.com' (column 6): expected an IPv4 or IPv6 address (host names are not resolved)"},
		{"ip proto 300", "filter: at '300' (column 10): expected a protocol number (0 to 255) or name (\\tcp, \\udp, \\icmp, ...)"},
		{"not", "filter: at end of expression (column 4): expected a primitive (tcp, udp, host ADDR, net CIDR, port N, vlan, len > N, ...), 'not' or '('"},
	} {
		_, err := ParseFilter(c.expr)
		if err == nil {
			t.Errorf("%q: no error, want %s", c.expr, c.err)
		} else if err.Error() != c.err {
			t.Errorf("%q:\n got %s\nwant %s", c.expr, err, c.err)
		}
	}
}

// filterExprs are judged against the real tcpdump on the mixed trace, with the number of
// frames tcpdump 4.99 / libpcap 1.10 selects, so the semantics are tested without it too.
var filterExprs = []struct {
	expr string
	n    int
}{
	{"tcp", 7}, {"udp", 6}, {"icmp", 3}, {"icmp6", 1}, {"arp", 2}, {"ip", 14}, {"ip6", 3},
	{"vlan", 4}, {"not vlan", 19}, {"sctp", 0},
	{"host 192.0.2.10", 14}, {"src host 192.0.2.10", 9}, {"dst host 203.0.113.10", 5},
	{"host 192.0.2.1", 2}, {"src host 192.0.2.1", 1}, {"dst host 192.0.2.1", 1},
	{"net 192.0.2.0/24", 16}, {"src net 198.51.100.0/24", 2}, {"dst net 203.0.113.0/24", 5},
	{"net 192.0.2", 16}, {"net 198.51.100.0 mask 255.255.255.0", 6},
	{"port 80", 5}, {"src port 80", 2}, {"dst port 80", 3}, {"port 30000", 3},
	{"portrange 30000-40000", 4}, {"src portrange 40000-40003", 8},
	{"tcp port 80", 5}, {"udp port 30000", 3}, {"tcp port 30000", 0}, {"udp port 53", 0},
	{"len > 100", 2}, {"len < 100", 21}, {"len >= 60", 23}, {"len <= 60", 14}, {"len == 62", 2},
	{"len != 60", 9}, {"less 60", 14}, {"greater 1000", 1},
	{"tcp and host 192.0.2.10", 5}, {"tcp or udp", 13}, {"not tcp", 16}, {"! ip", 9},
	{"tcp and port 80 or icmp", 8}, {"icmp or tcp and port 80", 5}, {"not (tcp or udp)", 10},
	{"not tcp or udp", 16},
	{"host 2001:db8:1::10", 3}, {"dst host 2001:db8:2::10", 3}, {"net 2001:db8::/32", 3},
	{"src net 2001:db8:1::/48", 3}, {"ip6 and tcp", 1}, {"ip6 and udp", 1}, {"ip and udp", 5},
	{"host 192.0.2.10 or 2001:db8:1::10", 17},
	{"vlan and udp", 1}, {"udp and vlan", 0}, {"vlan or udp", 4}, {"udp or vlan", 10},
	{"vlan 100", 2}, {"vlan 200 and tcp", 1}, {"vlan and vlan", 1}, {"vlan 300 and vlan 100", 1},
	{"vlan and not vlan", 3}, {"vlan and arp", 1}, {"vlan and host 192.0.2.1", 1},
	{"vlan and vlan and udp port 53", 1}, {"vlan and ip and vlan", 0},
	{"host 192.0.2.10 or 192.0.2.11", 16}, {"tcp port 80 or 443", 7},
	{"src 192.0.2.10", 9}, {"dst 198.51.100.7", 3},
	{"ip host 192.0.2.1", 0}, {"arp host 192.0.2.1", 2}, {"arp src host 192.0.2.1", 1},
	{"ether host 02:00:00:00:00:02", 22}, {"ether src 02:00:00:00:00:02", 1},
	{"ether dst ff:ff:ff:ff:ff:ff", 1},
	{"ip proto 17", 5}, {"ip6 proto 6", 1}, {"proto 1", 3}, {"ip proto \\udp", 5},
	{"src or dst host 192.0.2.10", 14}, {"src and dst net 192.0.2.0/24", 2},
	{"(tcp or icmp) and not host 198.51.100.7", 9},
	{"tcp && (port 80 || port 443) && !host 198.51.100.7", 6},
	{"udp and not port 30000", 3}, {"ip and not udp and not tcp", 3},
}

// selected returns the indexes of the trace's frames that expr selects.
func selected(t *testing.T, expr string) []int {
	t.Helper()
	fl, err := ParseFilter(expr)
	if err != nil {
		t.Fatalf("%q: %v", expr, err)
	}
	d := NewDecoder()
	var idx []int
	for i, fr := range trace(t) {
		p := packet(fr, ethIface)
		if fl.Match(d.Decode(&p)) {
			idx = append(idx, i)
		}
	}
	return idx
}

func TestFilterCounts(t *testing.T) {
	for _, c := range filterExprs {
		if got := selected(t, c.expr); len(got) != c.n {
			t.Errorf("%q selects %d frames %v, want %d", c.expr, len(got), got, c.n)
		}
	}
}

// Each expression selects exactly the frames the real tcpdump selects, frame by frame
// (told apart by their nanosecond timestamps).
func TestFilterLikeTcpdump(t *testing.T) {
	needTool(t, "tcpdump")
	frames := trace(t)
	file := filepath.Join(t.TempDir(), "mixed.pcap")
	writePcap(t, file, layers.LinkTypeEthernet, frames)
	index := map[string]int{}
	for i, fr := range frames {
		index[fmt.Sprintf("%d.%09d", fr.TS.Unix(), fr.TS.Nanosecond())] = i
	}
	for _, c := range filterExprs {
		var stderr strings.Builder
		cmd := exec.Command("tcpdump", "-n", "-tt", "--time-stamp-precision=nano", "-r", file, c.expr)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		// libpcap's optimizer refuses a filter it proves matches nothing ("udp and vlan").
		if err != nil && !strings.Contains(stderr.String(), "expression rejects all packets") {
			t.Errorf("tcpdump %q: %v: %s", c.expr, err, stderr.String())
			continue
		}
		var theirs []int
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" {
				theirs = append(theirs, index[strings.Fields(l)[0]])
			}
		}
		if ours := selected(t, c.expr); fmt.Sprint(ours) != fmt.Sprint(theirs) {
			t.Errorf("%q: we select frames %v, tcpdump %v", c.expr, ours, theirs)
		}
		if len(theirs) != c.n {
			t.Errorf("%q: tcpdump selects %d frames, the table says %d", c.expr, len(theirs), c.n)
		}
	}
}
