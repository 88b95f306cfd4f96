#!/usr/bin/env bash
# The aufs FUSE path against fuse-overlayfs (the C implementation, Debian's package), with the
# kernel's overlayfs as the floor: the same workload on the same lower layer, each round on a
# fresh writable layer, the three alternating.
#
#   bench/aufs.sh [ROUNDS (5)]
#   STRATA_BENCH_DIR=/dev/shm bench/aufs.sh 9   # on tmpfs: no disk in the way, only the FUSE cost
#
# Workload (bench/aufs_workload.py): small-file creates, copy-up of large lower files, readdir
# of big lower directories, metadata stats of a lower tree. Prints each round, the median of
# each phase and the ratio strata-aufs / fuse-overlayfs (target: <= 1.0). Run as root.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-5}
command -v fuse-overlayfs >/dev/null || { echo "apt-get install fuse-overlayfs" >&2; exit 1; }
work=$(mktemp -d "${STRATA_BENCH_DIR:-/tmp}/strata-aufs-bench.XXXXXX")
mounts=()
servers=()
cleanup() {
    for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
    for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -q -p strata-aufs --manifest-path "$here/Cargo.toml"
aufs=$here/target/release/strata-aufs
py=$here/bench/aufs_workload.py

# The lower layer, as an aufs tree: diff/base is read by all three.
mkdir -p "$work/aufs/diff/base" "$work/aufs/layers" "$work/aufs/mnt"
: >"$work/aufs/layers/base"
python3 "$py" populate "$work/aufs/diff/base"
lower=$work/aufs/diff/base

mount_aufs() { # round -> mountpoint
    local id=r$1
    mkdir -p "$work/aufs/diff/$id" "$work/aufs/mnt/$id"
    echo base >"$work/aufs/layers/$id"
    coproc srv { exec "$aufs" fuse --root "$work/aufs" --id "$id"; }
    servers+=("$srv_PID")
    read -r ready <&"${srv[0]}"
    [ "$ready" = ready ] || { echo "strata-aufs did not mount" >&2; exit 1; }
    mounts+=("$work/aufs/mnt/$id")
    echo "$work/aufs/mnt/$id"
}
mount_fovl() {
    local d=$work/fovl/$1
    mkdir -p "$d/upper" "$d/work" "$d/merged"
    fuse-overlayfs -o "lowerdir=$lower,upperdir=$d/upper,workdir=$d/work" "$d/merged"
    mounts+=("$d/merged")
    echo "$d/merged"
}
mount_kovl() {
    local d=$work/kovl/$1
    mkdir -p "$d/upper" "$d/work" "$d/merged"
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$d/upper,workdir=$d/work,index=off" "$d/merged"
    mounts+=("$d/merged")
    echo "$d/merged"
}

declare -A results
for r in $(seq "$rounds"); do
    for side in aufs fovl kovl; do
        m=$(mount_$side "$r")
        results[$side,$r]=$(python3 "$py" run "$m")
        umount "$m"
        # Drop this round's writable layer (the copies are large).
        case $side in
            aufs) rm -rf "$work/aufs/diff/r$r" "$work/aufs/mnt/r$r" "$work/aufs/layers/r$r" ;;
            *) rm -rf "${m%/merged}" ;;
        esac
        echo "round $r $side: ${results[$side,$r]}"
    done
done

python3 - "$rounds" <<PY
import json, statistics, sys
rounds = int(sys.argv[1])
res = {}
$(for k in "${!results[@]}"; do echo "res['$k'] = json.loads('${results[$k]}')"; done)
names = {"aufs": "strata-aufs (FUSE)", "fovl": "fuse-overlayfs", "kovl": "kernel overlayfs"}
phases = list(res["aufs,1"].keys())
med = {s: {p: statistics.median(res[f"{s},{r}"][p] for r in range(1, rounds + 1)) for p in phases} for s in names}
print()
print(f"medians of {rounds} rounds (seconds):")
def value(s, r, p):
    return sum(res[f"{s},{r}"].values()) if p == "total" else res[f"{s},{r}"][p]
print(f"{'phase':<22}" + "".join(f"{names[s]:>22}" for s in names) + f"{'aufs/fuse-overlayfs':>22}{'paired':>10}")
for p in phases + ["total"]:
    v = {s: (sum(med[s].values()) if p == "total" else med[s][p]) for s in names}
    # The median of each round's own ratio: the sides of a round ran back to back.
    paired = statistics.median(value("aufs", r, p) / value("fovl", r, p) for r in range(1, rounds + 1))
    print(f"{p:<22}" + "".join(f"{v[s]:>22.3f}" for s in names) + f"{v['aufs'] / v['fovl']:>21.2f}x{paired:>9.2f}x")
PY
