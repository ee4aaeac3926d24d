#!/usr/bin/env bash
# firewall-audit.sh: audit a trace against a router's iptables-save file, offline, no root.
#
#   examples/firewall-audit.sh [RULES [DIR]]
#
# Generates an office's traffic (web, TLS, DNS, ping, telnet, a guest host, an unknown UDP
# service), replays it through
#
#     stdpkt-src -r office.pcapng | stdpkt-fw -f RULES --alias eth0=west --alias eth1=east
#
# and prints, for every rule of the FORWARD chain, the packets it accepted, dropped or
# rejected (from --stats-json's "rules", with the rule's text from --list), the packets that
# did not get through, and the resets the firewall sent home. It checks that every packet was
# decided by exactly one rule or the policy (the file has no jumps to other chains), and that the rules' counters agree with the
# firewall's books. Exit 0 when they do, 1 when not, 2 when something is missing.
#
# RULES defaults to firewall-audit-rules.txt next to this script (eth0 inside, eth1 outside).
# The files are made in a temporary directory that is removed on exit, or in DIR (kept).
# Environment: STDPKT_BIN, the stdpkt commands (default: ../bin next to this script).
# Needs jq to read the JSON.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=${STDPKT_BIN:-$here/../bin}
if ! bin=$(cd "$bin" 2>/dev/null && pwd) || [ ! -x "$bin/stdpkt-fw" ]; then
	echo "firewall-audit.sh: no stdpkt commands in ${STDPKT_BIN:-$here/../bin}: run make build, or set STDPKT_BIN" >&2
	exit 2
fi
PATH=$bin:$PATH
if ! command -v jq >/dev/null; then
	echo "firewall-audit.sh: needs jq (apt-get install jq)" >&2
	exit 2
fi

rules=${1:-$here/firewall-audit-rules.txt}
if [ ! -r "$rules" ]; then
	echo "firewall-audit.sh: cannot read $rules" >&2
	exit 2
fi
rules=$(cd "$(dirname "$rules")" && pwd)/$(basename "$rules")

