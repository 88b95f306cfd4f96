//! Starting a plugin binary in a sandbox and connecting to it.
//!
//! A [`Sandbox`] is a fresh temp dir holding the plugin's `root/` and a `work/` dir for
//! mountpoints and reference trees. A [`PluginProcess`] is one run of a plugin binary on a
//! sandbox's root, listening on a short socket under [`SOCKET_DIR`]. Both clean up on drop:
//! the process gets SIGTERM (then SIGKILL), everything mounted under the sandbox is unmounted,
//! and the dirs and socket are removed.

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use hyper_util::rt::TokioIo;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use strata_proto::snapshots::snapshots_client::SnapshotsClient;
use strata_proto::storage::driver_client::DriverClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::mounts::unmount_all_under;

/// Where plugin sockets go: short, because a unix socket path is at most 107 bytes.
pub const SOCKET_DIR: &str = "/run/strata-test";

/// How long a plugin may take to report SERVING on its health service.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a graceful stop (SIGTERM) may take before the plugin is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long one RPC may take before the call fails (so a deadlocked plugin fails the test
/// instead of hanging it).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a whole case may take.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(900);

/// How a plugin binary is started and when it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// A Strata plugin: `--root DIR --address SOCKET [--storage-opt K=V]...`, ready when its
    /// health service reports SERVING; it also serves `strata.storage.v1.Driver`.
    Strata,
    /// containerd's own snapshotter served out of process by `strataref` (tests/go/src/strataref,
    /// `-kind KIND -root DIR -socket SOCKET`), ready when it answers.
    /// It has no health or Driver service and no failpoints. The suite runs against it to prove
    /// its own expectations match containerd's.
    ContainerdReference {
        /// `overlayfs` or `native`.
        kind: String,
    },
}

/// What the suite needs to know about a driver's plugin.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The binary's file name, e.g. `strata-overlay2`.
    pub binary: String,
    /// Where the binary is, when not found by [`find_binary`].
    pub binary_path: Option<PathBuf>,
    /// How it is started.
    pub launch: Launch,
    /// `--storage-opt` values (`KEY=VALUE`) passed on every start.
    pub storage_opts: Vec<String>,
    /// Extra environment for the plugin process.
    pub env: Vec<(String, String)>,
    /// Counts the snapshots that have storage under a plugin root, for leak checks after
    /// crashes and Cleanup (see [`crate::layouts`]).
    pub storage_count: fn(&Path) -> Result<usize>,
    /// Rows the driver's Status must have (by key).
    pub status_rows: Vec<String>,
    /// Whether every snapshot has storage of its own, so `storage_count` must equal the number
    /// of snapshots; when false (a driver whose views share their parent's storage) it may
    /// only not exceed it.
    pub storage_per_snapshot: bool,
    /// Whether a snapshot holds only its own changes on top of its parents (overlay, aufs), so
    /// Usage of a fresh child is near zero; false for drivers that copy the parent.
    pub layered: bool,
}

impl PluginSpec {
    /// A spec for `binary` with no options.
    pub fn new(binary: &str, storage_count: fn(&Path) -> Result<usize>) -> Self {
        Self {
            binary: binary.to_owned(),
            binary_path: None,
            launch: Launch::Strata,
            storage_opts: Vec::new(),
            env: Vec::new(),
            storage_count,
            status_rows: Vec::new(),
            storage_per_snapshot: true,
            layered: true,
        }
    }

    /// Adds a `--storage-opt KEY=VALUE`.
    pub fn with_storage_opt(mut self, opt: &str) -> Self {
        self.storage_opts.push(opt.to_owned());
        self
    }

    /// Rows the driver's Status must have.
    pub fn with_status_rows(mut self, rows: &[&str]) -> Self {
        self.status_rows = rows.iter().map(|r| (*r).to_owned()).collect();
        self
    }

    /// Marks a driver whose views share their parent's storage (see `storage_per_snapshot`).
    pub fn with_shared_view_storage(mut self) -> Self {
        self.storage_per_snapshot = false;
        self
    }

