//! Error paths: each bad request gives the gRPC code of SNAPSHOTS-API.md §1.4 and changes
//! nothing.

use anyhow::{ensure, Context, Result};
use strata_proto::snapshots::{Info, Kind};
use tonic::Code;

use crate::client::{check_info, expect_code, gc_root_labels, labels, Harness};
use crate::fstest::{check_trees_equal, create_file};
use crate::harness::PluginSpec;

/// Stat, Mounts, Remove, Update, Usage and Commit of a key that does not exist: NotFound.
pub async fn unknown_key(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let s = &h.snap;
    // Something else exists, so "not found" is not "empty store".
    s.prepare("exists", "").await?;
    let missing = "does-not-exist";
    expect_code(
        s.try_stat(missing).await,
        Code::NotFound,
        "Stat of an unknown key",
    )?;
    expect_code(
        s.try_mounts(missing).await,
        Code::NotFound,
        "Mounts of an unknown key",
    )?;
    expect_code(
        s.try_remove(missing).await,
        Code::NotFound,
        "Remove of an unknown key",
    )?;
    let info = Info {
        name: missing.into(),
        labels: labels(&[("a", "b")]),
        ..Default::default()
    };
    expect_code(
        s.try_update(info, None).await,
        Code::NotFound,
        "Update of an unknown key",
    )?;
    expect_code(
        s.try_usage(missing).await,
        Code::NotFound,
        "Usage of an unknown key",
    )?;
    expect_code(
        s.try_commit("new-name", missing, gc_root_labels()).await,
        Code::NotFound,
        "Commit of an unknown key",
    )?;
    expect_code(
        s.try_stat("new-name").await,
        Code::NotFound,
        "Stat of the name a failed Commit would have made",
    )?;
    check_info(&s.stat("exists").await?, "exists", "", Kind::Active)?;
    Ok(())
}

/// Prepare/View with a key that exists (active, view or committed) and Commit to an existing
/// name: AlreadyExists.
pub async fn duplicate_key(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let s = &h.snap;
    h.commit_layer("base", "", &[create_file("/f", "f", 0o644)])
        .await?;
    s.prepare("active", "base").await?;
    s.view("view", "base").await?;
    s.prepare("other", "").await?;
    for key in ["active", "view", "base"] {
        expect_code(
            s.try_prepare(key, "", gc_root_labels()).await,
            Code::AlreadyExists,
            &format!("Prepare with the existing key {key:?}"),
        )?;
        expect_code(
            s.try_view(key, "base", gc_root_labels()).await,
            Code::AlreadyExists,
            &format!("View with the existing key {key:?}"),
        )?;
    }
    for name in ["base", "active", "view"] {
        expect_code(
            s.try_commit(name, "other", gc_root_labels()).await,
            Code::AlreadyExists,
            &format!("Commit to the existing name {name:?}"),
        )?;
    }
    check_info(&s.stat("other").await?, "other", "", Kind::Active)
        .context("a refused Commit must leave the active snapshot alone")?;
    check_info(&s.stat("active").await?, "active", "base", Kind::Active)?;
    check_info(&s.stat("view").await?, "view", "base", Kind::View)?;
    check_info(&s.stat("base").await?, "base", "", Kind::Committed)?;
    h.check_consistent().await?;
    Ok(())
}

/// Prepare/View on a parent that is active or a view: InvalidArgument.
pub async fn uncommitted_parent(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let s = &h.snap;
    s.prepare("active", "").await?;
    s.view("view", "").await?;
    for parent in ["active", "view"] {
        expect_code(
            s.try_prepare("child", parent, gc_root_labels()).await,
            Code::InvalidArgument,
            &format!("Prepare on the uncommitted parent {parent:?}"),
        )?;
        expect_code(
            s.try_view("child", parent, gc_root_labels()).await,
            Code::InvalidArgument,
            &format!("View on the uncommitted parent {parent:?}"),
        )?;
        expect_code(
            s.try_stat("child").await,
            Code::NotFound,
            "Stat of the refused child",
        )?;
    }
    // The refused children must not block removing their would-be parents.
    s.remove("active").await?;
    s.remove("view").await?;
    h.check_consistent().await?;
    Ok(())
}

/// Prepare/View on a parent that does not exist: NotFound.
pub async fn missing_parent(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let s = &h.snap;
    expect_code(
        s.try_prepare("child", "no-such-parent", gc_root_labels())
            .await,
        Code::NotFound,
        "Prepare on a missing parent",
    )?;
    expect_code(
        s.try_view("child", "no-such-parent", gc_root_labels())
            .await,
        Code::NotFound,
        "View on a missing parent",
    )?;
    expect_code(
        s.try_stat("child").await,
        Code::NotFound,
        "Stat of the refused child",
    )?;
    s.prepare("child", "")
        .await
        .context("the key of a refused Prepare must stay free")?;
    h.check_consistent().await?;
    Ok(())
}

