//! A live recording: the relay's handle and the writer task behind it (see the module above).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::RecorderError;
use super::cast::Header;
use super::encoder::{Encoder, Event};
use super::mask::Masker;

/// Bytes of events that may wait for one recording's writer before the session waits too.
pub const MAX_IN_FLIGHT: usize = 4 << 20;
/// Bytes of events that may wait for all of one `Recorder`'s writers together.
pub const MAX_IN_FLIGHT_TOTAL: usize = 256 << 20;
/// A batch of events is encoded and written at the latest this long after its first event.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// A batch is encoded and written at once when its events hold this many bytes: a quarter
/// of `MAX_IN_FLIGHT`, so that a busy session fills the next batch while one is worked.
/// (Each batch is a trip to a blocking thread and back; at 256 KiB those trips cost the
/// recorder bench 8% of its time.)
const FLUSH_BYTES: usize = MAX_IN_FLIGHT / 4;
/// What one message costs the in-flight budget beyond its data.
const MSG_COST: usize = 64;

/// A finished recording, for `Store::end_session` and the session's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Relative to the recordings folder, with `/`.
    pub path: String,
    /// Hex SHA-256 of the file's final bytes.
    pub sha256: String,
    pub bytes: u64,
}

enum Msg {
    Event { t: f64, event: Event, cost: u32 },
    Finish,
}

struct Shared {
    /// Bytes this recording's events may still take before the writer catches up.
    budget: Semaphore,
    /// The same for all of a recorder's recordings together.
    total: Arc<Semaphore>,
    capped: AtomicBool,
}

impl Shared {
    fn new(total: Arc<Semaphore>) -> Shared {
        Shared {
            budget: Semaphore::new(MAX_IN_FLIGHT),
            total,
            capped: AtomicBool::new(false),
        }
    }

    /// The writer is done with events of this cost.
    fn release(&self, cost: usize) {
        self.budget.add_permits(cost);
        self.total.add_permits(cost);
    }
}

/// The permits an event of `len` bytes takes: its bytes and its message, never more than a
/// whole budget (so a huge chunk waits for an empty queue instead of forever).
fn cost_of(len: usize) -> u32 {
    u32::try_from((len + MSG_COST).min(MAX_IN_FLIGHT)).unwrap_or(u32::MAX)
}

/// What `output` and `input` take: `Bytes` (what the relay forwards) are shared with the
/// recording, anything else is copied once.
pub trait Chunk {
    fn into_bytes(self) -> Bytes;
}

impl Chunk for Bytes {
    fn into_bytes(self) -> Bytes {
        self
    }
}

impl Chunk for &Bytes {
    fn into_bytes(self) -> Bytes {
        self.clone()
    }
}

impl Chunk for Vec<u8> {
    fn into_bytes(self) -> Bytes {
        self.into()
    }
}

