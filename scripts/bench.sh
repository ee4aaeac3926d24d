#!/usr/bin/env bash
# make bench: bin/stdpkt-bench generates its traces (kept in bench/traces), runs each stdpkt
# workload next to its floor (cat through the same number of pipes), prints the report and
# writes it to bench/results: report.md, report.json and the chart throughput.svg.
# RUNS (default 5) and STACK_RUNS (default 3, the network stages and paced chains) set the
# runs; the median counts. Other arguments go to stdpkt-bench (--quick, --only REGEX, --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x bin/stdpkt-bench ]; then
	echo "bench.sh: no bin/stdpkt-bench: run make build" >&2
	exit 2
fi
exec bin/stdpkt-bench --runs "${RUNS:-5}" --stack-runs "${STACK_RUNS:-3}" "$@"
