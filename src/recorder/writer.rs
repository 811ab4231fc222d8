//! A live recording: its handle and the writer task behind it (see the module above).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::RecorderError;
use super::cast::Header;
use super::encoder::{Encoder, Event};
use super::mask::Masker;
use super::tap::{Chunk, MAX_IN_FLIGHT, Msg, RecordingTap, Shared};

/// A batch of events is encoded and written at the latest this long after its first event.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// A batch is encoded and written at once when its events hold this many bytes: a quarter
/// of `MAX_IN_FLIGHT`, so that a busy session fills the next batch while one is worked.
/// (Each batch is a trip to a blocking thread and back; at 256 KiB those trips cost the
/// recorder bench 8% of its time.)
const FLUSH_BYTES: usize = MAX_IN_FLIGHT / 4;

/// A finished recording, for `Store::end_session` and the session's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Relative to the recordings folder, with `/`.
    pub path: String,
    /// Hex SHA-256 of the file's final bytes.
    pub sha256: String,
    pub bytes: u64,
}

/// One session channel's recording; `finish` it at close.
#[derive(Debug)]
pub struct Recording {
    tap: RecordingTap,
    path: String,
    task: tokio::task::JoinHandle<Result<Finished, RecorderError>>,
    /// Set by the writer when the recording stops on an error.
    failure: watch::Receiver<Option<String>>,
}

impl Recording {
    /// Relative path of the file, as it will be in `Finished`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A handle for another task (e.g. the one reading the target's output).
    pub fn tap(&self) -> RecordingTap {
        self.tap.clone()
    }

    pub async fn output(&self, data: impl Chunk) {
        self.tap.output(data).await;
    }

    pub async fn input(&self, data: impl Chunk) {
        self.tap.input(data).await;
    }

    pub async fn resize(&self, width: u16, height: u16) {
        self.tap.resize(width, height).await;
    }

    pub async fn marker(&self, text: &str) {
        self.tap.marker(text).await;
    }

    /// Completes with the error when the writer stops on one (a write or `fsync` failed,
    /// its blocking work was lost), so that the session can be closed rather than go on
    /// unrecorded; with `None` once the writer ended without one. Independent of `self`.
    pub fn failed(&self) -> impl Future<Output = Option<String>> + Send + 'static {
        let mut failure = self.failure.clone();
        async move {
            // The value is looked at before the channel's end, so a failure is never missed.
            let seen = failure.wait_for(Option::is_some).await;
            seen.ok().and_then(|v| v.clone())
        }
    }

    /// Writes what is held, fsyncs, and returns the path, SHA-256 and size; on an error, the
    /// file stays as far as it was written. Events sent through taps after this are ignored.
    pub async fn finish(self) -> Result<Finished, RecorderError> {
        let _ = self.tap.tx.send(Msg::Finish);
        match self.task.await {
            Ok(r) => r,
            Err(_) => Err(RecorderError::WriterGone(self.path)),
        }
    }
}

pub(crate) fn start(
    root: &Path,
    rel: String,
    header: Header,
    cap: Option<u64>,
    record_input: bool,
    masker: Arc<Masker>,
    total: Arc<Semaphore>,
) -> Result<Recording, RecorderError> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| RecorderError::NoRuntime)?;
    let full = root.join(&rel);
    // The day's folder exists but for the first recording of a day: one look, no `mkdir`.
    let dir = full.parent().filter(|dir| !dir.is_dir());
    let new_folders = dir.is_some();
    if let Some(dir) = dir {
        crate::private::create_folder(dir).map_err(|e| RecorderError::io(dir, e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&full)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => RecorderError::Exists { path: rel.clone() },
            _ => RecorderError::io(&full, e),
        })?;
    let head = header.line();
    file.write_all(head.as_bytes())
        .map_err(|e| RecorderError::io(&full, e))?;
    Ok(spawn(
        &handle,
        file,
        full,
        rel,
        &head,
        Setup {
            cap,
            record_input,
            masker,
            total,
            new_folders,
        },
    ))
}

