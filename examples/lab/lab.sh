#!/usr/bin/env bash
# lab.sh: stdpkt's teaching lab. A client namespace (192.0.2.10) and a server namespace
# (203.0.113.10) joined by a chain of stdpkt stages in the root namespace:
#
#     stdpkt-src IN | stdpkt-fw -f rules.txt | stdpkt-nat --masquerade | stdpkt-sink OUT
#
#   lab.sh run    build the lab, run the chain, check it (PASS/FAIL per check), tear down;
#                 exit 0 only when every check passed
#   lab.sh up     build the lab and print the chain to type and commands to try
#   lab.sh down   remove the lab that `up` built
#
# Needs root (namespaces, veth pairs, packet sockets). Environment: STDPKT_BIN (the stdpkt
# commands, default ../../bin next to this script), LAB_PREFIX (the names' prefix: splab for
# up/down, a per-run one for run). Only documentation addresses are used.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
rules=$here/rules.txt
sub=${1:-}

usage() {
	sed -n '2,14s/^# \{0,1\}//p' "$0"
}

case $sub in
run | up | down) ;;
-h | --help | help)
	usage
	exit 0
	;;
*)
	usage >&2
	exit 2
	;;
esac

if [ "$(id -u)" -ne 0 ]; then
	echo "lab.sh: needs root to make network namespaces, veth pairs and packet sockets: sudo $0 $sub" >&2
	exit 2
fi

bin=${STDPKT_BIN:-$here/../../bin}
if ! bin=$(cd "$bin" 2>/dev/null && pwd) || [ ! -x "$bin/stdpkt-src" ]; then
	echo "lab.sh: no stdpkt commands in ${STDPKT_BIN:-$here/../../bin}: run make build, or set STDPKT_BIN" >&2
	exit 2
fi
for tool in ip ethtool ping nc socat traceroute sha256sum setsid timeout; do
	if ! command -v "$tool" >/dev/null; then
		echo "lab.sh: $tool is missing (apt-get install iproute2 ethtool iputils-ping netcat-openbsd socat traceroute coreutils util-linux)" >&2
		exit 2
	fi
done

if [ "$sub" = run ]; then
	prefix=${LAB_PREFIX:-spl$(($$ % 100000))}
else
	prefix=${LAB_PREFIX:-splab}
