#!/usr/bin/env bash
# offline-nat.sh: source NAT of a trace, offline and without root.
#
#   examples/offline-nat.sh [DIR]
#
# Generates an inside trace (UDP, TCP and ICMP from 192.0.2.0/24), runs it through
#
#     stdpkt-src -r lan.pcapng | stdpkt-nat --snat 203.0.113.1 | stdpkt-sink -w wan.pcapng
#
# and shows each inside address and port next to what it became, the NAT rule's counters
# from --stats-json, and a check that no inside address leaves: stdpkt-dump (and tshark, when
# installed) must count 0 packets of 192.0.2.0/24 in wan.pcapng. Exit 0 when none leaves,
# 1 when one does, 2 when the commands are missing.
#
# The files are made in a temporary directory that is removed on exit, or in DIR (kept).
# Environment: STDPKT_BIN, the stdpkt commands (default: ../bin next to this script).
set -euo pipefail

bin=${STDPKT_BIN:-$(dirname "$0")/../bin}
if ! bin=$(cd "$bin" 2>/dev/null && pwd) || [ ! -x "$bin/stdpkt-nat" ]; then
	echo "offline-nat.sh: no stdpkt commands in ${STDPKT_BIN:-$(dirname "$0")/../bin}: run make build, or set STDPKT_BIN" >&2
	exit 2
fi
PATH=$bin:$PATH

if [ $# -gt 0 ]; then
	mkdir -p "$1"
	cd "$1"
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/stdpkt-offline-nat.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	cd "$work"
fi

inside=192.0.2.0/24
public=203.0.113.1

echo "== 1. an inside trace: 4 hosts of $inside talking UDP, TCP and ICMP to 198.51.100.10"
# Three generated traces, one after the other: a pcapng stream may hold several sections.
{
	stdpkt-src -q --gen 'udp,flows=4,count=8,dport=53'
	stdpkt-src -q --gen 'tcp,flows=4,count=8,dport=443'
	stdpkt-src -q --gen 'icmp,flows=2,count=4'
} >lan.pcapng
stdpkt-dump -q <lan.pcapng | head -n 5
echo "   ... $(stdpkt-dump -q --count-only <lan.pcapng) packets in lan.pcapng"

echo
echo "== 2. through the NAT: stdpkt-src -r lan.pcapng | stdpkt-nat --snat $public | stdpkt-sink -w wan.pcapng"
stdpkt-src -q -r lan.pcapng |
	stdpkt-nat --snat "$public" --stats-json nat.json 2>nat.err |
	stdpkt-sink -q -w wan.pcapng
sed 's/^/   /' nat.err
stdpkt-dump -q <wan.pcapng | head -n 5

echo
echo "== 3. the translations (inside source -> outside source), one per flow"
n_lan=$(stdpkt-dump -q --count-only <lan.pcapng)
n_wan=$(stdpkt-dump -q --count-only <wan.pcapng)
if [ "$n_lan" != "$n_wan" ]; then
	echo "offline-nat.sh: $n_lan packets went in, $n_wan came out" >&2
	exit 1
fi
# Field 5 of a line is the source (address.port, or the address for ICMP), field 8 says
# which protocol: "UDP,", "Flags" (TCP) or "ICMP".
srcs() { awk '{ print ($8 == "UDP," ? "udp" : $8 == "ICMP" ? "icmp" : "tcp"), $5 }'; }
paste -d' ' <(stdpkt-dump -q <lan.pcapng | srcs) <(stdpkt-dump -q <wan.pcapng | srcs) |
	awk '!seen[$0]++ { printf "   %-4s %-18s -> %s\n", $1, $2, $4 }'

echo
echo "== 4. the NAT rules' counters (--stats-json nat.json): the nat table sees a connection's first packet"
if command -v jq >/dev/null; then
	jq -r '.rules[] | select(.rule) | "   \(.packets) connections  \(.rule)"' nat.json
else
	grep -E '"(rule|packets)"' nat.json | sed 's/^ */   /'
fi

echo
echo "== 5. did an inside address leave?"
leaks=$(stdpkt-dump -q --count-only "net $inside" <wan.pcapng)
echo "   stdpkt-dump --count-only 'net $inside' < wan.pcapng: $leaks"
if command -v tshark >/dev/null; then
	tleaks=$(tshark -r wan.pcapng -Y "ip.addr == $inside" 2>/dev/null | wc -l)
	echo "   tshark -r wan.pcapng -Y 'ip.addr == $inside': $tleaks"
else
	tleaks=0
	echo "   (tshark is not installed: apt-get install tshark to check with it too)"
fi
outside=$(stdpkt-dump -q --count-only "src host $public" <wan.pcapng)
echo "   packets from $public: $outside of $n_wan"
if [ "$leaks" -ne 0 ] || [ "$tleaks" -ne 0 ] || [ "$outside" -ne "$n_wan" ]; then
	echo "FAIL: inside addresses left the NAT"
	exit 1
fi
echo "PASS: no inside address left; every packet leaves as $public"
