//! The container lifecycle on a real overlay2 plugin and strata-runtime, below the API: a
//! busybox layer made by hand, a container created, started, logged, waited for and removed.
//! Needs root and the built binaries (`cargo build --workspace --bins`).

use std::path::PathBuf;
use std::sync::Arc;

use strata_engine::config::StorageConfig;
use strata_engine::container::record::{Settings, Status};
use strata_engine::container::spec::ImageDefaults;
use strata_engine::container::{Containers, ResolvedImage};
use strata_engine::storage::Storage;
use strata_proto::snapshots::{CommitSnapshotRequest, PrepareSnapshotRequest};

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_start_wait_logs_remove() {
    let bins = bin_dir();
    assert!(
        bins.join("strata-overlay2").is_file(),
        "build the binaries first: cargo build --workspace --bins"
    );
    let path = format!(
        "{}:{}",
        bins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // SAFETY: set before any other thread of this test reads the environment.
    unsafe { std::env::set_var("PATH", path) };
    let dir = tempfile::tempdir().unwrap();
    let run = PathBuf::from(format!("/run/sl-{}", std::process::id()));
    let storage = Storage::start(
        &StorageConfig {
            driver: Some("overlay2".into()),
            ..Default::default()
        },
        dir.path(),
        &run,
        "warn",
    )
    .await
    .unwrap();
    // A layer with busybox in it.
    let mounts = storage
        .snapshots()
        .prepare(PrepareSnapshotRequest {
            key: "base".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    let diff = PathBuf::from(&mounts[0].source);
    std::fs::create_dir_all(diff.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", diff.join("bin/busybox")).unwrap();
    for a in ["sh", "echo"] {
        std::os::unix::fs::symlink("busybox", diff.join("bin").join(a)).unwrap();
    }
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(diff.join(d)).unwrap();
    }
    storage
        .snapshots()
        .commit(CommitSnapshotRequest {
            name: "layer".into(),
            key: "base".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let db = sled::Config::new().temporary(true).open().unwrap();
    let containers: Arc<Containers> =
        Containers::open(&db, storage.clone(), dir.path(), &run, Default::default()).unwrap();
    let image = ResolvedImage {
        id: "sha256:test".into(),
        reference: "test".into(),
        defaults: ImageDefaults {
            env: vec!["PATH=/bin".into()],
            cmd: vec!["sh".into()],
            ..Default::default()
        },
        chain: "layer".into(),
    };
    let settings = Settings {
        cmd: vec![
            "sh".into(),
            "-c".into(),
            "echo hi; echo oops >&2; exit 4".into(),
        ],
        ..Default::default()
    };
    let rec = containers.create(&image, "t1", settings).await.unwrap();
    containers.start("t1").await.unwrap();
    let st = containers.wait_exit(&rec).await;
    assert_eq!(st.status, Status::Exited);
    assert_eq!(st.exit_code, 4);
    let (entries, _) =
        strata_engine::container::logs::tail(&containers.log_path(&rec.id), -1).unwrap();
    let mut text: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e.stream.clone(),
                String::from_utf8_lossy(&e.line).into_owned(),
            )
        })
        .collect();
    // The two streams are separate pipes: their relative order is not kept, each one's is.
    text.sort();
    assert_eq!(
        text,
        vec![
            ("stderr".into(), "oops\n".into()),
            ("stdout".into(), "hi\n".into())
        ]
    );
    containers.remove("t1", false).await.unwrap();
    assert!(containers.resolve("t1").is_err());
    storage.shutdown().await;
    let _ = std::fs::remove_dir_all(&run);
}
