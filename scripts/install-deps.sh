#!/usr/bin/env bash
# Installs the real tools the tests compare against or drive (tcpdump, tshark, iproute2,
# iptables, and the clients the namespace tests run: ping, nc, socat, traceroute, ethtool),
# when they are missing and we may: as root with apt-get. Otherwise says loudly what the
# tests will skip.
set -u
need=()
command -v tcpdump  >/dev/null || need+=(tcpdump)
command -v tshark   >/dev/null || need+=(tshark)
command -v mergecap >/dev/null || need+=(wireshark-common)
command -v ip       >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v script   >/dev/null || need+=(bsdutils)
command -v setpriv  >/dev/null || need+=(util-linux)
command -v pgrep    >/dev/null || need+=(procps)
command -v ethtool  >/dev/null || need+=(ethtool)
command -v ping     >/dev/null || need+=(iputils-ping)
command -v socat    >/dev/null || need+=(socat)
command -v nc       >/dev/null || need+=(netcat-openbsd)
command -v traceroute >/dev/null || need+=(traceroute)
[ -x /usr/bin/time ]               || need+=(time)
command -v jq       >/dev/null || need+=(jq)
command -v iperf3   >/dev/null || need+=(iperf3)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
	echo "WARNING: missing ${need[*]} and cannot install them (need root and apt-get):" >&2
	echo "WARNING: the tests that compare against these tools will be SKIPPED." >&2
	exit 0
fi
echo "installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
	|| echo "WARNING: apt-get install ${need[*]} failed: tests that need them will be SKIPPED" >&2
