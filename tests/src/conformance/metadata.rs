//! Metadata cases: PrepareView failing, Update, Remove (key and name reuse), Walk (List
//! filters), StatInWalk.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use prost_types::Timestamp;
use strata_proto::snapshots::snapshots_client::SnapshotsClient;
use strata_proto::snapshots::{Info, Kind, ListSnapshotsRequest};
use tonic::Code;

use crate::client::{
    check_info, expect_code, gc_root_labels, kind_of, labels, time_of, Harness, Labels, SNAPSHOTTER,
};
use crate::fstest::create_file;
use crate::harness::PluginSpec;

/// PrepareView failing: a key can be used once, whatever mix of Prepare and View.
pub async fn prepare_view_failing(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let snap = &h.snap;
    h.commit_layer("committed", "", &[create_file("/foo", "foo\n", 0o644)])
        .await?;

    snap.prepare("k1", "committed").await?;
    expect_code(
        snap.try_view("k1", "committed", gc_root_labels()).await,
        Code::AlreadyExists,
        "View with the key of an active snapshot",
    )?;
    snap.prepare("k2", "committed").await?;
    expect_code(
        snap.try_prepare("k2", "committed", gc_root_labels()).await,
        Code::AlreadyExists,
        "Prepare twice with one key",
    )?;
    snap.view("k3", "committed").await?;
    expect_code(
        snap.try_view("k3", "committed", gc_root_labels()).await,
        Code::AlreadyExists,
        "View twice with one key",
    )?;
    expect_code(
        snap.try_prepare("committed", "", gc_root_labels()).await,
        Code::AlreadyExists,
        "Prepare with the name of a committed snapshot (one key space)",
    )?;
    // The failed calls must not have changed the originals.
    check_info(&snap.stat("k1").await?, "k1", "committed", Kind::Active)?;
    check_info(&snap.stat("k2").await?, "k2", "committed", Kind::Active)?;
    check_info(&snap.stat("k3").await?, "k3", "committed", Kind::View)?;
    check_info(
        &snap.stat("committed").await?,
        "committed",
        "",
        Kind::Committed,
    )?;
    Ok(())
}

fn ts_in(t: SystemTime, from: SystemTime, to: SystemTime) -> bool {
    t >= from && t <= to
}

/// Checks an Update result: identity unchanged, Created unchanged, Updated within the call.
fn check_updated(
    got: &Info,
    before: &Info,
    want_labels: &Labels,
    call: (SystemTime, SystemTime),
    what: &str,
) -> Result<()> {
    check_info(got, &before.name, &before.parent, kind_of(before))
        .with_context(|| format!("{what}: name, parent and kind must not change"))?;
    ensure!(
        got.created_at == before.created_at,
        "{what}: Created must not change: was {:?}, now {:?}",
        before.created_at,
        got.created_at
    );
    let updated = time_of(&got.updated_at, "updated_at")?;
    ensure!(
        ts_in(updated, call.0, call.1),
        "{what}: Updated {updated:?} must lie within the call [{:?}, {:?}]",
        call.0,
        call.1
    );
    ensure!(
        &got.labels == want_labels,
        "{what}: labels: want {want_labels:?}, got {:?}",
        got.labels
    );
    Ok(())
}

