package rules

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
)

var routerAliases = map[string]string{"eth0": West, "eth1": East}

func parseString(t *testing.T, text string) (*Ruleset, error) {
	t.Helper()
	return Parse("test.rules", strings.NewReader(text), Options{Aliases: routerAliases})
}

func TestParseRouterExport(t *testing.T) {
	f, err := os.Open("testdata/router.rules")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rs, err := Parse("router.rules", f, Options{Aliases: routerAliases})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range rs.Chains {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, " "); got != "INPUT FORWARD OUTPUT LANOUT" {
		t.Fatalf("chains = %s", got)
	}
	if p := rs.Chain("FORWARD").Policy; p != Drop {
		t.Errorf("FORWARD policy = %s", p)
	}
	if len(rs.Warnings) != 1 || !strings.Contains(rs.Warnings[0], "router.rules:7: interface lo") {
		t.Errorf("warnings = %q", rs.Warnings)
	}
	fwd := rs.Chain("FORWARD").Rules
	if len(fwd) != 5 {
		t.Fatalf("FORWARD has %d rules", len(fwd))
	}
	if s := fwd[0].State; s == nil || s.States != StateEstablished|StateRelated || s.Not {
		t.Errorf("rule 1 state = %+v", s)
	}
	if r := fwd[2]; r.In != West || r.Out != East || r.Target.Kind != Jump || r.Target.Chain != "LANOUT" || r.Src.Line != 10 {
		t.Errorf("rule 3 = %+v", r)
	}
	if m := fwd[3].ICMP; m == nil || m.Type != 8 || m.Code != -1 || m.V6 {
		t.Errorf("icmp match = %+v", m)
	}
	if tg := fwd[4].Target; tg.Kind != Log || tg.LogPrefix != "fw drop: " || tg.LogLevel != "4" {
		t.Errorf("log target = %+v", tg)
	}
	lan := rs.Chain("LANOUT").Rules
	r := lan[0]
	if r.SrcNet != netip.MustParsePrefix("192.0.2.0/24") || r.NotSrc ||
		r.DstNet != netip.MustParsePrefix("198.51.100.7/32") || !r.NotDst || r.Proto != ProtoTCP {
		t.Errorf("LANOUT 1 addresses = %+v", r)
	}
	if d := r.DstPorts; d == nil || len(d.Ranges) != 3 || d.Ranges[2] != (PortRange{8000, 8080}) {
		t.Errorf("LANOUT 1 dports = %+v", d)
	}
	if lan[1].Comment != `dns "resolver"` {
		t.Errorf("comment = %q", lan[1].Comment)
	}
	if tg := lan[2].Target; tg.Kind != Reject || tg.RejectWith != RejectTCPReset {
		t.Errorf("reject = %+v", tg)
	}
	if f := lan[3].TCPFlags; f == nil || !f.Not || f.Mask != 0x17 || f.Comp != FlagSYN {
		t.Errorf("tcp flags = %+v", f)
	}
	if !lan[3].TCPFlags.Match(FlagACK) || lan[3].TCPFlags.Match(FlagSYN) {
		t.Error("! --syn matches wrongly")
	}
	// The formatted form parses back to itself.
	again, err := Parse("again", strings.NewReader(rs.Format()), Options{})
	if err != nil {
		t.Fatalf("reparse of\n%s: %v", rs.Format(), err)
	}
	if again.Format() != rs.Format() {
		t.Errorf("format round trip:\n%s\nvs\n%s", again.Format(), rs.Format())
	}
}

