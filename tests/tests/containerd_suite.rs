//! containerd 1.6's own snapshotter conformance suite (`snapshots/testsuite`, from Debian's
//! golang-github-containerd-containerd-dev) against `strata-overlay2` and `strata-aufs`, through containerd's proxy
//! client and containerd's own mount code — including the 128-layer chain, which containerd
//! mounts with its lowerdir compaction. The Go side is `tests/go/src/stratasuite`.

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_tests::harness::find_binary;

/// Builds the Go suite offline (GOPATH mode over Debian's packaged sources) into target/.
fn build_suite() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| manifest.join("../target/debug"));
    let out = target.join("stratasuite.test");
    let gopath = format!("{}:/usr/share/gocode", manifest.join("go").display());
    let status = Command::new("go")
        .args(["test", "-c", "-o"])
        .arg(&out)
        .arg("stratasuite")
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", target.join("gocache"))
        .status();
    match status {
        Ok(s) if s.success() => out,
        Ok(s) => panic!("building the Go suite failed ({s}): apt-get install golang-go golang-github-containerd-containerd-dev"),
        Err(e) => panic!("cannot run go ({e}): apt-get install golang-go golang-github-containerd-containerd-dev"),
    }
}

/// Runs the Go suite against `plugin` and checks that every subtest passed, 128LayersMount
/// included.
fn suite_passes_on(plugin: &str) {
    let suite = build_suite();
    let out = Command::new(&suite)
        .arg("-test.v")
        .env("STRATA_PLUGIN", find_binary(plugin))
        .output()
        .expect("run the Go suite");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let passed = stdout
        .lines()
        .filter(|l| {
            l.trim_start()
                .starts_with("--- PASS: TestContainerdSnapshotterSuite/")
        })
        .count();
    assert!(
        out.status.success() && !stdout.contains("--- FAIL") && passed >= 20,
        "containerd's suite failed on {plugin} ({}; {passed} subtests passed):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("--- PASS: TestContainerdSnapshotterSuite/128LayersMount"),
        "{stdout}"
    );
}

#[test]
fn containerd_testsuite_passes_on_overlay2() {
    suite_passes_on("strata-overlay2");
}

/// The aufs plugin's mounts are binds of the unions it serves itself, so containerd's own
/// mount code needs nothing aufs- or FUSE-specific.
#[test]
fn containerd_testsuite_passes_on_aufs() {
    suite_passes_on("strata-aufs");
}
