package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
)

// fuzzFile is the file name the fuzz targets parse under: every error must name it.
const fuzzFile = "fuzz.rules"

// fuzzFilterHead declares the filter table's chains and a user chain, for seeds that are one
// rule line.
const fuzzFilterHead = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:USER - [0:0]\n"

// fuzzNATHead declares the nat table's chains and a user chain.
const fuzzNATHead = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:USER - [0:0]\n"

// parseSeeds are the rule files of the package's tests and testdata, the examples' files,
// the nat tables the tests and FromNATFlags write, and edge cases.
func parseSeeds(f *testing.F) []string {
	var seeds []string
	for _, name := range []string{"testdata/router.rules", "../examples/firewall-audit-rules.txt", "../examples/lab/rules.txt"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, string(b))
	}
	filterRules := []string{
		// TestParseErrors
		"-A FORWARD -m geoip --src-cc XX -j DROP",
		"-A FORWARD -p tcp --dport 80 --frobnicate -j DROP",
		"-A FORWARD -s 192.0.2.300/24 -j DROP",
		"-A FORWARD -d 192.0.2.0/255.0.255.0 -j DROP",
		"-A FORWARD -d 2001:db8::1 -j DROP",
		"-A FORWARD --dport 80 -j ACCEPT",
		"-A FORWARD -p tcp --dport 99999 -j ACCEPT",
		"-A FORWARD -p tcp --dports 80,443 -j ACCEPT",
		"-A FORWARD --ctstate NEW -j ACCEPT",
		"-A FORWARD -m conntrack --ctstate NEW,BOGUS -j ACCEPT",
		"-A FORWARD -p tcp --icmp-type 8 -j ACCEPT",
		"-A FORWARD -p udp -j REJECT --reject-with tcp-reset",
		"-A FORWARD -j DROP --reject-with tcp-reset",
		"-A FORWARD -j MASQUERADE",
		"-A USER -j FORWARD",
		"-A INPUT -o eth1 -j DROP",
		"-A INPUT -j USER\n-A USER -o east -j DROP",
		"-A FORWARD -j USER\n-A USER -j USER",
		"-A FORWARD -j ACCEPT -p tcp",
		"-A FORWARD -p tcp",
		"-A NOPE -j DROP",
		"-I FORWARD -j DROP",
		"-A FORWARD -g USER",
		`-A FORWARD -m comment --comment "oops -j DROP`,
		"-A FORWARD -j DROP !",
		// TestTokenize
		`-A USER -m comment --comment "a \"b\" c"  -j  LOG --log-prefix 'x y'`,
		// more of what the parser knows
		"-A FORWARD -p ipv6-icmp -j ACCEPT",
		"-A FORWARD -s ::ffff:192.0.2.1 -d 192.0.2.0/24 -j ACCEPT",
		"-A FORWARD -i eth+ -o + ! -s 198.51.100.0/24 -j ACCEPT",
		"-A FORWARD -p tcp --syn -m state --state NEW,UNTRACKED -j ACCEPT",
		"-A FORWARD -p tcp -m tcp --tcp-flags ALL NONE -j DROP",
		"-A FORWARD -p udp -m multiport ! --sports 1:1023,2049 -j DROP",
		"-A FORWARD -p tcp -m multiport --ports 22,80:90 -j ACCEPT",
		"-A FORWARD -p tcp -m tcp --sport :1023 --dport 1024: -j ACCEPT",
		"-A FORWARD -p icmp --icmp-type any -j ACCEPT",
		"-A FORWARD -p icmp --icmp-type 3/4 -j ACCEPT",
		"-A FORWARD ! -p 47 -j RETURN",
		"-A FORWARD -p icmp -j REJECT --reject-with icmp-admin-prohibited",
		"-A FORWARD -c 1 2 -j ACCEPT",
		"-A FORWARD -p tcp -j ACCEPT -p udp",
		"-A FORWARD -p tcp --syn -p udp -j ACCEPT",
		"-A FORWARD -m comment --comment ! -j ACCEPT",
		"--append FORWARD --source 192.0.2.0/24 --jump ACCEPT",
		"-A FORWARD -m comment --comment \"a b\x01\\\\ \xff\" -j LOG --log-prefix \"'\" --log-level 4",
		"-A FORWARD -p 00 -j ACCEPT",
		"-A FORWARD ! -p all -j ACCEPT",
		"-A FORWARD -p tcp -m tcp --dport 80 -m multiport --dports 80,443 -j ACCEPT",
		"-A FORWARD -s 192.0.2.1 -s 192.0.2.2 -j ACCEPT",
	}
	for _, r := range filterRules {
		seeds = append(seeds, fuzzFilterHead+r+"\nCOMMIT\n")
	}
	seeds = append(seeds,
		// TestParseErrors, whole files
		"*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n",
		"*filter\n:FORWARD DROP [0:0]\n",
		"*filter\n:FORWARD REJECT [0:0]\nCOMMIT\n",
		"*filter\n:USER ACCEPT [0:0]\nCOMMIT\n",
		"-A FORWARD -j DROP\n",
		"# nothing\n",
		"*filter\n:FORWARD DROP [0:0]\n:FORWARD DROP [0:0]\nCOMMIT\n",
		"",
		"*filter\r\n:FORWARD DROP [0:0]\r\n-A FORWARD -j ACCEPT\r\nCOMMIT",
		"*mangle\n-A PREROUTING -j MARK\nCOMMIT\n*filter\nCOMMIT\n*filter\nCOMMIT\n",
		// TestOneLinersMatchFile
		`*filter
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
`,
		// ip6tables-save
		`*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -s 2001:db8::/32 -p ipv6-icmp -m icmp6 --icmpv6-type echo-request -j ACCEPT
-A FORWARD -d 2001:db8::/ffff:ffff:: -p udp -j REJECT --reject-with icmp6-adm-prohibited
-A FORWARD -j REJECT
COMMIT
`,
		// the e2e tests' nat files, and what FromNATFlags writes
		"*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -j MASQUERADE\nCOMMIT\n",
		"*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j DROP\nCOMMIT\n",
		"*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j SNAT --to-source 203.0.113.1:1000-2000\nCOMMIT\n",
		fuzzNATHead+"-A PREROUTING -i east -p tcp --dport 8080 -j DNAT --to-destination 192.0.2.10:80\n"+
			"-A POSTROUTING -o east -p tcp -j SNAT --to-source 203.0.113.1:1024-65535\n"+
			"-A POSTROUTING -o east -p udp -j SNAT --to-source 203.0.113.1:1024-65535\n"+
			"-A POSTROUTING -o east -j SNAT --to-source 203.0.113.1\nCOMMIT\n",
		fuzzNATHead+"-A PREROUTING -i eth1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.0.2.10:80\n"+
			"-A PREROUTING -p udp -j REDIRECT --to-ports 5353\n-A POSTROUTING -o eth1 -j MASQUERADE\n"+
			"-A POSTROUTING -p tcp -j MASQUERADE --to-ports 2000-3000\n-A POSTROUTING -j USER\n-A USER -j RETURN\nCOMMIT\n",
		fuzzNATHead+"-A PREROUTING -p tcp -j DNAT --to-destination [2001:db8::10]:80\n"+
			"-A PREROUTING -p tcp -j DNAT --to-destination :8080\n"+
			"-A POSTROUTING -p udp -j SNAT --to-source [2001:db8::1]:1000-2000\n-A POSTROUTING -j SNAT --to-source 2001:db8::1\nCOMMIT\n",
		fuzzNATHead+"-A PREROUTING -p tcp -j DNAT --to-destination [::ffff:192.0.2.1]:80\nCOMMIT\n",
		fuzzNATHead+"-A POSTROUTING -j SNAT --to-source 192.0.2.1-192.0.2.9 --random\nCOMMIT\n",
		"*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n",
		"*filter\n:a\"b - [0:0]\n-A 'a\"b' -j ACCEPT\n-A FORWARD -j 'a\"b'\nCOMMIT\n",
		jumpLattice(15, 6),
	)
	return seeds
}

