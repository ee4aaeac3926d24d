package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The fast path gives what the stack alone gives: on every trace, stdpkt-fw with and
// without --no-fastpath writes the same bytes, counts the same packets and bytes on every
// rule, and keeps the same books; and it did pass most packets itself.
func TestFastPathSameAsStack(t *testing.T) {
	dir := tempDir(t)
	rules := `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:WEB - [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -p tcp --dport 23 -j REJECT --reject-with tcp-reset
-A FORWARD -p tcp -j WEB
-A FORWARD -p udp --dport 9 -s 192.0.2.0/25 -j ACCEPT
-A FORWARD -p udp -m multiport --dports 53,123 -j ACCEPT
-A FORWARD -p icmp -j ACCEPT
-A WEB -p tcp --syn -j RETURN
-A WEB -p tcp --tcp-flags PSH PSH -j ACCEPT
-A WEB -p tcp --dport 80 -j ACCEPT
COMMIT
`
	if err := os.WriteFile(filepath.Join(dir, "rules.txt"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	writePcapng(t, filepath.Join(dir, "conv.pcapng"), "lan0", conversation(t, []byte{192, 0, 2, 10}))
	traces := map[string]string{
		"udp":       "stdpkt-src -q --gen 'udp,flows=300,count=30000,src=192.0.2.0/24'",
		"tcp":       "stdpkt-src -q --gen 'tcp,handshake,flows=50,count=20000,size=imix'",
		"tcp-23":    "stdpkt-src -q --gen 'tcp,handshake,flows=5,count=500,dport=23'",
		"udp-v6":    "stdpkt-src -q --gen 'udp,flows=20,count=2000,ipv6,dport=53'",
		"icmp":      "stdpkt-src -q --gen 'icmp,flows=10,count=1000'",
		"two-sided": "stdpkt-src -q -r conv.pcapng --loop 20",
	}
	for name, gen := range traces {
		t.Run(name, func(t *testing.T) {
			mustSh(t, dir, gen+" > "+name+".pcapng")
			for _, mode := range []string{"fast", "stack"} {
				flag := map[string]string{"fast": "", "stack": "--no-fastpath"}[mode]
				mustSh(t, dir, "stdpkt-fw -q "+flag+" -f rules.txt --stats-json "+name+"-"+mode+".json < "+name+".pcapng > "+name+"-"+mode+".out")
			}
			mustSh(t, dir, "cmp "+name+"-fast.out "+name+"-stack.out")
			var fast, stack struct {
				Books    json.RawMessage
				Rules    []struct{ Packets, Bytes uint64 }
				Fastpath struct{ Hits uint64 }
			}
			readJSON(t, filepath.Join(dir, name+"-fast.json"), &fast)
			readJSON(t, filepath.Join(dir, name+"-stack.json"), &stack)
			if string(fast.Books) != string(stack.Books) {
				t.Errorf("books differ:\nfast  %s\nstack %s", fast.Books, stack.Books)
			}
			for i := range fast.Rules {
				if fast.Rules[i] != stack.Rules[i] {
					t.Errorf("rule %d counted %+v with the fast path, %+v without", i, fast.Rules[i], stack.Rules[i])
				}
			}
			if stack.Fastpath.Hits != 0 {
				t.Errorf("--no-fastpath, yet %d fast-path hits", stack.Fastpath.Hits)
			}
			if (name == "udp" || name == "tcp" || name == "udp-v6") && fast.Fastpath.Hits == 0 {
				t.Errorf("the fast path passed nothing")
			}
		})
	}
}

// The same for stdpkt-nat: with the stack's random choices seeded (the port picked on a
// collision), the fast path's translations are the stack's, byte for byte, one way and in a
// two-sided replay where replies come home through it.
func TestNATFastPathSameAsStack(t *testing.T) {
	dir := tempDir(t)
	writePcapng(t, filepath.Join(dir, "conv.pcapng"), "lan0", conversation(t, []byte{203, 0, 113, 1}))
	traces := map[string]string{
		"collisions": "stdpkt-src -q --gen 'udp,flows=300,count=30000,src=192.0.2.0/24'",
		"tcp":        "stdpkt-src -q --gen 'tcp,flows=50,count=20000,size=imix,sport=40000,src=192.0.2.10'",
		"large":      "stdpkt-src -q --gen 'udp,flows=20,count=2000,size=1500'",
	}
	for name, gen := range traces {
		t.Run(name, func(t *testing.T) {
			mustSh(t, dir, gen+" > "+name+".pcapng")
			for _, mode := range []string{"fast", "stack"} {
				flag := map[string]string{"fast": "", "stack": "--no-fastpath"}[mode]
				mustSh(t, dir, "stdpkt-nat -q --seed 7 "+flag+" --snat 203.0.113.1 --stats-json "+name+"-"+mode+".json < "+name+".pcapng > "+name+"-"+mode+".out")
			}
			mustSh(t, dir, "cmp "+name+"-fast.out "+name+"-stack.out")
			var fast, stack struct {
				Books    json.RawMessage
				Fastpath struct{ Hits uint64 }
			}
			readJSON(t, filepath.Join(dir, name+"-fast.json"), &fast)
			readJSON(t, filepath.Join(dir, name+"-stack.json"), &stack)
			if string(fast.Books) != string(stack.Books) || fast.Fastpath.Hits == 0 {
				t.Errorf("books fast %s, stack %s; %d fast-path hits", fast.Books, stack.Books, fast.Fastpath.Hits)
			}
		})
	}
	t.Run("two-sided", func(t *testing.T) {
		for _, mode := range []string{"fast", "stack"} {
			flag := map[string]string{"fast": "", "stack": "--no-fastpath"}[mode]
			mustSh(t, dir, "stdpkt-src -q -r conv.pcapng --loop 10 --from-east src=198.51.100.0/24 --west-out home-"+mode+".pcapng | "+
				"stdpkt-nat -q --seed 7 "+flag+" --snat 203.0.113.1 | stdpkt-sink -q -w away-"+mode+".pcapng")
		}
		// Timestamps differ (paced send times); compare what tshark reads, frame by frame.
		for _, f := range []string{"home", "away"} {
			a := natFields(t, dir, f+"-fast.pcapng")
			b := natFields(t, dir, f+"-stack.pcapng")
			equalLines(t, f, a, b)
		}
	})
}