func TestParseErrors(t *testing.T) {
	head := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:USER - [0:0]\n"
	for _, tc := range []struct {
		name, rules, want string
	}{
		{"unknown match", "-A FORWARD -m geoip --src-cc XX -j DROP", `test.rules:6: option -m: unknown match "geoip"`},
		{"unknown option", "-A FORWARD -p tcp --dport 80 --frobnicate -j DROP", "test.rules:6: option --frobnicate: unknown option"},
		{"bad address", "-A FORWARD -s 192.0.2.300/24 -j DROP", `test.rules:6: option -s: bad address "192.0.2.300/24"`},
		{"bad mask", "-A FORWARD -d 192.0.2.0/255.0.255.0 -j DROP", `test.rules:6: option -d: mask "255.0.255.0" is not contiguous`},
		{"v6 address in v4 file", "-A FORWARD -d 2001:db8::1 -j DROP", `test.rules:6: option -d: address "2001:db8::1" is not ipv4`},
		{"dport without proto", "-A FORWARD --dport 80 -j ACCEPT", "test.rules:6: option --dport: needs -p tcp or -p udp before it"},
		{"bad port", "-A FORWARD -p tcp --dport 99999 -j ACCEPT", `test.rules:6: option --dport: bad port "99999"`},
		{"multiport without module", "-A FORWARD -p tcp --dports 80,443 -j ACCEPT", "test.rules:6: option --dports: needs -m multiport before it"},
		{"state without module", "-A FORWARD --ctstate NEW -j ACCEPT", "test.rules:6: option --ctstate: needs -m conntrack before it"},
		{"bad state", "-A FORWARD -m conntrack --ctstate NEW,BOGUS -j ACCEPT", `test.rules:6: option --ctstate: unknown state "BOGUS"`},
		{"icmp type without proto", "-A FORWARD -p tcp --icmp-type 8 -j ACCEPT", "test.rules:6: option --icmp-type: needs -p icmp before it"},
		{"tcp-reset without tcp", "-A FORWARD -p udp -j REJECT --reject-with tcp-reset", "test.rules:6: option --reject-with: tcp-reset needs -p tcp"},
		{"reject-with without reject", "-A FORWARD -j DROP --reject-with tcp-reset", "test.rules:6: option --reject-with: only after -j REJECT"},
		{"nat target in filter", "-A FORWARD -j MASQUERADE", `test.rules:6: option -j: MASQUERADE belongs to the nat table (stdpkt-nat)`},
		{"jump to builtin", "-A USER -j FORWARD", "test.rules:6: option -j: cannot jump to built-in chain FORWARD"},
		{"output interface in INPUT", "-A INPUT -o eth1 -j DROP", "test.rules:6: option -o: an output interface cannot match in INPUT"},
		{"output interface via user chain", "-A INPUT -j USER\n-A USER -o east -j DROP", "test.rules:7: option -o: an output interface cannot match in INPUT (reached from INPUT -> USER)"},
		{"loop", "-A FORWARD -j USER\n-A USER -j USER", "test.rules:7: option -j: jump to USER makes a loop (FORWARD -> USER -> USER)"},
		{"match after target", "-A FORWARD -j ACCEPT -p tcp", "test.rules:6: option -p: comes after the target"},
		{"no target", "-A FORWARD -p tcp", "test.rules:6: rule has no target"},
		{"undeclared chain", "-A NOPE -j DROP", "test.rules:6: option -A: chain NOPE is not declared"},
		{"insert", "-I FORWARD -j DROP", "test.rules:6: option -I: a rule line is"},
		{"goto", "-A FORWARD -g USER", "test.rules:6: option -g: goto is not supported"},
		{"unterminated quote", `-A FORWARD -m comment --comment "oops -j DROP`, "test.rules:6: unterminated \" quote"},
		{"dangling not", "-A FORWARD -j DROP !", "test.rules:6: option !: negates nothing"},
		{"policy of user chain", "", ""},
	} {
		if tc.want == "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseString(t, head+tc.rules+"\nCOMMIT\n")
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant prefix %s", err, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.Line < 6 {
				t.Fatalf("error %v is not an *Error with a line", err)
			}
		})
	}
	for _, tc := range []struct{ text, want string }{
		{"*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", `test.rules:3: no *filter table`},
		{"*filter\n:FORWARD DROP [0:0]\n", "test.rules:2: table filter is not committed (missing COMMIT)"},
		{"*filter\n:FORWARD REJECT [0:0]\nCOMMIT\n", `test.rules:2: chain FORWARD: policy "REJECT"`},
		{"*filter\n:USER ACCEPT [0:0]\nCOMMIT\n", `test.rules:2: user chain USER: policy "ACCEPT"`},
		{"-A FORWARD -j DROP\n", `test.rules:1: "-A" outside a table`},
		{"# nothing\n", "test.rules:1: no *filter table"},
		{"*filter\n:FORWARD DROP [0:0]\n:FORWARD DROP [0:0]\nCOMMIT\n", "test.rules:3: chain FORWARD declared twice"},
	} {
		_, err := parseString(t, tc.text)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: error = %v\nwant prefix %s", tc.text, err, tc.want)
		}
	}
}

