//! End-to-end: `strata cp` both ways, on running and stopped containers, with Docker's path
//! rules, tar streams on stdin and stdout, and — above all — never a symlink followed out of
//! the container's root: one in the container pointing at the host's files (absolutely or by
//! climbing `../..`) neither lets a copy read the host's file nor write one.

mod lifecycle_support;
mod tools_support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use lifecycle_support::{check, engine, wait_for};
use strata_tests::engine::{Engine, BUSYBOX};
use tools_support::strata_with_input;

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A tar (built here) with the given entries: (path, Some(content)) files, (path, None) dirs.
fn tar_of(entries: &[(&str, Option<&str>)]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(4242);
        h.set_gid(4343);
        match data {
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, path, d.as_bytes())?;
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty())?;
            }
        }
    }
    Ok(b.into_inner()?)
}

/// Copies in and out of container `c` with Docker's path rules.
fn copies_both_ways(e: &Engine, c: &str) -> Result<()> {
    let host = e.scratch(&format!("files-{c}"))?;
    fs::write(host.join("note.txt"), "a note\n")?;
    fs::create_dir_all(host.join("tree/sub"))?;
    fs::write(host.join("tree/top"), "top\n")?;
    fs::write(host.join("tree/sub/deep"), "deep\n")?;
    let at = |p: &str| format!("{c}:{p}");
    // A file into a directory, onto a new name, and onto an existing file.
    e.ok(&["cp", &s(&host.join("note.txt")), &at("/tmp")])?;
    e.ok(&["cp", &s(&host.join("note.txt")), &at("/tmp/renamed")])?;
    fs::write(host.join("other"), "replaced\n")?;
    e.ok(&["cp", &s(&host.join("other")), &at("/tmp/renamed")])?;
    // A directory onto a missing path takes its name; into an existing one it goes inside;
    // with /. only its contents go.
    e.ok(&["cp", &s(&host.join("tree")), &at("/tmp/copy")])?;
    e.ok(&["cp", &s(&host.join("tree")), &at("/tmp/copy")])?;
    e.ok(&["cp", &format!("{}/.", s(&host.join("tree"))), &at("/tmp")])?;
    let out = host.join("out");
    fs::create_dir_all(&out)?;
    e.ok(&["cp", &at("/tmp/."), &s(&out.join("all"))])?;
    let read = |p: &str| fs::read_to_string(out.join("all").join(p)).unwrap_or_default();
    ensure!(read("note.txt") == "a note\n", "file into a directory");
    ensure!(
        read("renamed") == "replaced\n",
        "file onto a name, then onto the file"
    );
    ensure!(read("copy/sub/deep") == "deep\n" && read("copy/top") == "top\n");
    ensure!(
        read("copy/tree/sub/deep") == "deep\n",
        "into an existing directory"
    );
    ensure!(
        read("top") == "top\n" && read("sub/deep") == "deep\n",
        "a trailing /. copies the contents"
    );
    // Out of the container: a file into a directory, and a directory onto a new name.
    e.ok(&["cp", &at("/tmp/renamed"), &s(&out)])?;
    ensure!(fs::read_to_string(out.join("renamed"))? == "replaced\n");
    e.ok(&["cp", &at("/tmp/copy/sub"), &s(&out.join("sub2"))])?;
    ensure!(fs::read_to_string(out.join("sub2/deep"))? == "deep\n");
    // Without -a the files belong to the container's root; with -a they keep their owners.
    std::os::unix::fs::chown(host.join("note.txt"), Some(1234), Some(2345))?;
    e.ok(&["cp", &s(&host.join("note.txt")), &at("/tmp/plain")])?;
    e.ok(&["cp", "-a", &s(&host.join("note.txt")), &at("/tmp/kept")])?;
    e.ok(&["cp", "-a", &at("/tmp/kept"), &s(&out.join("kept"))])?;
    e.ok(&["cp", &at("/tmp/plain"), &s(&out.join("plain"))])?;
    let owner = |p: &str| {
        fs::metadata(out.join(p))
            .map(|m| (m.uid(), m.gid()))
            .unwrap_or_default()
    };
    ensure!(
        owner("kept") == (1234, 2345),
        "-a both ways: {:?}",
        owner("kept")
    );
    ensure!(owner("plain") == (0, 0), "without -a: {:?}", owner("plain"));
    // Tar streams: out on stdout, in on stdin.
    let o = e.strata(&["cp", &at("/tmp/copy/sub"), "-"])?;
    ensure!(o.status.success(), "cp to -: {o:?}");
    let mut names: Vec<String> = tar::Archive::new(o.stdout.as_slice())
        .entries()?
        .map(|en| Ok(en?.path()?.to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.sort();
    ensure!(names == ["sub", "sub/deep"], "tar on stdout: {names:?}");
    let tar = tar_of(&[("streamed", None), ("streamed/in.txt", Some("in\n"))])?;
    let o = strata_with_input(e, &["cp", "-", &at("/tmp")], &tar)?;
    ensure!(o.status.success(), "cp from -: {o:?}");
    e.ok(&["cp", &at("/tmp/streamed/in.txt"), &s(&out.join("in.txt"))])?;
    ensure!(fs::read_to_string(out.join("in.txt"))? == "in\n");
    // Missing paths, each a clear error.
    e.fails_one_line(
        &["cp", &at("/nope"), &s(&out)],
        1,
        &format!("could not find the file /nope in container {c}"),
    )?;
    e.fails_one_line(
        &["cp", &s(&host.join("note.txt")), &at("/nope/dir/f")],
        1,
        "no such directory",
    )?;
    e.fails_one_line(
        &["cp", &at("/tmp/renamed"), &s(&host.join("missing/dir/f"))],
        1,
        "no such directory",
    )?;
    e.fails_one_line(
        &["cp", &s(&host.join("tree")), &at("/tmp/renamed")],
        1,
        "cannot copy a directory onto the file",
    )?;
    e.fails_one_line(
        &["cp", &s(&host.join("note.txt")), &at("/tmp/new-dir/")],
        1,
        "no such directory",
    )?;
    let o = strata_with_input(e, &["cp", "-", &at("/tmp/renamed")], &tar)?;
    ensure!(!o.status.success(), "a tar needs a directory");
    Ok(())
}

#[test]
fn engine_cp_copies_both_ways_into_running_and_stopped_containers() {
    let e = engine();
    check((|| {
        e.ok(&["run", "-d", "--name", "running", BUSYBOX, "sleep", "1000"])?;
        copies_both_ways(&e, "running")?;
        e.ok(&[
            "create",
            "--name",
            "stopped",
            BUSYBOX,
            "cat",
            "/tmp/note.txt",
        ])?;
        copies_both_ways(&e, "stopped")?;
        // The stopped container starts after its copies and sees them.
        e.ok(&["start", "stopped"])?;
        e.ok(&["wait", "stopped"])?;
        let out = e.ok(&["logs", "stopped"])?;
        ensure!(out == "a note\n", "its output: {out:?}");
        Ok(())
    })());
}

/// Symlinks in container `c` that point at the host's files: none is followed out of its root.
fn stays_in_the_root(e: &Engine, c: &str) -> Result<()> {
    let host = e.scratch(&format!("host-{c}"))?;
    let secret = host.join("secret");
    fs::write(&secret, "the host's secret\n")?;
    let target = host.join("target");
    fs::create_dir_all(&target)?;
    let out = host.join("out");
    fs::create_dir_all(&out)?;
    let payload = host.join("payload");
    fs::write(&payload, "written\n")?;
    let at = |p: &str| format!("{c}:{p}");
    let host_unchanged = || -> Result<()> {
        ensure!(
            fs::read_to_string(&secret)? == "the host's secret\n",
            "host file changed"
        );
        let planted: Vec<_> = fs::read_dir(&target)?.collect();
        ensure!(planted.is_empty(), "written into the host: {planted:?}");
        ensure!(!Path::new("/etc/planted").exists() && !Path::new("/planted").exists());
        Ok(())
    };
    // Reading: the link itself is copied; followed (-L or a trailing /), it resolves inside
    // the container, where the host's file does not exist.
    e.ok(&["cp", &at("/tmp/abs"), &s(&out.join("abs"))])?;
    let m = fs::symlink_metadata(out.join("abs"))?;
    ensure!(m.file_type().is_symlink(), "the symlink itself is copied");
    for (src, name) in [("/tmp/abs", "a"), ("/tmp/climb", "c")] {
        let (code, err) = e.fails(&["cp", "-L", &at(src), &s(&out.join(name))])?;
        ensure!(
            code != 0 && err.contains("could not find the file"),
            "cp -L {src}: {err}"
        );
        ensure!(!out.join(name).exists(), "{src} read the host's file");
    }
    // Climbing above the root stops at it: this is the container's root, not the host's.
    e.ok(&["cp", &at("/tmp/updir/"), &s(&out.join("u"))])?;
    ensure!(
        out.join("u/bin/busybox").is_file()
            && out.join("u/etc/mine").is_file()
            && !out.join("u/usr").exists(),
        "/tmp/updir/ must be the container's root"
    );
    ensure!(
        fs::read_dir(out.join("u/proc"))?.next().is_none(),
        "/proc's kernel files are not copied"
    );
    // /etc through a symlink is the container's /etc (one file: what the test put there).
    e.ok(&["cp", &at("/tmp/etc/"), &s(&out.join("etc"))])?;
    ensure!(
        !out.join("etc/passwd").exists() && out.join("etc/mine").exists(),
        "/etc through a symlink must be the container's"
    );
    // Writing: through a link to the host's file, a link to a host directory, a climbing
    // link, and links a tar brings or finds.
    let _ = e.strata(&["cp", &s(&payload), &at("/tmp/abs")])?;
    let _ = e.strata(&["cp", &s(&payload), &at("/tmp/climb")])?;
    let _ = e.strata(&["cp", &s(&payload), &at("/tmp/dir/")])?;
    let _ = e.strata(&["cp", &s(&payload), &at("/tmp/dir/planted")])?;
    let _ = e.strata(&["cp", &s(&payload), &at("/tmp/updir/etc/planted")])?;
    host_unchanged()?;
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "esc", &target)?;
    let mut f = tar::Header::new_gnu();
    f.set_size(2);
    f.set_mode(0o644);
    b.append_data(&mut f, "esc/planted", &b"x\n"[..])?;
    let mut f2 = f.clone();
    b.append_data(&mut f2, "dir/planted", &b"x\n"[..])?;
    let tar = b.into_inner()?;
    let _ = strata_with_input(e, &["cp", "-", &at("/tmp")], &tar)?;
    let mut dots = tar::Header::new_gnu();
    dots.set_size(2);
    dots.set_mode(0o644);
    let mut raw = tar::Builder::new(Vec::new());
    // A name with ".." (set raw: the tar crate refuses to write one).
    let name = "../../../../../../../../planted";
    dots.as_gnu_mut().context("gnu header")?.name[..name.len()].copy_from_slice(name.as_bytes());
    dots.set_cksum();
    raw.append(&dots, &b"x\n"[..])?;
    let o = strata_with_input(e, &["cp", "-", &at("/tmp")], &raw.into_inner()?)?;
    ensure!(!o.status.success(), "a tar entry with .. is refused");
    host_unchanged()?;
    Ok(())
}

/// The links `stays_in_the_root` uses, made in the container.
fn links(host: &Path) -> String {
    let secret = host.join("secret");
    let target = host.join("target");
    format!(
        "busybox mkdir -p /etc && echo mine > /etc/mine && \
         busybox ln -s {s} /tmp/abs && busybox ln -s ../../../../../../../..{s} /tmp/climb && \
         busybox ln -s {t} /tmp/dir && busybox ln -s ../../../../../../.. /tmp/updir && \
         busybox ln -s /etc /tmp/etc",
        s = secret.display(),
        t = target.display()
    )
}

#[test]
fn engine_cp_never_follows_a_symlink_out_of_the_root() {
    let e = engine();
    check((|| {
        // The scratch paths are the same for both containers' links.
        let running_links = links(&e.scratch("host-running")?);
        e.ok(&[
            "run",
            "-d",
            "--name",
            "running",
            BUSYBOX,
            "sh",
            "-c",
            &format!("{running_links} && sleep 1000"),
        ])?;
        wait_for("the running container's links", || {
            Ok(e.strata(&["cp", "running:/tmp/etc", "-"])?.status.success())
        })?;
        stays_in_the_root(&e, "running")?;
        let stopped_links = links(&e.scratch("host-stopped")?);
        e.ok(&[
            "run",
            "--name",
            "stopped",
            BUSYBOX,
            "sh",
            "-c",
            &stopped_links,
        ])?;
        stays_in_the_root(&e, "stopped")?;
        Ok(())
    })());
}

#[test]
fn engine_cp_bad_input_is_one_clear_line() {
    let e = engine();
    check((|| {
        e.ok(&["create", "--name", "c", BUSYBOX, "true"])?;
        e.fails_one_line(&["cp", "a", "b"], 1, "name a container on one side")?;
        e.fails_one_line(
            &["cp", "c:/a", "c:/b"],
            1,
            "copying between containers is not supported",
        )?;
        e.fails_one_line(
            &["cp", "nothing:/etc", "/tmp"],
            1,
            "no such container: nothing",
        )?;
        e.fails_one_line(&["cp", "c:", "/tmp"], 1, "the source path")?;
        e.fails_one_line(
            &["cp", "/no/such/file", "c:/tmp"],
            1,
            "cannot copy /no/such/file",
        )?;
        e.fails_one_line(
            &["cp", "c:/dev", "/dev/null"],
            1,
            "cannot copy a directory onto the file",
        )?;
        Ok(())
    })());
}
