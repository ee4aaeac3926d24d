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

# median_seconds CMD: runs CMD $RUNS times, prints the median wall time in seconds.
median_seconds() {
	local times=()
	for _ in $(seq "$RUNS"); do
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
echo "(median of $RUNS runs; floor% = floor time / stdpkt time, 100% = as fast as cat | cat)"
