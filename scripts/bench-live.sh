#!/usr/bin/env bash
# bench-live.sh: live traffic through a stdpkt chain next to the same traffic through a plain
# Linux router, between two network namespaces:
#
#   client 192.0.2.10/24 (gw 192.0.2.1) -- veth -- PATH -- veth -- server 203.0.113.10/24
#
#   stdpkt:  stdpkt-src IN | stdpkt-fw --allow 'tcp dport 5201' --allow icmp --policy drop |
#            stdpkt-nat --west 192.0.2.1/24 --east 203.0.113.1/24 --masquerade | stdpkt-sink OUT
#   kernel:  a router namespace holding the two veth ends: ip_forward, MASQUERADE
#
# Per path: iperf3 -c 203.0.113.10 -t 5 (Mbit/s received) and ping -c 200 -i 0.01 (rtt).
# Needs root (skips with a message otherwise) and iperf3, ping, ip, ethtool, iptables.
# Environment: STDPKT_BIN (the stdpkt commands, default bin), BENCH_PREFIX (names' prefix).
# Every command is bounded by a timeout; everything made is removed on exit or interrupt.
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1

if [ "$(id -u)" -ne 0 ]; then
	echo "bench-live.sh: SKIPPED: the live benchmark needs root (network namespaces, veth pairs, packet sockets): sudo $0"
	exit 0
fi
for tool in ip ethtool iptables iperf3 ping timeout setsid; do
	if ! command -v "$tool" >/dev/null; then
		echo "bench-live.sh: SKIPPED: $tool is missing (apt-get install iproute2 ethtool iptables iperf3 iputils-ping coreutils util-linux)"
		exit 0
	fi
done
bin=${STDPKT_BIN:-bin}
if ! bin=$(cd "$bin" 2>/dev/null && pwd) || [ ! -x "$bin/stdpkt-src" ]; then
	echo "bench-live.sh: no stdpkt commands in ${STDPKT_BIN:-bin}: run make build, or set STDPKT_BIN" >&2
	exit 2
fi

