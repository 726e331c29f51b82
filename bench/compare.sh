#!/usr/bin/env bash
# Two commits of tcpsight timed on the same capture in the same run, alternately, so that
# the difference is the code and not the (shared, noisy) machine. Run bench/run.sh first
# (it generates the captures).
#
#     bash bench/compare.sh OLD_REV NEW_REV [FILE]     # FILE: default target/bench/big96.pcap
#
# Each commit is exported with `git archive` into $BENCH_DIR/cmp-<commit>/src and built, with
# its own tcpsight-gen crate (so its own tcpsight-bench), into $BENCH_DIR/cmp-<commit>/target.
# Per round and commit: `tcpsight analyze FILE --no-progress` (default), the same with
# `--flows /dev/null`, and `tcpsight-bench --stage engine FILE`, each under
# /usr/bin/time -f '%e %M %U %S' (the engine-only row is left out if a commit predates
# tcpsight-bench, 1f82c3f). Prints the medians as a Markdown table.
# Knobs: BENCH_DIR [target/bench], RUNS [5], JOBS [2].
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ $# -ge 2 ] || { echo "usage: bash bench/compare.sh OLD_REV NEW_REV [FILE]" >&2; exit 2; }
OUT=${BENCH_DIR:-target/bench}
RUNS=${RUNS:-5}
JOBS=${JOBS:-2}
FILE=${3:-$OUT/big96.pcap}
[ -s "$FILE" ] || { echo "compare: $FILE is missing: run bash bench/run.sh first" >&2; exit 1; }

REVS=()
for rev in "$1" "$2"; do
    c=$(git rev-parse --verify "$rev^{commit}")
    short=$(git rev-parse --short "$c")
    dir=$(realpath -m "$OUT/cmp-$short")
    if [ ! -x "$dir/target/release/tcpsight" ]; then
        echo "compare: exporting and building $short into $dir" >&2
        rm -rf "$dir/src"
        mkdir -p "$dir/src"
        git archive "$c" | tar -x -m -C "$dir/src"
        CARGO_TARGET_DIR=$dir/target cargo build --release --manifest-path "$dir/src/Cargo.toml" \
            -p tcpsight -p tcpsight-gen -j "$JOBS" >&2
    fi
    REVS+=("$short:$dir/target/release")
done

RES=$OUT/compare.tsv
: >"$RES"
timed() { # rev, config, command...
    local rev=$1 cfg=$2 t=$OUT/cmp-time.$$
    shift 2
    /usr/bin/time -f '%e %M %U %S' -o "$t" "$@" >/dev/null 2>>"$OUT/compare.stderr"
    printf '%s\t%s\t%s\n' "$rev" "$cfg" "$(tail -n 1 "$t" | tr ' ' '\t')" >>"$RES"
    rm -f "$t"
}
cat "$FILE" >/dev/null # page cache
LOAD_BEFORE=$(uptime)
for round in $(seq 1 "$RUNS"); do
    echo "compare: round $round/$RUNS (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    for r in "${REVS[@]}"; do
        rev=${r%%:*} bin=${r#*:}
        timed "$rev" default "$bin/tcpsight" analyze "$FILE" --no-progress
        timed "$rev" flows "$bin/tcpsight" analyze "$FILE" --flows /dev/null --no-progress
        if [ -x "${REVS[0]#*:}/tcpsight-bench" ] && [ -x "${REVS[1]#*:}/tcpsight-bench" ]; then
            timed "$rev" engine "$bin/tcpsight-bench" --stage engine "$FILE"
        fi
    done
done
LOAD_AFTER=$(uptime)

echo "- file: $FILE; $RUNS rounds, commits alternated within each round"
echo "- uptime before: \`$(echo $LOAD_BEFORE)\`; after: \`$(echo $LOAD_AFTER)\`"
echo
python3 - "$RES" "${REVS[0]%%:*}" "${REVS[1]%%:*}" <<'PY'
import statistics, sys
res, old, new = sys.argv[1:4]
d = {}
for line in open(res):
    rev, cfg, wall, rss, user, sys_ = line.rstrip("\n").split("\t")
    d.setdefault((rev, cfg), []).append((float(wall), int(rss), float(user) + float(sys_)))
med = statistics.median
labels = {"default": "`tcpsight analyze FILE`", "flows": "`tcpsight analyze FILE --flows /dev/null`",
          "engine": "engine only (`tcpsight-bench --stage engine`)"}
print(f"| configuration | {old} wall s | {new} wall s | speed-up (wall) | {old} CPU s | {new} CPU s | speed-up (CPU) | {old} RSS MB | {new} RSS MB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for cfg in ("default", "flows", "engine"):
    if (old, cfg) not in d or (new, cfg) not in d:
        continue
    a, b = d[(old, cfg)], d[(new, cfg)]
    wa, wb = med(x[0] for x in a), med(x[0] for x in b)
    ca, cb = med(x[2] for x in a), med(x[2] for x in b)
    ra, rb = med(x[1] for x in a) / 1024, med(x[1] for x in b) / 1024
    print(f"| {labels[cfg]} | {wa:.2f} | {wb:.2f} | {wa / wb:.2f}x | {ca:.2f} | {cb:.2f} | {ca / cb:.2f}x | {ra:.1f} | {rb:.1f} |")
PY
