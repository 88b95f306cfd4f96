//! Concurrency: 8 clients on their own connections prepare, commit and remove at once, and race
//! for one key and one committed name; afterwards the store must be exactly what the clients
//! believe it is, and consistent.

use std::collections::{BTreeSet, HashMap};

use anyhow::{anyhow, bail, ensure, Context, Result};
use strata_proto::snapshots::snapshots_client::SnapshotsClient;
use strata_proto::snapshots::Info;
use tonic::Code;

use crate::client::{gc_root_labels, Harness, Snap};
use crate::fstest::{apply, create_file};
use crate::harness::PluginSpec;

/// Clients running at once.
pub const CLIENTS: usize = 8;
/// Rounds each client runs.
pub const ROUNDS: usize = 7;

/// What one client did.
#[derive(Debug, Default)]
struct Outcome {
    /// Snapshots this client made that still exist.
    exists: BTreeSet<String>,
    /// It won the race to Prepare "contended".
    won_key: bool,
    /// It won the race to Commit as "winner".
    won_name: bool,
}

async fn client_work(h_mounts: MountCtx, snap: Snap, id: usize) -> Result<Outcome> {
    let mut out = Outcome::default();
    let mut children: HashMap<String, usize> = HashMap::new();
    let mut last_committed: Option<String> = None;
    for round in 0..ROUNDS {
        let key = format!("c{id}/active {round}");
        let parent = match (round % 2, &last_committed) {
            (1, Some(prev)) => prev.clone(),
            _ => "shared-base".to_owned(),
        };
        let mounts = snap.prepare(&key, &parent).await?;
        if round == 0 {
            // One real write per client, through a mount, while the others work.
            h_mounts.write_file(&mounts, &format!("/c{id}"))?;
        }
        match round % 3 {
            0 => {
                let name = format!("c{id}/committed {round}");
                snap.commit(&name, &key).await?;
                *children.entry(parent.clone()).or_default() += 1;
                out.exists.insert(name.clone());
                last_committed = Some(name);
            }
            1 => snap.remove(&key).await?,
            _ => {
                *children.entry(parent.clone()).or_default() += 1;
                out.exists.insert(key);
            }
        }
    }
    // Remove this client's committed snapshots that have no children.
    let leaves: Vec<String> = out
        .exists
        .iter()
        .filter(|n| n.contains("/committed ") && children.get(*n).copied().unwrap_or(0) == 0)
        .cloned()
        .collect();
    for leaf in leaves {
        snap.remove(&leaf).await?;
        out.exists.remove(&leaf);
    }

    // Race for one key.
    match snap.try_prepare("contended", "shared-base", gc_root_labels()).await {
        Ok(_) => out.won_key = true,
        Err(s) if s.code() == Code::AlreadyExists => {}
        Err(s) => {
            return Err(anyhow!(
                "client {id}: racing Prepare(contended) must succeed or give AlreadyExists, got {:?}: {}",
                s.code(),
                s.message()
            ))
        }
    }
    // Race for one committed name.
    let mine = format!("c{id}/for-winner");
    snap.prepare(&mine, "shared-base").await?;
    match snap.try_commit("winner", &mine, gc_root_labels()).await {
        Ok(()) => out.won_name = true,
        Err(s) if s.code() == Code::AlreadyExists => {
            out.exists.insert(mine);
        }
        Err(s) => {
            return Err(anyhow!(
            "client {id}: racing Commit(winner) must succeed or give AlreadyExists, got {:?}: {}",
            s.code(),
            s.message()
        ))
        }
    }
    Ok(out)
}

