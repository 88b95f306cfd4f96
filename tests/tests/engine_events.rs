//! End-to-end: `strata events` shows what happened to containers and images, in order, with
//! Docker's actions and attributes, filtered, from `--since`, and live.

mod lifecycle_support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use lifecycle_support::{check, engine, inspect, Lines};
use strata_tests::engine::{Engine, BUSYBOX};

/// One printed event.
#[derive(Debug, Clone)]
struct Ev {
    time: String,
    kind: String,
    action: String,
    id: String,
    attrs: BTreeMap<String, String>,
}

fn parse(line: &str) -> Result<Ev> {
    let mut it = line.splitn(5, ' ');
    let mut next = || it.next().context("short event line").map(str::to_string);
    let (time, kind, action, id) = (next()?, next()?, next()?, next()?);
    let rest = next()?;
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .with_context(|| format!("attributes of {line:?}"))?;
    let attrs = inner
        .split(", ")
        .filter(|a| !a.is_empty())
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(Ev {
        time,
        kind,
        action,
        id,
        attrs,
    })
}

/// Now as Unix seconds with nanoseconds, a form `--since` and `--until` take.
fn now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// The events from `since` until now, with `filters`.
fn events(e: &Engine, since: &str, filters: &[&str]) -> Result<Vec<Ev>> {
    let until = now();
    let mut args = vec!["events", "--since", since, "--until", &until];
    for f in filters {
        args.extend(["--filter", f]);
    }
    e.ok(&args)?.lines().map(parse).collect()
}

fn actions(evs: &[Ev]) -> Vec<&str> {
    evs.iter().map(|e| e.action.as_str()).collect()
}

#[test]
fn engine_events_of_a_container_in_order_filtered_and_since() {
    let e = engine();
    check((|| {
        let t0 = now();
        e.ok(&[
            "create",
            "--name",
            "ev",
            "-l",
            "team=blue",
            BUSYBOX,
            "sh",
            "-c",
            "exit 3",
        ])?;
        let id = inspect(&e, "ev")?["Id"].as_str().context("id")?.to_string();
        e.ok(&["start", "ev"])?;
        ensure!(e.ok(&["wait", "ev"])?.trim() == "3");
        e.ok(&["rename", "ev", "ev2"])?;
        e.ok(&["rm", "ev2"])?;
        let all = events(&e, &t0, &["type=container"])?;
        ensure!(
            actions(&all) == ["create", "start", "die", "rename", "destroy"],
            "{all:#?}"
        );
        for ev in &all {
            ensure!(ev.kind == "container" && ev.id == id, "{ev:?}");
            ensure!(ev.attrs["image"] == "busybox:latest" && ev.attrs["team"] == "blue");
        }
        ensure!(all[0].attrs["name"] == "ev" && all[4].attrs["name"] == "ev2");
        ensure!(all[2].attrs["exitCode"] == "3", "{:?}", all[2]);
        ensure!(all[3].attrs["oldName"] == "ev", "{:?}", all[3]);
        ensure!(all.windows(2).all(|w| w[0].time < w[1].time));

        let dies = events(&e, &t0, &["event=die"])?;
        ensure!(actions(&dies) == ["die"], "{dies:?}");
        let by_id = events(&e, &t0, &[&format!("container={}", &id[..12])])?;
        ensure!(by_id.len() == 5);
        ensure!(events(&e, &t0, &["label=team=blue"])?.len() == 5);
        ensure!(events(&e, &t0, &["label=team=red"])?.is_empty());
        let two = events(&e, &t0, &["event=start", "event=destroy"])?;
        ensure!(actions(&two) == ["start", "destroy"], "{two:?}");
        // --since an event's own time starts at that event.
        let from_die = events(&e, &all[2].time, &["type=container"])?;
        ensure!(
            actions(&from_die) == ["die", "rename", "destroy"],
            "{from_die:?}"
        );
        let (code, err) = e.fails(&["events", "--filter", "colour=red"])?;
        ensure!(
            code != 0 && err.lines().count() == 1 && err.contains("colour"),
            "{err}"
        );
        Ok(())
    })());
}