    /// Marks a driver that copies the parent into a new snapshot (see `layered`).
    pub fn with_copied_parents(mut self) -> Self {
        self.layered = false;
        self
    }

    /// Adds an environment variable for the plugin process.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// containerd's own snapshotter of `kind` served by the `strataref` binary at `path`.
    pub fn containerd_reference(
        path: &Path,
        kind: &str,
        storage_count: fn(&Path) -> Result<usize>,
    ) -> Self {
        Self {
            binary: format!("containerd-{kind}"),
            binary_path: Some(path.to_path_buf()),
            launch: Launch::ContainerdReference {
                kind: kind.to_owned(),
            },
            storage_opts: Vec::new(),
            env: Vec::new(),
            storage_count,
            status_rows: Vec::new(),
            storage_per_snapshot: true,
            layered: true,
        }
    }

    /// Whether the plugin serves `strata.storage.v1.Driver`.
    pub fn has_driver_service(&self) -> bool {
        self.launch == Launch::Strata
    }

    /// The path of the binary (see [`find_binary`]).
    pub fn binary_path(&self) -> PathBuf {
        match &self.binary_path {
            Some(path) => path.clone(),
            None => find_binary(&self.binary),
        }
    }
}

/// Finds a built binary: in `$STRATA_BIN_DIR` if set, else in the cargo target dir this test
/// executable was built into (`target/<profile>/deps/<test>` → `target/<profile>/<name>`).
///
/// # Panics
/// When the binary does not exist: these tests must fail, never skip, when it was not built.
pub fn find_binary(name: &str) -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("STRATA_BIN_DIR") {
        candidates.push(PathBuf::from(dir).join(name));
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/debug/deps/overlay2-1234 → target/debug/strata-overlay2
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            candidates.push(profile_dir.join(name));
        }
        // Also allow running from target/debug directly (examples, non-test binaries).
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join(name));
        }
    }
    match candidates.iter().find(|p| p.is_file()) {
        Some(found) => found.clone(),
        None => panic!(
            "plugin binary {name} not found (looked at {candidates:?}): \
             build the binaries first: cargo build --workspace --bins"
        ),
    }
}

/// A unique short name for sockets and dirs made by this process.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}-{n}-{:x}", std::process::id(), nanos & 0xffff)
}

/// A fresh temp dir with `root/` (the plugin's root) and `work/` (mountpoints, reference trees,
/// logs). Dropping it unmounts everything mounted below it, then removes it.
#[derive(Debug)]
pub struct Sandbox {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    root: PathBuf,
    work: PathBuf,
    counter: AtomicUsize,
}

impl Sandbox {
    /// Makes a new sandbox under `$STRATA_TEST_TMPDIR`, default `/tmp`. (Inside User-Mode
    /// Linux, point it at a real filesystem: hostfs has no xattrs.)
    pub fn new() -> Result<Self> {
        let base = std::env::var_os("STRATA_TEST_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        let dir = tempfile::Builder::new()
            .prefix("st-")
            .tempdir_in(&base)
            .with_context(|| format!("create the sandbox temp dir under {}", base.display()))?;
        let path = dir.path().to_path_buf();
        // The temp dir is 0700; widen it so ownership tests (uid 1) can traverse it.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 0755 {}", path.display()))?;
        let root = path.join("root");
        let work = path.join("work");
        for d in [&root, &work] {
            fs::create_dir(d).with_context(|| format!("create {}", d.display()))?;
        }
        Ok(Self {
            dir: Some(dir),
            path,
            root,
            work,
            counter: AtomicUsize::new(0),
        })
    }

    /// The sandbox dir itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root given to the plugin (`--root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The scratch dir for mountpoints and reference trees.
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// Makes a new, empty dir under `work/` named `<prefix>-<n>` (mode 0755).
    pub fn new_dir(&self, prefix: &str) -> Result<PathBuf> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let dir = self.work.join(format!("{prefix}-{n}"));
        fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 0755 {}", dir.display()))?;
        Ok(dir)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        unmount_all_under(&self.path);
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(err) = dir.close() {
                eprintln!("sandbox cleanup: remove {}: {err}", path.display());
            }
        }
    }
}