/// Lists and Stats while the writers work: every List has no duplicates and shows the parent
/// of every snapshot it shows (parents here are never removed while they have children), and
/// Stat of a listed snapshot gives the same Info or NotFound (removed since). Returns the
/// number of complete Lists.
async fn reader_work(snap: Snap, stop: tokio::sync::watch::Receiver<bool>) -> Result<usize> {
    let mut lists = 0;
    // At least one List, even if the writers were faster than this task's start.
    while lists == 0 || !*stop.borrow() {
        let all = snap.list(&[]).await?;
        let names: BTreeSet<&str> = all.iter().map(|i| i.name.as_str()).collect();
        ensure!(
            names.len() == all.len(),
            "a List during concurrent changes returned a snapshot twice"
        );
        for info in &all {
            ensure!(
                info.parent.is_empty() || names.contains(info.parent.as_str()),
                "a List during concurrent changes shows {:?} but not its parent {:?}",
                info.name,
                info.parent
            );
        }
        for info in all.iter().take(8) {
            match snap.try_stat(&info.name).await {
                Ok(stat) => ensure!(
                    &stat == info,
                    "Stat during concurrent changes disagrees with List for {:?}:\n  list {info:?}\n  stat {stat:?}",
                    info.name
                ),
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => {
                    return Err(anyhow!(
                        "Stat({:?}) during concurrent changes: {:?}: {}",
                        info.name,
                        s.code(),
                        s.message()
                    ))
                }
            }
        }
        lists += 1;
    }
    Ok(lists)
}

/// Mount helper that can move into tasks.
#[derive(Debug, Clone)]
struct MountCtx {
    work: std::path::PathBuf,
}

impl MountCtx {
    fn write_file(&self, mounts: &[strata_proto::types::Mount], path: &str) -> Result<()> {
        let target = self
            .work
            .join(format!("conc-{}", path.trim_start_matches('/')));
        std::fs::create_dir(&target).with_context(|| format!("create {}", target.display()))?;
        let guard = crate::mounts::MountGuard::mount(mounts, &target)?;
        apply(
            guard.path(),
            &[create_file(path, "written concurrently\n", 0o644)],
        )?;
        guard.unmount()
    }
}

/// 8 clients at once; then List equals what they believe exists, each race had exactly one
/// winner, and the store is consistent (every snapshot Stats and mounts, Cleanup leaves
/// exactly their storage).
pub async fn concurrent_clients(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    h.commit_layer("shared-base", "", &[create_file("/base", "base\n", 0o644)])
        .await?;
    let ctx = MountCtx {
        work: h.sandbox.work().to_path_buf(),
    };
    let mut tasks = Vec::new();
    for id in 0..CLIENTS {
        let snap = Snap::new(SnapshotsClient::new(h.plugin.connect().await?));
        tasks.push(tokio::spawn(client_work(ctx.clone(), snap, id)));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reader_snap = Snap::new(SnapshotsClient::new(h.plugin.connect().await?));
    let reader = tokio::spawn(reader_work(reader_snap, stop_rx));
    let mut expected: BTreeSet<String> = ["shared-base", "contended", "winner"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let (mut key_winners, mut name_winners) = (0, 0);
    for (id, task) in tasks.into_iter().enumerate() {
        let out = task
            .await
            .with_context(|| format!("client {id} panicked"))?
            .with_context(|| format!("client {id}"))?;
        key_winners += usize::from(out.won_key);
        name_winners += usize::from(out.won_name);
        expected.extend(out.exists);
    }
    // Writers are done: stop the reader and see what it found.
    let _ = stop_tx.send(true);
    let lists = reader
        .await
        .context("the reader panicked")?
        .context("the reader")?;
    ensure!(
        lists > 0,
        "the reader never completed a List while the clients worked"
    );
    ensure!(
        key_winners == 1,
        "exactly one client must win Prepare(contended), {key_winners} did"
    );
    ensure!(
        name_winners == 1,
        "exactly one client must win Commit(winner), {name_winners} did"
    );
    let listed: BTreeSet<String> = h
        .snap
        .list(&[])
        .await?
        .into_iter()
        .map(|i| i.name)
        .collect();
    ensure!(
        listed == expected,
        "List must show exactly what the clients made:\n  missing {:?}\n  unexpected {:?}",
        expected.difference(&listed).collect::<Vec<_>>(),
        listed.difference(&expected).collect::<Vec<_>>()
    );
    h.check_consistent().await?;
    Ok(())
}

/// Rounds of [`remove_prepare_race`].
pub const RACE_ROUNDS: usize = 30;

/// Remove(parent) racing Prepare(child, parent): exactly one may win. Either the parent is
/// removed and the Prepare fails with NotFound, or the child exists and the Remove fails with
/// FailedPrecondition; never both (an orphaned child). Also Commit racing Commit of two actives
/// onto one name, and Remove racing Remove of one key.
pub async fn remove_prepare_race(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let other = Snap::new(SnapshotsClient::new(h.plugin.connect().await?));
    for round in 0..RACE_ROUNDS {
        let parent = format!("parent-{round}");
        let child = format!("child-{round}");
        h.commit_layer(&parent, "", &[]).await?;
        let (removed, prepared) = tokio::join!(
            h.snap.try_remove(&parent),
            other.try_prepare(&child, &parent, gc_root_labels())
        );
        match (&removed, &prepared) {
            (Ok(()), Err(s)) if s.code() == Code::NotFound => {}
            (Err(s), Ok(_)) if s.code() == Code::FailedPrecondition => {}
            _ => {
                return Err(anyhow!(
                    "round {round}: Remove({parent}) and Prepare({child}, {parent}) raced to \
                     {removed:?} and {prepared:?}; exactly one must win"
                ))
            }
        }

        let (a, b) = (format!("a-{round}"), format!("b-{round}"));
        h.snap.prepare(&a, "").await?;
        h.snap.prepare(&b, "").await?;
        let name = format!("name-{round}");
        let (ca, cb) = tokio::join!(
            h.snap.try_commit(&name, &a, gc_root_labels()),
            other.try_commit(&name, &b, gc_root_labels())
        );
        let wins = usize::from(ca.is_ok()) + usize::from(cb.is_ok());
        let lost = [&ca, &cb]
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|s| s.code() == Code::AlreadyExists);
        ensure!(
            wins == 1 && lost,
            "round {round}: two Commits to {name:?} raced to {ca:?} and {cb:?}; exactly one must \
             win and the other get AlreadyExists"
        );

        let loser = if ca.is_ok() { &b } else { &a };
        let (ra, rb) = tokio::join!(h.snap.try_remove(loser), other.try_remove(loser));
        let wins = usize::from(ra.is_ok()) + usize::from(rb.is_ok());
        let lost = [&ra, &rb]
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|s| s.code() == Code::NotFound);
        ensure!(
            wins == 1 && lost,
            "round {round}: two Removes of {loser:?} raced to {ra:?} and {rb:?}; exactly one must \
             win and the other get NotFound"
        );
    }
    h.check_consistent().await?;
    Ok(())
}

