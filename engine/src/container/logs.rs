//! Reading a container's json-lines log (Docker's json-file format), following it while the
//! container runs.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use strata_proto::engine::LogEntry;
use tokio::sync::mpsc;

use super::monitor::LogLine;

fn entry(line: &[u8]) -> Option<LogEntry> {
    let l: LogLine = serde_json::from_slice(line).ok()?;
    Some(LogEntry {
        stream: l.stream,
        line: l.log.into_bytes(),
        time: l.time,
    })
}

/// Appends the complete lines of the file at `path` to `entries`; returns the offset after
/// them (0 for a file that is not there: a rotation's moment, or none yet).
fn read_file(path: &Path, entries: &mut Vec<LogEntry>) -> std::io::Result<u64> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut r = BufReader::new(&mut f);
    let mut buf = Vec::new();
    let mut offset = 0u64;
    loop {
        buf.clear();
        let read = r.read_until(b'\n', &mut buf)?;
        if read == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        offset += read as u64;
        if let Some(e) = entry(&buf) {
            entries.push(e);
        }
    }
    Ok(offset)
}

/// The last `n` complete lines of the log (all if `n` is negative), its rotated files first,
/// and the offset after them in the log itself.
pub fn tail(path: &Path, n: i64) -> std::io::Result<(Vec<LogEntry>, u64)> {
    let mut entries = Vec::new();
    for old in super::logconf::rotated_files(path) {
        read_file(&old, &mut entries)?;
    }
    let offset = read_file(path, &mut entries)?;
    if n >= 0 && entries.len() > n as usize {
        entries.drain(..entries.len() - n as usize);
    }
    Ok((entries, offset))
}

/// The inode of the file at `path`, if there is one.
fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Sends the lines written after `offset` until the container has stopped (a created one:
/// until it has run and stopped) and everything it wrote has been read, or the receiver goes
/// away. The file stays open, so a log removed with its container (`--rm`) is still read to its
/// end; when the log is rotated (another file at its path), the old one is read to its end and
/// the new one from its start.
pub async fn follow(
    path: std::path::PathBuf,
    offset: u64,
    tx: mpsc::Sender<Result<LogEntry, tonic::Status>>,
    mut state: tokio::sync::watch::Receiver<super::record::State>,
) {
    use super::record::Status;
    let opened =
        std::fs::File::open(&path).and_then(|mut f| f.seek(SeekFrom::Start(offset)).map(|_| f));
    let Ok(file) = opened else { return };
    let mut ino = file.metadata().map(|m| m.ino()).ok();
    let mut reader = Some(BufReader::new(file));
    let mut partial: Vec<u8> = Vec::new();
    // The start time of the run being followed: as in Docker, following ends when the process
    // does, even one that its restart policy starts again (seen as another run's start).
    let mut run: Option<String> = None;
    loop {
        let finished = {
            let st = state.borrow_and_update();
            if run.is_none() && matches!(st.status, Status::Running | Status::Paused) {
                run = Some(st.started_at.clone());
            }
            matches!(
                st.status,
                Status::Exited | Status::Dead | Status::Restarting
            ) || run.as_ref().is_some_and(|r| *r != st.started_at)
        };
        // Rotated before this read: the monitor writes no more to the open file, so once read
        // to its end, the one now at the path follows.
        let now = inode(&path);
        let rotated = now.is_some() && now != ino;
        let Some(mut r) = reader.take() else { return };
        let mut carry = std::mem::take(&mut partial);
        let read = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            loop {
                match r.read_until(b'\n', &mut carry) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if carry.last() == Some(&b'\n') => {
                        if let Some(e) = entry(&carry) {
                            out.push(e);
                        }
                        carry.clear();
                    }
                    // A line still being written: keep it for the next round.
                    Ok(_) => break,
                }
            }
            (r, carry, out)
        })
        .await;
        let Ok((r, carry, entries)) = read else {
            return;
        };
        reader = Some(r);
        partial = carry;
        for e in entries {
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
        }
        if rotated {
            match std::fs::File::open(&path) {
                Ok(f) => {
                    ino = f.metadata().map(|m| m.ino()).ok();
                    reader = Some(BufReader::new(f));
                    partial.clear();
                    continue;
                }
                Err(e) => tracing::debug!(%e, "opening the rotated log failed; trying again"),
            }
        }
        if finished || tx.is_closed() {
            return;
        }
        // New output is polled for; a change of state (the exit) wakes the loop at once.
        tokio::select! {
            _ = state.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}