func TestTokenize(t *testing.T) {
	toks, err := tokenize(`-A X --comment "a \"b\" c"  --log-prefix 'x y' -j  LOG`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-A", "X", "--comment", `a "b" c`, "--log-prefix", "x y", "-j", "LOG"}
	if strings.Join(toks, "|") != strings.Join(want, "|") {
		t.Fatalf("tokens = %q", toks)
	}
}

// The one-liners and the iptables-save file of the same policy give the same rules.
func TestOneLinersMatchFile(t *testing.T) {
	ol, err := FromOneLiners([]OneLiner{
		{"--allow", Accept, "tcp dport 80,443"},
		{"--allow", Accept, "udp dport 53 src 192.0.2.0/24"},
		{"--deny", Drop, "tcp dport 23"},
		{"--reject", Reject, "tcp dport 25 with tcp-reset"},
		{"--allow", Accept, "icmp type echo-request in west"},
		{"--deny", Drop, "udp not dport 1000-2000"},
	}, Drop, Options{})
	if err != nil {
		t.Fatal(err)
	}
	file := `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -p tcp -m multiport --dports 80,443 -j ACCEPT
-A FORWARD -s 192.0.2.0/24 -p udp -m udp --dport 53 -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 23 -j DROP
-A FORWARD -p tcp -m tcp --dport 25 -j REJECT --reject-with tcp-reset
-A FORWARD -i west -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A FORWARD -p udp -m udp ! --dport 1000:2000 -j DROP
COMMIT
`
	fr, err := parseString(t, file)
	if err != nil {
		t.Fatal(err)
	}
	if ol.Format() != fr.Format() {
		t.Errorf("one-liners:\n%s\nfile:\n%s", ol.Format(), fr.Format())
	}
	fams := []Family{AnyFamily, AnyFamily, IPv4, AnyFamily, AnyFamily, IPv4, AnyFamily}
	for i, r := range ol.Chain("FORWARD").Rules {
		if r.Family != fams[i] {
			t.Errorf("rule %d family %s, want %s", i+1, r.Family, fams[i])
		}
	}
}

func TestOneLinerErrors(t *testing.T) {
	for _, tc := range []struct {
		spec, want string
	}{
		{"tcp dport", "--allow:1: option dport: needs a value"},
		{"tcp dport http", `--allow:1: option --dport: bad port "http"`},
		{"dport 80", "--allow:1: option --dport: needs -p tcp or -p udp before it"},
		{"tcp frobnicate", "--allow:1: option frobnicate: unknown word"},
		{"tcp udp", "--allow:1: option udp: a rule has one protocol"},
		{"src 192.0.2.0/24 dst 2001:db8::/32", "--allow:1: dst 2001:db8::/32 does not fit an ipv4 rule"},
		{"src 192.0.2.1/40", `--allow:1: option -s: bad prefix length`},
		{"icmpv6 src 192.0.2.1", "--allow:1: icmpv6 does not fit an ipv4 rule"},
		{"", "--allow:1: empty spec"},
	} {
		_, err := FromOneLiners([]OneLiner{{"--allow", Accept, tc.spec}}, Drop, Options{})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: error = %v\nwant prefix %s", tc.spec, err, tc.want)
		}
	}
}

func TestMatchHelpers(t *testing.T) {
	m := PortMatch{Ranges: []PortRange{{80, 80}, {8000, 8080}}}
	for p, want := range map[uint16]bool{80: true, 81: false, 8000: true, 8080: true, 8081: false} {
		if m.Match(p) != want {
			t.Errorf("port %d: %v", p, !want)
		}
	}
	m.Not = true
	if m.Match(80) || !m.Match(81) {
		t.Error("negated port match")
	}
	ic, err := parseICMPType("port-unreachable", false)
	if err != nil || !ic.Match(3, 3) || ic.Match(3, 1) || ic.Match(8, 3) {
		t.Errorf("icmp port-unreachable: %+v %v", ic, err)
	}
	ic, _ = parseICMPType("3", false)
	if !ic.Match(3, 13) {
		t.Error("icmp type 3 without code should match any code")
	}
	pfx, err := parsePrefix("192.0.2.77/24", IPv4)
	if err != nil || pfx.String() != "192.0.2.0/24" {
		t.Errorf("prefix masking: %v %v", pfx, err)
	}
}
