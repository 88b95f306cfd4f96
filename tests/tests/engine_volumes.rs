//! End-to-end: volumes as a Docker user drives them — named and anonymous volumes, filling
//! from the image, `--volumes-from`, `--mount` of each type, `--tmpfs`, read-only mounts,
//! `volume ls/inspect/rm/prune`, commit leaving volumes out, volume events, and bad input
//! refused with one line and nothing left behind.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use strata_tests::engine::{check, engine};
use strata_tests::engine::{Engine, BUSYBOX};
use strata_tests::image::{busybox_layer, docker_archive_with, Entry};

fn names(e: &Engine) -> Result<Vec<String>> {
    Ok(e.ok(&["volume", "ls", "-q"])?
        .lines()
        .map(String::from)
        .collect())
}

fn inspect_volume(e: &Engine, name: &str) -> Result<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_str(&e.ok(&["volume", "inspect", name])?)?;
    Ok(doc[0].clone())
}

fn mountpoint(e: &Engine, name: &str) -> Result<PathBuf> {
    Ok(PathBuf::from(
        inspect_volume(e, name)?["Mountpoint"]
            .as_str()
            .context("Mountpoint")?,
    ))
}

/// An image whose /data holds a file with an owner and mode of its own, and a symlink.
fn seeded_image(e: &Engine) -> Result<()> {
    e.ok(&[
        "run",
        "--name",
        "seedsrc",
        BUSYBOX,
        "sh",
        "-c",
        "mkdir -p /data/sub && echo seeded > /data/sub/f && busybox chown 1234:5678 /data/sub/f \
         && busybox chmod 640 /data/sub/f && busybox ln -s sub/f /data/link \
         && busybox chown 42:43 /data && busybox chmod 750 /data",
    ])?;
    e.ok(&["commit", "seedsrc", "seeded:v1"])?;
    e.ok(&["rm", "seedsrc"])?;
    Ok(())
}

#[test]
fn engine_volume_is_filled_from_the_image_and_outlives_containers() {
    let e = engine();
    check((|| {
        seeded_image(&e)?;
        e.ok(&[
            "run",
            "--name",
            "first",
            "-v",
            "data:/data",
            "seeded:v1",
            "sh",
            "-c",
            "echo more > /data/new",
        ])?;
        ensure!(names(&e)? == ["data"], "volumes: {:?}", names(&e)?);
        let v = inspect_volume(&e, "data")?;
        ensure!(v["Driver"] == "local" && v["Scope"] == "local" && v["Name"] == "data");
        ensure!(v["CreatedAt"].as_str().is_some_and(|t| t.ends_with('Z')));
        let mp = mountpoint(&e, "data")?;
        ensure!(mp.ends_with("volumes/data/_data"), "{}", mp.display());
        let f = fs::metadata(mp.join("sub/f"))?;
        ensure!(fs::read_to_string(mp.join("sub/f"))? == "seeded\n");
        ensure!(
            (f.uid(), f.gid(), f.mode() & 0o7777) == (1234, 5678, 0o640),
            "owner and mode of a filled file: {}:{} {:o}",
            f.uid(),
            f.gid(),
            f.mode() & 0o7777
        );
        ensure!(fs::read_link(mp.join("link"))? == Path::new("sub/f"));
        let root = fs::metadata(&mp)?;
        ensure!(
            (root.uid(), root.gid(), root.mode() & 0o7777) == (42, 43, 0o750),
            "the volume's root takes the image directory's owner and mode"
        );
        // The volume outlives its container, and is not filled again once it has content.
        e.ok(&["rm", "first"])?;
        ensure!(names(&e)? == ["data"]);
        let out = e.ok(&[
            "run",
            "--rm",
            "-v",
            "data:/data",
            "seeded:v1",
            "sh",
            "-c",
            "cat /data/new /data/sub/f",
        ])?;
        ensure!(out == "more\nseeded\n", "{out:?}");
        // nocopy: an empty volume stays empty.
        let out = e.ok(&[
            "run",
            "--rm",
            "-v",
            "bare:/data:nocopy",
            "seeded:v1",
            "busybox",
            "ls",
            "-A",
            "/data",
        ])?;
        ensure!(out.is_empty(), "nocopy volume: {out:?}");
        let out = e.ok(&[
            "run",
            "--rm",
            "--mount",
            "type=volume,src=bare2,dst=/data,volume-nocopy",
            "seeded:v1",
            "busybox",
            "ls",
            "-A",
            "/data",
        ])?;
        ensure!(out.is_empty(), "volume-nocopy: {out:?}");
        Ok(())
    })());
}