fi
ns_client=$prefix-client # 192.0.2.10, default route via the chain's 192.0.2.1
ns_server=$prefix-server # 203.0.113.10, no default route: it only knows 203.0.113.0/24
if_in=$prefix-in         # root-namespace end of the client's veth: stdpkt-src captures here
if_out=$prefix-out       # root-namespace end of the server's veth: stdpkt-sink sends here
state=/run/stdpkt-lab-$prefix
if [ ${#if_out} -gt 15 ]; then
	echo "lab.sh: LAB_PREFIX $prefix is too long for an interface name (11 bytes at most)" >&2
	exit 2
fi

chain="$bin/stdpkt-src $if_in | $bin/stdpkt-fw -f $rules --alias eth0=west --alias eth1=east --list | $bin/stdpkt-nat --west 192.0.2.1/24 --east 203.0.113.1/24 --masquerade | $bin/stdpkt-sink $if_out"

# teardown removes everything the lab made; it is safe to run twice, or on a half-made lab.
chain_pid=
chain_status=
# stop_chain interrupts the chain as Ctrl-C would (SIGINT to its process group), waits for
# it at most 10 s, then kills it; chain_status is its exit status (or 137).
stop_chain() {
	[ -n "$chain_pid" ] || return 0
	kill -INT -- "-$chain_pid" 2>/dev/null
	chain_status=137
	for _ in $(seq 100); do
		if ! kill -0 "$chain_pid" 2>/dev/null; then
			wait "$chain_pid"
			chain_status=$?
			break
		fi
		sleep 0.1
	done
	kill -KILL -- "-$chain_pid" 2>/dev/null
	chain_pid=
}

teardown() {
	stop_chain
	for ns in "$ns_client" "$ns_server"; do
		if [ -e "/run/netns/$ns" ]; then
			# the lab's own processes (the server) live only in these namespaces
			pids=$(ip netns pids "$ns" 2>/dev/null)
			[ -n "$pids" ] && kill $pids 2>/dev/null
			ip netns del "$ns" 2>/dev/null
		fi
	done
	for dev in "$if_in" "$if_out"; do
		ip link show "$dev" >/dev/null 2>&1 && ip link del "$dev" 2>/dev/null
	done
	rm -rf "$state"
	return 0
}

die() {
	echo "lab.sh: $*" >&2
	exit 1
}

quiet() { # for the root-side veth ends and the namespaces: no IPv6 chatter in the books
	sysctl -qw "net.ipv6.conf.$1.disable_ipv6=1" >/dev/null 2>&1 || true
}

# host NS DEV ADDR [GATEWAY]: namespace NS with eth0 at ADDR, veth-paired to DEV in the root
# namespace; offloads off on both ends.
host() {
	local ns=$1 dev=$2 addr=$3 gw=${4:-}
	ip netns add "$ns" || return 1
	ip link add "$dev" type veth peer name eth0 netns "$ns" || return 1
	quiet "$dev"
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1
	ip link set "$dev" up || return 1
	ip -n "$ns" link set lo up || return 1
	ip -n "$ns" addr add "$addr" dev eth0 || return 1
	ip -n "$ns" link set eth0 up || return 1
	if [ -n "$gw" ]; then
		ip -n "$ns" route add default via "$gw" || return 1
	fi
	ethtool -K "$dev" tx off tso off gso off gro off >/dev/null || return 1
	ip netns exec "$ns" ethtool -K eth0 tx off tso off gso off gro off >/dev/null || return 1
}

# refuse_existing stops before anything is made (or unmade) when a lab of this name is up.
refuse_existing() {
	if [ -e "/run/netns/$ns_client" ] || [ -e "/run/netns/$ns_server" ] || [ -e "$state" ] ||
		ip link show "$if_in" >/dev/null 2>&1 || ip link show "$if_out" >/dev/null 2>&1; then
		die "a lab named $prefix is already up: $0 down first (or set LAB_PREFIX)"
	fi
}

# build makes the namespaces, the veth pairs, the file to fetch and the servers.
build() {
	mkdir -p "$state/www" || die "cannot make $state"
	host "$ns_client" "$if_in" 192.0.2.10/24 192.0.2.1 || die "building the client namespace failed"
	host "$ns_server" "$if_out" 203.0.113.10/24 || die "building the server namespace failed"

	# The file the client fetches: 4 MiB of random bytes, and its sha256.
	head -c 4194304 /dev/urandom >"$state/www/lab.bin"
	(cd "$state/www" && sha256sum lab.bin >lab.bin.sha256)

	# An HTTP-ish server on 203.0.113.10:80: one GET per connection, the client's address as
	# the server sees it logged to server.log.
	cat >"$state/serve.sh" <<'EOF'
#!/usr/bin/env bash
read -r method path _
while IFS= read -r line && [ -n "${line%$'\r'}" ]; do :; done
echo "$(date +%T) client $SOCAT_PEERADDR port $SOCAT_PEERPORT: $method $path" >>"$LAB_STATE/server.log"
file=$LAB_STATE/www/${path##*/}
if [ "$method" = GET ] && [ -f "$file" ]; then
	printf 'HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n' "$(stat -c %s "$file")"
	cat "$file"
else
	printf 'HTTP/1.0 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n'
fi
EOF
	chmod +x "$state/serve.sh"
	: >"$state/server.log"
	LAB_STATE=$state setsid ip netns exec "$ns_server" socat -T 30 \
		TCP-LISTEN:80,bind=203.0.113.10,reuseaddr,fork SYSTEM:"$state/serve.sh" \
		</dev/null >>"$state/server.err" 2>&1 &
	# A telnet-ish service on port 23: were the firewall to let the client through, it would
	# answer with a banner. The firewall resets the connection instead.
	setsid ip netns exec "$ns_server" socat -T 10 \
		TCP-LISTEN:23,bind=203.0.113.10,reuseaddr,fork SYSTEM:'echo lab telnet: you should not see this' \
		</dev/null >>"$state/server.err" 2>&1 &
	# Bounded wait for both listeners.
	for _ in $(seq 100); do
		if ip netns exec "$ns_server" ss -ltnH 2>/dev/null | grep -q '203.0.113.10:80 ' &&
			ip netns exec "$ns_server" ss -ltnH 2>/dev/null | grep -q '203.0.113.10:23 '; then
			return 0
		fi
		sleep 0.1
	done
	die "the servers in $ns_server did not start: $(cat "$state/server.err")"
}

# fetch URL OUT: GET URL from the client namespace into OUT, bounded.
fetch() {
	if command -v curl >/dev/null; then
		ip netns exec "$ns_client" timeout 20 curl -sS --max-time 20 -o "$2" "$1"
	else # plain nc: the body is the file's last bytes
		local size path=/${1#http://*/}
		size=$(stat -c %s "$state/www/${path##*/}")
		printf 'GET %s HTTP/1.0\r\n\r\n' "$path" |
			ip netns exec "$ns_client" timeout 20 nc -N -w 10 203.0.113.10 80 | tail -c "$size" >"$2"
	fi
}

passed=0
failed=0
check() { # check NAME DESCRIPTION STATUS [DETAIL]
	if [ "$3" -eq 0 ]; then
		echo "PASS $1: $2"
		passed=$((passed + 1))
	else
		echo "FAIL $1: $2"
		[ -n "${4:-}" ] && printf '%s\n' "$4" | sed 's/^/    /'
		failed=$((failed + 1))
	fi
}

in_client() { ip netns exec "$ns_client" "$@"; }

# books_check LOG: the books' lines of all four stages, balanced and in agreement.
books_check() {
	local log=$1 missing="" s
	for s in src fw nat sink; do
		grep -q "^stdpkt-$s eastbound: in " "$log" || missing="$missing stdpkt-$s"
	done
	check books-printed "every stage printed its books on SIGINT" "$([ -z "$missing" ] && echo 0 || echo 1)" "missing:$missing"

	# stdpkt-fw eastbound: in 10 (980 B) generated 0 out 9 (900 B) dropped 1 (reason 1)
	local unbalanced
	unbalanced=$(awk '$2 ~ /^(east|west)bound:$/ && $3 == "in" {
		if ($4 + $8 != $10 + $14) print }' "$log")
	check books-balance "in + generated = out + dropped for every stage and direction" \
		"$([ -n "$(grep -E '^stdpkt-[a-z]+ (east|west)bound: in ' "$log")" ] && [ -z "$unbalanced" ] && echo 0 || echo 1)" "$unbalanced"

	# What a stage put out is what its neighbour took in: eastbound src->fw->nat->sink,
	# westbound sink->nat->fw->src (packets and bytes).
	local disagree
	disagree=$(awk '
		$2 ~ /^(east|west)bound:$/ && $3 == "in" {
			st = $1; sub(/^stdpkt-/, "", st); d = substr($2, 1, 4)
			inp[st, d] = $4 " " $5 " B"; outp[st, d] = $10 " " $11 " B"
			gsub(/[()]/, "", inp[st, d]); gsub(/[()]/, "", outp[st, d])
		}
		END {
			n = split("src fw nat sink", s, " ")
			for (i = 1; i < n; i++) {
				a = s[i]; b = s[i + 1]
				if (outp[a, "east"] != inp[b, "east"])
					printf "eastbound: %s out %s, %s in %s\n", a, outp[a, "east"], b, inp[b, "east"]
				if (outp[b, "west"] != inp[a, "west"])
					printf "westbound: %s out %s, %s in %s\n", b, outp[b, "west"], a, inp[a, "west"]
			}
		}' "$log")
	check books-agree "each stage took in what its neighbour put out, both directions" \
		"$([ -z "$disagree" ] && echo 0 || echo 1)" "$disagree"
}

# interrupted LOG: on Ctrl-C, stop the chain, show its books, and tear down. The trap may
# fire inside a command whose output goes elsewhere (ping >/dev/null): back to fds 3 and 4.
interrupted() {
	exec 1>&3 2>&4
	echo
	echo "lab.sh: interrupted" >&2
	if [ -n "$chain_pid" ]; then
		stop_chain
		echo "---- the chain's books (stderr of every stage, after SIGINT) ----"
		cat "$1" 2>/dev/null
		echo "----"
	fi
	teardown
}

run() {
	trap 'teardown' EXIT
	local log=$state/chain.log
	refuse_existing
	exec 3>&1 4>&2
	trap 'interrupted "$log"; exit 130' INT TERM
	build
	echo "lab $prefix: $ns_client (192.0.2.10) -- $if_in | chain | $if_out -- $ns_server (203.0.113.10)"
	echo "chain: $chain"
	setsid bash -c "exec 2>>'$log'; $chain" </dev/null &
	chain_pid=$!

	# The stages take a moment to open their sockets: the first echo reply says they are up.
	if ! in_client ping -n -c 1 -w 15 203.0.113.10 >/dev/null; then
		echo "lab.sh: no reply through the chain within 15 s; the chain said:" >&2
		sed 's/^/    /' "$log" >&2
	fi

	local out st
	out=$(in_client ping -n -c 3 -i 0.2 -w 10 203.0.113.10 2>&1)
	st=$?
	grep -q ' 3 received' <<<"$out" || st=1
	check ping "ping 192.0.2.10 -> 203.0.113.10: 3 of 3 replies" "$st" "$out"

	out=$(fetch http://203.0.113.10/lab.bin "$state/got.bin" 2>&1)
	st=$?
	local want got
	want=$(cut -d' ' -f1 "$state/www/lab.bin.sha256")
	got=$(sha256sum <"$state/got.bin" 2>/dev/null | cut -d' ' -f1)
	[ "$want" = "$got" ] || st=1
	check http-transfer "GET /lab.bin (4 MiB) arrives whole: sha256 $want" "$st" "$out
got sha256 ${got:-none}, $(stat -c %s "$state/got.bin" 2>/dev/null || echo 0) bytes"

	out=$(cat "$state/server.log")
	st=1
	grep -q 'client 203.0.113.1 port [0-9]*: GET /lab.bin' <<<"$out" && ! grep -q '192\.0\.2\.' <<<"$out" && st=0
	check server-sees-nat "the server saw the client as 203.0.113.1 (masquerade), never 192.0.2.x" "$st" "server.log: $out"

	out=$(in_client timeout 30 traceroute -n -q 1 -w 2 -m 5 203.0.113.10 2>&1)
	st=$?
	awk '$1 == 1 && $2 == "192.0.2.1" { a = 1 } $1 == 2 && $2 == "203.0.113.10" { b = 1 } END { exit !(a && b) }' <<<"$out" || st=1
	check traceroute "traceroute -n: hop 1 is the NAT stage (192.0.2.1), hop 2 the server" "$st" "$out"

	out=$(in_client timeout 20 nc -v -z -w 5 203.0.113.10 23 2>&1)
	st=$?
	if [ "$st" -ne 0 ] && grep -qi 'refused' <<<"$out"; then st=0; else st=1; fi
	check telnet-refused "nc 203.0.113.10 23: connection refused (the firewall's tcp-reset)" "$st" "$out"

	# The ping, again last: when it has its replies no frame is in flight, so the books
	# of neighbouring stages can agree exactly.
	in_client ping -n -c 1 -w 5 203.0.113.10 >/dev/null 2>&1

	stop_chain
	st=$chain_status
	echo
	echo "---- the chain's books (stderr of every stage, after SIGINT) ----"
	cat "$log"
	echo "----"
	check chain-stopped "the chain stopped on SIGINT with exit status 0" "$st"
	books_check "$log"

	local line
	line=$(grep -- '--dport 23 .*-j REJECT' "$log")
	[ "$(awk '{ print $1 }' <<<"$line")" -ge 1 ] 2>/dev/null
	check fw-counters "stdpkt-fw --list counted the telnet attempt on its REJECT rule" "$?" "$line"

	echo
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

up() {
	refuse_existing
	trap 'teardown' EXIT
	trap 'echo; echo "lab.sh: interrupted" >&2; exit 130' INT TERM
	build
	trap - EXIT INT TERM
	cat <<EOF
The lab $prefix is up:

$(printf '  %-58s %s\n' "client: namespace $ns_client" "server: namespace $ns_server" \
	"eth0 192.0.2.10/24, default via 192.0.2.1" "eth0 203.0.113.10/24, :80 http, :23 telnet" \
	"   | veth pair" "   | veth pair" "$if_in (root namespace)" "$if_out (root namespace)" \
	"   |" "   ^")
     +--> stdpkt-src | stdpkt-fw | stdpkt-nat | stdpkt-sink ----+
                                   west 192.0.2.1
                                   east 203.0.113.1 (masquerade)

1. Start the chain in one terminal (Ctrl-C stops it and prints every stage's books):

    $chain

2. In another terminal, try:

    ip netns exec $ns_client ping -c 3 203.0.113.10
    ip netns exec $ns_client curl -o /tmp/lab.bin http://203.0.113.10/lab.bin
    sha256sum /tmp/lab.bin; cat $state/www/lab.bin.sha256     # the same?
    cat $state/server.log            # who the server thinks the client is
    ip netns exec $ns_client traceroute -n 203.0.113.10
    ip netns exec $ns_client nc -v -w 5 203.0.113.10 23        # refused by the firewall
    ip netns exec $ns_server nc -v -w 5 203.0.113.10 23        # the telnet server is there
    kill -USR1 \$(pgrep -n -x stdpkt-fw)    # the firewall's books and rule counters, now
    ip netns exec $ns_client bash    # a shell on the client

3. Remove the lab when done:

    $0 down
EOF
	[ "$prefix" != splab ] && echo "    (with LAB_PREFIX=$prefix)"
	return 0
}

case $sub in
run) run ;;
up) up ;;
down)
	teardown
	echo "lab $prefix: down"
	;;
esac
