#!/usr/bin/env bash
# A fresh machine to a container on Strata storage, in one command (as root):
# installs the packages, builds Strata, starts the overlay2 snapshotter plugin, loads it into a
# private containerd as a proxy snapshotter, imports a busybox image made from Debian's
# busybox-static (no registry is reachable here) and runs `echo hello` in a container on it.
# Everything it starts is stopped again at the end; the built binaries stay in target/release.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "quickstart.sh: run as root" >&2; exit 1; }
scripts/install-deps.sh
cargo build --release --workspace --bins

work=$(mktemp -d /tmp/strata-quickstart.XXXXXX)
run=/run/strata-quickstart
mkdir -p "$run"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$work" "$run"
}
trap cleanup EXIT

echo "== starting strata-overlay2 (root $work/overlay2, socket $run/overlay2.sock)"
target/release/strata-overlay2 --root "$work/overlay2" --address "$run/overlay2.sock" 2>"$work/overlay2.log" &
pids+=($!)

echo "== starting containerd with strata-overlay2 as the proxy snapshotter \"strata\""
cat >"$work/containerd.toml" <<TOML
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$run/containerd.sock"
[ttrpc]
  address = "$run/containerd.sock.ttrpc"
[proxy_plugins]
  [proxy_plugins.strata]
    type = "snapshot"
    address = "$run/overlay2.sock"
TOML
containerd --config "$work/containerd.toml" 2>"$work/containerd.log" &
pids+=($!)
ctr() { command ctr --address "$run/containerd.sock" "$@"; }
for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done

echo "== making a busybox image from /bin/busybox"
rootfs=$work/rootfs
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
cp /bin/busybox "$rootfs/bin/busybox"
for a in sh echo cat ls true; do ln -s busybox "$rootfs/bin/$a"; done
img=$work/image
mkdir -p "$img"
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf "$img/layer.tar" .
diff_id=$(sha256sum "$img/layer.tar" | cut -d' ' -f1)
mkdir -p "$img/$diff_id" && mv "$img/layer.tar" "$img/$diff_id/layer.tar"
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff_id" >"$img/config.json"
config_id=$(sha256sum "$img/config.json" | cut -d' ' -f1)
mv "$img/config.json" "$img/$config_id.json"
printf '[{"Config":"%s.json","RepoTags":["docker.io/library/busybox:latest"],"Layers":["%s/layer.tar"]}]' "$config_id" "$diff_id" >"$img/manifest.json"
tar -C "$img" -cf "$work/busybox.tar" .

echo "== ctr images import --snapshotter strata busybox.tar"
ctr images import --snapshotter strata "$work/busybox.tar"
echo "== ctr run --rm --snapshotter strata busybox echo hello"
ctr run --rm --snapshotter strata docker.io/library/busybox:latest quickstart-$$ echo hello
echo "== the layer as strata-overlay2 stores it:"
ls -l "$work/overlay2/l"
ctr images rm --sync docker.io/library/busybox:latest >/dev/null
