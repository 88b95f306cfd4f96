//! Reading a container's json-lines log (Docker's json-file format), following it while the
//! container runs.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
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

/// The last `n` complete lines of the log (all if `n` is negative), and the offset after them.
pub fn tail(path: &Path, n: i64) -> std::io::Result<(Vec<LogEntry>, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut entries = Vec::new();
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
    if n >= 0 && entries.len() > n as usize {
        entries.drain(..entries.len() - n as usize);
    }
    Ok((entries, offset))
}

/// Sends the lines written after `offset` until `done` says the container has stopped (and
/// everything it wrote has been read) or the receiver goes away.
pub async fn follow(
    path: std::path::PathBuf,
    mut offset: u64,
    tx: mpsc::Sender<Result<LogEntry, tonic::Status>>,
    mut done: impl FnMut() -> bool + Send,
) {
    loop {
        let finished = done();
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<LogEntry>, u64)> {
                let mut f = std::fs::File::open(&path)?;
                f.seek(SeekFrom::Start(offset))?;
                let mut r = BufReader::new(f);
                let mut out = Vec::new();
                let mut line = Vec::new();
                let mut advanced = 0u64;
                loop {
                    line.clear();
                    let n = r.read_until(b'\n', &mut line)?;
                    if n == 0 || line.last() != Some(&b'\n') {
                        break;
                    }
                    advanced += n as u64;
                    if let Some(e) = entry(&line) {
                        out.push(e);
                    }
                }
                Ok((out, advanced))
            })
            .await
        };
        match read {
            Ok(Ok((entries, advanced))) => {
                offset += advanced;
                for e in entries {
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
            }
            // The log is gone: the container was removed.
            Ok(Err(_)) | Err(_) => return,
        }
        if finished || tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