// jumpLattice is a filter table whose FORWARD chain jumps to C0, and each chain Ci jumps
// to C(i+1) fanout times: depth chains that a walk of every path would take fanout^depth
// steps to check (Parse once did, and hung on this kilobyte file).
func jumpLattice(depth, fanout int) string {
	var b strings.Builder
	b.WriteString("*filter\n:FORWARD ACCEPT [0:0]\n")
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, ":C%d - [0:0]\n", i)
	}
	b.WriteString("-A FORWARD -j C0\n")
	for i := 0; i+1 < depth; i++ {
		for range fanout {
			fmt.Fprintf(&b, "-A C%d -o east -j C%d\n", i, i+1)
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// ip6Seeds are ip6tables-save files, parsed with Family IPv6.
func ip6Seeds() []string {
	return []string{
		`*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -s 2001:db8::/32 -p ipv6-icmp -m icmp6 --icmpv6-type echo-request -j ACCEPT
-A FORWARD -d 2001:db8::/ffff:ffff:: -p udp -j REJECT --reject-with icmp6-adm-prohibited
-A FORWARD -p udp -j REJECT --reject-with addr-unreach
-A FORWARD -p tcp -j REJECT --reject-with tcp-reset
-A FORWARD -j REJECT
COMMIT
`,
		fuzzNATHead + "-A PREROUTING -p tcp -j DNAT --to-destination [2001:db8::10]:80\n" +
			"-A PREROUTING -p tcp -j DNAT --to-destination :8080\n" +
			"-A POSTROUTING -p udp -j SNAT --to-source [2001:db8::1]:1000-2000\n-A POSTROUTING -j SNAT --to-source 2001:db8::1\nCOMMIT\n",
		fuzzNATHead + "-A PREROUTING -p tcp -j DNAT --to-destination [::ffff:192.0.2.1]:80\nCOMMIT\n",
		fuzzNATHead + "-A PREROUTING -p tcp -j DNAT --to-destination [fe80::1%eth0]:80\nCOMMIT\n",
	}
}

// fuzzOptions picks one of the Options variants from selector bytes: the table (default,
// filter, nat), the family (default, IPv4, IPv6, or AnyFamily, which Parse refuses) and the
// aliases (none, a router's, a set whose names share prefixes, or one that maps to a side
// that does not exist). bad says why Parse must refuse the options, if it must.
func fuzzOptions(table, family, aliases uint8) (opts Options, bad string) {
	opts.Table = [...]string{"", "filter", "nat"}[table%3]
	opts.Family = [...]Family{0, IPv4, IPv6, AnyFamily}[family%4]
	switch aliases % 4 {
	case 1:
		opts.Aliases = map[string]string{"eth0": West, "eth1": East}
	case 2:
		opts.Aliases = map[string]string{"eth0": West, "eth1": West, "wan": East, "lan0": West}
	case 3:
		opts.Aliases = map[string]string{"eth0": West, "eth1": "north"}
		bad = "alias"
	}
	if opts.Family == AnyFamily {
		bad = "family"
	}
	return opts, bad
}

// scanLines splits text into lines as Parse's scanner does, trimmed as Parse trims them.
func scanLines(text string) []string {
	lines := strings.Split(text, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return lines
}

// FuzzParse: whatever the text, and for every Options variant (filter and nat table, IPv4
// and IPv6, with and without interface aliases), Parse
//   - either succeeds, or returns an error that names the file and the line at fault
//     ("fuzz.rules:LINE: "), the line being a real line of the input (one that is neither
//     blank nor a comment, except for errors about the end of the input); options Parse must
//     refuse give an error naming the file;
//   - gives the same result (rule set and warnings, or error) when run twice;
//
// and a rule set it returns is whole (see checkRuleset): the table's built-in chains first,
// in order, with a valid policy; every rule with a valid target for its table, a jump only to
// a declared user chain, matches of the rule set's family, port ranges with lo <= hi, and its
// source line; one counter per rule and per built-in chain's policy; and its iptables-save
// form (Format) parses back to the same rules.
func FuzzParse(f *testing.F) {
	for i, s := range parseSeeds(f) {
		table := uint8(1)
		if strings.Contains(s, "*nat") {
			table = 2
		}
		f.Add(s, table, uint8(1), uint8(i%3))
		f.Add(s, uint8(i), uint8(i/3), uint8(i/2))
	}
	for _, s := range ip6Seeds() {
		f.Add(s, uint8(0), uint8(2), uint8(0))
		f.Add(s, uint8(2), uint8(2), uint8(1))
	}
	f.Fuzz(func(t *testing.T, text string, table, family, aliases uint8) {
		opts, bad := fuzzOptions(table, family, aliases)
		rs, err := Parse(fuzzFile, strings.NewReader(text), opts)
		again, err2 := Parse(fuzzFile, strings.NewReader(text), opts)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("two parses differ: %v, then %v", err, err2)
		}
		if bad != "" {
			if err == nil || !strings.HasPrefix(err.Error(), "parse "+fuzzFile+": ") || !strings.Contains(err.Error(), bad) {
				t.Fatalf("options %+v: error %v, want one about the %s naming the file", opts, err, bad)
			}
			return
		}
		lines := scanLines(text)
		if err != nil {
			checkFileError(t, err, lines)
			return
		}
		if rs.Format() != again.Format() || !reflect.DeepEqual(rs.Warnings, again.Warnings) {
			t.Fatalf("two parses differ:\n%s%q\nthen\n%s%q", rs.Format(), rs.Warnings, again.Format(), again.Warnings)
		}
		if opts.Table == "" {
			opts.Table = "filter"
		}
		if opts.Family == 0 {
			opts.Family = IPv4
		}
		if rs.Table != opts.Table || rs.Family != opts.Family {
			t.Fatalf("table %s family %s, want %s %s", rs.Table, rs.Family, opts.Table, opts.Family)
		}
		checkRuleset(t, rs)
		for _, c := range rs.Chains {
			checkSource(t, c.Src, lines, c.Builtin)
			for _, r := range c.Rules {
				checkSource(t, r.Src, lines, false)
			}
		}
		for _, w := range rs.Warnings {
			var n int
			if _, err := fmt.Sscanf(strings.TrimPrefix(w, fuzzFile+":"), "%d:", &n); err != nil || !strings.HasPrefix(w, fuzzFile+":") || n < 1 || n > len(lines) {
				t.Fatalf("warning %q does not name a line of %s", w, fuzzFile)
			}
		}
		checkReparse(t, rs, opts)
	})
}

// checkFileError checks that err is an *Error naming the fuzz file and one of its lines:
// a line with something on it, or the last line for errors about the end of the file.
func checkFileError(t *testing.T, err error, lines []string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		if strings.HasPrefix(err.Error(), "reading "+fuzzFile+" after line ") {
			for _, l := range lines {
				if len(l) >= maxLineLen-1 {
					return // too long a line
				}
			}
		}
		t.Fatalf("error %q is not an *Error naming a line", err)
	}
	if e.File != fuzzFile || !strings.HasPrefix(err.Error(), fmt.Sprintf("%s:%d: ", fuzzFile, e.Line)) || e.Msg == "" {
		t.Fatalf("error %q (%+v) does not start with %s:LINE:", err, e, fuzzFile)
	}
	if e.Line < 0 || e.Line > len(lines) || e.Line == 0 && len(lines) > 0 {
		t.Fatalf("error %q names line %d of a %d-line input", err, e.Line, len(lines))
	}
	atEnd := strings.HasPrefix(e.Msg, "no *") || strings.Contains(e.Msg, "is not committed")
	switch {
	case atEnd && e.Line != len(lines):
		t.Fatalf("error %q about the end of the input names line %d of %d", err, e.Line, len(lines))
	case !atEnd && (lines[e.Line-1] == "" || lines[e.Line-1][0] == '#'):
		t.Fatalf("error %q names blank or comment line %d: %q", err, e.Line, lines[e.Line-1])
	}
}

// checkSource checks that a rule's or chain's source is the fuzz file's line it says, with
// that line's text; implicit (undeclared built-in) chains have line 0 and no text.
func checkSource(t *testing.T, src Source, lines []string, implicit bool) {
	t.Helper()
	if src.File != fuzzFile {
		t.Fatalf("source %+v does not name %s", src, fuzzFile)
	}
	if implicit && src.Line == 0 && src.Text == "" {
		return
	}
	if src.Line < 1 || src.Line > len(lines) || src.Text != lines[src.Line-1] {
		t.Fatalf("source %+v is not a line of the input", src)
	}
}

// checkRuleset checks the invariants of a parsed or compiled rule set (Parse, FromOneLiners,
// FromNATFlags): its table's built-in chains first, in order, with a valid policy, then user
// chains, all named once; every rule in place, with a valid target for the table and a match
// that fits the rule set's family; one counter per rule and per built-in chain's policy.
func checkRuleset(t *testing.T, rs *Ruleset) {
	t.Helper()
	builtins := builtinChains[rs.Table]
	if builtins == nil {
		t.Fatalf("table %q", rs.Table)
	}
	if len(rs.Chains) < len(builtins) {
		t.Fatalf("%d chains, the %s table has %d built-in ones", len(rs.Chains), rs.Table, len(builtins))
	}
	seen := map[string]bool{}
	nrules, npolicies := 0, 0
	for i, c := range rs.Chains {
		if seen[c.Name] {
			t.Fatalf("chain %s twice", c.Name)
		}
		seen[c.Name] = true
		if c != rs.Chain(c.Name) {
			t.Fatalf("Chain(%q) is not the chain of that name", c.Name)
		}
		if i < len(builtins) {
			if c.Name != builtins[i] || !c.Builtin {
				t.Fatalf("chain %d is %s (built-in %v), want built-in %s", i, c.Name, c.Builtin, builtins[i])
			}
			if c.Policy != Accept && (c.Policy != Drop || rs.Table != "filter") {
				t.Fatalf("chain %s has policy %s in the %s table", c.Name, c.Policy, rs.Table)
			}
			npolicies++
		} else if c.Builtin || c.Policy != 0 || c.Name == "" || strings.HasPrefix(c.Name, "-") || len(c.Name) > 28 {
			t.Fatalf("user chain %+v", c)
		}
		for j, r := range c.Rules {
			if r.Chain != c.Name || r.Num != j+1 {
				t.Fatalf("rule %d of %s says chain %s number %d", j+1, c.Name, r.Chain, r.Num)
			}
			checkRule(t, rs, c, r)
			nrules++
		}
	}
	if n := len(rs.Rules()); n != nrules {
		t.Fatalf("Rules() has %d rules, the chains %d", n, nrules)
	}
	// The counter list a loaded rule set reports (osinst.Instance.RuleCounters): a chain's
	// rules, then its policy. One line and one JSON object each.
	var cs []Counter
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			cs = append(cs, Counter{Chain: c.Name, Rule: r, Packets: 1, Bytes: 60})
		}
		if c.Builtin {
			cs = append(cs, Counter{Chain: c.Name, Policy: c.Policy})
		}
	}
	if len(cs) != nrules+npolicies {
		t.Fatalf("%d counters for %d rules and %d policies", len(cs), nrules, npolicies)
	}
	var out bytes.Buffer
	FormatCounters(&out, cs)
	if n := strings.Count(out.String(), "\n"); n != len(cs) {
		t.Fatalf("FormatCounters wrote %d lines for %d counters:\n%s", n, len(cs), out.String())
	}
	for _, c := range cs {
		j, err := json.Marshal(c)
		var doc struct{ Chain, Target string }
		if err != nil || json.Unmarshal(j, &doc) != nil || doc.Chain != c.Chain || doc.Target == "" || doc.Target == "NONE" {
			t.Fatalf("counter %+v as JSON: %s %v", c, j, err)
		}
	}
}

