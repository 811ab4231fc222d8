//! The recorder: the only writer of `recordings/`, in asciicast v2.
//!
//! One file per session channel, `root/YYYY/MM/DD/<session-id>[-<channel>].cast` (UTC date of
//! the start), created with `create_new` so nothing is ever overwritten. The bastion calls
//! `Recorder::start` when a channel starts a shell, exec or subsystem, feeds the `Recording`
//! as data flows and calls `finish` at close, which returns the file's SHA-256 for
//! `Store::end_session`.
//!
//! ```no_run
//! # async fn demo(cfg: &jitgate::config::Recordings) -> Result<(), jitgate::recorder::RecorderError> {
//! use jitgate::recorder::{Recorder, SessionMeta};
//! let recorder = Recorder::new("recordings".into(), cfg)?; // once, at server start
//! let rec = recorder.start(SessionMeta {
//!     session_id: "9f2c61d0a4b3e857".into(),
//!     channel: None,
//!     user: "alice".into(),
//!     login: "postgres".into(),
//!     host: "db1".into(),
//!     request_id: 42,
//!     width: 120,
//!     height: 40,
//!     started_at: jitgate::model::now(),
//!     command: None,
//!     term: Some("xterm-256color".into()),
//!     shell: None,
//!     record_input: false,
//! })?;
//! let tap = rec.tap(); // for the task that reads the target's output
//! tap.output(b"$ ").await;
//! rec.input(b"ls\r").await;
//! rec.resize(100, 30).await;
//! rec.marker("guardrail block: prod/rm-rf").await;
//! let done = rec.finish().await?; // done.path, done.sha256 → Store::end_session
//! # let _ = done; Ok(()) }
//! ```
//!
//! # Keeping up with the session
//!
//! The relay's calls (`output`, `input`, `resize`, `marker`) never touch the disk, and wait
//! only when the writer is far behind (below): each takes the time from a monotonic clock
//! and hands the bytes to the recording's writer task over a channel (the relay's `Bytes`
//! are shared, not copied). The writer task collects them into batches and works each batch
//! on tokio's blocking pool, where it is decoded, masked and formatted (see `encoder`),
//! hashed and written; the per-byte work thus runs beside the session, not on its thread (a
//! slow disk stalls only that task; nothing is kept between batches but held text, so an
//! idle recording holds almost nothing). A chunk that arrives as valid UTF-8 (nearly all do)
//! is checked in place and copied only into the masks' matching window (when there are
//! masks) and into its JSON line: unless a mask falls inside it, its line is written from
//! the bytes the relay handed over.
//! A batch is worked:
//!
//! - when it holds 1 MiB of events (`FLUSH_BYTES`, a quarter of `MAX_IN_FLIGHT`), or
//! - 250 ms after its first event (a timer armed only while something waits, so an idle
//!   session costs no wake-ups), or when held text falls due (`mask::HOLD`), and
//! - at `finish`, followed by `fsync`.
//!
//! Lines are only ever written whole, so after `kill -9` the file is valid asciicast up to its
//! last complete line; at most the last ~250 ms (plus the mask hold, `mask::HOLD`) are lost.
//!
//! Why a task and not writes from the relay's own calls: a write, however rare, would put the
//! disk's latency and the masking work on the path of the engineer's keystrokes.
//!
//! The channel is unbounded in messages but bounded in bytes: at most `MAX_IN_FLIGHT` bytes
//! of events may wait for one writer, `MAX_IN_FLIGHT_TOTAL` for all of a `Recorder`'s. When
//! the writer falls that far behind (a disk slower than the session), sending an event waits
//! until it catches up: the session slows to the disk's pace, and the recording has no gaps.
//! Past the exec cap nothing is sent, so nothing waits. A write error stops the recording:
//! `Recording::failed` completes with it at once (so that the bastion can close the session
//! instead of letting it go on unrecorded), and `finish` reports it, the file left as far as
//! it was written.

mod cast;
mod encoder;
mod mask;
mod prune;
mod replay;
mod tap;
mod utf8;
mod writer;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Datelike};

pub use cast::{CastSummary, Event, Header, event_line, parse_event, parse_header, validate_cast};
pub use mask::{MASK, Masker};
pub use prune::{PruneReport, Pruned, counted_start, day_of, expired, prune, remove};
pub use replay::{Control, Key, PlayOptions, Played, Waiter, cat, play, play_terminal};
pub use tap::{Chunk, MAX_IN_FLIGHT, MAX_IN_FLIGHT_TOTAL, RecordingTap};
pub use writer::{Finished, Recording};

use crate::config;
use crate::model::UnixTime;

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("recording mask pattern: {0}")]
    Mask(#[from] regex::Error),
    #[error("session id {0:?} is not usable in a file name (letters, digits, '-', '_')")]
    BadSessionId(String),
    #[error("start time {0} is out of range")]
    BadTime(UnixTime),
    #[error("recording {path} already exists")]
    Exists { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("recordings need a tokio runtime")]
    NoRuntime,
    #[error("recording writer for {0} stopped unexpectedly")]
    WriterGone(String),
    #[error("recording {path} changed since it was listed for removal; left in place")]
    Changed { path: String },
    #[error("{path}: not an asciicast v2 file: {message}")]
    Format { path: String, message: String },
    #[error("{0:?} is not a recording path (YYYY/MM/DD/<session>.cast)")]
    NotARecording(String),
}