#[test]
fn engine_volumes_from_and_read_only_mounts() {
    let e = engine();
    check((|| {
        let host = e.scratch("hostdir")?;
        fs::write(host.join("h"), "from host\n")?;
        let bind = format!("{}:/hostdir", host.display());
        e.ok(&[
            "run",
            "--name",
            "holder",
            "-v",
            "shared:/shared",
            "-v",
            "/anon",
            "-v",
            &bind,
            BUSYBOX,
            "sh",
            "-c",
            "echo hi > /shared/x && echo a > /anon/y",
        ])?;
        let out = e.ok(&[
            "run",
            "--rm",
            "--volumes-from",
            "holder",
            BUSYBOX,
            "cat",
            "/shared/x",
            "/anon/y",
            "/hostdir/h",
        ])?;
        ensure!(out == "hi\na\nfrom host\n", "{out:?}");
        let o = e.strata(&[
            "run",
            "--rm",
            "--volumes-from",
            "holder:ro",
            BUSYBOX,
            "sh",
            "-c",
            "echo z > /shared/z",
        ])?;
        ensure!(!o.status.success(), "--volumes-from :ro must be read-only");
        for args in [
            vec![
                "run",
                "--rm",
                "-v",
                "shared:/s:ro",
                BUSYBOX,
                "touch",
                "/s/q",
            ],
            vec![
                "run",
                "--rm",
                "--mount",
                "type=volume,source=shared,target=/s,readonly",
                BUSYBOX,
                "touch",
                "/s/q",
            ],
        ] {
            let o = e.strata(&args)?;
            ensure!(!o.status.success(), "{args:?} must refuse writes");
            ensure!(
                String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        ensure!(!mountpoint(&e, "shared")?.join("q").exists());
        // The holder's Mounts, as Docker shows them.
        let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "holder"])?)?;
        let mounts = doc[0]["Mounts"].as_array().context("Mounts")?;
        let by_dest = |d: &str| mounts.iter().find(|m| m["Destination"] == d).cloned();
        let shared = by_dest("/shared").context("/shared mount")?;
        ensure!(
            shared["Type"] == "volume"
                && shared["Name"] == "shared"
                && shared["Driver"] == "local"
                && shared["RW"] == true
                && shared["Source"]
                    .as_str()
                    .is_some_and(|s| s.ends_with("volumes/shared/_data")),
            "{shared}"
        );
        let hostdir = by_dest("/hostdir").context("/hostdir mount")?;
        ensure!(
            hostdir["Type"] == "bind" && hostdir["Propagation"] == "rprivate",
            "{hostdir}"
        );
        ensure!(by_dest("/anon").context("/anon")?["Name"]
            .as_str()
            .is_some_and(|n| n.len() == 64));
        ensure!(
            doc[0]["Config"]["Volumes"]["/anon"].is_object(),
            "{}",
            doc[0]["Config"]
        );
        ensure!(doc[0]["HostConfig"]["Binds"]
            .as_array()
            .is_some_and(|b| b.len() == 2));
        Ok(())
    })());
}

/// An image declaring `VOLUME /data` (with a file in it) and `VOLUME /cache` (not in the image).
fn volume_image(e: &Engine) -> Result<()> {
    let layer = busybox_layer(vec![
        Entry::Dir("data", 0o755),
        Entry::File("data/seed".into(), b"from the image\n".to_vec(), 0o644),
    ])?;
    let f = e.scratch("volimage")?.join("img.tar");
    let config = serde_json::json!({
        "Cmd": ["sh"],
        "Env": ["PATH=/bin"],
        "Volumes": { "/data": {}, "/cache": {} },
    });
    docker_archive_with(&f, "volimage:1", &[layer], config)?;
    e.ok(&["load", "-i", &f.to_string_lossy()])?;
    Ok(())
}

/// The destinations and types of a container's `Mounts` in `inspect`.
fn mounts_of(e: &Engine, name: &str) -> Result<Vec<(String, String, String)>> {
    let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", name])?)?;
    let mut m: Vec<_> = doc[0]["Mounts"]
        .as_array()
        .context("Mounts")?
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (s("Destination"), s("Type"), s("Name"))
        })
        .collect();
    m.sort();
    Ok(m)
}