prefix=${BENCH_PREFIX:-spb$(($$ % 100000))}
ns_client=$prefix-client
ns_server=$prefix-server
ns_router=$prefix-router
if_in=$prefix-in   # the client's wire: stdpkt-src captures here / the kernel router's inside
if_out=$prefix-out # the server's wire: stdpkt-sink sends here / the kernel router's outside
if [ ${#if_out} -gt 15 ]; then
	echo "bench-live.sh: BENCH_PREFIX $prefix is too long for an interface name (11 bytes at most)" >&2
	exit 2
fi
work=$(mktemp -d /tmp/stdpkt-bench-live.XXXXXX) || exit 1
chain_pid=

t() { timeout 10 "$@"; } # setup commands: bounded too

stop_chain() {
	[ -n "$chain_pid" ] || return 0
	kill -INT -- "-$chain_pid" 2>/dev/null
	for _ in $(seq 50); do
		kill -0 "$chain_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$chain_pid" 2>/dev/null
	wait "$chain_pid" 2>/dev/null
	chain_pid=
}

teardown() {
	stop_chain
	for ns in "$ns_client" "$ns_server" "$ns_router"; do
		if [ -e "/run/netns/$ns" ]; then
			pids=$(ip netns pids "$ns" 2>/dev/null)
			[ -n "$pids" ] && kill $pids 2>/dev/null
			t ip netns del "$ns" 2>/dev/null
		fi
	done
	for dev in "$if_in" "$if_out"; do
		ip link show "$dev" >/dev/null 2>&1 && t ip link del "$dev" 2>/dev/null
	done
	rm -rf "$work"
	return 0
}
trap teardown EXIT
trap 'echo; echo "bench-live.sh: interrupted" >&2; exit 130' INT TERM

die() {
	echo "bench-live.sh: $*" >&2
	exit 1
}

for n in "$ns_client" "$ns_server" "$ns_router"; do
	[ -e "/run/netns/$n" ] && die "namespace $n exists already (set BENCH_PREFIX)"
done

offloads_off() { # [NS] DEV
	if [ $# -eq 2 ]; then
		t ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null
	else
		t ethtool -K "$1" tx off tso off gso off gro off >/dev/null
	fi
}

# host NS DEV ADDR [GATEWAY]: namespace NS with eth0 at ADDR, veth-paired to DEV in the root
# namespace, offloads off on both ends, no IPv6 chatter.
host() {
	local ns=$1 dev=$2 addr=$3 gw=${4:-}
	t ip netns add "$ns" &&
		t ip link add "$dev" type veth peer name eth0 netns "$ns" &&
		t ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null &&
		t sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1" >/dev/null &&
		t ip link set "$dev" up &&
		t ip -n "$ns" link set lo up &&
		t ip -n "$ns" addr add "$addr" dev eth0 &&
		t ip -n "$ns" link set eth0 up &&
		offloads_off "$dev" && offloads_off "$ns" eth0 || return 1
	if [ -n "$gw" ]; then
		t ip -n "$ns" route add default via "$gw" || return 1
	fi
}

host "$ns_client" "$if_in" 192.0.2.10/24 192.0.2.1 || die "building the client namespace failed"
host "$ns_server" "$if_out" 203.0.113.10/24 || die "building the server namespace failed"

# measure PATH: iperf3 and ping from the client to the server; appends a row to $work/rows.
measure() {
	local path=$1 json mbit rtt loss
	# Warm up (ARP, the chain's sockets): the first echo reply says the path works.
	if ! t ip netns exec "$ns_client" ping -n -c 1 -w 8 203.0.113.10 >/dev/null 2>&1; then
		echo "bench-live.sh: $path: no echo reply from 203.0.113.10 within 8 s" >&2
		printf '%s\tfailed\t-\t-\t-\n' "$path" >>"$work/rows"
		return 1
	fi
	setsid timeout 30 ip netns exec "$ns_server" iperf3 -s -1 -B 203.0.113.10 >"$work/iperf3-server-$path.log" 2>&1 </dev/null &
	local server=$!
	for _ in $(seq 50); do
		t ip netns exec "$ns_server" ss -ltnH 2>/dev/null | grep -q ':5201 ' && break
		sleep 0.1
	done
	json=$(timeout 30 ip netns exec "$ns_client" iperf3 -c 203.0.113.10 -t 5 -J 2>&1)
	mbit=$(tr -d ' \n\t' <<<"$json" | grep -o '"sum_received":{[^}]*}' | grep -o '"bits_per_second":[0-9.e+]*' | head -1 |
		awk -F: '{ printf "%.0f", $2 / 1e6 }')
	[ -n "$mbit" ] || {
		mbit=failed
		echo "bench-live.sh: $path: iperf3: $(grep -o '"error":[^,}]*' <<<"$json" | head -1)" >&2
	}
	timeout 5 tail --pid="$server" -f /dev/null 2>/dev/null # the server ends after its one test
	kill "$server" 2>/dev/null
	wait "$server" 2>/dev/null

	local out
	out=$(timeout 20 ip netns exec "$ns_client" ping -n -c 200 -i 0.01 -q -w 15 203.0.113.10 2>&1)
	rtt=$(sed -n 's|^rtt min/avg/max/mdev = \([^ ]*\) ms.*|\1|p' <<<"$out")
	loss=$(grep -o '[0-9.]*% packet loss' <<<"$out" | cut -d' ' -f1)
	printf '%s\t%s\t%s\t%s\n' "$path" "$mbit" "${rtt:-failed}" "${loss:-?}" >>"$work/rows"
}

# (a) The stdpkt chain in the root namespace, between the two veth ends.
chain="$bin/stdpkt-src $if_in | $bin/stdpkt-fw --allow 'tcp dport 5201' --allow icmp --policy drop |"
chain="$chain $bin/stdpkt-nat --west 192.0.2.1/24 --east 203.0.113.1/24 --masquerade | $bin/stdpkt-sink $if_out"
echo "stdpkt: $chain"
setsid bash -c "exec 2>>'$work/chain.log'; $chain" </dev/null &
chain_pid=$!
measure stdpkt
stop_chain
if grep -Eq 'bound: in .*dropped [1-9]' "$work/chain.log"; then
	# A router stage books what it consumes itself (ARP, pings to it) as no-route.
	echo "stdpkt chain, stages that dropped (no-route includes ARP and pings the router answered itself):"
	grep -E 'bound: in .*dropped [1-9]' "$work/chain.log" | sed 's/^/    /'
fi

# (b) A plain kernel router: the same veth ends moved into a router namespace.
echo "kernel: namespace $ns_router with $if_in 192.0.2.1/24 and $if_out 203.0.113.1/24, ip_forward, MASQUERADE"
{
	t ip netns add "$ns_router" &&
		t ip netns exec "$ns_router" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 net.ipv4.ip_forward=1 >/dev/null &&
		t ip link set "$if_in" netns "$ns_router" &&
		t ip link set "$if_out" netns "$ns_router" &&
		t ip -n "$ns_router" addr add 192.0.2.1/24 dev "$if_in" &&
		t ip -n "$ns_router" addr add 203.0.113.1/24 dev "$if_out" &&
		t ip -n "$ns_router" link set lo up &&
		t ip -n "$ns_router" link set "$if_in" up &&
		t ip -n "$ns_router" link set "$if_out" up &&
		offloads_off "$ns_router" "$if_in" && offloads_off "$ns_router" "$if_out" &&
		t ip netns exec "$ns_router" iptables -t nat -A POSTROUTING -o "$if_out" -j MASQUERADE
} || die "building the kernel router failed"
measure kernel

echo
printf '%-8s %14s %13s %13s %24s %6s\n' path "iperf3 Mbit/s" "ping avg ms" "ping max ms" "ping min/mdev ms" loss
while IFS=$'\t' read -r path mbit rtt loss; do
	IFS=/ read -r min avg max mdev <<<"$rtt"
	printf '%-8s %14s %13s %13s %24s %6s\n' "$path" "$mbit" "${avg:--}" "${max:--}" "${min:--}/${mdev:--}" "$loss"
done <"$work/rows"
echo "(iperf3 -t 5: TCP client -> server, the receiver's rate; ping -c 200 -i 0.01; offloads off on every veth end)"
