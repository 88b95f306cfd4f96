#!/usr/bin/env bash
# A fresh machine to a container, in one command (as root): installs the packages, builds
# Strata, starts the engine with its default embedded storage (sled metadata + the overlay2
# plugin) under /var/lib/strata and /run/strata, makes a busybox image from Debian's
# busybox-static (no registry is reachable here) and runs `strata run --rm busybox echo hello`.
# The engine keeps running afterwards (its log is /var/log/stratad.log); stop it with
# `kill $(cat /run/strata/stratad.pid)`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "quickstart.sh: run as root" >&2; exit 1; }
scripts/install-deps.sh
cargo build --release --workspace --bins
bin=$PWD/target/release
install -m 0755 "$bin/stratad" "$bin/strata" "$bin/strata-monitor" "$bin/strata-runtime" "$bin/strata-overlay2" "$bin/strata-aufs" /usr/local/bin/ 2>/dev/null \
    || echo "(could not install into /usr/local/bin; using $bin)"
export PATH="$bin:$PATH"

if ! strata version >/dev/null 2>&1; then
    echo "== starting stratad (root /var/lib/strata, socket /run/strata/strata.sock)"
    mkdir -p /run/strata
    nohup "$bin/stratad" >>/var/log/stratad.log 2>&1 &
    echo $! >/run/strata/stratad.pid
    for _ in $(seq 200); do strata version >/dev/null 2>&1 && break; sleep 0.05; done
    strata version >/dev/null || { tail -20 /var/log/stratad.log; exit 1; }
fi

if ! strata images | grep -q '^busybox '; then
    echo "== making the busybox image from /bin/busybox (strata import)"
    rootfs=$(mktemp -d /tmp/strata-busybox.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" "$rootfs/root"
    cp /bin/busybox "$rootfs/bin/busybox"
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$rootfs/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
    tar -C "$rootfs" --numeric-owner -cf - . | strata import - busybox:latest
fi

echo "== strata run --rm busybox echo hello"
strata run --rm busybox echo hello
echo
echo "Try: strata run --rm busybox sh -c 'id; hostname; ls /'   strata ps -a   strata info"