#[test]
fn engine_events_of_stop_kill_pause_restart_oom_and_images() {
    let e = engine();
    check((|| {
        let t0 = now();
        e.ok(&[
            "run",
            "-d",
            "--name",
            "busy",
            BUSYBOX,
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        ])?;
        e.ok(&["pause", "busy"])?;
        e.ok(&["unpause", "busy"])?;
        e.ok(&["kill", "-s", "USR2", "busy"])?;
        e.ok(&["restart", "busy"])?;
        e.ok(&["stop", "busy"])?;
        let evs = events(&e, &t0, &["container=busy"])?;
        ensure!(
            actions(&evs)
                == [
                    "create", "start", "pause", "unpause", "kill", "kill", "die", "stop", "start",
                    "restart", "kill", "die", "stop"
                ],
            "{:?}",
            actions(&evs)
        );
        ensure!(evs[4].attrs["signal"] == "12" && evs[5].attrs["signal"] == "15");
        ensure!(evs[6].attrs["exitCode"] == "0");

        // An OOM kill: oom, then die with 137.
        let t1 = now();
        let o = e.strata(&[
            "run",
            "--name",
            "hog",
            "-m",
            "16m",
            BUSYBOX,
            "sh",
            "-c",
            "x=y; while true; do x=$x$x; done",
        ])?;
        ensure!(o.status.code() == Some(137));
        let hog = events(&e, &t1, &["container=hog", "event=oom", "event=die"])?;
        ensure!(actions(&hog) == ["oom", "die"], "{hog:?}");
        ensure!(hog[1].attrs["exitCode"] == "137");

        // Commit, tag, untag, delete, save, load and import.
        let t2 = now();
        let image_id = e.ok(&["commit", "busy", "snap:v1"])?.trim().to_string();
        e.ok(&["tag", "snap:v1", "snap:v2"])?;
        e.ok(&["rmi", "snap:v2"])?;
        let archive = e.scratch("events")?.join("busybox.tar");
        e.ok(&["save", "-o", &archive.to_string_lossy(), BUSYBOX])?;
        e.ok(&["load", "-i", &archive.to_string_lossy()])?;
        e.ok(&["rmi", "snap:v1"])?;
        let rootfs = e.scratch("events")?.join("rootfs.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&rootfs)?);
        let mut h = tar::Header::new_gnu();
        h.set_size(6);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "hello", &b"hello\n"[..])?;
        b.finish()?;
        drop(b);
        let imported = e
            .ok(&["import", &rootfs.to_string_lossy(), "imported:v1"])?
            .trim()
            .to_string();
        let evs = events(&e, &t2, &[])?;
        let seen: Vec<String> = evs
            .iter()
            .map(|v| format!("{} {}", v.kind, v.action))
            .collect();
        ensure!(
            seen == [
                "image tag",
                "container commit",
                "image tag",
                "image untag",
                "image save",
                "image load",
                "image untag",
                "image delete",
                "image import"
            ],
            "{seen:?}"
        );
        ensure!(evs[0].id == image_id && evs[0].attrs["name"] == "snap:v1");
        ensure!(evs[1].attrs["imageID"] == image_id && evs[1].attrs["imageRef"] == "snap:v1");
        ensure!(evs[2].attrs["name"] == "snap:v2");
        ensure!(evs[7].id == image_id);
        ensure!(evs[8].id == imported);
        let busybox = evs[4].id.clone();
        ensure!(busybox.starts_with("sha256:") && evs[5].id == busybox);
        let images = events(&e, &t2, &["type=image", &format!("image={busybox}")])?;
        ensure!(actions(&images) == ["save", "load"], "{images:?}");
        Ok(())
    })());
}

#[test]
fn engine_events_stream_live() {
    let e = engine();
    check((|| {
        let stream = Lines::spawn(&e, &["events", "--filter", "type=container"])?;
        // The stream is open once it has shown an event: run containers until one shows, then
        // one more whose every event must come, in order.
        let mut got = Vec::new();
        let result = (|| -> Result<()> {
            let mut n = 0;
            while stream.next(Duration::from_millis(200)).is_none() {
                ensure!(n < 300, "no event from `strata events`");
                n += 1;
                e.ok(&["run", "--rm", BUSYBOX, "true"])?;
            }
            e.ok(&["run", "--rm", "--name", "watched", BUSYBOX, "true"])?;
            while got.last().map(|v: &Ev| v.action.as_str()) != Some("destroy") {
                let line = stream
                    .next(Duration::from_secs(60))
                    .context("no event within a minute")?;
                let ev = parse(&line)?;
                if ev.attrs.get("name").map(String::as_str) == Some("watched") {
                    got.push(ev);
                }
            }
            Ok(())
        })();
        drop(stream);
        result?;
        // As Docker's for `docker run --rm`: attached to its output before the start.
        ensure!(
            actions(&got) == ["create", "attach", "start", "die", "destroy"],
            "{got:?}"
        );
        Ok(())
    })());
}
