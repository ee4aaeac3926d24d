#!/usr/bin/env bash
# bench-chain.sh: how fast a chain is, stage by stage, on generated traffic. No root.
#
#   examples/bench-chain.sh [COUNT [SIZE [FLOWS]]]
#
# Runs, each on COUNT generated UDP frames (default 200000) of SIZE bytes (default 64, or
# imix) in FLOWS flows (default 100):
#
#     stdpkt-src --gen SPEC | stdpkt-sink
#     stdpkt-src --gen SPEC | stdpkt-fw --allow 'udp dport 9' --policy drop | stdpkt-sink
#     stdpkt-src --gen SPEC | stdpkt-fw ... | stdpkt-nat --snat 203.0.113.1 | stdpkt-sink
#
# and prints packets, seconds, Mpps and Gbit/s as stdpkt-sink measured them (from the first
# packet's arrival to the last's), and checks that every packet arrived. Exit 0 when all
# did, 1 when not, 2 on bad arguments or missing commands. The numbers depend on the machine
# and on what else runs on it; COUNT is bounded (10,000,000 at most).
#
# Environment: STDPKT_BIN, the stdpkt commands (default: ../bin next to this script).
set -euo pipefail

usage() {
	sed -n '2,17s/^# \{0,1\}//p' "$0"
}
case ${1:-} in
-h | --help)
	usage
	exit 0
	;;
esac
count=${1:-200000}
size=${2:-64}
flows=${3:-100}
if ! [[ $count =~ ^[1-9][0-9]{0,7}$ ]] || [ "$count" -gt 10000000 ] ||
	! [[ $size =~ ^([1-9][0-9]{1,3}|imix)$ ]] || ! [[ $flows =~ ^[1-9][0-9]{0,5}$ ]]; then
	usage >&2
	exit 2
fi

bin=${STDPKT_BIN:-$(dirname "$0")/../bin}
if ! bin=$(cd "$bin" 2>/dev/null && pwd) || [ ! -x "$bin/stdpkt-sink" ]; then
	echo "bench-chain.sh: no stdpkt commands in ${STDPKT_BIN:-$(dirname "$0")/../bin}: run make build, or set STDPKT_BIN" >&2
	exit 2
fi
PATH=$bin:$PATH
work=$(mktemp -d "${TMPDIR:-/tmp}/stdpkt-bench-chain.XXXXXX")
trap 'rm -rf "$work"' EXIT

spec="udp,size=$size,flows=$flows,count=$count,seed=1"
fw="stdpkt-fw -q --allow 'udp dport 9' --policy drop"
nat="stdpkt-nat -q --snat 203.0.113.1"
echo "generator: stdpkt-src --gen '$spec'"
printf '%-40s %9s %9s %8s %8s\n' chain packets seconds Mpps Gbit/s

fail=0
# run LABEL STAGES: stdpkt-src --gen SPEC | STAGES | stdpkt-sink, and the sink's summary.
run() {
	local json=$work/sink.json
	rm -f "$json"
	if ! bash -o pipefail -c "stdpkt-src -q --gen '$spec' | $2 stdpkt-sink -q --stats-json '$json'" 2>"$work/err"; then
		echo "bench-chain.sh: $1 failed:" >&2
		cat "$work/err" >&2
		exit 1
	fi
	# "summary": {"packets": N, "bytes": N, "seconds": S, "mpps": M, "gbps": G}
	local packets seconds mpps gbps
	packets=$(sed -n 's/^ *"packets": \([0-9]*\),*$/\1/p' "$json" | tail -n 1)
	seconds=$(sed -n 's/^ *"seconds": \([0-9.e+-]*\),*$/\1/p' "$json")
	mpps=$(sed -n 's/^ *"mpps": \([0-9.e+-]*\),*$/\1/p' "$json")
	gbps=$(sed -n 's/^ *"gbps": \([0-9.e+-]*\),*$/\1/p' "$json")
	awk -v l="$1" -v p="$packets" -v s="$seconds" -v m="$mpps" -v g="$gbps" 'BEGIN {
		if (m > 0) printf "%-40s %9d %9.3f %8.3f %8.3f\n", l, p, s, m, g
		else printf "%-40s %9d %9s %8s %8s\n", l, p, "-", "too few", "to time" }'
	if [ "$packets" != "$count" ]; then
		echo "FAIL: $1: the sink counted $packets packets of $count" >&2
		fail=1
	fi
}
run "src | sink" ""
run "src | fw | sink" "$fw |"
run "src | fw | nat | sink" "$fw | $nat |"

if [ "$fail" -ne 0 ]; then
	exit 1
fi
echo "every chain delivered all $count packets"
