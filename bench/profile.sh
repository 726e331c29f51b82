#!/usr/bin/env bash
# Where tcpsight's time goes. Run bench/run.sh first (it builds and generates the files).
#
#     bash bench/profile.sh
#
# For each of the two CLI configurations of the benchmark, `tcpsight analyze FILE` (default:
# summary and per-destination table) and `tcpsight analyze FILE --flows /dev/null`:
# 1. callgrind (instructions executed, exact and insensitive to machine noise) on ser4.pcap
#    (960 k packets, headers only): top functions by self cost, and inclusive cost of the
#    main stages.
# 2. perf record -e cpu-clock (time samples; a software event, since this VM has no
#    hardware counters: `perf stat -e instructions` reports "not supported") on the
#    10 M packet big96.pcap, if perf works: top functions by self time.
# Knobs: BENCH_DIR, SMALL, BIG, TOP [15], CONFIGS ["default flows"].
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${BENCH_DIR:-target/bench}
SMALL=${SMALL:-$OUT/ser4.pcap}
BIG=${BIG:-$OUT/big96.pcap}
TOP=${TOP:-15}
CONFIGS=${CONFIGS:-default flows}
command -v valgrind >/dev/null || { echo "profile: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
[ -s "$SMALL" ] || { echo "profile: $SMALL is missing: run bash bench/run.sh first" >&2; exit 1; }
TARGET_DIR=$(realpath -m "${BENCH_TARGET_DIR:-$OUT/target}") # where bench/run.sh built
TCPSIGHT=$TARGET_DIR/release/tcpsight
PERF_OK=0
if [ -s "$BIG" ] && command -v perf >/dev/null && perf record -q -e cpu-clock -o /dev/null true >/dev/null 2>&1; then
    PERF_OK=1
fi

for config in $CONFIGS; do
    case $config in
    default) extra=() ; title="tcpsight analyze FILE (default)" ;;
    flows) extra=(--flows /dev/null) ; title="tcpsight analyze FILE --flows /dev/null" ;;
    *) echo "profile: unknown config $config (default, flows)" >&2; exit 2 ;;
    esac
    echo "## $title"
    echo

    CG=$OUT/callgrind.$config.out
    echo "profile: callgrind on $SMALL ($config)" >&2
    valgrind --tool=callgrind --callgrind-out-file="$CG" \
        "$TCPSIGHT" analyze "$SMALL" "${extra[@]}" --no-progress >/dev/null 2>"$OUT/callgrind.$config.log"

    python3 - "$CG" "$TOP" "$(basename "$SMALL")" <<'PY'
import collections, re, subprocess, sys
cg, top, small = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def parse(inclusive):
    txt = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100",
                          f"--inclusive={'yes' if inclusive else 'no'}", cg],
                         capture_output=True, text=True, check=True).stdout
    total, agg = None, collections.Counter()
    for line in txt.splitlines():
        m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        ir, rest = int(m[1].replace(",", "")), re.sub(r" \[[^\]]*\]$", "", m[2])
        if "PROGRAM TOTALS" in rest:
            total = ir
            continue
        mm = re.match(r"^(.*?\.(?:rs|S|c|h|cc|cpp)|\?\?\?):(.*)$", rest)
        fn = mm[2] if mm else rest
        # Self cost: inlined code is listed once per source file, so sum. Inclusive: the
        # largest entry is the whole function.
        agg[fn] = agg[fn] + ir if not inclusive else max(agg[fn], ir)
    return total, agg

total, self_cost = parse(False)
print(f"### callgrind on {small}, self cost (instructions), top {top} of {total:,}")
print()
print("| # | function | share | instructions |")
print("|---:|---|---:|---:|")
for i, (fn, ir) in enumerate(self_cost.most_common(top), 1):
    print(f"| {i} | `{fn}` | {ir / total * 100:.1f}% | {ir:,} |")
print()
_, inc = parse(True)
stages = [
    ("tcpsight_io::merge::MergedReader::next_frame", "reading frames"),
    ("tcpsight_core::engine::Engine::process", "engine, including the observer callbacks"),
    ("tcpsight_core::decode::decode", "decoding Ethernet/IP/TCP"),
    ("tcpsight_core::decode::decode_general", "decoding, general path (not untagged Ethernet/IPv4/TCP)"),
    ("tcpsight_core::conn::Conn::on_segment", "per-connection state update"),
    ("tcpsight_core::engine::Engine::finish_slot", "finishing connections (record + observer)"),
    ("tcpsight_core::conn::Conn::to_record", "building the connection record"),
    ("<tcpsight::analyze::Sinks<W> as tcpsight_core::engine::Observer>::on_connection", "CLI observer per connection"),
    ("<tcpsight::analyze::Sinks<W> as tcpsight_core::engine::Observer>::on_exchange", "CLI observer per exchange"),
    ("tcpsight::output::flows::FlowWriter<W>::write", "--flows JSON line (to /dev/null here)"),
    ("tcpsight::output::table::DestinationTable::on_connection", "destination table, per connection"),
    ("tcpsight::output::table::DestinationTable::on_exchange", "destination table, per exchange"),
]
print(f"### callgrind on {small}, inclusive cost of the main stages")
print()
print("| function | what | share |")
print("|---|---|---:|")
for fn, what in stages:
    if fn in inc:
        print(f"| `{fn}` | {what} | {inc[fn] / total * 100:.1f}% |")
print()
PY

    if [ "$PERF_OK" = 1 ]; then
        echo "profile: perf record -e cpu-clock on $BIG ($config)" >&2
        PD=$OUT/perf.$config.data
        perf record -q -e cpu-clock -F 4999 -o "$PD" \
            "$TCPSIGHT" analyze "$BIG" "${extra[@]}" --no-progress >/dev/null 2>"$OUT/perf.$config.log"
        echo "### perf cpu-clock samples on $(basename "$BIG"), self time, top $TOP"
        echo
        echo "| # | function | share of samples |"
        echo "|---:|---|---:|"
        # (no head: closing the pipe early would kill perf report and, with pipefail, this script)
        perf report -i "$PD" --stdio --no-children --sort symbol 2>/dev/null |
            grep -E '^ +[0-9.]+%' | awk -v top="$TOP" 'NR <= top' |
            sed -E 's/^ +([0-9.]+%) +\[(.)\] +(.*[^ ]) +- +- *$/\1\t[\2] \3/' |
            awk -F'\t' '{n++; printf "| %d | `%s` | %s |\n", n, $2, $1}'
        echo
    fi
done
