//! End-to-end: the tools around containers — `top`, `stats`, `diff` and `container`, `image`
//! and `system prune` — as a Docker user drives them. `cp` has its own file (engine_cp.rs).

mod lifecycle_support;
mod tools_support;

use anyhow::{ensure, Context, Result};
use lifecycle_support::{check, engine, pid, wait_for};
use strata_tests::engine::{Engine, BUSYBOX};
use strata_tests::image::{busybox_layer, docker_archive, Entry};
use tools_support::strata_with_input;

#[test]
fn engine_tools_top_lists_only_the_container_s_processes() {
    let e = engine();
    check((|| {
        e.ok(&["run", "-d", "--name", "one", BUSYBOX, "sleep", "1001"])?;
        e.ok(&["run", "-d", "--name", "two", BUSYBOX, "sleep", "1002"])?;
        let out = e.ok(&["top", "one"])?;
        let mut lines = out.lines();
        let titles: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        ensure!(
            titles.contains(&"PID") && titles.last() == Some(&"CMD"),
            "ps -ef titles: {out}"
        );
        let rows: Vec<&str> = lines.collect();
        ensure!(
            rows.len() == 1 && rows[0].ends_with("sleep 1001"),
            "only one's process: {out}"
        );
        // ps options are passed on.
        let out = e.ok(&["top", "one", "-o", "pid,args"])?;
        let want = format!("{}   sleep 1001", pid(&e, "one")?);
        ensure!(
            out.lines().next().is_some_and(|l| l.starts_with("PID"))
                && out.lines().nth(1) == Some(want.as_str())
                && out.lines().count() == 2,
            "top one -o pid,args: {out:?} (want {want:?})"
        );
        e.ok(&["stop", "-t", "1", "two"])?;
        e.fails_one_line(&["top", "two"], 1, "two is exited")?;
        e.fails_one_line(&["top", "one", "-o", "user=PID"], 1, "not allowed")?;
        e.fails_one_line(&["top", "one", "--no-such-option"], 1, "ps:")?;
        e.fails_one_line(&["top", "nothing"], 1, "no such container: nothing")?;
        Ok(())
    })());
}

#[test]
fn engine_tools_stats_shows_pids_and_the_memory_limit() {
    let e = engine();
    check((|| {
        e.ok(&[
            "run",
            "-d",
            "--name",
            "busy",
            "-m",
            "64m",
            BUSYBOX,
            "sh",
            "-c",
            "sleep 1000 & sleep 1000",
        ])?;
        e.ok(&["create", "--name", "idle", BUSYBOX, "true"])?;
        let mut last = String::new();
        wait_for("two processes in busy", || {
            last = e.ok(&["stats", "--no-stream", "busy"])?;
            Ok(last
                .lines()
                .nth(1)
                .is_some_and(|l| l.split_whitespace().last() == Some("2")))
        })
        .with_context(|| format!("last stats: {last}"))?;
        let header: Vec<&str> = last.lines().next().unwrap_or("").split("   ").collect();
        ensure!(
            header.iter().map(|h| h.trim()).collect::<Vec<_>>()
                == [
                    "CONTAINER ID",
                    "NAME",
                    "CPU %",
                    "MEM USAGE / LIMIT",
                    "MEM %",
                    "NET I/O",
                    "BLOCK I/O",
                    "PIDS"
                ],
            "header: {last}"
        );
        let row = last.lines().nth(1).unwrap_or("");
        ensure!(
            row.contains("busy") && row.contains(" / 64MiB") && row.contains("0B / 0B"),
            "the -m limit and no network (network none): {row}"
        );
        // Without names: running ones only; with -a the created one too, all zeros.
        let running = e.ok(&["stats", "--no-stream"])?;
        ensure!(
            running.contains("busy") && !running.contains("idle"),
            "{running}"
        );
        let all = e.ok(&["stats", "--no-stream", "-a"])?;
        let idle = all
            .lines()
            .find(|l| l.contains("idle"))
            .with_context(|| format!("stats -a: {all}"))?;
        ensure!(
            idle.contains("0B / 0B") && idle.ends_with(" 0"),
            "a stopped container shows zeros: {idle}"
        );
        e.fails_one_line(&["stats", "--no-stream", "nothing"], 1, "no such container")?;
        Ok(())
    })());
}