if [ $# -gt 1 ]; then
	mkdir -p "$2"
	cd "$2"
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/stdpkt-firewall-audit.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	cd "$work"
fi

echo "== 1. the trace: office.pcapng"
gen() { # gen WHAT SPEC: one generated trace, and what it is
	printf '   %-58s %s\n' "$2" "$1"
	stdpkt-src -q --gen "$2" >>office.pcapng
}
: >office.pcapng
gen "web: 4 hosts, handshakes and data" 'tcp,handshake,flows=4,count=20,dport=80'
gen "TLS: 2 hosts, handshakes" 'tcp,handshake,flows=2,count=6,dport=443'
gen "DNS: 3 hosts" 'udp,flows=3,count=6,dport=53'
gen "ping" 'icmp,count=3'
gen "telnet, mid-connection" 'tcp,flows=2,count=2,dport=23'
gen "the guest half of the LAN, to an unknown UDP service" 'udp,src=192.0.2.128/25,flows=4,count=4,dport=5000'
gen "a guest host browsing the web" 'tcp,handshake,src=192.0.2.200/32,count=3,dport=80'
gen "an inside host, to an unknown UDP service" 'udp,count=2,dport=5000'
total=$(stdpkt-dump -q --count-only <office.pcapng)
echo "   $total packets"

echo
echo "== 2. the replay: stdpkt-src -r office.pcapng | stdpkt-fw -f $(basename "$rules") --alias eth0=west --alias eth1=east --list --stats-json fw.json"
# The source keeps what comes home (the REJECT rule's resets) in home.pcapng.
stdpkt-src -q -r office.pcapng --west-out home.pcapng |
	stdpkt-fw -f "$rules" --alias eth0=west --alias eth1=east --list --stats-json fw.json 2>fw.err |
	stdpkt-sink -q -w passed.pcapng
grep -E '^stdpkt-fw (east|west)bound: ' fw.err | sed 's/^/   /'
if grep -q 'warning' fw.err; then
	grep 'warning' fw.err | sed 's/^/   /'
fi

echo
echo "== 3. what each rule decided (packets and bytes from --stats-json, the rule as --list prints it)"
# --list prints one line per rule and policy, in the order of --stats-json's "rules":
#   PACKETS BYTES RULE (FILE:LINE)
grep -E '^ +[0-9]+ +[0-9]+  ' fw.err | sed -E 's/^ +[0-9]+ +[0-9]+  //' >list.txt
jq -r '.rules[] | "\(.chain) \(.packets) \(.bytes)"' fw.json >counters.txt
if [ "$(wc -l <list.txt)" -ne "$(wc -l <counters.txt)" ]; then
	echo "firewall-audit.sh: --list printed $(wc -l <list.txt) rules, --stats-json has $(wc -l <counters.txt)" >&2
	exit 1
fi
printf '   %8s %8s  %-13s %s\n' packets bytes verdict rule
paste -d'\t' counters.txt list.txt | awk -F'\t' '
	{
		split($1, c, " ")
		rule = $2
		if (c[1] != "FORWARD") next
		verdict = "?"
		if (match(rule, /-j [A-Z]+/)) verdict = substr(rule, RSTART + 3, RLENGTH - 3)
		else if (match(rule, /policy [A-Z]+/)) verdict = substr(rule, RSTART + 7, RLENGTH - 7) " (policy)"
		sub(/  \(.*\)$/, "", rule)
		printf "   %8d %8d  %-13s %s\n", c[2], c[3], verdict, rule
		n[verdict ~ /^ACCEPT/ ? "accepted" : "stopped"] += c[2]
		all += c[2]
	}
	END {
		printf "   FORWARD decided %d packets: %d accepted, %d dropped or rejected\n", all, n["accepted"], n["stopped"]
		print all, n["accepted"], n["stopped"] > "decided.txt"
	}'

echo
echo "== 4. the packets that did not get through"
# passed.pcapng is office.pcapng less what was stopped, in order: diff says which (and exits
# 1 when there is a difference).
{ diff <(stdpkt-dump -q <office.pcapng | cut -d' ' -f4-) <(stdpkt-dump -q <passed.pcapng | cut -d' ' -f4-) || true; } |
	sed -n 's/^< /   /p'

echo
echo "== 5. what came home (the REJECT rules' answers): home.pcapng"
stdpkt-dump -q <home.pcapng | cut -d' ' -f2- | sed 's/^/   /'

echo
echo "== 6. checks"
read -r decided accepted stopped <decided.txt
in=$(jq '.books.eastbound.in.packets' fw.json)
out=$(jq '.books.eastbound.out.packets' fw.json)
dropped=$(jq '[.books.eastbound.dropped[].packets] | add // 0' fw.json)
generated=$(jq '.books.westbound.generated.packets' fw.json)
passed=$(stdpkt-dump -q --count-only <passed.pcapng)
home=$(stdpkt-dump -q --count-only <home.pcapng)
rejected=$(jq '[.rules[] | select(.target == "REJECT") | .packets] | add // 0' fw.json)
fail=0
check() { # check DESCRIPTION LEFT RIGHT
	if [ "$2" -eq "$3" ]; then
		echo "   ok   $1: $2"
	else
		echo "   FAIL $1: $2 != $3"
		fail=1
	fi
}
check "packets in the trace = packets into stdpkt-fw" "$total" "$in"
check "every packet decided by one FORWARD rule or the policy" "$decided" "$in"
check "accepted by a rule = out of stdpkt-fw = in passed.pcapng" "$accepted" "$out"
check "passed.pcapng holds what stdpkt-fw put out" "$passed" "$out"
check "dropped or rejected by a rule = dropped in the books" "$stopped" "$dropped"
check "packets rejected = answers generated" "$rejected" "$generated"
check "answers generated = answers in home.pcapng" "$generated" "$home"
if [ "$fail" -ne 0 ]; then
	echo "FAIL: the rules' counters and the books disagree"
	exit 1
fi
echo "PASS: $in packets, $accepted accepted, $stopped dropped or rejected, $home answers came home"