impl RecorderError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> RecorderError {
        RecorderError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// What the recording's header says about the session channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMeta {
    pub session_id: String,
    /// Added to the file name when given: `<session-id>-<channel>.cast`.
    pub channel: Option<u32>,
    pub user: String,
    pub login: String,
    pub host: String,
    pub request_id: i64,
    /// Terminal size (0 → 80×24, e.g. exec without a pty).
    pub width: u16,
    pub height: u16,
    pub started_at: UnixTime,
    /// The exec command; `None` for a shell. Exec recordings are capped.
    pub command: Option<String>,
    pub term: Option<String>,
    pub shell: Option<String>,
    /// From `AccessRule::record_input`: record `i` events.
    pub record_input: bool,
}

/// Starts recordings under one folder; cheap to clone, masks compiled once.
#[derive(Debug, Clone)]
pub struct Recorder {
    root: PathBuf,
    masker: Arc<Masker>,
    max_exec_recording: u64,
    /// Bytes of events all writers may still take (see `MAX_IN_FLIGHT_TOTAL`).
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Recorder {
    pub fn new(root: PathBuf, cfg: &config::Recordings) -> Result<Recorder, RecorderError> {
        Ok(Recorder {
            root,
            masker: Arc::new(Masker::new(&cfg.mask)?),
            max_exec_recording: cfg.max_exec_recording,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT_TOTAL)),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the file, writes its header and starts its writer task (needs a tokio runtime).
    pub fn start(&self, meta: SessionMeta) -> Result<Recording, RecorderError> {
        let rel = relative_path(&meta)?;
        let header = header_for(&meta, &self.masker);
        let cap = meta.command.is_some().then_some(self.max_exec_recording);
        writer::start(
            &self.root,
            rel,
            header,
            cap,
            meta.record_input,
            self.masker.clone(),
            self.in_flight.clone(),
        )
    }
}

/// `YYYY/MM/DD/<session-id>[-<channel>].cast`, always with `/`.
pub fn relative_path(meta: &SessionMeta) -> Result<String, RecorderError> {
    let id = &meta.session_id;
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(RecorderError::BadSessionId(id.clone()));
    }
    let day = DateTime::from_timestamp(meta.started_at, 0)
        .ok_or(RecorderError::BadTime(meta.started_at))?;
    let name = match meta.channel {
        Some(c) => format!("{id}-{c}.cast"),
        None => format!("{id}.cast"),
    };
    Ok(format!(
        "{:04}/{:02}/{:02}/{name}",
        day.year(),
        day.month(),
        day.day()
    ))
}

fn header_for(meta: &SessionMeta, masker: &Masker) -> Header {
    let (width, height) = if meta.width == 0 || meta.height == 0 {
        (80, 24)
    } else {
        (meta.width, meta.height)
    };
    let mut env = std::collections::BTreeMap::new();
    if let Some(t) = &meta.term {
        env.insert("TERM".to_string(), t.clone());
    }
    if let Some(s) = &meta.shell {
        env.insert("SHELL".to_string(), s.clone());
    }
    Header {
        version: 2,
        width,
        height,
        timestamp: Some(meta.started_at),
        idle_time_limit: None,
        // A command line can carry a password (`mysql -pSECRET`): masked like output.
        command: meta.command.as_deref().map(|c| masker.mask(c)),
        title: Some(format!(
            "{} as {}@{} (request {})",
            meta.user, meta.login, meta.host, meta.request_id
        )),
        env,
    }
}

/// Validates every `.cast` file under `root`, recursively (for test suites: every recording
/// they made); returns each file with its summary, or the first error naming the file.
pub fn validate_all(root: &Path) -> Result<Vec<(PathBuf, CastSummary)>, String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "cast") {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let summary =
                    validate_cast(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                out.push((path, summary));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The file of a recording named by `rel` (a path the store or the audit log gave), under
/// `root`. Only the recorder's own layout is taken, `YYYY/MM/DD/<name>.cast` with a plain
/// file name, so a stored path edited to `../ca/user_ca` or `/etc/shadow` opens nothing.
pub fn locate(root: &Path, rel: &str) -> Result<PathBuf, RecorderError> {
    let parts: Vec<&str> = rel.split('/').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let ok = match parts.as_slice() {
        [y, m, d, name] => {
            digits(y, 4)
                && digits(m, 2)
                && digits(d, 2)
                && name.len() > ".cast".len()
                && name.ends_with(".cast")
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    };
    if !ok {
        return Err(RecorderError::NotARecording(rel.to_string()));
    }
    Ok(root.join(rel))
}

/// Hex SHA-256 of a file's bytes (for `jitgate audit verify`).
pub fn sha256_file(path: &Path) -> Result<String, RecorderError> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).map_err(|e| RecorderError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| RecorderError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests;