#[test]
fn engine_image_volumes_become_anonymous_volumes() {
    let e = engine();
    check((|| {
        volume_image(&e)?;
        // Each VOLUME of the image is an anonymous volume, filled from the image's content.
        let out = e.ok(&[
            "run",
            "--name",
            "v1",
            "volimage:1",
            "sh",
            "-c",
            "cat /data/seed; echo kept > /data/new; ls /cache | wc -l",
        ])?;
        ensure!(out == "from the image\n0\n", "{out:?}");
        let m = mounts_of(&e, "v1")?;
        ensure!(
            m.len() == 2
                && m[0].0 == "/cache"
                && m[1].0 == "/data"
                && m.iter().all(|(_, t, n)| t == "volume" && n.len() == 64),
            "{m:?}"
        );
        let anon = names(&e)?;
        ensure!(anon.len() == 2, "{anon:?}");
        // As Docker's: the config's Volumes are the image's.
        let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "v1"])?)?;
        ensure!(
            doc[0]["Config"]["Volumes"] == serde_json::json!({"/cache": {}, "/data": {}}),
            "{}",
            doc[0]["Config"]
        );
        let data = &m[1].2;
        ensure!(fs::read_to_string(mountpoint(&e, data)?.join("new"))? == "kept\n");
        // A mount at a VOLUME's path takes its place: a named volume, a bind, a tmpfs.
        let host = e.scratch("volhost")?;
        fs::write(host.join("h"), "host\n")?;
        let out = e.ok(&[
            "run",
            "--name",
            "v2",
            "-v",
            "named:/data",
            "--tmpfs",
            "/cache",
            "volimage:1",
            "sh",
            "-c",
            "cat /data/seed; grep ' /cache ' /proc/mounts | cut -d' ' -f3",
        ])?;
        ensure!(out == "from the image\ntmpfs\n", "{out:?}");
        // (`--tmpfs` mounts are not among Docker's `Mounts`.)
        let m = mounts_of(&e, "v2")?;
        ensure!(
            m == [("/data".into(), "volume".into(), "named".into())],
            "{m:?}"
        );
        ensure!(
            names(&e)?.len() == 3,
            "no anonymous volume for a covered VOLUME"
        );
        let out = e.ok(&[
            "run",
            "--rm",
            "-v",
            &format!("{}:/data:ro", host.display()),
            "volimage:1",
            "cat",
            "/data/h",
        ])?;
        ensure!(out == "host\n", "{out:?}");
        // --rm and rm -v take the image's anonymous volumes with them; commit leaves them out.
        ensure!(
            names(&e)?.len() == 3,
            "run --rm left a volume: {:?}",
            names(&e)?
        );
        e.ok(&["commit", "v1", "volimage:committed"])?;
        let out = e.ok(&["run", "--rm", "volimage:committed", "sh", "-c", "ls /data"])?;
        ensure!(
            out == "seed\n",
            "the commit has the volume's content: {out:?}"
        );
        e.ok(&["rm", "-v", "v1"])?;
        e.ok(&["rm", "v2"])?;
        ensure!(names(&e)? == ["named"], "{:?}", names(&e)?);
        // A VOLUME that is no mount path is refused at create, with one line naming it.
        let f = e.scratch("badvolimage")?.join("img.tar");
        let config = serde_json::json!({ "Cmd": ["sh"], "Volumes": { "data/../..": {} } });
        docker_archive_with(&f, "badvol:1", &[busybox_layer(Vec::new())?], config)?;
        e.ok(&["load", "-i", &f.to_string_lossy()])?;
        e.fails_one_line(
            &["run", "--rm", "badvol:1", "true"],
            125,
            "VOLUME \"data/../..\"",
        )?;
        // A VOLUME where the image has a file is refused at create too, as Docker does.
        let f = e.scratch("filevolimage")?.join("img.tar");
        let layer = busybox_layer(vec![Entry::File("vfile".into(), b"x".to_vec(), 0o644)])?;
        let config = serde_json::json!({ "Cmd": ["sh"], "Volumes": { "/vfile": {} } });
        docker_archive_with(&f, "filevol:1", &[layer], config)?;
        e.ok(&["load", "-i", &f.to_string_lossy()])?;
        e.fails_one_line(
            &["create", "filevol:1", "true"],
            125,
            "cannot mount a volume over the image's file /vfile",
        )?;
        ensure!(
            names(&e)? == ["named"],
            "a failed create left a volume: {:?}",
            names(&e)?
        );
        ensure!(
            e.ok(&["ps", "-aq"])?.trim().is_empty(),
            "a failed create left a container"
        );
        Ok(())
    })());
}