#[test]
fn engine_tools_diff_shows_added_changed_and_deleted() {
    let e = engine();
    check((|| {
        let archive = e.scratch("images")?.join("files.tar");
        docker_archive(
            &archive,
            "docker.io/library/files:v1",
            &[busybox_layer(vec![
                Entry::File("etc/conf".into(), b"old\n".to_vec(), 0o644),
                Entry::File("etc/gone".into(), b"bye\n".to_vec(), 0o644),
            ])?],
            &["sh"],
        )?;
        e.ok(&["load", "-i", &archive.to_string_lossy()])?;
        e.ok(&["run", "-d", "--name", "fresh", "files:v1", "sleep", "1000"])?;
        let out = e.ok(&["diff", "fresh"])?;
        ensure!(out.is_empty(), "a fresh container has no changes: {out:?}");
        e.ok(&[
            "run",
            "--name",
            "changed",
            "files:v1",
            "sh",
            "-c",
            "echo new >> /etc/conf && rm /etc/gone && mkdir /tmp/dir && echo n > /tmp/dir/new",
        ])?;
        let out = e.ok(&["diff", "changed"])?;
        let want = "C /etc\nC /etc/conf\nD /etc/gone\nC /tmp\nA /tmp/dir\nA /tmp/dir/new\n";
        ensure!(out == want, "diff: {out:?}, want {want:?}");
        // The same while it runs.
        e.ok(&["start", "changed"])?;
        e.ok(&["exec", "fresh", "touch", "/made"])?;
        ensure!(e.ok(&["diff", "fresh"])? == "A /made\n");
        e.fails_one_line(&["diff", "nothing"], 1, "no such container: nothing")?;
        Ok(())
    })());
}

/// The full ids of every container, running or not.
fn all_ids(e: &Engine) -> Result<Vec<String>> {
    Ok(e.ok(&["ps", "-aq", "--no-trunc"])?
        .lines()
        .map(str::to_string)
        .collect())
}

#[test]
fn engine_tools_container_prune_removes_only_stopped_ones() {
    let e = engine();
    check((|| {
        let exited = e.ok(&["run", "-d", "--name", "exited", BUSYBOX, "true"])?;
        let made = e.ok(&["create", "--name", "made", BUSYBOX, "true"])?;
        let live = e.ok(&["run", "-d", "--name", "live", BUSYBOX, "sleep", "1000"])?;
        let kept = e.ok(&[
            "run", "-d", "--name", "kept", "--label", "keep=yes", BUSYBOX, "true",
        ])?;
        let (exited, made, live, kept) = (exited.trim(), made.trim(), live.trim(), kept.trim());
        e.ok(&["wait", "exited", "kept"])?;
        // Declining the question removes nothing.
        let o = strata_with_input(&e, &["container", "prune"], b"n\n")?;
        ensure!(o.status.success());
        ensure!(String::from_utf8_lossy(&o.stdout).starts_with(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "
        ));
        ensure!(all_ids(&e)?.len() == 4, "declined: nothing removed");
        let out = e.ok(&["container", "prune", "-f", "--filter", "label!=keep"])?;
        let want = {
            let mut ids = [exited, made];
            ids.sort();
            format!("Deleted Containers:\n{}\n{}\n\n", ids[0], ids[1])
        };
        let mut lines: Vec<&str> = out.lines().collect();
        ensure!(
            lines
                .last()
                .is_some_and(|l| l.starts_with("Total reclaimed space: ")),
            "{out}"
        );
        lines.pop();
        lines[1..3].sort();
        ensure!(lines.join("\n") + "\n" == want, "prune output {out:?}");
        let mut left = all_ids(&e)?;
        left.sort();
        let mut want = vec![live.to_string(), kept.to_string()];
        want.sort();
        ensure!(left == want, "left {left:?}");
        // An until in the past keeps the newer stopped one.
        e.ok(&[
            "container",
            "prune",
            "-f",
            "--filter",
            "until=2000-01-01T00:00:00Z",
        ])?;
        ensure!(all_ids(&e)?.len() == 2);
        let out = e.ok(&["container", "prune", "-f"])?;
        ensure!(out.contains(kept) && !out.contains(live), "{out}");
        ensure!(all_ids(&e)? == [live.to_string()]);
        let out = e.ok(&["container", "prune", "-f"])?;
        ensure!(
            out == "Total reclaimed space: 0B\n",
            "nothing to prune: {out:?}"
        );
        e.fails_one_line(
            &["container", "prune", "-f", "--filter", "colour=red"],
            1,
            "invalid filter",
        )?;
        e.fails_one_line(
            &["container", "prune", "-f", "--filter", "until=someday"],
            1,
            "invalid filter",
        )?;
        Ok(())
    })());
}

