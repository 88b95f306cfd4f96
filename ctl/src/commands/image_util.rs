//! Helpers the image verbs share: streaming a file or stdin to the engine, sizes and ages as
//! Docker prints them.

use std::io::Read;
use std::path::Path;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::client::{CmdResult, Failure};

/// The chunk size for uploads.
const CHUNK: usize = 1 << 20;

/// Streams `path` (or stdin for `-` or none) as messages made by `wrap`; the first message gets
/// `first` applied to it.
pub fn upload<M: Send + 'static>(
    path: Option<&Path>,
    wrap: fn(Vec<u8>) -> M,
    first: impl FnOnce(&mut M) + Send + 'static,
) -> CmdResult<ReceiverStream<M>> {
    let input: Box<dyn Read + Send> = match path {
        Some(p) if p.is_dir() => dir_as_tar(p)?,
        Some(p) if p != Path::new("-") => Box::new(
            std::fs::File::open(p)
                .map_err(|e| Failure::new(format!("open {}: {e}", p.display())))?,
        ),
        _ => {
            if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
                return Err(Failure::new(
                    "requested load from stdin, but stdin is a terminal: use -i FILE or a pipe",
                ));
            }
            Box::new(std::io::stdin())
        }
    };
    // Progress on a terminal: bytes sent (of the file's size, when it is a file).
    let total = path
        .filter(|p| p.is_file())
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.len());
    let progress = nix::unistd::isatty(std::io::stderr()).unwrap_or(false);
    Ok(upload_reader(input, total, progress, wrap, first))
}

/// Streams what `input` reads as messages made by `wrap` (the first gets `first` applied),
/// showing the bytes sent (of `total`) on stderr with `progress`.
pub fn upload_reader<M: Send + 'static>(
    mut input: Box<dyn Read + Send>,
    total: Option<u64>,
    progress: bool,
    wrap: fn(Vec<u8>) -> M,
    first: impl FnOnce(&mut M) + Send + 'static,
) -> ReceiverStream<M> {
    let (tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || {
        let mut first = Some(first);
        let mut sent = 0u64;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut n = 0;
            while n < CHUNK {
                match input.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        eprintln!("strata: reading the input: {e}");
                        // Dropping the sender without the rest makes the engine see a
                        // truncated upload and refuse it.
                        std::process::exit(1);
                    }
                }
            }
            buf.truncate(n);
            sent += n as u64;
            let done = n == 0;
            if progress {
                let of = total
                    .map(|t| format!("/{}", human_size(t as i64)))
                    .unwrap_or_default();
                eprint!("\rSending {}{of}   ", human_size(sent as i64));
                if done {
                    eprint!("\r\x1b[K");
                }
            }
            if done && first.is_none() {
                return;
            }
            let mut m = wrap(buf);
            if let Some(f) = first.take() {
                f(&mut m);
            }
            if tx.blocking_send(m).is_err() || done {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// A directory (an OCI image layout) as a tar stream, written by a thread into a pipe.
fn dir_as_tar(dir: &Path) -> CmdResult<Box<dyn Read + Send>> {
    let (r, w) = std::io::pipe().map_err(|e| Failure::new(format!("make a pipe: {e}")))?;
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        if let Err(e) = b.append_dir_all(".", &dir).and_then(|()| b.finish()) {
            eprintln!("strata: reading {}: {e}", dir.display());
            std::process::exit(1);
        }
    });
    Ok(Box::new(r))
}

/// Bytes as Docker prints them (`5.6MB`, 1000-based).
pub fn human_size(n: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n.max(0) as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .chars()
            .take(4)
            .collect::<String>()
            .trim_end_matches('.')
            .to_string()
            + units[u]
    }
}

/// "3 days ago".
pub fn ago(t: i64) -> String {
    if t <= 0 {
        return "N/A".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let d = (now - t).max(0);
    match d {
        0..=59 => format!("{d} seconds ago"),
        60..=3599 => format!("{} minutes ago", d / 60),
        3600..=86_399 => format!("{} hours ago", d / 3600),
        86_400..=1_209_599 => format!("{} days ago", d / 86_400),
        1_209_600..=5_183_999 => format!("{} weeks ago", d / 604_800),
        5_184_000..=63_071_999 => format!("{} months ago", d / 2_592_000),
        _ => format!("{} years ago", d / 31_536_000),
    }
}

/// The 12-hex short id of `sha256:…`.
pub fn short_id(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(77_800_000), "77.8MB");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
