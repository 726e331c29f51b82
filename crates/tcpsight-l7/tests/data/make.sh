#!/usr/bin/env bash
# Regenerates the tshark oracle files the capture tests compare against.
# Run from this directory: bash make.sh (tshark 4.0 was used; see README.md). The first two
# columns are the client port and the server port, which key the connection.
set -euo pipefail
C=../../../../testdata/captures
HTTP="zeek/http-pipelined-requests.pcap zeek/http-1000-requests-one-dropped-response.pcap
zeek/wikipedia.pcap zeek/http-get-to-ssh-server-nsec.pcap suricata-verify/http-range-multiflows.pcap
suricata-verify/tls-subjectaltname.pcap ndpi/1kxun.pcap ndpi/gnutella.pcap ndpi/instagram.pcap"
TLS="suricata-verify/tls-subjectaltname.pcap zeek/tls-openjdk-sll2.pcap ndpi/reddit-ipv6.pcap
ndpi/instagram.pcap ndpi/alexa-app.pcapng ndpi/1kxun.pcap ndpi/KakaoTalk_talk-sll.pcap"
# HTTP responses are shown at their headers (http.desegment_body off), so one cut by the
# end of the capture is listed as ours is. Out-of-order segments reassembled (off by default in tshark 4.0: without it tshark loses
# HTTP messages in tls-subjectaltname.pcap, whose server segments arrive out of order);
# TLS also looked for on 8080 and 9001 (KakaoTalk's TLS ports, which tshark does not try).
T="tshark -o tcp.reassemble_out_of_order:TRUE"
TT="$T -d tcp.port==8080,tls -d tcp.port==9001,tls"
name() { basename "$1" | sed 's/\.pcap.*$//'; }
for f in $HTTP; do
    n=$(name "$f")
    # Except where a segment is lost for good: with out-of-order reassembly on, tshark
    # waits for it and shows none of the responses after it.
    case "$f" in *one-dropped-response*) T=tshark ;; *) T="tshark -o tcp.reassemble_out_of_order:TRUE" ;; esac
    $T -r "$C/$f" -Y "tcp && http.request" -T fields -e tcp.srcport -e tcp.dstport -e http.request.method \
        -e http.host -e http.request.uri -e http.user_agent 2>/dev/null > "$n.http-requests.tsv"
    $T -o http.desegment_body:FALSE -r "$C/$f" -Y "tcp && http.response" -T fields -e tcp.dstport -e tcp.srcport -e http.response.code \
        -e http.content_type -e http.server 2>/dev/null > "$n.http-responses.tsv"
done
for f in $TLS; do
    n=$(name "$f")
    $TT -r "$C/$f" -Y "tls.handshake.type==1" -T fields -e tcp.srcport -e tcp.dstport \
        -e tls.handshake.extensions_server_name -e tls.handshake.extensions_alpn_str \
        -e tls.handshake.ja3 2>/dev/null > "$n.tls-client-hello.tsv"
    $TT -r "$C/$f" -Y "tls.handshake.type==2" -T fields -e tcp.dstport -e tcp.srcport \
        -e tls.handshake.extensions.supported_version -e tls.handshake.version \
        -e tls.handshake.ciphersuite -e tls.handshake.ja3s 2>/dev/null > "$n.tls-server-hello.tsv"
done