/// Update racing Commit and Remove of the same key: the Update may win or get NotFound, but
/// it must never bring the committed or removed key back.
pub async fn update_races(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let other = Snap::new(SnapshotsClient::new(h.plugin.connect().await?));
    for round in 0..RACE_ROUNDS {
        let key = format!("key-{round}");
        let name = format!("name-{round}");
        h.snap.prepare(&key, "").await?;
        let info = Info {
            name: key.clone(),
            labels: crate::client::labels(&[("x", "y")]),
            ..Default::default()
        };
        let (committed, updated) = tokio::join!(
            h.snap.try_commit(&name, &key, gc_root_labels()),
            other.try_update(info.clone(), Some(&["labels.x"]))
        );
        committed.map_err(|s| crate::client::status_error(s, "Commit racing Update"))?;
        match &updated {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => bail!(
                "round {round}: Update racing Commit: {:?}: {}",
                s.code(),
                s.message()
            ),
        }
        crate::client::expect_code(
            h.snap.try_stat(&key).await,
            Code::NotFound,
            &format!("round {round}: the committed key after an Update raced its Commit"),
        )?;
        let committed = h.snap.stat(&name).await?;
        ensure!(
            !committed.labels.contains_key("x"),
            "round {round}: an Update of the active key leaked into the committed snapshot: {:?}",
            committed.labels
        );

        let key = format!("gone-{round}");
        h.snap.prepare(&key, "").await?;
        let info = Info {
            name: key.clone(),
            ..info
        };
        let (removed, updated) = tokio::join!(
            h.snap.try_remove(&key),
            other.try_update(info, Some(&["labels.x"]))
        );
        removed.map_err(|s| crate::client::status_error(s, "Remove racing Update"))?;
        if let Err(s) = &updated {
            ensure!(
                s.code() == Code::NotFound,
                "round {round}: Update racing Remove: {:?}: {}",
                s.code(),
                s.message()
            );
        }
        crate::client::expect_code(
            h.snap.try_stat(&key).await,
            Code::NotFound,
            &format!("round {round}: the removed key after an Update raced its Remove"),
        )?;
    }
    h.check_consistent().await?;
    Ok(())
}