/// What a recording's writer is set up with, beside its file.
struct Setup {
    cap: Option<u64>,
    record_input: bool,
    masker: Arc<Masker>,
    total: Arc<Semaphore>,
    /// The recording created its date folders (see `sync_folders`).
    new_folders: bool,
}

/// Starts the writer task for `file`, whose first line `head` is written already.
fn spawn(
    handle: &tokio::runtime::Handle,
    file: std::fs::File,
    full: PathBuf,
    rel: String,
    head: &str,
    setup: Setup,
) -> Recording {
    let Setup {
        cap,
        record_input,
        masker,
        total,
        new_folders,
    } = setup;
    let start = Instant::now();
    let mut hash = Sha256::new();
    hash.update(head.as_bytes());
    let (tx, rx) = mpsc::unbounded_channel();
    let (alarm, failure) = watch::channel(None);
    let shared = Arc::new(Shared::new(total));
    let task = Task {
        file: Arc::new(file),
        full,
        rel: rel.clone(),
        work: Some(Work {
            enc: Encoder::new(masker, head.len() as u64, cap),
            hash,
        }),
        bytes: head.len() as u64,
        failed: None,
        alarm,
        new_folders,
        start,
        shared: shared.clone(),
    };
    let task = handle.spawn(task.run(rx));
    Recording {
        tap: RecordingTap {
            tx,
            start,
            shared,
            record_input,
        },
        path: rel,
        task,
        failure,
    }
}

struct Task {
    /// Written from blocking threads (`&File` is `Write`), so no buffer outlives a write.
    file: Arc<std::fs::File>,
    full: PathBuf,
    rel: String,
    /// The encoder and the running hash; away on a blocking thread while a batch is worked.
    work: Option<Work>,
    bytes: u64,
    failed: Option<std::io::Error>,
    /// Tells `Recording::failed` of the error that stopped the recording.
    alarm: watch::Sender<Option<String>>,
    new_folders: bool,
    start: Instant,
    shared: Arc<Shared>,
}

/// The per-byte work of a recording (decoding, masking, formatting, hashing), which moves to
/// a blocking thread with each batch, so that it runs beside the session rather than on the
/// session's thread.
struct Work {
    enc: Encoder,
    hash: Sha256,
}