#[test]
fn engine_anonymous_volumes_go_with_rm_v_and_rm_flag_and_prune() {
    let e = engine();
    check((|| {
        e.ok(&["create", "--name", "a1", "-v", "/scratch", BUSYBOX, "true"])?;
        let first = names(&e)?;
        ensure!(first.len() == 1 && first[0].len() == 64, "{first:?}");
        let v = inspect_volume(&e, &first[0])?;
        ensure!(
            v["Labels"]["com.docker.volume.anonymous"] == "",
            "anonymous label: {v}"
        );
        // Plain rm keeps it; rm -v removes the container's own.
        e.ok(&["rm", "a1"])?;
        ensure!(names(&e)? == first, "plain rm keeps the anonymous volume");
        e.ok(&["create", "--name", "a2", "-v", "/scratch", BUSYBOX, "true"])?;
        ensure!(names(&e)?.len() == 2);
        e.ok(&["rm", "-v", "a2"])?;
        ensure!(
            names(&e)? == first,
            "rm -v removes the container's anonymous volume"
        );
        // --rm takes it too; a named volume stays.
        e.ok(&[
            "run",
            "--rm",
            "-v",
            "/scratch",
            "-v",
            "keep:/keep",
            "--mount",
            "target=/anon2",
            BUSYBOX,
            "true",
        ])?;
        let mut want = first.clone();
        want.push("keep".into());
        want.sort();
        ensure!(names(&e)? == want, "after run --rm: {:?}", names(&e)?);
        // Filters.
        let dangling = e.ok(&["volume", "ls", "-q", "-f", "dangling=true"])?;
        ensure!(dangling.lines().count() == 2, "{dangling}");
        ensure!(e.ok(&["volume", "ls", "-q", "-f", "name=kee"])? == "keep\n");
        let table = e.ok(&["volume", "ls"])?;
        ensure!(
            table.starts_with("DRIVER") && table.contains("VOLUME NAME") && table.contains("local"),
            "{table}"
        );
        // prune asks first; with no answer nothing goes.
        let o = e.strata(&["volume", "prune"])?;
        ensure!(o.status.success());
        ensure!(
            String::from_utf8_lossy(&o.stdout).contains("Are you sure you want to continue? [y/N]")
        );
        ensure!(names(&e)? == want, "an unanswered prune removed volumes");
        let fill = mountpoint(&e, &first[0])?.join("f");
        fs::write(&fill, vec![b'x'; 2000])?;
        let out = e.ok(&["volume", "prune", "-f"])?;
        ensure!(
            out.contains(&first[0]) && out.contains("Total reclaimed space: 2kB"),
            "{out}"
        );
        ensure!(
            names(&e)? == ["keep"],
            "prune without -a keeps named volumes"
        );
        e.ok(&["create", "--name", "user", "-v", "keep:/k", BUSYBOX, "true"])?;
        e.ok(&["volume", "create", "loose"])?;
        let out = e.ok(&["volume", "prune", "-a", "-f"])?;
        ensure!(out.contains("loose") && !out.contains("keep"), "{out}");
        ensure!(names(&e)? == ["keep"], "prune -a keeps volumes in use");
        Ok(())
    })());
}

#[test]
fn engine_volume_rm_refuses_one_in_use() {
    let e = engine();
    check((|| {
        ensure!(e.ok(&["volume", "create", "busy"])? == "busy\n");
        ensure!(
            e.ok(&["volume", "create", "--name", "busy"])? == "busy\n",
            "create is idempotent"
        );
        e.ok(&[
            "create", "--name", "user1", "-v", "busy:/b", BUSYBOX, "true",
        ])?;
        e.fails_one_line(&["volume", "rm", "busy"], 1, "in use by container user1")?;
        ensure!(names(&e)? == ["busy"]);
        e.ok(&["rm", "user1"])?;
        ensure!(e.ok(&["volume", "rm", "busy"])? == "busy\n");
        ensure!(names(&e)?.is_empty());
        e.fails_one_line(&["volume", "rm", "nosuch"], 1, "no such volume: nosuch")?;
        e.ok(&["volume", "rm", "-f", "nosuch"])?;
        Ok(())
    })());
}

