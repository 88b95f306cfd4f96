#!/usr/bin/env bash
# Benchmark: `run` of a busybox bundle's `true` through strata-runtime, crun and runc, in the
# same hyperfine run, and the ratios of their medians. Needs root, hyperfine, crun, runc and
# busybox-static (scripts/install-deps.sh installs them).
#
#   runtime/bench/runtime-bench.sh [RUNS_PER_ROUND] [ROUNDS]
#
# The machines are noisy (shared cores): the three commands are timed in several rounds
# (default 4 x 30 runs), and the ratio reported is that of the medians over all rounds.
#
# crun 1.8 refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported"); as
# shared/ENVIRONMENT.md says, the whole benchmark therefore runs in a private mount namespace
# where /sys/fs/cgroup/unified/cgroup.controllers is hidden by a bind mount. All three
# runtimes run in that same namespace, so the comparison stays fair (strata-runtime and runc
# still see a hybrid host: they detect it from the mount table).
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-30}"
rounds="${2:-4}"
[ "$(id -u)" = 0 ] || { echo "runtime-bench: run as root" >&2; exit 1; }
for t in hyperfine crun runc /bin/busybox python3; do
    command -v "$t" >/dev/null || { echo "runtime-bench: $t is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
cargo build --release -p strata-runtime >&2
strata="$PWD/target/release/strata-runtime"

work="$(mktemp -d /tmp/strata-rt-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bundle/rootfs/"{bin,proc,sys,dev,etc,tmp}
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -s busybox "$work/bundle/rootfs/bin/$a"
done
(cd "$work/bundle" && runc spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["true"]
json.dump(c, open(p, "w"), indent=1)
PY

cd "$work/bundle"
for round in $(seq 1 "$rounds"); do
    unshare -m --propagation private sh -c "
        mount --bind /dev/null /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null || true
        hyperfine -N -w 5 -r $runs --style basic --export-json $work/round$round.json \
            '$strata --root $work/strata run bench-strata' \
            'crun --root $work/crun run bench-crun' \
            'runc --root $work/runc run bench-runc'
    " >&2
done
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
times = [[], [], []]
for i in range(1, rounds + 1):
    r = json.load(open(f"{work}/round{i}.json"))["results"]
    med = [x["median"] * 1000 for x in r]
    print(f"round {i}: strata-runtime {med[0]:.2f} ms, crun {med[1]:.2f} ms, runc {med[2]:.2f} ms")
    for k in range(3):
        times[k].extend(t * 1000 for t in r[k]["times"])
m = [statistics.median(t) for t in times]
print(f"medians over {len(times[0])} runs each: strata-runtime {m[0]:.2f} ms, crun {m[1]:.2f} ms, runc {m[2]:.2f} ms")
print(f"strata-runtime / crun = {m[0] / m[1]:.2f}x, strata-runtime / runc = {m[0] / m[2]:.2f}x")
PY
