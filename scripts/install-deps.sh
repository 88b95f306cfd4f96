#!/usr/bin/env bash
# Installs every system package Strata's build, tests and benchmarks need (Debian 12).
# Idempotent; run as root. Used by quickstart.sh, test.sh and CI.
set -euo pipefail
packages=(
    # build: seccomp for the runtime, libclang/libdevmapper for the device-mapper bindings
    pkg-config libseccomp-dev libclang-dev libdevmapper-dev
    # real peers and tools the tests drive
    containerd runc crun busybox-static skopeo umoci fuse-overlayfs
    # User-Mode Linux: a kernel with device-mapper, XFS quota and pure cgroup v2
    user-mode-linux kmod
    # filesystems, thin pools, loop devices, namespaces
    e2fsprogs xfsprogs thin-provisioning-tools dmsetup util-linux iproute2 procps psmisc attr
    # benchmarks: hyperfine, and Go + containerd's sources to build the reference snapshotter
    hyperfine golang-go golang-github-containerd-containerd-dev python3
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo is not installed: install a Rust toolchain (rustup)" >&2; exit 1; }