#[test]
fn engine_mount_types_tmpfs_and_driver_options() {
    let e = engine();
    check((|| {
        let host = e.scratch("bindsrc")?;
        fs::write(host.join("file"), "bound\n")?;
        let bind = format!("type=bind,source={},target=/b,readonly", host.display());
        let out = e.ok(&[
            "run",
            "--rm",
            "--mount",
            &bind,
            "--mount",
            "type=volume,source=mv,target=/m",
            "--mount",
            "type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770",
            "--tmpfs",
            "/run2:size=2m",
            BUSYBOX,
            "sh",
            "-c",
            "cat /b/file; echo in-volume > /m/f; busybox stat -c %a /t; cat /proc/mounts",
        ])?;
        ensure!(out.starts_with("bound\n1770\n"), "{out}");
        let line = |dest: &str| {
            out.lines()
                .find(|l| l.split_whitespace().nth(1) == Some(dest))
                .map(String::from)
        };
        let t = line("/t").context("no /t mount")?;
        ensure!(
            t.starts_with("tmpfs /t tmpfs ") && t.contains("size=1024k"),
            "{t}"
        );
        ensure!(
            t.contains("nosuid") && t.contains("nodev") && t.contains("noexec"),
            "{t}"
        );
        let r = line("/run2").context("no /run2 mount")?;
        ensure!(
            r.starts_with("tmpfs /run2 tmpfs ") && r.contains("size=2048k"),
            "{r}"
        );
        ensure!(line("/b").context("no /b")?.contains(" ro,"));
        ensure!(fs::read_to_string(mountpoint(&e, "mv")?.join("f"))? == "in-volume\n");
        // A directory of the volume instead of its root.
        fs::create_dir(mountpoint(&e, "mv")?.join("sd"))?;
        fs::write(mountpoint(&e, "mv")?.join("sd/x"), "sub\n")?;
        let out = e.ok(&[
            "run",
            "--rm",
            "--mount",
            "type=volume,src=mv,dst=/s,volume-subpath=sd",
            BUSYBOX,
            "cat",
            "/s/x",
        ])?;
        ensure!(out == "sub\n", "volume-subpath: {out:?}");
        // A volume with driver options: a tmpfs mounted while a container uses it.
        e.ok(&[
            "volume",
            "create",
            "-d",
            "local",
            "-o",
            "type=tmpfs",
            "-o",
            "device=tmpfs",
            "-o",
            "o=size=3m",
            "-l",
            "tier=fast",
            "tv",
        ])?;
        let v = inspect_volume(&e, "tv")?;
        ensure!(
            v["Options"]["type"] == "tmpfs" && v["Labels"]["tier"] == "fast",
            "{v}"
        );
        let out = e.ok(&[
            "run",
            "--rm",
            "-v",
            "tv:/tv",
            BUSYBOX,
            "cat",
            "/proc/mounts",
        ])?;
        ensure!(
            out.lines()
                .any(|l| l.starts_with("tmpfs /tv tmpfs") && l.contains("size=3072k")),
            "{out}"
        );
        let data = mountpoint(&e, "tv")?;
        let host_mounts = fs::read_to_string("/proc/self/mountinfo")?;
        ensure!(
            !host_mounts.contains(&data.to_string_lossy().to_string()),
            "the volume's tmpfs is unmounted once its last user stopped"
        );
        // A bind of a host directory through driver options.
        let dev = e.scratch("voldev")?;
        fs::write(dev.join("seen"), "through the device\n")?;
        let device = format!("device={}", dev.display());
        e.ok(&[
            "volume",
            "create",
            "-o",
            "type=none",
            "-o",
            "o=bind",
            "-o",
            &device,
            "bv",
        ])?;
        ensure!(
            e.ok(&["run", "--rm", "-v", "bv:/bv", BUSYBOX, "cat", "/bv/seen"])?
                == "through the device\n"
        );
        Ok(())
    })());
}

#[test]
fn engine_commit_leaves_volume_content_out() {
    let e = engine();
    check((|| {
        e.ok(&[
            "run",
            "--name",
            "cv",
            "-v",
            "cvol:/vol",
            BUSYBOX,
            "sh",
            "-c",
            "echo secret > /vol/s && echo kept > /kept",
        ])?;
        e.ok(&["commit", "cv", "cv:img"])?;
        let out = e.ok(&[
            "run",
            "--rm",
            "cv:img",
            "sh",
            "-c",
            "cat /kept; test -e /vol/s && echo present || echo absent",
        ])?;
        ensure!(out == "kept\nabsent\n", "the committed image: {out:?}");
        ensure!(fs::read_to_string(mountpoint(&e, "cvol")?.join("s"))? == "secret\n");
        Ok(())
    })());
}