impl Chunk for &[u8] {
    fn into_bytes(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl<const N: usize> Chunk for &[u8; N] {
    fn into_bytes(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl Chunk for &Vec<u8> {
    fn into_bytes(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

/// Feeds events into a recording; clone it for each task that sees the channel's data.
#[derive(Clone)]
pub struct RecordingTap {
    tx: mpsc::UnboundedSender<Msg>,
    start: Instant,
    shared: Arc<Shared>,
    record_input: bool,
}

impl std::fmt::Debug for RecordingTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordingTap")
    }
}

impl RecordingTap {
    /// Output from the target (stdout and stderr): an `o` event. The relay hands over the
    /// `Bytes` it forwards, so the recording shares them rather than copying.
    pub async fn output(&self, data: impl Chunk) {
        let data = data.into_bytes();
        if !data.is_empty() {
            self.send(data.len(), || Event::Output(data)).await;
        }
    }

    /// What the engineer typed: an `i` event, only when the rule records input.
    pub async fn input(&self, data: impl Chunk) {
        if !self.record_input {
            return;
        }
        let data = data.into_bytes();
        if !data.is_empty() {
            self.send(data.len(), || Event::Input(data)).await;
        }
    }

    /// The terminal was resized: an `r` event.
    pub async fn resize(&self, width: u16, height: u16) {
        self.send(0, || Event::Resize(width, height)).await;
    }

    /// A guardrail decision or bastion notice: an `m` event.
    pub async fn marker(&self, text: &str) {
        self.send(text.len(), || Event::Marker(text.to_string()))
            .await;
    }

    /// Queues one event, first waiting while the writer is `MAX_IN_FLIGHT` bytes behind (or
    /// all writers `MAX_IN_FLIGHT_TOTAL`): a session outrunning the disk slows to its pace
    /// rather than leave a gap in its recording. Past the exec cap nothing waits.
    /// The event is only built when it will be sent.
    async fn send(&self, len: usize, event: impl FnOnce() -> Event) {
        let s = &self.shared;
        if s.capped.load(Ordering::Relaxed) {
            return;
        }
        // The event's time is when it passed, not when the writer had room for it.
        let t = self.start.elapsed().as_secs_f64();
        let cost = cost_of(len);
        // Neither semaphore is ever closed.
        let (Ok(own), Ok(all)) = (
            s.budget.acquire_many(cost).await,
            s.total.acquire_many(cost).await,
        ) else {
            return;
        };
        own.forget();
        all.forget();
        // A closed channel means the recording is finished: late events go nowhere.
        if self
            .tx
            .send(Msg::Event {
                t,
                event: event(),
                cost,
            })
            .is_err()
        {
            s.release(cost as usize);
        }
    }
}

/// One session channel's recording; `finish` it at close.
#[derive(Debug)]
pub struct Recording {
    tap: RecordingTap,
    path: String,
    task: tokio::task::JoinHandle<Result<Finished, RecorderError>>,
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

    /// Writes what is held, fsyncs, and returns the path, SHA-256 and size. Events sent
    /// through taps after this are ignored.
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
    if let Some(dir) = full.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| RecorderError::io(dir, e))?;
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
    let start = Instant::now();
    let mut hash = Sha256::new();
    hash.update(head.as_bytes());
    let (tx, rx) = mpsc::unbounded_channel();
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
        start,
        shared: shared.clone(),
    };
    let task = handle.spawn(task.run(rx));
    Ok(Recording {
        tap: RecordingTap {
            tx,
            start,
            shared,
            record_input,
        },
        path: rel,
        task,
    })
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
            let held = self
                .work
                .as_ref()
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
        if self.failed.is_none()
            && let Err(e) = blocking(self.file.clone(), |f| f.sync_all()).await
        {
            self.failed = Some(e);
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
                let written = (&*file).write_all(buf).map(|()| buf.len() as u64);
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

    fn fail(&mut self, e: std::io::Error) {
        tracing::warn!(recording = %self.rel, error = %e, "recording stopped: write failed");
        self.failed = Some(e);
    }
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
mod tests {
    use super::*;

    fn tap(record_input: bool) -> (RecordingTap, mpsc::UnboundedReceiver<Msg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let tap = RecordingTap {
            tx,
            start: Instant::now(),
            shared: Arc::new(Shared::new(Arc::new(Semaphore::new(MAX_IN_FLIGHT_TOTAL)))),
            record_input,
        };
        (tap, rx)
    }

    fn events(rx: &mut mpsc::UnboundedReceiver<Msg>) -> Vec<(Event, u32)> {
        let mut v = Vec::new();
        while let Ok(Msg::Event { event, cost, .. }) = rx.try_recv() {
            v.push((event, cost));
        }
        v
    }

    #[tokio::test]
    async fn a_writer_that_falls_behind_holds_the_session_back_and_loses_nothing() {
        let (tap, mut rx) = tap(true);
        let chunk = vec![b'x'; 64 * 1024];
        let fits = MAX_IN_FLIGHT / (chunk.len() + MSG_COST);
        // Nobody drains the channel: sends complete until the budget is used up...
        for _ in 0..fits {
            tap.output(&chunk).await;
        }
        let mut next = Box::pin(tap.output(&chunk));
        tokio::select! {
            biased;
            () = &mut next => panic!("the next send must wait for the writer"),
            () = std::future::ready(()) => {}
        }
        // ...and the waiting one goes through once the writer has taken one event.
        let taken = events(&mut rx);
        assert_eq!(taken.len(), fits);
        tap.shared.release(taken[0].1 as usize);
        next.await;
        let (last, _) = events(&mut rx).pop().expect("the waiting event was queued");
        assert_eq!(last, Event::Output(chunk.clone().into()));
        assert!(
            taken
                .iter()
                .all(|(e, _)| *e == Event::Output(chunk.clone().into()))
        );
    }

    #[tokio::test]
    async fn a_chunk_larger_than_the_budget_waits_for_an_empty_queue_not_forever() {
        let (tap, mut rx) = tap(false);
        tap.output(&vec![b'x'; MAX_IN_FLIGHT * 2]).await;
        let taken = events(&mut rx);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].1 as usize, MAX_IN_FLIGHT);
    }

    #[tokio::test]
    async fn input_is_sent_only_when_recorded_and_nothing_after_the_cap() {
        let (tap, mut rx) = tap(false);
        tap.input(b"secret").await;
        tap.output(b"").await;
        assert!(events(&mut rx).is_empty());
        tap.shared.capped.store(true, Ordering::Relaxed);
        tap.output(b"more").await;
        tap.resize(1, 1).await;
        assert!(events(&mut rx).is_empty());
    }
}
