#!/usr/bin/env bash
# Engine benchmark, in one run on one disk:
#   1. `strata run --rm busybox true` (warm engine; as installed, and with `--warm-pool 2`)
#      against bare `crun run` of a prepared bundle and `ctr run --rm` (containerd 1.6 + runc,
#      overlayfs), back to back, and again one at a time with a pause before each;
#   2. `strata load` of a multi-layer image against `ctr images import` of the same archive.
# Prints the medians and the ratios. Targets (issue 4): strata run <= 1.0x crun and <= 0.15x
# ctr; strata load <= 0.7x ctr import.
#
#   [BENCH_DIR=/var/tmp] bench/engine.sh [RUNS (30)] [ROUNDS (3)]
#
# All three keep their roots, state and the bundle side by side under BENCH_DIR (default
# /var/tmp, on the filesystem of /var/lib where a host keeps them; this machine's /tmp
# directory makes every mkdir and file creation under it 5-10x slower, as bench/snapshotter.sh
# notes, which costs the engine, making a dozen entries per container, more than crun).
#
# As root. crun 1.8 refuses hybrid cgroup hosts, so every command runs in a private mount
# namespace where /sys/fs/cgroup/unified/cgroup.controllers is hidden (shared/ENVIRONMENT.md);
# strata and containerd see the same host there.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
rounds=${2:-3}
[ "$(id -u)" = 0 ] || { echo "bench/engine.sh: run as root" >&2; exit 1; }
for t in hyperfine crun runc containerd ctr python3; do
    command -v "$t" >/dev/null || { echo "bench/engine.sh: $t is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
cargo build --release -q --workspace --bins
bin=$PWD/target/release

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/strata-ebench.XXXXXX")
run=/run/sebench.$$
mkdir -p "$run"
pids=()
cleanup() {
    for sock in "$run/strata.sock" "$run/warm.sock"; do
        "$bin/strata" --address "$sock" ps -aq 2>/dev/null | xargs -r "$bin/strata" --address "$sock" rm -f >/dev/null 2>&1 || true
    done
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$work" "$run"
}
trap cleanup EXIT

# A busybox image archive (one layer) and a five-layer image archive (~25 MiB of files).
python3 - "$work" <<'PY'
import hashlib, io, json, os, sys, tarfile, random
work = sys.argv[1]
def layer(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data, mode, kind in files:
            ti = tarfile.TarInfo(name); ti.mode = mode; ti.mtime = 1700000000
            if kind == "dir":
                ti.type = tarfile.DIRTYPE; t.addfile(ti)
            elif kind == "sym":
                ti.type = tarfile.SYMTYPE; ti.linkname = data; t.addfile(ti)
            else:
                ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()
def archive(path, ref, layers):
    diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cname = hashlib.sha256(cfg).hexdigest() + ".json"
    names = [hashlib.sha256(l).hexdigest() + "/layer.tar" for l in layers]
    with tarfile.open(path, "w") as t:
        def add(n, d):
            ti = tarfile.TarInfo(n); ti.size = len(d); ti.mtime = 1700000000; t.addfile(ti, io.BytesIO(d))
        add(cname, cfg)
        for n, l in zip(names, layers): add(n, l)
        add("manifest.json", json.dumps([{"Config": cname, "RepoTags": [ref], "Layers": names}]).encode())
bb = open("/bin/busybox", "rb").read()
base = [("bin", None, 0o755, "dir"), ("bin/busybox", bb, 0o755, "file")]
base += [(f"bin/{a}", "busybox", 0o777, "sym") for a in ["sh", "true", "echo"]]
base += [(d, None, 0o755, "dir") for d in ["proc", "sys", "dev", "etc", "tmp"]]
archive(f"{work}/busybox.tar", "docker.io/library/busybox:latest", [layer(base)])
rnd = random.Random(1)
layers = [layer(base)]
for i in range(4):
    layers.append(layer([(f"data{i}", None, 0o755, "dir")] + [(f"data{i}/f{j}", rnd.randbytes(50_000), 0o644, "file") for j in range(120)]))
archive(f"{work}/multi.tar", "docker.io/library/multi:latest", layers)
PY

# Strata as installed (no warm pool), and a second engine with `--warm-pool 2` (containers made
# ahead of time; README, "The warm pool"), each on its own root.
for e in strata:0 warm:2; do
    name=${e%%:*}
    "$bin/stratad" --root "$work/$name" --run-root "$run/$name" --address "$run/$name.sock" \
        --log-level warn --warm-pool "${e##*:}" 2>"$work/$name.log" &
    pids+=($!)
    for _ in $(seq 200); do "$bin/strata" --address "$run/$name.sock" version >/dev/null 2>&1 && break; sleep 0.05; done
    "$bin/strata" --address "$run/$name.sock" load -i "$work/busybox.tar" >/dev/null
done
S="$bin/strata --address $run/strata.sock"
W="$bin/strata --address $run/warm.sock"

# containerd with its own root, state and socket.
cat >"$work/containerd.toml" <<TOML
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$run/containerd.sock"
[ttrpc]
  address = "$run/containerd.sock.ttrpc"
TOML
containerd --config "$work/containerd.toml" 2>"$work/containerd.log" &
pids+=($!)
C="ctr --address $run/containerd.sock"
for _ in $(seq 200); do $C version >/dev/null 2>&1 && break; sleep 0.05; done
$C images import "$work/busybox.tar" >/dev/null

# A bare crun bundle with the same busybox.
mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/"{proc,sys,dev,etc,tmp}
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
ln -s busybox "$work/bundle/rootfs/bin/true"
(cd "$work/bundle" && runc spec && python3 - config.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["process"]["terminal"] = False; c["process"]["args"] = ["true"]
json.dump(c, open(sys.argv[1], "w"))
PY
)

inns() {
    unshare -m --propagation private sh -c "mount --bind /dev/null /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null || true; $1"
}
for r in $(seq "$rounds"); do
    # The previous round's loads leave hundreds of MB to write back: every flush (strata's and
    # containerd's metadata) would wait behind them, so each round starts on a synced disk.
    sync
    inns "cd $work/bundle && hyperfine -N -w 3 -r $runs --style basic --export-json $work/run$r.json \
        '$S run --rm busybox true' \
        '$W run --rm busybox true' \
        'crun --root $work/crun run bench-crun' \
        '$C run --rm docker.io/library/busybox:latest bench-ctr true'" >&2
    # The same four, one at a time on an otherwise idle host: a pause (not timed) before each
    # run, as when a user starts a container now and then rather than in a tight loop.
    inns "cd $work/bundle && hyperfine -N -w 3 -r $(( (runs + 1) / 2 )) --style basic --export-json $work/idle$r.json \
        --prepare 'sleep 0.25' \
        '$S run --rm busybox true' \
        '$W run --rm busybox true' \
        'crun --root $work/crun run bench-crun' \
        '$C run --rm docker.io/library/busybox:latest bench-ctr true'" >&2
    inns "hyperfine -w 1 -r $(( (runs + 5) / 6 )) --style basic --export-json $work/load$r.json \
        --prepare '$S rmi -f multi:latest >/dev/null 2>&1 || true' '$S load -i $work/multi.tar' \
        --prepare '$C images rm --sync docker.io/library/multi:latest >/dev/null 2>&1 || true' '$C images import $work/multi.tar'" >&2
done

python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def collect(prefix, n):
    t = [[] for _ in range(n)]
    for i in range(1, rounds + 1):
        for k, res in enumerate(json.load(open(f"{work}/{prefix}{i}.json"))["results"]):
            t[k].extend(x * 1000 for x in res["times"])
    return [statistics.median(x) for x in t]
s, w, crun, ctr = collect("run", 4)
print(f"run --rm busybox true (median ms): strata {s:.2f}, strata --warm-pool 2 {w:.2f}, crun {crun:.2f}, ctr {ctr:.2f}")
print(f"  strata/crun = {s/crun:.2f}x (target <= 1.0), strata/ctr = {s/ctr:.2f}x (target <= 0.15)")
print(f"  with the warm pool: strata/crun = {w/crun:.2f}x, strata/ctr = {w/ctr:.2f}x")
s, w, crun, ctr = collect("idle", 4)
print(f"the same, each after a 0.25 s pause (median ms): strata {s:.2f}, strata --warm-pool 2 {w:.2f}, crun {crun:.2f}, ctr {ctr:.2f}")
print(f"  strata/crun = {s/crun:.2f}x, strata/ctr = {s/ctr:.2f}x; with the warm pool: {w/crun:.2f}x, {w/ctr:.2f}x")
sl, cl = collect("load", 2)
print(f"load of a 5-layer image (median ms): strata {sl:.1f}, ctr import {cl:.1f}")
print(f"  strata/ctr = {sl/cl:.2f}x (target <= 0.7)")
PY