#[test]
fn engine_volume_events() {
    let e = engine();
    check((|| {
        let since = e.ok(&["version"]).map(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs().saturating_sub(1))
                .unwrap_or(0)
        })?;
        e.ok(&["run", "--rm", "-v", "ev:/ev", BUSYBOX, "true"])?;
        e.ok(&["volume", "rm", "ev"])?;
        let out = e.ok(&[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            "0s",
            "--filter",
            "type=volume",
        ])?;
        let actions: Vec<&str> = out
            .lines()
            .filter(|l| l.contains(" ev "))
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect();
        ensure!(
            actions == ["create", "mount", "unmount", "destroy"],
            "volume events: {actions:?}\n{out}"
        );
        Ok(())
    })());
}

#[test]
fn engine_bad_mounts_are_refused_with_one_line_and_leave_nothing() {
    let e = engine();
    check((|| {
        let before = e.ok(&["ps", "-aq"])?;
        e.fails_one_line(
            &["run", "--rm", "-v", "data/sub:/x", BUSYBOX, "true"],
            125,
            "invalid volume name \"data/sub\"",
        )?;
        e.fails_one_line(
            &["run", "--rm", "-v", "./rel:/x", BUSYBOX, "true"],
            125,
            "a host directory must be given as an absolute path",
        )?;
        e.fails_one_line(
            &[
                "run",
                "--rm",
                "--mount",
                "type=volume,target=/x,colour=red",
                BUSYBOX,
                "true",
            ],
            125,
            "unexpected key \"colour\"",
        )?;
        e.fails_one_line(
            &["run", "--rm", "-v", "/tmp:/x:rx", BUSYBOX, "true"],
            125,
            "invalid mode",
        )?;
        e.fails_one_line(
            &["run", "--rm", "-v", "v1:/d", "-v", "v2:/d", BUSYBOX, "true"],
            125,
            "duplicate mount point /d",
        )?;
        e.fails_one_line(
            &["create", "--tmpfs", "relative", BUSYBOX],
            125,
            "invalid mount path \"relative\"",
        )?;
        e.fails_one_line(
            &["create", "--volumes-from", "nobody:rx", BUSYBOX],
            125,
            "the mode \"rx\" is not ro or rw",
        )?;
        e.fails_one_line(
            &["create", "--volumes-from", "nobody", BUSYBOX],
            125,
            "no such container: nobody",
        )?;
        e.fails_one_line(
            &[
                "create",
                "--mount",
                "type=bind,source=/no/such/dir,target=/x",
                BUSYBOX,
            ],
            125,
            "bind source path does not exist: /no/such/dir",
        )?;
        e.fails_one_line(
            &["volume", "create", "-o", "size=1g", "x1"],
            1,
            "\"size\" is not an option",
        )?;
        e.fails_one_line(
            &["volume", "create", "-o", "type=tmpfs", "x2"],
            1,
            "needs the device option",
        )?;
        e.fails_one_line(
            &["volume", "create", "a/b"],
            1,
            "invalid volume name \"a/b\"",
        )?;
        // A failure after a first volume was made takes that volume away again.
        e.fails_one_line(
            &[
                "create",
                "--name",
                "half",
                "--mount",
                "type=volume,src=made1,dst=/a",
                "--mount",
                "type=volume,src=made2,dst=/b,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=nonsense",
                BUSYBOX,
            ],
            125,
            "invalid volume option",
        )?;
        ensure!(names(&e)?.is_empty(), "volumes left: {:?}", names(&e)?);
        ensure!(
            e.ok(&["ps", "-aq"])? == before,
            "a failed create left a container"
        );
        ensure!(
            fs::read_dir(e.root.join("volumes"))?.count() == 0,
            "a volume directory was left"
        );
        Ok(())
    })());
}

#[test]
fn engine_bind_source_made_by_dash_v() {
    let e = engine();
    check((|| {
        let dir = e.scratch("made")?.join("not/yet");
        let spec = format!("{}:/m", dir.display());
        e.ok(&["run", "--rm", "-v", &spec, BUSYBOX, "touch", "/m/x"])?;
        ensure!(
            dir.join("x").exists(),
            "-v makes a missing host directory, as Docker's does"
        );
        ensure!(fs::metadata(&dir)?.permissions().mode() & 0o777 != 0);
        Ok(())
    })());
}