/// Update: creation times, label replacement, per-label paths, and immutable paths.
pub async fn update(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let snap = &h.snap;

    let t1 = SystemTime::now();
    snap.prepare("c1-active", "").await?;
    snap.commit("c1", "c1-active").await?;
    snap.prepare("c2-active", "c1").await?;
    snap.commit("c2", "c2-active").await?;
    snap.prepare("a1", "c2").await?;
    snap.prepare("a2", "").await?;
    snap.view("v1", "c2").await?;
    snap.view("v2", "").await?;
    let t2 = SystemTime::now();

    let cases = [
        ("c1", "", Kind::Committed),
        ("c2", "c1", Kind::Committed),
        ("a1", "c2", Kind::Active),
        ("a2", "", Kind::Active),
        ("v1", "c2", Kind::View),
        ("v2", "", Kind::View),
    ];
    for (i, (name, parent, kind)) in cases.into_iter().enumerate() {
        let st = snap.stat(name).await?;
        check_info(&st, name, parent, kind)?;
        let created = time_of(&st.created_at, "created_at")?;
        ensure!(
            ts_in(created, t1, t2),
            "{name}: Created {created:?} must lie within the setup window [{t1:?}, {t2:?}]"
        );
        ensure!(
            st.created_at == st.updated_at,
            "{name}: Created and Updated must be equal at creation: {:?} vs {:?}",
            st.created_at,
            st.updated_at
        );

        // No paths: labels are replaced; name, parent, kind and created in the request are
        // ignored. Alternate between no mask and a present, empty mask (containerd 1.6).
        let mut req = st.clone();
        req.parent = "doesnotexist".into();
        req.kind = if kind == Kind::Committed {
            Kind::Active
        } else {
            Kind::Committed
        } as i32;
        req.created_at = Some(Timestamp {
            seconds: 1,
            nanos: 0,
        });
        req.labels = labels(&[("l1", "v1"), ("l2", "v2")]);
        let empty: &[&str] = &[];
        let mask = if i % 2 == 0 { None } else { Some(empty) };
        let t3 = SystemTime::now();
        let got = snap.update(req, mask).await?;
        let t4 = SystemTime::now();
        let want = labels(&[("l1", "v1"), ("l2", "v2")]);
        check_updated(
            &got,
            &st,
            &want,
            (t3, t4),
            &format!("{name}: Update with mask {mask:?}"),
        )?;
        let stat = snap.stat(name).await?;
        ensure!(
            stat == got,
            "{name}: Update must return the stored Info:\n  update {got:?}\n  stat   {stat:?}"
        );

        // labels.<k> paths: l1 is set, l2 (missing from the request) is deleted, l3 (not in
        // the paths) is ignored.
        let mut req = got.clone();
        req.labels = labels(&[("l1", "updated"), ("l3", "v3")]);
        let t3 = SystemTime::now();
        let got = snap.update(req, Some(&["labels.l1", "labels.l2"])).await?;
        let t4 = SystemTime::now();
        let want = labels(&[("l1", "updated")]);
        check_updated(
            &got,
            &st,
            &want,
            (t3, t4),
            &format!("{name}: Update labels.l1,labels.l2"),
        )?;

        // An empty value deletes too.
        let mut req = got.clone();
        req.labels = labels(&[("l1", "")]);
        let t3 = SystemTime::now();
        let got = snap.update(req, Some(&["labels.l1"])).await?;
        let t4 = SystemTime::now();
        check_updated(
            &got,
            &st,
            &Labels::new(),
            (t3, t4),
            &format!("{name}: Update labels.l1 to \"\""),
        )?;

        // The labels path replaces all.
        let mut req = got.clone();
        req.labels = labels(&[("l4", "v4"), ("l5", "v5")]);
        let t3 = SystemTime::now();
        let got = snap.update(req, Some(&["labels"])).await?;
        let t4 = SystemTime::now();
        let want = labels(&[("l4", "v4"), ("l5", "v5")]);
        check_updated(
            &got,
            &st,
            &want,
            (t3, t4),
            &format!("{name}: Update labels"),
        )?;

        // Immutable fields.
        let mut req = got.clone();
        req.parent = "doesnotexist".into();
        expect_code(
            snap.try_update(req, Some(&["parent"])).await,
            Code::InvalidArgument,
            &format!("{name}: Update with path \"parent\""),
        )?;
        let stat = snap.stat(name).await?;
        ensure!(
            stat == got,
            "{name}: a refused Update must change nothing:\n  before {got:?}\n  after  {stat:?}"
        );

        // What containerd's metadata layer sends (§1.6): only the name and the inherited
        // labels (kind UNKNOWN, no parent, no times), with the client's paths.
        let inherited = "containerd.io/snapshot/cri.layer-digest";
        let req = Info {
            name: name.into(),
            labels: labels(&[(inherited, "sha256:abc")]),
            ..Default::default()
        };
        let path = format!("labels.{inherited}");
        let t3 = SystemTime::now();
        let got = snap.update(req, Some(&[path.as_str()])).await?;
        let t4 = SystemTime::now();
        let want = labels(&[("l4", "v4"), ("l5", "v5"), (inherited, "sha256:abc")]);
        check_updated(
            &got,
            &st,
            &want,
            (t3, t4),
            &format!("{name}: Update as containerd's metadata layer sends it"),
        )?;

        // Filters see updated labels, and no longer see replaced ones.
        let found = snap.list(&[&format!("name=={name},labels.l4==v4")]).await?;
        ensure!(
            found.len() == 1 && found[0] == got,
            "{name}: List by a label set with Update must find it as Stat shows it, got {found:?}"
        );
        let found = snap.list(&[&format!("name=={name},labels.l1")]).await?;
        ensure!(
            found.is_empty(),
            "{name}: List by a label removed with Update must not find it, got {found:?}"
        );
    }
    Ok(())
}

