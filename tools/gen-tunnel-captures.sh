#!/usr/bin/env bash
# gen-tunnel-captures.sh — the tunnel and link-type test captures the kernel here cannot
# make (it has no gre, ipip or geneve modules; 802.11, PPP, HDLC, Frame Relay, NFLOG and
# Juniper need hardware or other systems): every frame of two real public captures
# (zeek wikipedia.pcap: 10 IPv4 HTTP connections; zeek ipv6-http-atomic-frag.pcap: 4 IPv6
# connections with atomic fragment headers) wrapped by tcpsight-wrap
# (crates/tcpsight-gen/src/bin/tcpsight-wrap.rs) in one encapsulation or link layer each.
# Deterministic: the same bytes on every run. VXLAN comes from real kernel traffic
# instead (tools/gen-vxlan-capture.sh).
#
# Usage (from the repository root):  tools/gen-tunnel-captures.sh
# Writes testdata/captures/generated/tunnels/NAME.pcap.gz (gzip -n: no name or time).
set -euo pipefail

cargo build --release -q -p tcpsight-gen --bin tcpsight-wrap
W=target/release/tcpsight-wrap
OUT=testdata/captures/generated/tunnels
V4=testdata/captures/zeek/wikipedia.pcap
V6=testdata/captures/zeek/ipv6-http-atomic-frag.pcap
mkdir -p "$OUT"

wrap() { # NAME LINK SPEC INPUT...
  local name=$1 link=$2 spec=$3
  shift 3
  "$W" --link "$link" -o "$OUT/$name.pcap" "$spec" "$@"
  gzip -n -9 -f "$OUT/$name.pcap"
}

wrap gre            ether 'gre'                "$V4" "$V6"
wrap gre-key-seq    ether 'gre:42+seq+csum'    "$V4" "$V6"
wrap gretap-ipv6    ether 'gretap:5001@6'      "$V4" "$V6"
wrap erspan1        ether 'erspan1'            "$V4" "$V6"
wrap erspan2        ether 'erspan2:100'        "$V4" "$V6"
wrap erspan3        ether 'erspan3:200'        "$V4" "$V6"
wrap ipip           ether 'ipip'               "$V4"
wrap 6in4           ether '6in4'               "$V6"
wrap 4in6           ether '4in6'               "$V4"
wrap 6in6           ether '6in6'               "$V6"
wrap geneve         ether 'geneve:77'          "$V4" "$V6"
wrap gtpu           ether 'gtpu:1000'          "$V4" "$V6"
wrap mpls           ether 'mpls:16/1000'       "$V4" "$V6"
wrap mpls-pw        ether 'mpls-pw:40'         "$V4" "$V6"
wrap pppoe          ether 'pppoe:4660'         "$V4" "$V6"
wrap pbb            ether 'pbb:65536'          "$V4" "$V6"
wrap vntag          ether 'vntag'              "$V4" "$V6"
wrap vxlan-gre      ether 'vxlan:4711,gre'     "$V4" "$V6"
wrap vxlan-two-vnis ether 'vxlan:100;vxlan:200' "$V4"
wrap link-ppp       ppp      'none'            "$V4" "$V6"
wrap link-ppp-hdlc  ppp-hdlc 'none'            "$V4" "$V6"
wrap link-chdlc     chdlc    'none'            "$V4" "$V6"
wrap link-frelay    frelay   'none'            "$V4" "$V6"
wrap link-wlan      wlan     'none'            "$V4" "$V6"
wrap link-radiotap  radiotap 'none'            "$V4" "$V6"
wrap link-ppi       ppi      'none'            "$V4" "$V6"
wrap link-nflog     nflog    'none'            "$V4" "$V6"
wrap link-juniper   juniper  'none'            "$V4" "$V6"
wrap link-ppp-mpls ppp 'mpls:30'         "$V4"
