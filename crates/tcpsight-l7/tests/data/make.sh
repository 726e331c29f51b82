#!/usr/bin/env bash
# Regenerates the tshark oracle files the capture tests compare against.
# Run from this directory: bash make.sh (tshark 4.0 was used; see README.md).
set -euo pipefail
C=../../../../testdata/captures
HTTP="zeek/http-pipelined-requests.pcap zeek/http-1000-requests-one-dropped-response.pcap
zeek/wikipedia.pcap zeek/http-get-to-ssh-server-nsec.pcap suricata-verify/http-range-multiflows.pcap
suricata-verify/tls-subjectaltname.pcap ndpi/1kxun.pcap ndpi/gnutella.pcap ndpi/instagram.pcap"
TLS="suricata-verify/tls-subjectaltname.pcap zeek/tls-openjdk-sll2.pcap ndpi/reddit-ipv6.pcap
ndpi/instagram.pcap ndpi/alexa-app.pcapng ndpi/1kxun.pcap ndpi/KakaoTalk_talk-sll.pcap"
name() { basename "$1" | sed 's/\.pcap.*$//'; }
for f in $HTTP; do
    n=$(name "$f")
    tshark -r "$C/$f" -Y http.request -T fields -e tcp.stream -e http.request.method \
        -e http.host -e http.request.uri -e http.user_agent 2>/dev/null > "$n.http-requests.tsv"
    tshark -r "$C/$f" -Y http.response -T fields -e tcp.stream -e http.response.code \
        -e http.content_type -e http.server 2>/dev/null > "$n.http-responses.tsv"
done
for f in $TLS; do
    n=$(name "$f")
    tshark -r "$C/$f" -Y 'tls.handshake.type==1' -T fields -e tcp.stream \
        -e tls.handshake.extensions_server_name -e tls.handshake.extensions_alpn_str \
        -e tls.handshake.ja3 2>/dev/null > "$n.tls-client-hello.tsv"
    tshark -r "$C/$f" -Y 'tls.handshake.type==2' -T fields -e tcp.stream \
        -e tls.handshake.extensions.supported_version -e tls.handshake.version \
        -e tls.handshake.ciphersuite -e tls.handshake.ja3s 2>/dev/null > "$n.tls-server-hello.tsv"
done