/// Remove: keys and names can be reused once removed.
pub async fn remove(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let snap = &h.snap;
    snap.prepare("committed-a", "").await?;
    snap.commit("committed-1", "committed-a").await?;

    snap.prepare("reuse-1", "committed-1").await?;
    snap.remove("reuse-1").await?;
    snap.view("reuse-1", "committed-1")
        .await
        .context("a removed active key must be reusable for a View")?;
    snap.remove("reuse-1").await?;
    snap.prepare("reuse-1", "")
        .await
        .context("a removed view key must be reusable for Prepare")?;
    snap.remove("committed-1")
        .await
        .context("committed-1 has no children left")?;
    snap.commit("committed-1", "reuse-1")
        .await
        .context("a removed committed name must be reusable")?;

    check_info(
        &snap.stat("committed-1").await?,
        "committed-1",
        "",
        Kind::Committed,
    )?;
    expect_code(
        snap.try_stat("reuse-1").await,
        Code::NotFound,
        "Stat of reuse-1 after it was committed",
    )?;
    let all = h.check_consistent().await?;
    let names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
    ensure!(
        names == ["committed-1"],
        "List after the reuse dance: {names:?}"
    );
    Ok(())
}

/// The 8 snapshots of the Walk case.
async fn walk_fixture(h: &Harness) -> Result<()> {
    let snap = &h.snap;
    let gc = ("containerd.io/gc.root", "check-walk");
    let opt = || labels(&[gc]);
    snap.prepare_with("a-np", "", opt()).await?;
    snap.prepare_with("p-tmp", "", opt()).await?;
    snap.commit_with("p", "p-tmp", opt()).await?;
    snap.prepare_with("a", "p", opt()).await?;
    snap.view_with("v", "p", opt()).await?;
    snap.prepare_with("p-wl-tmp", "", opt()).await?;
    snap.commit_with("p-wl", "p-wl-tmp", labels(&[("l", "1"), gc]))
        .await?;
    snap.prepare_with("a-wl", "p-wl", labels(&[("l", "2"), gc]))
        .await?;
    snap.view_with("v-wl", "p-wl", labels(&[("l", "3"), gc]))
        .await?;
    snap.prepare_with("a-np-wl", "", labels(&[("l", "2"), gc]))
        .await?;
    Ok(())
}

