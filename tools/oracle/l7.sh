#!/usr/bin/env bash
# l7.sh — application-layer oracle from tshark: HTTP messages, TLS hellos, DNS messages.
#
#   tools/oracle/l7.sh CAPTURE OUTDIR [NAME]
#
# writes OUTDIR/NAME.http.tsv, OUTDIR/NAME.tls.tsv and OUTDIR/NAME.dns.tsv. NAME defaults to the
# capture's file name without .gz/.zst and .pcap/.pcapng. Needs tshark (tested with 4.0.17) and
# python3 (stdlib, only for the HTTP file). tshark reads .gz itself; a .zst is decompressed to a
# temporary file first (zstd). Runs with an empty WIRESHARK_CONFIG_DIR, so only tshark's default
# preferences apply, plus the -o / -d options below. See testdata/oracle/l7/README.md.
set -euo pipefail

[[ $# -ge 2 ]] || { echo "usage: $0 CAPTURE OUTDIR [NAME]" >&2; exit 2; }
CAP=$1 OUTDIR=$2
NAME=${3:-$(basename "$CAP")}
NAME=${NAME%.gz}; NAME=${NAME%.zst}; NAME=${NAME%.pcapng}; NAME=${NAME%.pcap}
mkdir -p "$OUTDIR"

TMP=$(mktemp -d -t l7oracle.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
export WIRESHARK_CONFIG_DIR=$TMP/wsconf
mkdir -p "$WIRESHARK_CONFIG_DIR"
if [[ $CAP = *.zst ]]; then
  zstd -q -d -c "$CAP" > "$TMP/cap.pcap"
  CAP=$TMP/cap.pcap
fi

# common: no name resolution; TCP reassembly on (the defaults, spelled out); port 8080 as HTTP
# (already in tshark's default HTTP port range, given so the decode does not depend on it)
OPTS=(-n -o tcp.desegment_tcp_streams:TRUE -o tcp.analyze_sequence_numbers:TRUE
      -o http.desegment_headers:TRUE -o http.desegment_body:TRUE -o http.dechunk_body:TRUE
      -o tls.desegment_ssl_records:TRUE -o tls.desegment_ssl_application_data:TRUE
      -o dns.desegment_dns_messages:TRUE
      -d tcp.port==8080,http)
# -T fields: tab-separated, header line = field names, every occurrence, joined by ';'
FIELDS=(-T fields -E header=y -E separator=/t -E quote=n -E occurrence=a -E aggregator=';')
ADDR=(-e frame.number -e ip.src -e ipv6.src -e ip.dst -e ipv6.dst)

# ---- TLS: every frame with a ClientHello (type 1) or ServerHello (type 2)
tshark "${OPTS[@]}" -r "$CAP" -Y 'tls.handshake.type == 1 || tls.handshake.type == 2' "${FIELDS[@]}" \
  "${ADDR[@]}" -e tcp.stream -e tcp.srcport -e tcp.dstport \
  -e tls.handshake.type -e tls.record.version -e tls.handshake.version \
  -e tls.handshake.extensions.supported_version -e tls.handshake.extensions_server_name \
  -e tls.handshake.extensions_alpn_str -e tls.handshake.ciphersuite \
  -e tls.handshake.ja3 -e tls.handshake.ja3_full -e tls.handshake.ja3s -e tls.handshake.ja3s_full \
  > "$OUTDIR/$NAME.tls.tsv" 2> "$TMP/tshark.err" || { cat "$TMP/tshark.err" >&2; exit 1; }

# ---- DNS: every DNS message (UDP or TCP)
tshark "${OPTS[@]}" -r "$CAP" -Y 'dns' "${FIELDS[@]}" \
  "${ADDR[@]}" -e udp.stream -e tcp.stream -e udp.srcport -e udp.dstport -e tcp.srcport -e tcp.dstport \
  -e dns.id -e dns.flags.response -e dns.flags.rcode -e dns.qry.name -e dns.qry.type \
  -e dns.count.answers -e dns.resp.name -e dns.resp.type -e dns.resp.ttl \
  -e dns.cname -e dns.a -e dns.aaaa \
  > "$OUTDIR/$NAME.dns.tsv" 2> "$TMP/tshark.err" || { cat "$TMP/tshark.err" >&2; exit 1; }

# ---- HTTP: one row per HTTP message. A frame can end several pipelined messages, which
# -T fields would merge into one row, so the PDML tree is read instead: each <proto name="http">
# is one message; its fields (first occurrence inside that proto) are the columns below.
tshark "${OPTS[@]}" -r "$CAP" -Y 'http' -T pdml > "$TMP/http.pdml" 2> "$TMP/tshark.err" \
  || { cat "$TMP/tshark.err" >&2; exit 1; }
python3 - "$TMP/http.pdml" > "$OUTDIR/$NAME.http.tsv" <<'PY'
import sys, xml.etree.ElementTree as ET
PKT = ["frame.number", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.stream", "tcp.srcport", "tcp.dstport"]
MSG = ["http.request", "http.response", "http.request.method", "http.host", "http.request.uri",
       "http.request.version", "http.user_agent", "http.response.version", "http.response.code",
       "http.content_type", "http.content_length", "http.transfer_encoding", "http.connection",
       "http.response_for.uri", "http.server"]
def fields(elem, want, out):
    # first occurrence of each wanted field below elem, not descending into nested protocols
    for ch in elem:
        if ch.tag == "proto":
            continue
        if ch.tag == "field":
            n = ch.get("name")
            if n in want and n not in out:
                out[n] = "1" if n in ("http.request", "http.response") else ch.get("show", "")
            fields(ch, want, out)
print("\t".join(PKT + ["http.msg_in_frame"] + MSG))
for _, pkt in ET.iterparse(sys.argv[1]):
    if pkt.tag != "packet":
        continue
    base, k = {}, 0
    for proto in pkt.findall("proto"):
        name = proto.get("name")
        if name in ("frame", "ip", "ipv6", "tcp"):
            fields(proto, set(PKT), base)
        elif name == "http":
            k += 1
            m = {}
            fields(proto, set(MSG), m)
            row = [base.get(f, "") for f in PKT] + [str(k)] + [m.get(f, "") for f in MSG]
            print("\t".join(v.replace("\t", " ") for v in row))
    pkt.clear()
PY
wc -l "$OUTDIR/$NAME".{http,tls,dns}.tsv
