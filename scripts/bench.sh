#!/usr/bin/env bash
# make bench: each stdpkt workload next to its floor (cat through the same number of pipes),
# on traces it generates, median of $RUNS runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/bin:$PATH"
RUNS=${RUNS:-5}
traces=bench/traces
mkdir -p "$traces"

trace() { # name spec
	[ -s "$traces/$1.pcapng" ] || stdpkt-src -q --timestamps keep --gen "$2" > "$traces/$1.pcapng"
}
trace small "udp,size=64,flows=1000,count=1000000,seed=1"
trace large "udp,size=1500,flows=1000,count=200000,seed=1"
# One inside host, a new source port per flow: 50000 new flows (netstack searches ports
# linearly on a collision, so many hosts sharing source ports is quadratic: see docs).
trace newflows "udp,size=64,flows=50000,count=50000,src=192.0.2.10,seed=1"

# median_seconds CMD: runs CMD $RUNS times, prints the median wall time in seconds.
median_seconds() {
	local times=()
	for _ in $(seq "${runs:-$RUNS}"); do
		local t0 t1
		t0=$(date +%s%N)
		bash -o pipefail -c "$1" >/dev/null 2>&1 || { echo "FAILED: $1" >&2; exit 1; }
		t1=$(date +%s%N)
		times+=("$(( t1 - t0 ))")
	done
	printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.4f", a[int((NR+1)/2)]/1e9}'
}

printf '%-58s %9s %8s %8s %8s %7s\n' workload packets seconds Mpps Gbit/s "floor%"
row() { # label packets bytes-per-frame cmd floor-cmd
	local s f
	s=$(median_seconds "$4")
	f=$(median_seconds "$5")
	awk -v l="$1" -v n="$2" -v b="$3" -v s="$s" -v f="$f" 'BEGIN {
		printf "%-58s %9d %8.3f %8.2f %8.2f %6.0f%%\n", l, n, s, n/s/1e6, n*b*8/s/1e9, 100*f/s
		printf "%-58s %9d %8.3f %8.2f %8.2f\n", "  floor: cat f | cat > /dev/null", n, f, n/f/1e6, n*b*8/f/1e9 }'
}
row "stdpkt-src -r f | stdpkt-sink (64 B)" 1000000 64 \
	"stdpkt-src -q -r $traces/small.pcapng | stdpkt-sink -q" "cat $traces/small.pcapng | cat > /dev/null"
row "stdpkt-src -r f | stdpkt-sink (1500 B)" 200000 1500 \
	"stdpkt-src -q -r $traces/large.pcapng | stdpkt-sink -q" "cat $traces/large.pcapng | cat > /dev/null"
row "stdpkt-src --gen | stdpkt-sink (64 B)" 1000000 64 \
	"stdpkt-src -q --gen udp,size=64,flows=1000,count=1000000 | stdpkt-sink -q" "cat $traces/small.pcapng | cat > /dev/null"

# Network stages run every packet through netstack (no fast path yet): fewer runs.
runs=${STACK_RUNS:-3}
S=$traces/small.pcapng L=$traces/large.pcapng N=$traces/newflows.pcapng
row "cat f | stdpkt-fw -f fw10.rules (10 rules, 64 B)" 1000000 64 \
	"cat $S | stdpkt-fw -q -f bench/fw10.rules" "cat $S | cat > /dev/null"
row "cat f | stdpkt-nat --snat (64 B)" 1000000 64 \
	"cat $S | stdpkt-nat -q --snat 203.0.113.1" "cat $S | cat > /dev/null"
row "cat f | stdpkt-fw | stdpkt-nat (64 B)" 1000000 64 \
	"cat $S | stdpkt-fw -q -f bench/fw10.rules | stdpkt-nat -q --snat 203.0.113.1" "cat $S | cat | cat > /dev/null"
row "cat f | stdpkt-fw | stdpkt-nat (1500 B)" 200000 1500 \
	"cat $L | stdpkt-fw -q -f bench/fw10.rules | stdpkt-nat -q --snat 203.0.113.1" "cat $L | cat | cat > /dev/null"
row "src -r f | fw | nat | sink (64 B, count)" 1000000 64 \
	"stdpkt-src -q -r $S | stdpkt-fw -q -f bench/fw10.rules | stdpkt-nat -q --snat 203.0.113.1 | stdpkt-sink -q" "cat $S | cat | cat | cat > /dev/null"
row "new flows: cat f | stdpkt-nat (every packet a new flow)" 50000 64 \
	"cat $N | stdpkt-nat -q --snat 203.0.113.1" "cat $N | cat > /dev/null"
echo "(median of $RUNS runs, stack stages of $runs; floor% = floor time / stdpkt time, 100% = as fast as cat | cat)"

echo
echo "Idle chain latency (2000 packets at 1000 pps, arrival minus send time at the sink):"
for chain in "stdpkt-sink --latency" \
	"stdpkt-fw -q -f bench/fw10.rules | stdpkt-nat -q --snat 203.0.113.1 | stdpkt-sink --latency"; do
	line=$(bash -c "stdpkt-src -q --gen 'udp,count=2000,rate=1000' | $chain" 2>&1 | grep 'latency (arrival')
	printf '  %-90s %s\n' "src | $chain:" "${line#*packets: }"
done

rss=$( { /usr/bin/time -f '%M' stdpkt-nat -q --snat 203.0.113.1 < "$N" > /dev/null; } 2>&1 | tail -1)
echo
echo "Peak RSS of stdpkt-nat after 50000 new flows: $((rss / 1024)) MiB"

echo
echo "Live chain between network namespaces (root only): TCP throughput and ping, next to a kernel router:"
STDPKT_BIN=bin scripts/bench-live.sh || echo "(bench-live.sh failed)"