/// One running plugin process.
#[derive(Debug)]
pub struct PluginProcess {
    binary: String,
    launch: Launch,
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
    channel: Channel,
}

impl PluginProcess {
    /// Starts the plugin of `spec` on the sandbox's root and waits until it is healthy.
    pub async fn start(spec: &PluginSpec, sandbox: &Sandbox) -> Result<Self> {
        Self::start_with_env(spec, sandbox, &[]).await
    }

    /// Like [`PluginProcess::start`], with extra environment (e.g. `STRATA_FAILPOINT`).
    pub async fn start_with_env(
        spec: &PluginSpec,
        sandbox: &Sandbox,
        extra_env: &[(&str, &str)],
    ) -> Result<Self> {
        let Spawn {
            mut cmd,
            binary,
            socket,
            log,
        } = command(spec, sandbox, extra_env)?;
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;

        let mut this = Self {
            binary: spec.binary.clone(),
            launch: spec.launch.clone(),
            child: Some(child),
            socket: socket.clone(),
            log,
            // Replaced below once the plugin answers.
            channel: Endpoint::from_static("http://[::]:50051").connect_lazy(),
        };
        this.channel = this.wait_serving().await?;
        Ok(this)
    }

    async fn wait_serving(&mut self) -> Result<Channel> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_err = anyhow!("socket {} never appeared", self.socket.display());
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("wait for the plugin")? {
                    bail!(
                        "{} exited with {status} before serving; its log:\n{}",
                        self.binary,
                        self.log_tail(40)
                    );
                }
            }
            if self.socket.exists() {
                match self.health_check().await {
                    Ok(channel) => return Ok(channel),
                    Err(err) => last_err = err,
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last_err.context(format!(
            "{} did not report SERVING on {} within {START_TIMEOUT:?}; its log:\n{}",
            self.binary,
            self.socket.display(),
            self.log_tail(40)
        )))
    }

    async fn health_check(&self) -> Result<Channel> {
        let channel = connect_unix(&self.socket).await?;
        if self.launch != Launch::Strata {
            // No health service: ready when the snapshots service answers at all (containerd's
            // bare store even fails List while it is empty, so probe with a Stat).
            let mut client = SnapshotsClient::new(channel.clone());
            let req = strata_proto::snapshots::StatSnapshotRequest {
                snapshotter: String::new(),
                key: "strata-tests-readiness-probe".into(),
            };
            match tokio::time::timeout(Duration::from_secs(5), client.stat(req))
                .await
                .context("Stat probe timed out")?
            {
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    bail!("Stat probe: {status}")
                }
                _ => {}
            }
            return Ok(channel);
        }
        let mut health = HealthClient::new(channel.clone());
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            health.check(HealthCheckRequest {
                service: String::new(),
            }),
        )
        .await
        .context("health check timed out")?
        .context("health check")?
        .into_inner();
        if resp.status != ServingStatus::Serving as i32 {
            bail!("health status is {} (want SERVING)", resp.status);
        }
        Ok(channel)
    }

    /// A snapshots client on the shared connection.
    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    /// A driver client on the shared connection.
    pub fn driver(&self) -> DriverClient<Channel> {
        DriverClient::new(self.channel.clone())
    }

    /// Opens a new, separate connection to the plugin.
    pub async fn connect(&self) -> Result<Channel> {
        connect_unix(&self.socket).await
    }

    /// The plugin's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The plugin's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> Result<bool> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait().context("wait for the plugin")?.is_none()),
            None => Ok(false),
        }
    }

    /// Waits until the process has exited by itself (e.g. a failpoint killed it).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("{} was already stopped", self.binary))?;
        loop {
            if let Some(status) = child.try_wait().context("wait for the plugin")? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("{} still runs after {timeout:?}", self.binary);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the plugin with SIGKILL now, as an operator's `kill -9` would, and reaps it.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} was already stopped", self.binary);
        };
        child.kill().context("send SIGKILL")?;
        child.wait().context("wait for the killed plugin")
    }

    /// Stops the plugin gracefully (SIGTERM) and returns its exit status. Fails when it had to
    /// be killed because it did not stop within [`STOP_TIMEOUT`].
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} was already stopped", self.binary);
        };
        let (status, graceful) = terminate(&mut child)?;
        if !graceful {
            bail!(
                "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM and was killed; its log:\n{}",
                self.binary,
                self.log_tail(40)
            );
        }
        Ok(status)
    }

    /// The last `lines` lines of the plugin's stdout and stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        read_tail(&self.log, lines)
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(err) = terminate(&mut child) {
                eprintln!("stop {}: {err:#}", self.binary);
            }
        }
        // Shown by the test harness only when the test fails.
        eprintln!(
            "---- {} log ({}) ----\n{}",
            self.binary,
            self.log.display(),
            self.log_tail(30)
        );
        let _ = fs::remove_file(&self.socket);
    }
}