// checkRule checks one rule of chain c.
func checkRule(t *testing.T, rs *Ruleset, c *Chain, r *Rule) {
	t.Helper()
	k := r.Target.Kind
	switch {
	case k < Accept || k > Redirect:
		t.Fatalf("rule %s: target %d", r.Src, k)
	case rs.Table == "filter" && k.NAT(), rs.Table == "nat" && (k == Drop || k == Reject):
		t.Fatalf("rule %s: target %s in the %s table", r.Src, k, rs.Table)
	case k == Jump && (rs.Chain(r.Target.Chain) == nil || rs.Chain(r.Target.Chain).Builtin):
		t.Fatalf("rule %s jumps to %q", r.Src, r.Target.Chain)
	case k == Reject && strings.HasPrefix(r.Target.RejectWith.String(), "reject-"):
		t.Fatalf("rule %s: reject with %d", r.Src, r.Target.RejectWith)
	case r.Target.RejectWith == RejectTCPReset && (!r.HasProto || r.NotProto || r.Proto != ProtoTCP):
		t.Fatalf("rule %s: tcp-reset without -p tcp", r.Src)
	case k == SNAT && !r.Target.Addr.IsValid(), k == DNAT && !r.Target.Addr.IsValid() && r.Target.Ports.Lo == 0:
		t.Fatalf("rule %s: %s to nowhere", r.Src, k)
	case (k == Masquerade || k == Redirect) && r.Target.Addr.IsValid():
		t.Fatalf("rule %s: %s with an address", r.Src, k)
	case r.Target.Ports.Lo > r.Target.Ports.Hi || r.Target.Ports.Lo == 0 && r.Target.Ports.Hi != 0:
		t.Fatalf("rule %s: NAT ports %v", r.Src, r.Target.Ports)
	case r.Target.Ports.Lo != 0 && (!r.HasProto || r.NotProto || r.Proto != ProtoTCP && r.Proto != ProtoUDP):
		t.Fatalf("rule %s: NAT ports without tcp or udp", r.Src)
	case c.Builtin && (k == SNAT || k == Masquerade) && c.Name != "POSTROUTING",
		c.Builtin && (k == DNAT || k == Redirect) && c.Name != "PREROUTING":
		t.Fatalf("rule %s: %s in %s", r.Src, k, c.Name)
	}
	if r.Family == 0 || r.Family&^rs.Family != 0 {
		t.Fatalf("rule %s: family %s in an %s rule set", r.Src, r.Family, rs.Family)
	}
	for _, a := range []netip.Addr{r.SrcNet.Addr(), r.DstNet.Addr(), r.Target.Addr} {
		if a.IsValid() && (a.Is4() && r.Family != IPv4 || !a.Is4() && r.Family != IPv6 || a.Is4In6() || a.Zone() != "") {
			t.Fatalf("rule %s: address %s in an %s rule", r.Src, a, r.Family)
		}
	}
	for _, p := range []netip.Prefix{r.SrcNet, r.DstNet} {
		if p.IsValid() && p != p.Masked() {
			t.Fatalf("rule %s: prefix %s has host bits", r.Src, p)
		}
	}
	if r.HasProto && (r.Proto == ProtoICMP && r.Family != IPv4 || r.Proto == ProtoICMPv6 && r.Family != IPv6) {
		t.Fatalf("rule %s: protocol %d in an %s rule", r.Src, r.Proto, r.Family)
	}
	for _, m := range []*PortMatch{r.SrcPorts, r.DstPorts, r.Ports} {
		if m == nil {
			continue
		}
		if !r.HasProto || r.NotProto || r.Proto != ProtoTCP && r.Proto != ProtoUDP {
			t.Fatalf("rule %s: ports without tcp or udp", r.Src)
		}
		if len(m.Ranges) < 1 || len(m.Ranges) > 15 {
			t.Fatalf("rule %s: %d port ranges", r.Src, len(m.Ranges))
		}
		for _, pr := range m.Ranges {
			if pr.Lo > pr.Hi {
				t.Fatalf("rule %s: port range %d > %d", r.Src, pr.Lo, pr.Hi)
			}
		}
	}
	if m := r.ICMP; m != nil && (!r.HasProto || r.NotProto || m.V6 != (r.Proto == ProtoICMPv6) || !m.V6 && r.Proto != ProtoICMP || m.Code < -1 || m.Code > 255) {
		t.Fatalf("rule %s: ICMP match %+v with protocol %d", r.Src, *m, r.Proto)
	}
	if m := r.TCPFlags; m != nil && (m.Mask > 0x3f || m.Comp&^m.Mask != 0 || !r.HasProto || r.NotProto || r.Proto != ProtoTCP) {
		t.Fatalf("rule %s: TCP flags %+v", r.Src, *m)
	}
	if r.State != nil && r.State.States == 0 {
		t.Fatalf("rule %s: empty state match", r.Src)
	}
	if r.NotProto && !r.HasProto {
		t.Fatalf("rule %s: a negated protocol that is none", r.Src)
	}
	for _, name := range []string{r.In, r.Out} {
		if name != "" && (len(name) > 15 || strings.ContainsAny(name, "/ ")) {
			t.Fatalf("rule %s: interface %q", r.Src, name)
		}
	}
}