/// Walk: List filters over 8 snapshots: containerd's 10 cases, then the rest of the filter
/// language of §1.4 (regex, `!=` on absent fields, quoting, presence, OR).
pub async fn walk(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    walk_fixture(&h).await?;
    let gc = r#"labels."containerd.io/gc.root"==check-walk"#;
    let all = ["a-np", "p", "a", "v", "p-wl", "a-wl", "v-wl", "a-np-wl"];
    let active_gc = format!("kind==active,{gc}");
    let view_gc = format!("kind==view,{gc}");
    let committed_gc = format!("kind==committed,{gc}");
    let parent_gc = format!(r#"parent!="",{gc}"#);
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        // containerd's cases
        (vec![gc], all.to_vec()),
        (vec![&active_gc], vec!["a-np", "a", "a-wl", "a-np-wl"]),
        (vec![&view_gc], vec!["v", "v-wl"]),
        (vec![&committed_gc], vec!["p", "p-wl"]),
        (vec!["name==p", "name==a-np-wl"], vec!["p", "a-np-wl"]),
        (vec!["name==a-wl,labels.l"], vec!["a-wl"]),
        (vec!["parent==p"], vec!["a", "v"]),
        (vec![&parent_gc], vec!["a", "v", "a-wl", "v-wl"]),
        (vec!["labels.l"], vec!["p-wl", "a-wl", "v-wl", "a-np-wl"]),
        (vec!["labels.l==2"], vec!["a-wl", "a-np-wl"]),
        // the rest of the filter language
        (vec![], all.to_vec()),
        (vec!["name"], all.to_vec()),
        (vec!["name~=^a-"], vec!["a-np", "a-wl", "a-np-wl"]),
        (
            vec!["labels.l!=2"],
            vec!["a-np", "p", "a", "v", "p-wl", "v-wl"],
        ),
        (vec![r#"labels.l=="1""#], vec!["p-wl"]),
        (vec![r#"labels."l"==3"#], vec!["v-wl"]),
        (vec!["parent==\"\""], vec!["a-np", "p", "p-wl", "a-np-wl"]),
        (
            vec!["kind==committed", "kind==view"],
            vec!["p", "p-wl", "v", "v-wl"],
        ),
        (vec!["kind==view", "name==v"], vec!["v", "v-wl"]),
        (vec!["labels.nope"], vec![]),
        (vec!["name==p,kind==active"], vec![]),
    ];
    // Labels given at Prepare, View and Commit are stored as given (a commit's own labels).
    let gc_pair = ("containerd.io/gc.root", "check-walk");
    for info in h.snap.list(&[]).await? {
        let want = match info.name.as_str() {
            "p-wl" => labels(&[("l", "1"), gc_pair]),
            "a-wl" | "a-np-wl" => labels(&[("l", "2"), gc_pair]),
            "v-wl" => labels(&[("l", "3"), gc_pair]),
            _ => labels(&[gc_pair]),
        };
        ensure!(
            info.labels == want,
            "labels of {:?}: want {want:?}, got {:?}",
            info.name,
            info.labels
        );
    }
    for (filters, want) in cases {
        let got = h.snap.list(&filters).await?;
        let mut names: Vec<&str> = got.iter().map(|i| i.name.as_str()).collect();
        names.sort_unstable();
        let mut want_sorted = want.clone();
        want_sorted.sort_unstable();
        ensure!(
            names == want_sorted,
            "List with filters {filters:?}: want {want_sorted:?}, got {names:?}"
        );
        for info in &got {
            let stat = h.snap.stat(&info.name).await?;
            ensure!(
                &stat == info,
                "List (filters {filters:?}) and Stat must agree exactly for {:?}:\n  list {info:?}\n  stat {stat:?}",
                info.name
            );
        }
    }
    Ok(())
}

/// StatInWalk: Stat works while a List stream is open (no deadlock), and agrees with it.
pub async fn stat_in_walk(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    walk_fixture(&h).await?;
    // More snapshots, so a plugin that batches may need several messages.
    for i in 0..40 {
        h.snap
            .prepare_with(&format!("extra-{i}"), "p", labels(&[("n", &i.to_string())]))
            .await?;
    }
    let mut stream = h
        .snap
        .raw()
        .list(ListSnapshotsRequest {
            snapshotter: SNAPSHOTTER.into(),
            filters: Vec::new(),
        })
        .await
        .context("open a List stream")?
        .into_inner();
    let mut seen = BTreeSet::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .context("the List stream stalled while Stat calls were made")?
            .context("read the List stream")?;
        let Some(batch) = next else { break };
        for info in batch.info {
            let stat = tokio::time::timeout(Duration::from_secs(10), h.snap.stat(&info.name))
                .await
                .with_context(|| {
                    format!(
                        "Stat({:?}) inside an open List stream hung (deadlock?)",
                        info.name
                    )
                })??;
            ensure!(
                stat == info,
                "Stat inside List must agree exactly for {:?}:\n  list {info:?}\n  stat {stat:?}",
                info.name
            );
            if !seen.insert(info.name.clone()) {
                bail!("List returned {:?} twice", info.name);
            }
        }
    }
    ensure!(
        seen.len() == 48,
        "List must show 48 snapshots, got {}: {seen:?}",
        seen.len()
    );
    Ok(())
}

/// Commit: the committed snapshot gets the commit's labels (not the active one's), and its
/// Created and Updated are reset to the commit time (equal to each other).
pub async fn commit_info(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let snap = &h.snap;
    snap.prepare_with(
        "active",
        "",
        labels(&[("from-prepare", "1"), ("shared", "prepare")]),
    )
    .await?;
    let mut info = snap.stat("active").await?;
    info.labels = labels(&[("from-update", "1")]);
    snap.update(info, Some(&["labels.from-update"])).await?;
    // Make sure the commit time differs from the prepare time.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t1 = SystemTime::now();
    snap.commit_with(
        "committed",
        "active",
        labels(&[("from-commit", "1"), ("shared", "commit")]),
    )
    .await?;
    let t2 = SystemTime::now();
    let got = snap.stat("committed").await?;
    check_info(&got, "committed", "", Kind::Committed)?;
    let want = labels(&[("from-commit", "1"), ("shared", "commit")]);
    ensure!(
        got.labels == want,
        "Commit must replace the labels with its own: want {want:?}, got {:?}",
        got.labels
    );
    let created = time_of(&got.created_at, "created_at")?;
    ensure!(
        ts_in(created, t1, t2),
        "Commit must reset Created to the commit time: {created:?} is not within [{t1:?}, {t2:?}]"
    );
    ensure!(
        got.created_at == got.updated_at,
        "Created and Updated must be equal after Commit: {:?} vs {:?}",
        got.created_at,
        got.updated_at
    );
    // A commit without labels leaves none.
    snap.prepare("active-2", "committed").await?;
    snap.commit_with("committed-2", "active-2", Labels::new())
        .await?;
    let got = snap.stat("committed-2").await?;
    ensure!(
        got.labels.is_empty(),
        "Commit without labels must leave none, got {:?}",
        got.labels
    );
    Ok(())
}

/// Usage: a snapshot counts only its own content, not its parents'.
pub async fn usage(spec: PluginSpec) -> Result<()> {
    const MIB: i64 = 1 << 20;
    let h = Harness::start(&spec).await?;
    let snap = &h.snap;
    let big = vec![0x5au8; 4 << 20];
    h.commit_layer("parent", "", &[create_file("/big", &big, 0o644)])
        .await?;
    let (size, _) = snap.usage("parent").await?;
    ensure!(
        size >= 4 * MIB,
        "Usage of a committed snapshot holding a 4 MiB file: want at least 4 MiB, got {size} bytes"
    );

    let mounts = snap.prepare("child", "parent").await?;
    let (fresh, _) = snap.usage("child").await?;
    if spec.layered {
        ensure!(
            fresh < MIB,
            "Usage of a fresh child must not count its parent's 4 MiB, got {fresh} bytes"
        );
    }
    let guard = h.mount(&mounts)?;
    crate::fstest::apply(
        guard.path(),
        &[
            create_file("/one-mib", vec![0xa5u8; 1 << 20], 0o644),
            crate::fstest::create_dir("/d", 0o755),
            create_file("/d/small", "x", 0o644),
        ],
    )?;
    guard.unmount()?;
    let (size, inodes) = snap.usage("child").await?;
    ensure!(
        size - fresh >= MIB,
        "Usage of a child must grow by the 1 MiB written into it: {fresh} bytes before, {size} after"
    );
    if spec.layered {
        ensure!(
            size < 4 * MIB,
            "Usage of a child holding 1 MiB of its own must not count its parent's 4 MiB, got {size} bytes"
        );
    }
    ensure!(
        inodes >= 3,
        "Usage of a child with two files and a dir: want at least 3 inodes, got {inodes}"
    );

    // Hard links are counted once, as containerd's disk usage does.
    let mounts = snap.mounts("child").await?;
    let guard = h.mount(&mounts)?;
    let links: Vec<_> = (0..10)
        .map(|i| crate::fstest::link("/one-mib", &format!("/d/link-{i}")))
        .collect();
    crate::fstest::apply(guard.path(), &links)?;
    guard.unmount()?;
    let (linked, linked_inodes) = snap.usage("child").await?;
    ensure!(
        linked < size + MIB / 2,
        "Usage must count a hard-linked file once: {size} bytes before 10 links to a 1 MiB file, \
         {linked} after"
    );
    ensure!(
        linked_inodes == inodes,
        "Usage must count a hard-linked inode once: {inodes} inodes before 10 links, {linked_inodes} after"
    );
    Ok(())
}

/// Snapshots in [`list_large`].
pub const LARGE_LIST: usize = 500;

/// List of more data than one gRPC message may carry: 500 snapshots with ten 4000-byte labels
/// each (about 20 MB) must arrive in batches a client with containerd's 16 MiB message limit
/// can read, all of them, each equal to its Stat.
pub async fn list_large(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let value = "v".repeat(4000);
    let many: Labels = (0..10)
        .map(|i| (format!("big-{i}"), value.clone()))
        .collect();
    for i in 0..LARGE_LIST {
        h.snap
            .try_view(&format!("view-{i:04}"), "", many.clone())
            .await
            .map_err(|s| crate::client::status_error(s, &format!("View(view-{i:04})")))?;
    }
    let client =
        SnapshotsClient::new(h.plugin.connect().await?).max_decoding_message_size(16 << 20);
    let mut stream = client
        .clone()
        .list(ListSnapshotsRequest {
            snapshotter: SNAPSHOTTER.into(),
            filters: Vec::new(),
        })
        .await
        .context("open a List stream")?
        .into_inner();
    let mut seen = BTreeSet::new();
    while let Some(batch) = stream
        .message()
        .await
        .context("read the List stream with containerd's 16 MiB message limit (send batches)")?
    {
        for info in batch.info {
            ensure!(
                info.labels == many,
                "{:?}: the ten big labels did not come back intact",
                info.name
            );
            seen.insert(info.name);
        }
    }
    ensure!(
        seen.len() == LARGE_LIST,
        "List must show all {LARGE_LIST} snapshots, got {}",
        seen.len()
    );
    let stat = h.snap.stat("view-0042").await?;
    ensure!(
        stat.labels == many,
        "Stat of a snapshot with big labels lost some"
    );
    Ok(())
}