/// A plugin command line, ready to spawn, with its socket and log file.
struct Spawn {
    cmd: Command,
    binary: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

fn command(spec: &PluginSpec, sandbox: &Sandbox, extra_env: &[(&str, &str)]) -> Result<Spawn> {
    let binary = spec.binary_path();
    fs::create_dir_all(SOCKET_DIR).with_context(|| format!("create {SOCKET_DIR}"))?;
    let socket = Path::new(SOCKET_DIR).join(format!("{}.sock", unique_name("p")));
    let log = sandbox
        .work()
        .join(format!("{}.log", unique_name("plugin-")));
    let log_file = File::create(&log).with_context(|| format!("create {}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .with_context(|| format!("dup {}", log.display()))?;

    let mut cmd = Command::new(&binary);
    match &spec.launch {
        Launch::Strata => {
            cmd.arg("--root")
                .arg(sandbox.root())
                .arg("--address")
                .arg(&socket);
            for opt in &spec.storage_opts {
                cmd.arg("--storage-opt").arg(opt);
            }
            if let Ok(level) = std::env::var("STRATA_TEST_LOG_LEVEL") {
                cmd.arg("--log-level").arg(level);
            }
        }
        Launch::ContainerdReference { kind } => {
            cmd.arg("-kind")
                .arg(kind)
                .arg("-root")
                .arg(sandbox.root())
                .arg("-socket")
                .arg(&socket);
        }
    }
    cmd.env_remove("STRATA_FAILPOINT").env("NO_COLOR", "1");
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_err));
    Ok(Spawn {
        cmd,
        binary,
        socket,
        log,
    })
}

/// Runs a plugin that is expected to refuse to start: it must exit by itself within
/// `timeout`. Returns its exit status and output. Fails if it starts serving instead.
pub async fn run_expecting_refusal(
    spec: &PluginSpec,
    sandbox: &Sandbox,
    timeout: Duration,
) -> Result<(ExitStatus, String)> {
    let Spawn {
        mut cmd,
        binary,
        socket,
        log,
    } = command(spec, sandbox, &[])?;
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawn {}", binary.display()))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("wait for the plugin")? {
            let _ = fs::remove_file(&socket);
            return Ok((status, read_tail(&log, 200)));
        }
        if Instant::now() >= deadline {
            let _ = terminate(&mut child);
            let _ = fs::remove_file(&socket);
            bail!(
                "{} with options {:?} still runs after {timeout:?}; it must refuse to start. Its log:\n{}",
                spec.binary,
                spec.storage_opts,
                read_tail(&log, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a plugin and SIGKILLs it `after` that long, whatever it is doing (e.g. still
/// recovering its store at start), then reaps it.
pub async fn start_and_kill(
    spec: &PluginSpec,
    sandbox: &Sandbox,
    after: Duration,
) -> Result<ExitStatus> {
    let Spawn {
        mut cmd,
        binary,
        socket,
        ..
    } = command(spec, sandbox, &[])?;
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawn {}", binary.display()))?;
    tokio::time::sleep(after).await;
    // It may have exited already; kill fails then, and wait still reaps it.
    let _ = child.kill();
    let status = child.wait().context("wait for the killed plugin")?;
    let _ = fs::remove_file(&socket);
    Ok(status)
}

/// SIGTERM, wait up to [`STOP_TIMEOUT`], then SIGKILL. Returns the status and whether the
/// process exited by itself.
fn terminate(child: &mut Child) -> Result<(ExitStatus, bool)> {
    if let Some(status) = child.try_wait().context("wait for the plugin")? {
        return Ok((status, true));
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
    kill(pid, Signal::SIGTERM).context("send SIGTERM")?;
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().context("wait for the plugin")? {
            return Ok((status, true));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().context("send SIGKILL")?;
    let status = child.wait().context("wait for the killed plugin")?;
    Ok((status, false))
}

fn read_tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    let read = OpenOptions::new().read(true).open(path).and_then(|mut f| {
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(buf)
    });
    match read {
        Ok(buf) => {
            let all = String::from_utf8_lossy(&buf);
            let v: Vec<&str> = all.lines().collect();
            for line in &v[v.len().saturating_sub(lines)..] {
                text.push_str(line);
                text.push('\n');
            }
        }
        Err(err) => text = format!("(cannot read {}: {err})", path.display()),
    }
    text
}

/// Connects to a gRPC server on a unix socket.
pub async fn connect_unix(path: &Path) -> Result<Channel> {
    let path = path.to_path_buf();
    let shown = path.display().to_string();
    Endpoint::from_static("http://[::]:50051")
        .connect_timeout(Duration::from_secs(5))
        .timeout(RPC_TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .with_context(|| format!("connect to {shown}"))
}

/// Runs one case on a fresh tokio runtime and panics with the whole error chain when it fails
/// or takes longer than [`CASE_TIMEOUT`]. This is what each `#[test]` calls.
pub fn run_case<F, Fut>(spec: PluginSpec, case: F)
where
    F: FnOnce(PluginSpec) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => panic!("build a tokio runtime: {err}"),
    };
    let result = runtime.block_on(async {
        match tokio::time::timeout(CASE_TIMEOUT, case(spec)).await {
            Ok(result) => result,
            Err(_) => Err(anyhow!("the case did not finish within {CASE_TIMEOUT:?}")),
        }
    });
    if let Err(err) = result {
        // The whole chain, without anyhow's backtrace (the cause says where it failed).
        let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
        panic!("{}", chain.join("\n  caused by: "));
    }
}

/// Builds (once per test process) `strataref` from `tests/go/src/strataref`: containerd
/// 1.6.20's own snapshotters served out of process, built offline in GOPATH mode from Debian's
/// golang-github-containerd-containerd-dev sources into the cargo target dir. Uses
/// `$STRATA_REF_SNAPSHOTTER` instead if set (any binary taking `-kind -root -socket`, e.g.
/// shared/tools/snapbench's `ref-snapshotter`).
///
/// # Panics
/// When it cannot be built: the reference tests must fail, never skip.
pub fn containerd_reference_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<std::result::Result<PathBuf, String>> =
        std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| build_reference().map_err(|e| format!("{e:#}")));
    match built {
        Ok(path) => path.clone(),
        Err(err) => panic!(
            "cannot build containerd's reference snapshotter: {err} \
             (apt-get install golang-go golang-github-containerd-containerd-dev)"
        ),
    }
}

fn build_reference() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("STRATA_REF_SNAPSHOTTER") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("find the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("{} has no target dir", exe.display()))?;
    let binary = profile_dir.join("strataref");
    let gopath = format!(
        "{}:/usr/share/gocode",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("go").display()
    );
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg("strataref")
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", profile_dir.join("gocache"))
        .output()
        .context("run go build")?;
    if !output.status.success() {
        bail!(
            "go build strataref failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "build the binaries first: cargo build --workspace --bins")]
    fn a_missing_binary_fails_loudly() {
        find_binary("strata-no-such-plugin");
    }

    #[test]
    fn socket_paths_fit_a_unix_socket() {
        let longest = Path::new(SOCKET_DIR).join(format!("{}.sock", unique_name("p")));
        // sun_path is 108 bytes including the NUL.
        assert!(longest.as_os_str().len() < 100, "{}", longest.display());
    }
}
