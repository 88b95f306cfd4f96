#!/usr/bin/env bash
# Runs every test of the project, as root: unit tests, the snapshotter conformance suite against
# the real plugins with real mounts, crash and concurrency tests, the real-containerd tests, the
# runtime's namespace/cgroup tests, and the tests that run inside User-Mode Linux. Then checks
# formatting and lints.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (the tests mount, unshare and create cgroups)" >&2; exit 1; }
scripts/install-deps.sh
cargo build --workspace --bins
cargo test --workspace --no-fail-fast
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
