#!/usr/bin/env bash
# Snapshotter benchmark: Strata's overlay2 plugin against containerd 1.6's own overlayfs
# snapshotter served out of process, measured by the same client (containerd's proxy client, in
# ../shared/tools/snapbench) in the same run, alternating, on the same disk.
#
#   [BENCH_DIR=/var/tmp] bench/snapshotter.sh [ROUNDS (3)] [N (500)]
#
# Prints each round, the median ops/s of each side and the ratio strata/containerd. Run as root
# (overlay mounts are not made, but the reference checks for overlay support).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
n=${2:-500}
shared=${STRATA_SHARED:-$here/../shared}
# Both servers keep their roots side by side under BENCH_DIR (default /var/tmp, on the same
# filesystem as /var/lib where a Strata host keeps its storage; this machine's /tmp directory
# makes every mkdir 3-10x slower than elsewhere on the same disk, which would measure the
# directory, not the snapshotters).
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/strata-bench.XXXXXX")
sock=/run/strata-bench.$$
mkdir -p "$sock"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work" "$sock"
}
trap cleanup EXIT

# The reference tools build from Debian's packaged Go sources, offline; shared/ may be
# read-only, so build a copy.
cp -r "$shared/tools/snapbench" "$work/snapbench"
chmod -R u+w "$work/snapbench"
(cd "$work/snapbench" && ./build.sh >/dev/null)
bench=$work/snapbench/bin/snapshot-bench

cargo build --release -q -p strata-overlay2 --manifest-path "$here/Cargo.toml"
strata=$here/target/release/strata-overlay2

"$work/snapbench/bin/ref-snapshotter" -kind overlayfs -root "$work/ref" -socket "$sock/ref.sock" 2>"$work/ref.log" &
pids+=($!)
"$strata" --root "$work/strata" --address "$sock/strata.sock" --log-level warn 2>"$work/strata.log" &
pids+=($!)
for s in ref strata; do
    for _ in $(seq 100); do [ -S "$sock/$s.sock" ] && break; sleep 0.05; done
done

ops() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ops_per_sec"]))'; }
declare -a ref_r strata_r
for r in $(seq "$rounds"); do
    ref_json=$("$bench" -socket "$sock/ref.sock" -n "$n" -json)
    strata_json=$("$bench" -socket "$sock/strata.sock" -n "$n" -json)
    ref_r+=("$(echo "$ref_json" | ops)")
    strata_r+=("$(echo "$strata_json" | ops)")
    echo "round $r: containerd overlayfs ${ref_r[-1]} ops/s, strata-overlay2 ${strata_r[-1]} ops/s"
    echo "$ref_json" >"$work/ref-$r.json"
    echo "$strata_json" >"$work/strata-$r.json"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ref_m=$(median "${ref_r[@]}")
strata_m=$(median "${strata_r[@]}")
echo
echo "per-operation medians of the last round (µs):"
python3 - "$work/ref-$rounds.json" "$work/strata-$rounds.json" <<'PY'
import json, sys
ref, st = (json.load(open(p))["ops"] for p in sys.argv[1:3])
print(f"{'op':8} {'containerd':>11} {'strata':>9} {'ratio':>6}   p99: {'containerd':>10} {'strata':>9}")
for op in ["Prepare", "Mounts", "Commit", "View", "Stat", "List", "Remove"]:
    r, s = ref[op], st[op]
    print(f"{op:8} {r['median_us']:11.1f} {s['median_us']:9.1f} {r['median_us']/s['median_us']:5.2f}x   {r['p99_us']:15.1f} {s['p99_us']:9.1f}")
PY
echo
echo "median ops/s over $rounds rounds: containerd overlayfs $ref_m, strata-overlay2 $strata_m"
python3 -c "print(f'ratio strata/containerd: {$strata_m/$ref_m:.2f}x')"
