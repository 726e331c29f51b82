#!/usr/bin/env bash
# The application layer's cost, in one run, rounds alternating between the variants:
# tcpsight analyze without L7 (the default), with --l7, with both logs written, and
# tshark extracting the same HTTP and TLS fields. Medians of RUNS rounds, as Markdown.
#
#     bash bench/l7.sh FILE [TSHARK_FILE]
#
# FILE: e.g. target/bench/full10.pcap (bench/run.sh makes it) or a headers-only copy;
# tshark is timed on TSHARK_FILE (default FILE; give a smaller capture: tshark runs at a
# tenth of the speed). Knobs: RUNS [5], BIN [target/release/tcpsight].
set -euo pipefail
FILE=$1
TFILE=${2:-$1}
RUNS=${RUNS:-5}
BIN=${BIN:-target/release/tcpsight}
frames() { tcpsight_frames=$("$BIN" analyze "$1" --json --no-progress | python3 -c 'import json,sys; print(json.load(sys.stdin)["frames"])'); echo "$tcpsight_frames"; }
N=$(frames "$FILE")
TN=$(frames "$TFILE")
declare -A T
variants=(default l7 logs tshark)
run() {
    case $1 in
        default) "$BIN" analyze "$FILE" --no-progress ;;
        l7) "$BIN" analyze "$FILE" --no-progress --l7 ;;
        logs) "$BIN" analyze "$FILE" --no-progress --http-log /dev/null --tls-log /dev/null --flows /dev/null ;;
        tshark) tshark -n -r "$TFILE" -Y 'http or tls.handshake.type==1 or tls.handshake.type==2' -T fields \
                    -e http.request.method -e http.host -e http.request.uri -e http.response.code \
                    -e tls.handshake.extensions_server_name -e tls.handshake.extensions_alpn_str -e tls.handshake.ja3 ;;
    esac
}
export -f run
export FILE TFILE BIN
for ((r = 0; r < RUNS; r++)); do
    for v in "${variants[@]}"; do
        s=$( { /usr/bin/time -f "%e %M" bash -c "run $v > /dev/null 2>&1" || echo "failed: $v" >&2; } 2>&1 | tail -1)
        T[$v]+="$s;"
    done
done
echo "| what | input | frames | median s | packets/s | max RSS MB | vs default |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
base=""
for v in "${variants[@]}"; do
    IFS=';' read -ra xs <<< "${T[$v]}"
    med=$(printf '%s\n' "${xs[@]}" | awk '{print $1}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    rss=$(printf '%s\n' "${xs[@]}" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    n=$N; f=$FILE
    [ "$v" = tshark ] && { n=$TN; f=$TFILE; }
    pps=$(python3 -c "print(f'{$n / max($med, 0.001) / 1e6:.2f} M')")
    per_pkt=$(python3 -c "print($med / $n)")
    [ -z "$base" ] && base=$per_pkt
    ratio=$(python3 -c "print(f'{$per_pkt / $base:.2f}x')")
    echo "| $v | $(basename "$f") | $n | $med | $pps | $((rss / 1024)) | $ratio |"
done