/// Events received and not yet encoded.
#[derive(Default)]
struct Batch {
    events: Vec<(f64, Event)>,
    /// Their data bytes (what decides when a batch is worked).
    len: usize,
    /// What they took from the in-flight budgets.
    cost: usize,
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
    ) -> Result<Finished, RecorderError> {
        let mut batch = Batch::default();
        let mut flush_at: Option<Instant> = None;
        loop {
            // After a failure nothing more is written: held text is never due.
            let held = self
                .work
                .as_ref()
                .filter(|_| self.failed.is_none())
                .and_then(|w| w.enc.deadline())
                // A millisecond late, so the float comparison in `tick` surely finds it due.
                .map(|t| {
                    let t = Duration::try_from_secs_f64(t).unwrap_or_default();
                    self.start + t + Duration::from_millis(1)
                });
            let wake = match (flush_at, held) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut due = false;
            tokio::select! {
                biased;
                msg = rx.recv() => match msg {
                    Some(Msg::Event { t, event, cost }) => {
                        batch.len += event.len();
                        batch.cost += cost as usize;
                        batch.events.push((t, event));
                    }
                    Some(Msg::Finish) | None => break,
                },
                _ = sleep_until(wake) => due = true,
            }
            let now = Instant::now();
            if due || batch.len >= FLUSH_BYTES || flush_at.is_some_and(|f| f <= now) {
                self.work(std::mem::take(&mut batch), false).await;
                flush_at = None;
            } else if flush_at.is_none() && !batch.events.is_empty() {
                flush_at = Some(now + FLUSH_EVERY);
            }
        }
        // Late events are not recorded, but their bytes go back to the recorder-wide budget.
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Event { cost, .. } = msg {
                self.shared.release(cost as usize);
            }
        }
        self.work(batch, true).await;
        // Synced even after a failure: the file as it stands is what gets sealed.
        if let Err(e) = blocking(self.file.clone(), |f| f.sync_all()).await {
            self.fail(e);
        }
        // Before the hash goes to the store (whose commits are synced), the file's name too.
        let (full, new_folders) = (self.full.clone(), self.new_folders);
        let synced = tokio::task::spawn_blocking(move || sync_folders(&full, new_folders));
        match synced.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.fail(e),
            Err(e) => self.fail(std::io::Error::other(e)),
        }
        match (self.failed, self.work) {
            (Some(e), _) => Err(RecorderError::io(&self.full, e)),
            (None, Some(work)) => Ok(Finished {
                path: self.rel,
                sha256: hex::encode(work.hash.finalize()),
                bytes: self.bytes,
            }),
            (None, None) => Err(RecorderError::WriterGone(self.rel)),
        }
    }

    /// Encodes `batch` (then releases what held text is due, or all of it at the end) and
    /// writes the complete lines, on a blocking thread. After an error nothing more is
    /// written; the batch's bytes go back to the budgets either way.
    async fn work(&mut self, batch: Batch, finish: bool) {
        let cost = batch.cost;
        if self.failed.is_none()
            && let Some(mut work) = self.work.take()
        {
            let file = Arc::clone(&self.file);
            let now = self.start.elapsed().as_secs_f64();
            let done = tokio::task::spawn_blocking(move || {
                for (t, event) in batch.events {
                    work.enc.push(t, event);
                }
                if finish {
                    work.enc.finish();
                } else {
                    work.enc.tick(now);
                }
                let buf = work.enc.pending();
                work.hash.update(buf);
                // A write that fails part way (a full disk, a file size limit) is cut back
                // to the lines before it, so the file stays valid asciicast to its end.
                let before = file.metadata().map(|m| m.len());
                let written = (&*file).write_all(buf).map(|()| buf.len() as u64);
                if written.is_err()
                    && let Ok(len) = before
                {
                    let _ = file.set_len(len);
                }
                work.enc.written();
                (work, written)
            })
            .await;
            match done {
                Ok((work, written)) => {
                    if work.enc.capped() {
                        self.shared.capped.store(true, Ordering::Relaxed);
                    }
                    self.work = Some(work);
                    match written {
                        Ok(n) => self.bytes += n,
                        Err(e) => self.fail(e),
                    }
                }
                Err(e) => self.fail(std::io::Error::other(e)),
            }
        }
        self.shared.release(cost);
    }

    /// Stops the recording on its first error (a later one is only logged).
    fn fail(&mut self, e: std::io::Error) {
        tracing::warn!(recording = %self.rel, error = %e, "recording stopped: write failed");
        if self.failed.is_none() {
            self.alarm.send_replace(Some(e.to_string()));
            self.failed = Some(e);
        }
    }
}

/// Makes a finished recording's directory entry durable: fsyncs the folder that holds
/// `full` and, when the recording created the date folders (`new_folders`), those above it
/// up to the recordings folder, whose entries name them.
fn sync_folders(full: &Path, new_folders: bool) -> std::io::Result<()> {
    let levels = if new_folders { 4 } else { 1 };
    for dir in full.ancestors().skip(1).take(levels) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Runs a file operation on tokio's blocking pool.
async fn blocking<F>(file: Arc<std::fs::File>, op: F) -> std::io::Result<()>
where
    F: FnOnce(&std::fs::File) -> std::io::Result<()> + Send + 'static,
{
    match tokio::task::spawn_blocking(move || op(&file)).await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e)),
    }
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(w) => tokio::time::sleep_until(w).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
