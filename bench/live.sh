#!/usr/bin/env bash
# Live-path benchmark: the packet rate `tcpsight watch -i` sustains with zero kernel
# drops. tcpreplay sends a real capture into one end of a veth pair inside a network
# namespace this script makes (and removes); tcpsight watches the other end, in another
# namespace. Root only. Usage (from anywhere):
#
#     sudo bash bench/live.sh
#
# Environment knobs (defaults in brackets):
#   LOOPS [4]          times tcpreplay sends the capture per run (240k frames each)
#   RATES [topspeed 50000 100000]  tcpreplay rates to try: "topspeed" or packets/s
#   THREADS [1 2]      tcpsight --threads values to try
#   BUFFER_MB [64]     tcpsight ring size
#   BIN [target/release/tcpsight]
# Output: one line per (threads, rate): sent packets, tcpreplay's achieved pps, frames
# tcpsight counted, kernel drops, tcpsight's CPU seconds (user + sys) and frames per CPU
# second (the rate one core of tcpsight would sustain: the sender is the limit here).
# tcpreplay -K preloads the capture; veth delivery runs in the sender's context, so the
# sender, not tcpsight, bounds the rate on a small machine.
set -euo pipefail
cd "$(dirname "$0")/.."
LOOPS=${LOOPS:-4}
RATES=${RATES:-topspeed 50000 100000}
THREADS=${THREADS:-1 2}
BUFFER_MB=${BUFFER_MB:-64}
BIN=${BIN:-target/release/tcpsight}
[ "$(id -u)" = 0 ] || { echo "bench/live.sh: needs root (network namespaces)" >&2; exit 2; }
command -v tcpreplay >/dev/null || { echo "bench/live.sh: needs tcpreplay (apt-get install tcpreplay)" >&2; exit 2; }
[ -x "$BIN" ] || cargo build --release -p tcpsight
work=$(mktemp -d)
tx=tsbtx$$ rx=tsbrx$$
cleanup() { ip netns del "$tx" 2>/dev/null || true; ip netns del "$rx" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ip netns add "$tx"; ip netns add "$rx"
ip link add tsbA netns "$tx" type veth peer name tsbB netns "$rx"
ip -n "$tx" link set tsbA up; ip -n "$rx" link set tsbB up
gzip -dc testdata/captures/generated/netns-25s-client.pcap.gz > "$work/in.pcap"
printf '%-8s %-10s %10s %10s %10s %6s %8s %14s\n' threads rate sent sent_pps seen drops cpu_s pkts_per_cpu_s
for t in $THREADS; do
  for r in $RATES; do
    if [ "$r" = topspeed ]; then rate=(--topspeed); else rate=(--pps="$r"); fi
    ip netns exec "$rx" /usr/bin/time -f '%U %S' -o "$work/cpu" "$BIN" watch -i tsbB -q --json \
      --threads "$t" -B "$BUFFER_MB" -U "$work/s.sock" >"$work/out.json" 2>"$work/err" &
    pid=$!
    sleep 1
    ip netns exec "$tx" tcpreplay -K -i tsbA "${rate[@]}" --loop="$LOOPS" "$work/in.pcap" >"$work/replay" 2>&1
    sleep 1
    pkill -INT -f "watch -i tsbB"; wait "$pid" || true
    sent=$(grep -o 'Successful packets: *[0-9]*' "$work/replay" | grep -o '[0-9]*$')
    pps=$(grep -o 'Rated: [0-9.]* Bps, [0-9.]* Mbps, [0-9.]* pps' "$work/replay" | grep -o '[0-9.]* pps' | cut -d' ' -f1)
    seen=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["capture"]["frames"])' "$work/out.json")
    drops=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["capture"]["kernel_drops"])' "$work/out.json")
    cpu=$(awk '{printf "%.2f", $1 + $2}' "$work/cpu")
    per=$(awk -v n="$seen" -v c="$cpu" 'BEGIN {printf "%.0f", (c > 0 ? n / c : 0)}')
    printf '%-8s %-10s %10s %10s %10s %6s %8s %14s\n' "$t" "$r" "$sent" "$pps" "$seen" "$drops" "$cpu" "$per"
  done
done