// checkReparse checks that rs in iptables-save form parses back, under opts, to the same
// chains and rules (apart from where they were written) and the same form.
func checkReparse(t *testing.T, rs *Ruleset, opts Options) {
	t.Helper()
	text := rs.Format()
	again, err := Parse("again", strings.NewReader(text), opts)
	if err != nil {
		t.Fatalf("Format gave\n%s\nwhich does not parse: %v", text, err)
	}
	if again.Format() != text {
		t.Fatalf("Format gave\n%s\nwhich parses to\n%s", text, again.Format())
	}
	if len(again.Chains) != len(rs.Chains) {
		t.Fatalf("reparse has %d chains, not %d", len(again.Chains), len(rs.Chains))
	}
	for i, c := range rs.Chains {
		a := again.Chains[i]
		if a.Name != c.Name || a.Builtin != c.Builtin || a.Policy != c.Policy || len(a.Rules) != len(c.Rules) {
			t.Fatalf("chain %s reparses as %+v", c.Name, a)
		}
		for j, r := range c.Rules {
			want, got := *r, *a.Rules[j]
			want.Src, got.Src = Source{}, Source{}
			if !reflect.DeepEqual(want, got) {
				t.Fatalf("rule %s (%s) reparses as %s:\n%+v\n%+v", r.Src, r.Src.Text, a.Rules[j], want, got)
			}
		}
	}
}

