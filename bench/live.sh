#!/usr/bin/env bash
# Live-path benchmark: the packet rate `tcpsight watch -i` sustains with zero drops.
# tcpsight-send (crates/tcpsight-gen; AF_PACKET sendmmsg, frames preloaded) sends a real
# capture into one end of a veth pair inside a network namespace this script makes (and
# removes); tcpsight watches the other end, in another namespace. Root only. Usage (from
# anywhere):
#
#     sudo bash bench/live.sh           # tcpsight watch -i at each rate
#     sudo FACES="watch monitor" bash bench/live.sh   # watch and monitor, interleaved
#     sudo bash bench/live.sh sender    # the sender's methods alone, nothing listening
#
# Environment knobs (defaults in brackets):
#   LOOPS [4]          times the capture is sent per run (239,962 frames each)
#   RATES [100000 250000 500000 1000000 max]  offered packets/s ("max": as fast as it goes)
#   THREADS [1 2]      tcpsight --threads values to try
#   FACES [watch]      the faces to run: watch (-q --json), monitor (-o DIR, MONITOR_ARGS
#                      [--metrics 127.0.0.1:0],
#                      records zstd-compressed, bins every 60 s); counts from the
#                      monitor's summaries
#   RUNS [3]           runs per (threads, rate); the table shows medians
#   METHOD [mmsg]      tcpsight-send --method (mmsg, ring or sendto)
#   BUFFER_MB [64]     tcpsight ring size
#   BIN [target/release/tcpsight]  SEND [target/release/tcpsight-send]
# Output: one line per run ("run"), then one line of medians per (threads, rate) ("med"):
# offered rate, achieved send rate, frames sent, frames tcpsight counted, kernel (ring)
# drops, frames the veth dropped before any socket saw them, tcpsight's CPU seconds
# (user + sys, from /proc at the end of the run) and frames per CPU second, the sender's
# CPU seconds (they include the kernel's delivery), and how many runs lost nothing (every
# frame sent was counted, zero drops). Veth delivery, and the AF_PACKET copy into
# tcpsight's ring, run in the sender's context: on a 2-core machine the sender and the
# kernel's delivery take one core and tcpsight the other.
set -euo pipefail
cd "$(dirname "$0")/.."
LOOPS=${LOOPS:-4}
RATES=${RATES:-100000 250000 500000 1000000 max}
THREADS=${THREADS:-1 2}
FACES=${FACES:-watch}
RUNS=${RUNS:-3}
METHOD=${METHOD:-mmsg}
BUFFER_MB=${BUFFER_MB:-64}
BIN=${BIN:-target/release/tcpsight}
SEND=${SEND:-target/release/tcpsight-send}
[ "$(id -u)" = 0 ] || { echo "bench/live.sh: needs root (network namespaces)" >&2; exit 2; }
[ -x "$BIN" ] || cargo build --release -p tcpsight
[ -x "$SEND" ] || cargo build --release -p tcpsight-gen
work=$(mktemp -d)
tx=tsbtx$$ rx=tsbrx$$
tpid=
cleanup() {
  if [ -n "$tpid" ]; then kill -INT "$tpid" 2>/dev/null || true; fi
  ip netns del "$tx" 2>/dev/null || true; ip netns del "$rx" 2>/dev/null || true; rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$tx"; ip netns add "$rx"
# No IPv6 on the pair: its neighbour discovery would add frames nobody sent.
for ns in "$tx" "$rx"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.all.disable_ipv6=1
done
ip link add tsbA netns "$tx" type veth peer name tsbB netns "$rx"
ip -n "$tx" link set tsbA up; ip -n "$rx" link set tsbB up
gzip -dc testdata/captures/generated/netns-25s-client.pcap.gz > "$work/in.pcap"
hz=$(getconf CLK_TCK)
field() { grep -o "\b$1=[^ ]*" "$2" | head -1 | cut -d= -f2; }
json() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["capture"][sys.argv[2]])' "$1" "$2"; }
rxdrop() { ip netns exec "$rx" cat /sys/class/net/tsbB/statistics/rx_dropped; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
if [ "${1:-}" = sender ]; then
  # The sender alone (nothing listening on the other end): each method, RUNS runs
  # interleaved, as fast as it goes; medians of packets/s and packets per CPU second.
  sfmt='%-18s %10s %12s %10s\n'
  echo "# $(date -u '+%F %H:%M UTC'), $(nproc) CPUs, $(uptime | sed 's/.*load/load/'), $LOOPS x 239,962 frames per run"
  printf "$sfmt" method pps pps_per_cpu_s errors
  declare -A sc
  methods=("mmsg" "mmsg --no-bypass" "ring" "ring --no-bypass" "sendto")
  for _run in $(seq "$RUNS"); do
    for mth in "${methods[@]}"; do
      # shellcheck disable=SC2086 # the method's words are options
      ip netns exec "$tx" "$SEND" -i tsbA --method $mth --loops "$LOOPS" "$work/in.pcap" >"$work/send"
      sc[$mth,pps]+=" $(field pps "$work/send")"; sc[$mth,per]+=" $(field pps_per_cpu_s "$work/send")"
      sc[$mth,err]=$(( ${sc[$mth,err]:-0} + $(field errors "$work/send") ))
    done
  done
  for mth in "${methods[@]}"; do
    printf "$sfmt" "$mth" "$(median <<<"${sc[$mth,pps]}")" "$(median <<<"${sc[$mth,per]}")" "${sc[$mth,err]}"
  done
  exit 0
fi
fmt='%-4s %-7s %-7s %-8s %9s %9s %9s %7s %7s %6s %10s %8s %8s\n'
echo "# $(date -u '+%F %H:%M UTC'), $(nproc) CPUs, $(uptime | sed 's/.*load/load/'), method $METHOD, $LOOPS x 239,962 frames per run"
printf "$fmt" '' face threads offered sent_pps sent seen k_drops v_drops cpu_s per_cpu_s send_cpu lossless
# The monitor's frames and kernel drops, from its period summaries.
monitor_count() { python3 -c 'import json,glob,sys; s=[json.load(open(p)) for p in glob.glob(sys.argv[1] + "/*/summary.json")]; print(sum((x[sys.argv[2]] or 0) for x in s))' "$1" "$2"; }
declare -A col
for t in $THREADS; do
  for r in $RATES; do
    pps=$r; [ "$r" = max ] && pps=0
    for face in $FACES; do
    k="$face $t $r"
    for _run in $(seq "$RUNS"); do
      rm -f "$work/pid"; rm -rf "$work/mon"
      if [ "$face" = monitor ]; then
        # shellcheck disable=SC2206 # MONITOR_ARGS are options
        cmd=("$BIN" monitor -i tsbB --threads "$t" -B "$BUFFER_MB" -o "$work/mon" ${MONITOR_ARGS:---metrics 127.0.0.1:0})
      else
        cmd=("$BIN" watch -i tsbB -q --json --threads "$t" -B "$BUFFER_MB" -U "$work/s.sock")
      fi
      ip netns exec "$rx" bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$work/pid" \
        "${cmd[@]}" >"$work/out.json" 2>"$work/err" &
      job=$!
      for _ in $(seq 50); do [ -s "$work/pid" ] && break; sleep 0.1; done
      tpid=$(cat "$work/pid")
      sleep 1
      d0=$(rxdrop)
      ip netns exec "$tx" "$SEND" -i tsbA --method "$METHOD" --loops "$LOOPS" --pps "$pps" \
        "$work/in.pcap" >"$work/send" 2>"$work/send.err"
      sleep 1
      read -r ut st < <(awk '{print $14, $15}' "/proc/$tpid/stat")
      kill -INT "$tpid"; wait "$job" || true; tpid=
      sent=$(field sent "$work/send")
      spps=$(field pps "$work/send")
      scpu=$(field cpu_s "$work/send")
      if [ "$face" = monitor ]; then
        seen=$(monitor_count "$work/mon" frames)
        drops=$(monitor_count "$work/mon" kernel_drops)
      else
        seen=$(json "$work/out.json" frames)
        drops=$(json "$work/out.json" kernel_drops)
      fi
      vdrops=$(( $(rxdrop) - d0 ))
      cpu=$(awk -v u="$ut" -v s="$st" -v hz="$hz" 'BEGIN {printf "%.2f", (u + s) / hz}')
      per=$(awk -v n="$seen" -v c="$cpu" 'BEGIN {printf "%.0f", (c > 0 ? n / c : 0)}')
      ok=0; if [ "$drops" = 0 ] && [ "$vdrops" = 0 ] && [ "$seen" -ge "$sent" ]; then ok=1; fi
      printf "$fmt" run "$face" "$t" "$r" "$spps" "$sent" "$seen" "$drops" "$vdrops" "$cpu" "$per" "$scpu" "$ok"
      for c in spps sent seen drops vdrops cpu per scpu; do col[$k,$c]+=" ${!c}"; done
      col[$k,ok]=$(( ${col[$k,ok]:-0} + ok ))
    done
    m() { median <<<"${col[$k,$1]}"; }
    printf "$fmt" med "$face" "$t" "$r" "$(m spps)" "$(m sent)" "$(m seen)" "$(m drops)" "$(m vdrops)" \
      "$(m cpu)" "$(m per)" "$(m scpu)" "${col[$k,ok]}/$RUNS"
    done
  done
done