/// Commit of a View or of a committed snapshot: FailedPrecondition.
pub async fn commit_not_active(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let s = &h.snap;
    h.commit_layer("base", "", &[create_file("/f", "f", 0o644)])
        .await?;
    s.view("view", "base").await?;
    expect_code(
        s.try_commit("from-view", "view", gc_root_labels()).await,
        Code::FailedPrecondition,
        "Commit of a View",
    )?;
    expect_code(
        s.try_commit("from-committed", "base", gc_root_labels())
            .await,
        Code::FailedPrecondition,
        "Commit of a committed snapshot",
    )?;
    for name in ["from-view", "from-committed"] {
        expect_code(
            s.try_stat(name).await,
            Code::NotFound,
            "Stat of a refused Commit's name",
        )?;
    }
    check_info(&s.stat("view").await?, "view", "base", Kind::View)?;
    h.check_consistent().await?;
    Ok(())
}

/// Mounts of a committed snapshot: FailedPrecondition.
pub async fn mounts_committed(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    h.commit_layer("base", "", &[create_file("/f", "f", 0o644)])
        .await?;
    expect_code(
        h.snap.try_mounts("base").await,
        Code::FailedPrecondition,
        "Mounts of a committed snapshot",
    )?;
    Ok(())
}

/// Remove of a snapshot with children (active, view or committed): FailedPrecondition with
/// "remove" in the message; the snapshot and its content survive.
pub async fn remove_with_children(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let s = &h.snap;
    let flat = h.flat_dir()?;
    let content = [create_file("/f", "f", 0o644)];
    crate::fstest::apply(&flat, &content)?;
    h.commit_layer("base", "", &content).await?;
    for (child, make) in [
        ("child-active", 0),
        ("child-view", 1),
        ("child-committed", 2),
    ] {
        match make {
            0 => drop(s.prepare(child, "base").await?),
            1 => drop(s.view(child, "base").await?),
            _ => h.commit_layer(child, "base", &[]).await?,
        }
        let status = expect_code(
            s.try_remove("base").await,
            Code::FailedPrecondition,
            &format!("Remove of a parent with the child {child:?}"),
        )?;
        ensure!(
            status.message().contains("remove"),
            "the remove-with-children message must contain \"remove\", got {:?}",
            status.message()
        );
        let mounts = s.view("check-view", "base").await?;
        let guard = h.mount(&mounts)?;
        check_trees_equal(&flat, guard.path())
            .context("the refused Remove must keep the content")?;
        guard.unmount()?;
        s.remove("check-view").await?;
        s.remove(child).await?;
    }
    s.remove("base").await?;
    h.check_consistent().await?;
    Ok(())
}

/// Filters that do not parse: InvalidArgument.
pub async fn bad_filter(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    h.snap.prepare("a", "").await?;
    for filter in [
        "name==",
        "==a",
        r#"labels."unterminated"#,
        "name==a,",
        "kind==active name==a",
    ] {
        expect_code(
            h.snap.try_list(&[filter]).await,
            Code::InvalidArgument,
            &format!("List with the malformed filter {filter:?}"),
        )?;
        // One bad filter among good ones still fails.
        expect_code(
            h.snap.try_list(&["name==a", filter]).await,
            Code::InvalidArgument,
            &format!("List with a good filter and the malformed {filter:?}"),
        )?;
    }
    Ok(())
}

/// Update with a path naming an immutable (or unknown) field: InvalidArgument, nothing changed.
pub async fn immutable_update(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let s = &h.snap;
    h.commit_layer("base", "", &[]).await?;
    s.prepare("active", "base").await?;
    let before = s.stat("active").await?;
    for path in [
        "parent",
        "name",
        "kind",
        "created_at",
        "updated_at",
        "bogus",
    ] {
        let mut req = before.clone();
        req.parent = String::new();
        req.name = "active".into();
        req.labels = labels(&[("x", "y")]);
        expect_code(
            s.try_update(req.clone(), Some(&[path])).await,
            Code::InvalidArgument,
            &format!("Update with the path {path:?}"),
        )?;
        expect_code(
            s.try_update(req, Some(&["labels.x", path])).await,
            Code::InvalidArgument,
            &format!("Update with the paths labels.x and {path:?}"),
        )?;
        let after = s.stat("active").await?;
        ensure!(
            after == before,
            "a refused Update (path {path:?}) must change nothing:\n  before {before:?}\n  after  {after:?}"
        );
    }
    Ok(())
}