// oneLinerSpecs are the specs of the package's tests, the README's and the help's words.
func oneLinerSpecs() []string {
	return []string{
		"tcp dport 80,443", "udp dport 53 src 192.0.2.0/24", "tcp dport 23", "tcp dport 25 with tcp-reset",
		"icmp type echo-request in west", "udp not dport 1000-2000",
		"tcp dport", "tcp dport http", "dport 80", "tcp frobnicate", "tcp udp",
		"src 192.0.2.0/24 dst 2001:db8::/32", "src 192.0.2.1/40", "icmpv6 src 192.0.2.1", "",
		"icmp", "tcp dport 80", "tcp port 22", "udp sport 1024-65535 dport 53", "proto gre", "proto 47",
		"icmpv6 type 128", "type echo-request icmpv6", "tcp syn state new", "ct established,related",
		"not tcp", "not src 198.51.100.0/24 out east", "in eth0 out eth1", "iif eth+ oif wan",
		"udp with icmp-host-unreachable", "udp with no-route", "tcp not syn", "from 2001:db8::1 to 2001:db8::/64",
		"all", "ip", "any dst 192.0.2.7", "not not tcp", "tcp not", "TCP DPORT 80", "tcp dport 80 dport 81",
		"icmp type 3/4", "icmp type any", "tcp sports 1,2,3", "udp ports 53,5353", "not all", "proto 00",
		"tcp with tcp-reset not syn", "not tcp with tcp-reset",
	}
}

