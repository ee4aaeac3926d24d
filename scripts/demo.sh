#!/usr/bin/env bash
# make demo: build a sample trace, run it through a real chain, show what happened.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/bin:$PATH"
out=demo-out
mkdir -p "$out"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. Generate a sample trace: 5 TCP flows with handshakes, mixed sizes, documentation addresses"
echo '$ stdpkt-src --gen "tcp,handshake,flows=5,count=40,size=imix,seed=1" > demo-out/sample.pcapng'
stdpkt-src -q --gen "tcp,handshake,flows=5,count=40,size=imix,seed=1" > "$out/sample.pcapng"
stdpkt-src -q --gen "udp,flows=3,count=12,size=128,seed=1,dst=203.0.113.10" > "$out/udp.pcapng"
# Outbound only, for the chain: a one-way replay sends every packet east, so a trace's
# replies would meet the NAT from the wrong side.
stdpkt-src -q --gen "tcp,flows=5,count=20,size=imix,seed=1" > "$out/web.pcapng"
stdpkt-src -q --gen "udp,flows=2,count=4,dport=53,seed=1" > "$out/dns.pcapng"
cat "$out/web.pcapng" > "$out/lan.pcapng"; stdpkt-src -q -r "$out/dns.pcapng" --format pcapng >> "$out/lan.pcapng"

say "2. Replay it through a chain: src | sink, written back as pcapng"
echo '$ stdpkt-src -r demo-out/sample.pcapng | stdpkt-sink -w demo-out/out.pcapng'
stdpkt-src -r "$out/sample.pcapng" | stdpkt-sink -w "$out/out.pcapng"

say "3. A service chain: a firewall, then a NAT, each in its own netstack, on the same trace"
echo '$ stdpkt-src -r demo-out/lan.pcapng | stdpkt-fw --allow "tcp dport 80" --deny udp --policy drop --list | stdpkt-nat --snat 203.0.113.1 | stdpkt-sink -w demo-out/wan.pcapng'
stdpkt-src -r "$out/lan.pcapng" | stdpkt-fw --allow "tcp dport 80" --deny udp --policy drop --list \
	| stdpkt-nat --snat 203.0.113.1 | stdpkt-sink -w "$out/wan.pcapng"
echo
echo '$ stdpkt-src -r demo-out/wan.pcapng | stdpkt-dump "tcp and src host 203.0.113.1" | head -4'
stdpkt-src -q -r "$out/wan.pcapng" | stdpkt-dump -q 'tcp and src host 203.0.113.1' | head -4

say "4. Any pcap tool reads a stage's output: the first packets, as tcpdump sees them"
if command -v tcpdump >/dev/null; then
	echo '$ stdpkt-src -r demo-out/out.pcapng | tcpdump -nr - | head -8'
	stdpkt-src -q -r "$out/out.pcapng" | tcpdump -nr - 2>/dev/null | head -8
else
	echo "(tcpdump is not installed: apt-get install tcpdump)"
fi

say "5. A benchmark one-liner: one million 64-byte frames over 1000 flows, counted"
echo '$ stdpkt-src --gen "udp,size=64,flows=1000,count=1000000" | stdpkt-sink'
stdpkt-src --gen "udp,size=64,flows=1000,count=1000000" | stdpkt-sink

say "6. Real-time replay with latency: the trace's own spacing, percentiles at the sink"
echo '$ stdpkt-src -r demo-out/udp.pcapng --pps 200 | stdpkt-sink --latency'
stdpkt-src -r "$out/udp.pcapng" --pps 200 | stdpkt-sink --latency

say "7. A broken stream stops with the offset, not a crash"
echo '$ head -c 1000 demo-out/sample.pcapng | stdpkt-sink'
head -c 1000 "$out/sample.pcapng" | stdpkt-sink || echo "(exit status $?)"
echo
echo "Files are in $out/. Open one in Wireshark, or read it with tshark -r."