/// A label pair longer than 4096 bytes (key plus value): InvalidArgument on Prepare, View,
/// Commit and Update; exactly 4096 bytes is fine.
pub async fn label_too_long(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let s = &h.snap;
    let key = "long";
    let fits = labels(&[(key, &"v".repeat(4096 - key.len()))]);
    let over = labels(&[(key, &"v".repeat(4097 - key.len()))]);
    h.commit_layer("base", "", &[]).await?;

    expect_code(
        s.try_prepare("p-over", "base", over.clone()).await,
        Code::InvalidArgument,
        "Prepare with a 4097-byte label pair",
    )?;
    expect_code(
        s.try_view("v-over", "base", over.clone()).await,
        Code::InvalidArgument,
        "View with a 4097-byte label pair",
    )?;
    for refused in ["p-over", "v-over"] {
        expect_code(
            s.try_stat(refused).await,
            Code::NotFound,
            "Stat of a refused snapshot",
        )?;
    }
    s.prepare_with("p-fits", "base", fits.clone())
        .await
        .context("a 4096-byte label pair is allowed")?;
    expect_code(
        s.try_commit("c-over", "p-fits", over.clone()).await,
        Code::InvalidArgument,
        "Commit with a 4097-byte label pair",
    )?;
    check_info(&s.stat("p-fits").await?, "p-fits", "base", Kind::Active)?;
    let mut req = s.stat("p-fits").await?;
    req.labels = over;
    expect_code(
        s.try_update(req, None).await,
        Code::InvalidArgument,
        "Update with a 4097-byte label pair",
    )?;
    let info = s.stat("p-fits").await?;
    ensure!(
        info.labels == fits,
        "a refused Update changed the labels to {:?}",
        info.labels
    );
    Ok(())
}

/// Keys as containerd's metadata layer sends them (`<ns>/<seq>/<key>`, with slashes and
/// spaces) work everywhere.
pub async fn containerd_keys(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let s = &h.snap;
    let extract = "default/12/extract-123 sha256:abc";
    let chain = "default/13/sha256:abc";
    let container = "default/14/my container";
    let flat = h.flat_dir()?;
    let content = [
        crate::fstest::create_dir("/etc", 0o755),
        create_file("/etc/os-release", "ID=test\n", 0o644),
    ];
    crate::fstest::apply(&flat, &content)?;
    let mounts = s
        .prepare_with(
            extract,
            "",
            labels(&[("containerd.io/snapshot.ref", "sha256:abc")]),
        )
        .await?;
    let guard = h.mount(&mounts)?;
    crate::fstest::apply(guard.path(), &content)?;
    guard.unmount()?;
    s.mounts(extract).await?;
    s.usage(extract).await?;
    s.commit_with(
        chain,
        extract,
        labels(&[("containerd.io/snapshot.ref", "sha256:abc")]),
    )
    .await?;
    let found = s
        .list(&[r#"labels."containerd.io/snapshot.ref"==sha256:abc,parent=="""#])
        .await?;
    ensure!(
        found.len() == 1 && found[0].name == chain,
        "the remote-snapshot lookup filter must find {chain:?}, got {found:?}"
    );
    s.prepare(container, chain).await?;
    check_info(&s.stat(container).await?, container, chain, Kind::Active)?;
    let mounts = s.mounts(container).await?;
    let guard = h.mount(&mounts)?;
    check_trees_equal(&flat, guard.path()).context("the container snapshot's content")?;
    guard.unmount()?;
    let mut info = s.stat(container).await?;
    info.labels = labels(&[("k", "v")]);
    s.update(info, Some(&["labels.k"])).await?;
    s.remove(container).await?;
    s.remove(chain).await?;
    let left = s.list(&[]).await?;
    ensure!(left.is_empty(), "List after removing everything: {left:?}");
    Ok(())
}

/// Keys are opaque strings: path-like, dotted, multi-line, non-ASCII and long keys all work,
/// as keys and as committed names and parents.
pub async fn odd_keys(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let s = &h.snap;
    let long = "k".repeat(2000);
    let keys = [
        "../../../../etc/strata-escape",
        "/",
        ".",
        "..",
        "a\nb\tc",
        "ключ 键 🔑",
        "labels.l==2,kind==view",
        long.as_str(),
    ];
    for (i, key) in keys.iter().enumerate() {
        let name = format!("{key}#committed");
        s.prepare(key, "")
            .await
            .with_context(|| format!("key #{i}"))?;
        s.commit(&name, key)
            .await
            .with_context(|| format!("key #{i}"))?;
        s.prepare(key, &name)
            .await
            .with_context(|| format!("key #{i} reused on its own commit"))?;
        check_info(&s.stat(key).await?, key, &name, Kind::Active)?;
        let found = s.list(&[&format!("name=={}", quote_filter(key))]).await?;
        ensure!(
            found.len() == 1 && found[0].name == *key,
            "a quoted name filter must find key #{i} exactly, got {found:?}"
        );
    }
    ensure!(
        !std::path::Path::new("/etc/strata-escape").exists(),
        "a key made a file outside the plugin root"
    );
    let all = h.check_consistent().await?;
    ensure!(
        all.len() == 2 * keys.len(),
        "List must show every odd key and its commit, got {}",
        all.len()
    );
    for key in keys {
        s.remove(key).await?;
        s.remove(&format!("{key}#committed")).await?;
    }
    Ok(())
}

/// A filter value in double quotes, with `"` and `\` escaped and control characters as Go's
/// strconv.Quote writes them.
fn quote_filter(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