// FuzzFromOneLiners: whatever one or two one-liner specs a user types, with any of the
// flags' targets and any policy, FromOneLiners
//   - either succeeds, or returns an error naming the flag and its position ("--allow:2: ")
//     and quoting the spec at fault, the first bad one (the items before it compile alone);
//     an invalid policy or alias is an error that says so;
//   - gives the same result twice;
//
// and a rule set it returns is whole (checkRuleset) with the FORWARD chain it documents: the
// policy, the implicit rule for replies, then one rule per item in order, each with the
// item's target and source. The words of a spec mean the same in any order (OneLinerHelp),
// a protocol word means the same as "proto WORD", and a policy of rules that can match IPv4 loads to the same rules from its iptables-save
// form (Format) as an IPv4 file.
func FuzzFromOneLiners(f *testing.F) {
	specs := oneLinerSpecs()
	for i, s := range specs {
		f.Add(s, specs[(i+7)%len(specs)], uint8(i), uint8(i%3), uint8(i%4))
		f.Add(s, "", uint8(i+1), uint8(0), uint8(1))
	}
	f.Fuzz(func(t *testing.T, spec1, spec2 string, targets, policy, aliases uint8) {
		kinds := [...]TargetKind{Accept, Drop, Reject, Log}
		flags := map[TargetKind]string{Accept: "--allow", Drop: "--deny", Reject: "--reject", Log: "--log"}
		items := []OneLiner{{Flag: flags[kinds[targets%4]], Target: kinds[targets%4], Spec: spec1}}
		if spec2 != "" || targets&0x80 != 0 {
			k := kinds[targets/4%4]
			items = append(items, OneLiner{Flag: flags[k], Target: k, Spec: spec2})
		}
		pol := [...]TargetKind{Drop, Accept, Reject}[policy%3]
		opts, bad := fuzzOptions(0, 0, aliases)
		rs, err := FromOneLiners(items, pol, opts)
		again, err2 := FromOneLiners(items, pol, opts)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() || err == nil && rs.Format() != again.Format() {
			t.Fatalf("two compilations differ: %v, then %v", err, err2)
		}
		switch {
		case pol == Reject:
			if err == nil || !strings.Contains(err.Error(), "policy") {
				t.Fatalf("policy REJECT: error %v", err)
			}
			return
		case bad != "":
			if err == nil || !strings.Contains(err.Error(), bad) {
				t.Fatalf("bad alias: error %v", err)
			}
			return
		case err != nil:
			checkOneLinerError(t, err, items, pol, opts)
			return
		}
		checkRuleset(t, rs)
		fwd := rs.Chain("FORWARD")
		if rs.Table != "filter" || rs.Family != AnyFamily || fwd.Policy != pol || rs.Chain("INPUT").Policy != Accept || rs.Chain("OUTPUT").Policy != Accept ||
			len(rs.Chains) != 3 || len(rs.Rules()) != len(items)+1 {
			t.Fatalf("rule set:\n%s", rs.Format())
		}
		if r := fwd.Rules[0]; r.State == nil || r.State.States != StateEstablished|StateRelated || r.Target.Kind != Accept {
			t.Fatalf("first rule %s is not the one for replies", r)
		}
		v4 := true // every rule can match IPv4 and has an IPv4 answer
		for i, it := range items {
			r := fwd.Rules[i+1]
			if r.Src != (Source{File: it.Flag, Line: i + 1, Text: it.Spec}) || r.Target.Kind != it.Target {
				t.Fatalf("rule %d from %+v: %+v", i+2, it, r)
			}
			v4 = v4 && r.Family&IPv4 != 0 && r.Target.RejectWith != RejectNoRoute
			// The words in another order, the protocol written as "proto NAME": the same rule.
			for _, alt := range []string{reverseWords(it.Spec), protoSpelled(it.Spec)} {
				rs2, err := FromOneLiners([]OneLiner{{Flag: it.Flag, Target: it.Target, Spec: alt}}, pol, opts)
				if err != nil {
					t.Fatalf("%q compiles, %q does not: %v", it.Spec, alt, err)
				}
				if r2 := rs2.Chain("FORWARD").Rules[1]; r2.String() != r.String() || r2.Family != r.Family {
					t.Fatalf("%q is %s (%s), %q is %s (%s)", it.Spec, r, r.Family, alt, r2, r2.Family)
				}
			}
		}
		if v4 {
			file, err := Parse("again", strings.NewReader(rs.Format()), Options{Family: IPv4})
			if err != nil {
				t.Fatalf("the iptables-save form\n%s\ndoes not parse: %v", rs.Format(), err)
			}
			if file.Format() != rs.Format() {
				t.Fatalf("the iptables-save form\n%s\nparses to\n%s", rs.Format(), file.Format())
			}
		}
	})
}

// checkOneLinerError checks that err names the first item FromOneLiners cannot compile.
func checkOneLinerError(t *testing.T, err error, items []OneLiner, pol TargetKind, opts Options) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Line < 1 || e.Line > len(items) {
		t.Fatalf("error %q does not name an item", err)
	}
	it := items[e.Line-1]
	if e.File != it.Flag || !strings.HasPrefix(err.Error(), fmt.Sprintf("%s:%d: ", it.Flag, e.Line)) ||
		!strings.Contains(err.Error(), fmt.Sprintf("(in %q)", it.Spec)) {
		t.Fatalf("error %q does not name %s:%d and quote %q", err, it.Flag, e.Line, it.Spec)
	}
	if e.Line > 1 {
		if _, err := FromOneLiners(items[:e.Line-1], pol, opts); err != nil {
			t.Fatalf("error %q names item %d, but an earlier one fails: %v", err, e.Line, err)
		}
	}
}

// specGroups splits a one-liner spec into its matches: each word with its value if it takes
// one, and the "not"s before it.
func specGroups(spec string) [][]string {
	takesValue := map[string]bool{"proto": true, "dport": true, "dports": true, "sport": true, "sports": true,
		"port": true, "ports": true, "src": true, "from": true, "dst": true, "to": true, "in": true, "iif": true,
		"out": true, "oif": true, "state": true, "ct": true, "type": true, "with": true}
	words := strings.Fields(spec)
	var groups [][]string
	var g []string
	for i := 0; i < len(words); i++ {
		w := strings.ToLower(words[i])
		g = append(g, words[i])
		if w == "not" || w == "!" {
			continue
		}
		if takesValue[w] && i+1 < len(words) {
			i++
			g = append(g, words[i])
		}
		groups, g = append(groups, g), nil
	}
	if len(g) > 0 {
		groups = append(groups, g)
	}
	return groups
}

