#!/usr/bin/env bash
# gen-vxlan-capture.sh — a small capture of real kernel TCP traffic inside a VXLAN tunnel.
#
#   ns "tsvx-a" (underlay 192.168.79.1, overlay 10.79.0.1 / fd79::1 on vxlan VNI 4711)
#     <== veth ==>
#   ns "tsvx-b" (underlay 192.168.79.2, overlay 10.79.0.2 / fd79::2 on vxlan VNI 4711)
#
# Both namespaces carry a kernel vxlan device (UDP 4789, the IANA port) over a veth pair;
# offloads are off on the veth and vxlan devices (MTU-sized frames, valid checksums).
# tcpdump captures on a-side's veth: the underlay, every overlay frame inside
# Ethernet/IPv4/UDP/VXLAN. Steps run one after the other (about 2 s):
#   1. python3 http.server (HTTP/1.0) on 10.79.0.2:8080 and [fd79::2]:8080
#   2. three curl GETs over IPv4 (one connection each), one with a 200 kB body
#   3. two curl GETs over IPv6
#   4. curl to 10.79.0.2:81 (closed: SYN answered by RST)
# ARP / neighbour discovery inside the tunnel is captured too (not TCP).
#
# Usage (root):  OUT=$PWD/testdata/captures/generated/vxlan-netns.pcap tools/gen-vxlan-capture.sh
# Needs: iproute2 (vxlan module), ethtool, tcpdump, curl, python3
set -euo pipefail

OUT=${OUT:-$PWD/vxlan-netns.pcap}
NS_A=tsvx-a NS_B=tsvx-b
DEV_A=tsvxa0 DEV_B=tsvxb0
[[ $(id -u) = 0 ]] || { echo "run as root" >&2; exit 1; }
for t in ip ethtool tcpdump curl; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
PY=${PY:-$( [[ -x /usr/bin/python3 ]] && echo /usr/bin/python3 || command -v python3 )}
OUT=$(realpath -m "$OUT")
WORK=$(mktemp -d -t tsvx.XXXXXX)
PIDS=()

cleanup() {
  local rc=$? p
  set +e
  trap - EXIT
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  ip netns del "$NS_A" 2>/dev/null
  ip netns del "$NS_B" 2>/dev/null
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

ip netns del "$NS_A" 2>/dev/null || true
ip netns del "$NS_B" 2>/dev/null || true
ip netns add "$NS_A"
ip netns add "$NS_B"
A() { ip netns exec "$NS_A" "$@"; }
B() { ip netns exec "$NS_B" "$@"; }
for ns in "$NS_A" "$NS_B"; do
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.router_solicitations=0 \
    net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.default.autoconf=0 \
    net.ipv6.conf.all.disable_ipv6=0
done
ip -n "$NS_A" link add "$DEV_A" type veth peer name "$DEV_B" netns "$NS_B"
ip -n "$NS_A" link set "$DEV_A" address 02:79:00:00:00:01
ip -n "$NS_B" link set "$DEV_B" address 02:79:00:00:00:02
A ethtool -K "$DEV_A" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
B ethtool -K "$DEV_B" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
ip -n "$NS_A" addr add 192.168.79.1/24 dev "$DEV_A"
ip -n "$NS_B" addr add 192.168.79.2/24 dev "$DEV_B"
ip -n "$NS_A" link set "$DEV_A" up
ip -n "$NS_B" link set "$DEV_B" up

ip -n "$NS_A" link add vx0 type vxlan id 4711 local 192.168.79.1 remote 192.168.79.2 dstport 4789 dev "$DEV_A"
ip -n "$NS_B" link add vx0 type vxlan id 4711 local 192.168.79.2 remote 192.168.79.1 dstport 4789 dev "$DEV_B"
ip -n "$NS_A" link set vx0 address 02:79:00:00:01:01
ip -n "$NS_B" link set vx0 address 02:79:00:00:01:02
A ethtool -K vx0 tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
B ethtool -K vx0 tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
ip -n "$NS_A" addr add 10.79.0.1/24 dev vx0
ip -n "$NS_B" addr add 10.79.0.2/24 dev vx0
ip -n "$NS_A" -6 addr add fd79::1/64 dev vx0 nodad
ip -n "$NS_B" -6 addr add fd79::2/64 dev vx0 nodad
ip -n "$NS_A" link set vx0 up
ip -n "$NS_B" link set vx0 up

mkdir -p "$WORK/www"
head -c 200000 /dev/zero | tr '\0' 'v' > "$WORK/www/big.txt"
printf 'vxlan index\n' > "$WORK/www/index.html"
printf 'small\n' > "$WORK/www/small.txt"

A tcpdump -i "$DEV_A" -s 0 -U -w "$OUT" 2>"$WORK/tcpdump.log" &
PIDS+=($!)
(cd "$WORK/www" && B "$PY" -m http.server 8080 --bind :: >"$WORK/http.log" 2>&1) &
PIDS+=($!)
sleep 1
A curl -s -o /dev/null --max-time 5 http://10.79.0.2:8080/index.html
A curl -s -o /dev/null --max-time 5 http://10.79.0.2:8080/small.txt
A curl -s -o /dev/null --max-time 5 http://10.79.0.2:8080/big.txt
A curl -s -o /dev/null --max-time 5 'http://[fd79::2]:8080/index.html'
A curl -s -o /dev/null --max-time 5 'http://[fd79::2]:8080/small.txt'
A curl -s -o /dev/null --max-time 2 http://10.79.0.2:81/ || true
sleep 1
echo "wrote $OUT"