/// The image ids `strata images -q --no-trunc` lists.
fn image_ids(e: &Engine) -> Result<Vec<String>> {
    Ok(e.ok(&["images", "-q", "--no-trunc"])?
        .lines()
        .map(str::to_string)
        .collect())
}

#[test]
fn engine_tools_image_prune_removes_dangling_images_but_not_used_ones() {
    let e = engine();
    check((|| {
        e.ok(&["run", "--name", "a", BUSYBOX, "sh", "-c", "echo a > /a"])?;
        e.ok(&["run", "--name", "b", BUSYBOX, "sh", "-c", "echo b > /b"])?;
        let dangling = e.ok(&["commit", "a"])?.trim().to_string();
        let used = e.ok(&["commit", "b"])?.trim().to_string();
        e.ok(&["create", "--name", "user", &used])?;
        // Another container's changes: committing `a` again in the same second would make
        // the same image as `dangling`.
        e.ok(&["run", "--name", "c", BUSYBOX, "sh", "-c", "echo c > /c"])?;
        e.ok(&["commit", "c", "unused:v1"])?;
        let out = e.ok(&["image", "prune", "-f"])?;
        ensure!(
            out.starts_with(&format!("Deleted Images:\ndeleted: {dangling}\n"))
                && out.contains("\nTotal reclaimed space: ")
                && !out.contains(&used),
            "image prune: {out}"
        );
        let ids = image_ids(&e)?;
        ensure!(
            !ids.contains(&dangling) && ids.contains(&used) && ids.len() == 3,
            "after prune: {ids:?}"
        );
        // -a: every image no container uses, tagged or not.
        let out = e.ok(&["image", "prune", "-a", "-f"])?;
        ensure!(
            out.starts_with("Deleted Images:\nuntagged: unused:v1\ndeleted: "),
            "image prune -a: {out}"
        );
        let images = e.ok(&["images"])?;
        ensure!(
            images.contains("busybox") && !images.contains("unused"),
            "{images}"
        );
        ensure!(image_ids(&e)?.contains(&used));
        Ok(())
    })());
}

#[test]
fn engine_tools_system_prune() {
    let e = engine();
    check((|| {
        e.ok(&["run", "--name", "gone", "-v", "/data", BUSYBOX, "true"])?;
        let dangling = e.ok(&["commit", "gone"])?.trim().to_string();
        let live = e.ok(&["run", "-d", "--name", "live", BUSYBOX, "sleep", "1000"])?;
        let o = strata_with_input(&e, &["system", "prune", "--volumes"], b"")?;
        ensure!(
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).starts_with(
                    "WARNING! This will remove:\n  - all stopped containers\n  - all anonymous volumes not used by at least one container\n  - all dangling images\n\nAre you sure you want to continue? [y/N] "
                ),
            "the question: {o:?}"
        );
        ensure!(all_ids(&e)?.len() == 2, "no answer: nothing removed");
        let volumes = e.ok(&["volume", "ls", "-q"])?;
        ensure!(
            volumes.lines().count() == 1,
            "one anonymous volume: {volumes}"
        );
        let out = e.ok(&["system", "prune", "-f", "--volumes"])?;
        let sections: Vec<&str> = out.split("\n\n").collect();
        ensure!(
            sections.len() == 4
                && sections[0].starts_with("Deleted Containers:\n")
                && sections[1] == format!("Deleted Volumes:\n{}", volumes.trim())
                && sections[2].starts_with(&format!("Deleted Images:\ndeleted: {dangling}"))
                && sections[3].starts_with("Total reclaimed space: "),
            "system prune: {out:?}"
        );
        ensure!(all_ids(&e)? == [live.trim().to_string()]);
        ensure!(e.ok(&["volume", "ls", "-q"])?.is_empty());
        let out = e.ok(&["system", "prune", "-f"])?;
        ensure!(out == "Total reclaimed space: 0B\n", "{out:?}");
        Ok(())
    })());
}