// reverseWords writes a one-liner spec's matches in reverse order.
func reverseWords(spec string) string {
	groups := specGroups(spec)
	var out []string
	for i := len(groups) - 1; i >= 0; i-- {
		out = append(out, strings.Join(groups[i], " "))
	}
	return strings.Join(out, " ")
}

// protoSpelled writes a one-liner spec with its protocol word as "proto WORD".
func protoSpelled(spec string) string {
	var out []string
	for _, g := range specGroups(spec) {
		last := len(g) - 1
		if _, ok := oneLinerProtos[strings.ToLower(g[last])]; ok && (last == 0 || strings.ToLower(g[last-1]) == "not" || g[last-1] == "!") {
			g = append(g[:last:last], "proto", g[last])
		}
		out = append(out, strings.Join(g, " "))
	}
	return strings.Join(out, " ")
}

// FuzzFromNATFlags: whatever stdpkt-nat's flags say (--inside, --snat as the command line
// parses it, --masquerade, --ports through ParsePortRange, and up to two --forward values),
// FromNATFlags
//   - either succeeds, or returns an error naming the flag at fault (it starts with "--");
//   - gives the same result twice;
//
// and a nat table it returns is whole (checkRuleset), of the family of --snat, with exactly
// the rules the flags ask for: one DNAT per --forward in PREROUTING, from the outside, to its
// protocol and port; in POSTROUTING, the SNAT or MASQUERADE to the outside, once per protocol
// with --ports and once for everything; nothing else. Its iptables-save form parses back to
// the same rules.
func FuzzFromNATFlags(f *testing.F) {
	f.Add("", "203.0.113.1", false, "", "tcp:8080=192.0.2.10:80", "")
	f.Add("east", "", true, "1024-65535", "udp:53=192.0.2.53:53", "tcp:80=192.0.2.10")
	f.Add("west", "2001:db8::1", false, "1000-2000", "tcp:443=[2001:db8::10]:8443", "")
	f.Add("", "", false, "", "tcp:80", "")                         // the e2e test's bad --forward
	f.Add("", "203.0.113.1", true, "", "", "")                     // --snat with --masquerade
	f.Add("", "", false, "1-2", "", "")                            // --ports alone
	f.Add("north", "203.0.113.1", false, "", "", "")               // bad --inside
	f.Add("", "203.0.113.1", false, "0-5", "sctp:1=1.2.3.4:1", "") // bad --ports, bad --forward
	f.Add("", "203.0.113.1", false, "", "tcp:99999=192.0.2.10:80", "tcp:80=192.0.2.10:0")
	f.Add("", "203.0.113.1", false, "", "tcp:80=192.0.2.10:80 -s 10.0.0.1", "tcp:80=1.2.3.4:80\n-A POSTROUTING -j MASQUERADE")
	f.Add("", "::ffff:203.0.113.1", false, "2000-3000", "udp:53=[::ffff:192.0.2.1]:53", "")
	f.Add("", "fe80::1%eth0", false, "", "tcp:80=[fe80::1%eth0]:80", "")
	f.Fuzz(func(t *testing.T, inside, snat string, masq bool, ports, fwd1, fwd2 string) {
		flags := NATFlags{Inside: inside, Masquerade: masq}
		if a, err := netip.ParseAddr(snat); err == nil {
			flags.SNAT = a
		}
		if ports != "" {
			pr, err := ParsePortRange(ports)
			if err != nil {
				return // stdpkt-nat refuses it before FromNATFlags
			}
			flags.Ports = pr
		}
		for _, fw := range []string{fwd1, fwd2} {
			if fw != "" {
				flags.Forwards = append(flags.Forwards, fw)
			}
		}
		rs, err := FromNATFlags(flags)
		again, err2 := FromNATFlags(flags)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() || err == nil && rs.Format() != again.Format() {
			t.Fatalf("two compilations differ: %v, then %v", err, err2)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--") {
				t.Fatalf("%+v: error %q does not start with the flag at fault", flags, err)
			}
			return
		}
		checkRuleset(t, rs)
		fam := IPv4
		if flags.SNAT.Unmap().Is6() {
			fam = IPv6
		}
		if rs.Table != "nat" || rs.Family != fam {
			t.Fatalf("%+v: table %s family %s", flags, rs.Table, rs.Family)
		}
		outside := East
		if inside == East {
			outside = West
		}
		pre := rs.Chain("PREROUTING").Rules
		if len(pre) != len(flags.Forwards) || len(rs.Chains) != 4 || len(rs.Chain("INPUT").Rules)+len(rs.Chain("OUTPUT").Rules) != 0 {
			t.Fatalf("%+v gave\n%s", flags, rs.Format())
		}
		for i, fw := range flags.Forwards {
			r := pre[i]
			proto, rest, _ := strings.Cut(fw, ":")
			port, _, _ := strings.Cut(rest, "=")
			pr, err := ParsePortRange(port)
			if r.Target.Kind != DNAT || r.In != outside || r.NotIn || r.Out != "" || protoName(r.Proto) != proto || r.NotProto ||
				err != nil || r.DstPorts == nil || len(r.DstPorts.Ranges) != 1 || r.DstPorts.Ranges[0] != pr || r.DstPorts.Not ||
				r.SrcNet.IsValid() || r.DstNet.IsValid() || r.SrcPorts != nil || r.Ports != nil || r.ICMP != nil || r.State != nil || r.TCPFlags != nil {
				t.Fatalf("--forward %q gave %s", fw, r)
			}
		}
		post := rs.Chain("POSTROUTING").Rules
		want := 0
		if flags.SNAT.IsValid() || masq {
			want = 1
			if flags.Ports.Lo != 0 {
				want = 3
			}
		}
		if len(post) != want {
			t.Fatalf("%+v gave POSTROUTING\n%s", flags, rs.Format())
		}
		for i, r := range post {
			k := SNAT
			if masq {
				k = Masquerade
			}
			ports := PortRange{}
			if i < 2 {
				ports = flags.Ports
			}
			if r.Target.Kind != k || r.Out != outside || r.Target.Addr != flags.SNAT.Unmap() || r.Target.Ports != ports || r.In != "" {
				t.Fatalf("%+v gave %s", flags, r)
			}
		}
		checkReparse(t, rs, Options{Family: fam, Table: "nat"})
	})
}

// FuzzParsePortRange: ParsePortRange (stdpkt-nat's --ports, --to-ports) returns a range with
// 1 <= lo <= hi, parsed from exactly "LO-HI" or "PORT", or an error; the same range written
// back as LO-HI parses to itself, and the iptables syntax's port parser (parsePortRange, which
// also takes LO:HI, :HI and LO:) reads the same range from it. parsePortRange and the
// multiport list parser give lo <= hi for every range, at most 15 ranges, or an error that
// quotes the port at fault.
func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"1024-65535", "1000-2000", "80", "0", "0-5", "5-3", "65535", "65536", "1-", "-1",
		"", "80:90", ":1023", "1024:", "080", "+80", " 80", "8000-8080", "80,443,8000:8080", "99999", "http",
		"1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", "18446744073709551617", "1-2-3", "1:2:3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePortRange(s)
		r2, err2 := ParsePortRange(s)
		if r != r2 || (err == nil) != (err2 == nil) {
			t.Fatalf("%q: %v %v, then %v %v", s, r, err, r2, err2)
		}
		if err == nil {
			canon := fmt.Sprintf("%d-%d", r.Lo, r.Hi)
			if r.Lo < 1 || r.Lo > r.Hi {
				t.Fatalf("%q: range %d-%d", s, r.Lo, r.Hi)
			}
			if back, err := ParsePortRange(canon); err != nil || back != r {
				t.Fatalf("%q is %s, which parses to %v %v", s, canon, back, err)
			}
			if ip, err := parsePortRange(s); err != nil || ip != r {
				t.Fatalf("%q: --ports reads %v, a rule's port option %v %v", s, r, ip, err)
			}
			if strings.Trim(s, "0123456789-") != "" || strings.Count(s, "-") > 1 {
				t.Fatalf("%q parsed as %v", s, r)
			}
		} else if err.Error() == "" {
			t.Fatalf("%q: empty error", s)
		}
		if pr, err := parsePortRange(s); err == nil && pr.Lo > pr.Hi {
			t.Fatalf("%q: rule port range %d > %d", s, pr.Lo, pr.Hi)
		} else if err != nil && !strings.Contains(err.Error(), "port") {
			t.Fatalf("%q: error %q does not say what is wrong", s, err)
		}
		list, err := parsePortList(s, 15)
		if err == nil {
			if len(list) != strings.Count(s, ",")+1 || len(list) > 15 {
				t.Fatalf("%q: %d ranges", s, len(list))
			}
			for _, pr := range list {
				if pr.Lo > pr.Hi {
					t.Fatalf("%q: range %d > %d", s, pr.Lo, pr.Hi)
				}
			}
		} else if !strings.Contains(err.Error(), "\"") {
			t.Fatalf("%q: error %q quotes nothing", s, err)
		}
	})
}

// FuzzParseAliases: ParseAliases (--alias NAME=west|east) either adds every item to the map,
// the last one winning for a name given twice, and leaves the other names as they were; or
// returns an error quoting the first bad item (the items before it parse alone). Every alias
// it accepts is a name a rule can use: "-i NAME" in a rule file resolves to its side.
func FuzzParseAliases(f *testing.F) {
	for _, s := range [][2]string{{"eth0=west", "eth1=east"}, {"eth0=west", "eth0=east"}, {"eth0=north", "x=west"},
		{"eth0", ""}, {"=west", ""}, {"west=east", ""}, {"a b=west", "a/b=east"}, {"averyveryverylongname=west", ""},
		{"eth+=east", "wan=west=east"}, {"eth9=west", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		items := []string{a, b}
		m := map[string]string{"eth9": East}
		err := ParseAliases(items, m)
		if err != nil {
			bad := -1
			for i, it := range items {
				if strings.Contains(err.Error(), fmt.Sprintf("--alias %q", it)) {
					bad = i
					break
				}
			}
			if bad < 0 {
				t.Fatalf("%q: error %q quotes no item", items, err)
			}
			if bad > 0 && ParseAliases(items[:bad], map[string]string{}) != nil {
				t.Fatalf("%q: error %q is not about the first bad item", items, err)
			}
			return
		}
		want := map[string]string{"eth9": East}
		for _, it := range items {
			name, side, _ := strings.Cut(it, "=")
			want[name] = side
		}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("%q gave %v, want %v", items, m, want)
		}
		if err := checkAliases(m); err != nil {
			t.Fatalf("%q: %v", items, err)
		}
		p := &parser{file: fuzzFile, opts: Options{Aliases: m}}
		for name, side := range m {
			b := ruleBuilder{p: p, r: &Rule{}, line: 1, family: IPv4}
			if got, err := b.iface("-i", name); err != nil || got != side || len(p.warnings) != 0 {
				t.Fatalf("%q: alias %s=%s, but -i %s resolves to %q (%v, %q)", items, name, side, name, got, err, p.warnings)
			}
		}
	})
}
