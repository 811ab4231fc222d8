//! The relay's side of a recording: `RecordingTap` queues events for the writer task, and
//! holds the session back while the writer is too far behind (see the module above).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::encoder::Event;

/// Bytes of events that may wait for one recording's writer before the session waits too.
pub const MAX_IN_FLIGHT: usize = 4 << 20;
/// Bytes of events that may wait for all of one `Recorder`'s writers together.
pub const MAX_IN_FLIGHT_TOTAL: usize = 256 << 20;
/// What one message costs the in-flight budget beyond its data.
const MSG_COST: usize = 64;

pub(super) enum Msg {
    Event { t: f64, event: Event, cost: u32 },
    Finish,
}

pub(super) struct Shared {
    /// Bytes this recording's events may still take before the writer catches up.
    budget: Semaphore,
    /// The same for all of a recorder's recordings together.
    total: Arc<Semaphore>,
    pub(super) capped: AtomicBool,
}

impl Shared {
    pub(super) fn new(total: Arc<Semaphore>) -> Shared {
        Shared {
            budget: Semaphore::new(MAX_IN_FLIGHT),
            total,
            capped: AtomicBool::new(false),
        }
    }

    /// The writer is done with events of this cost.
    pub(super) fn release(&self, cost: usize) {
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
    pub(super) tx: mpsc::UnboundedSender<Msg>,
    pub(super) start: Instant,
    pub(super) shared: Arc<Shared>,
    pub(super) record_input: bool,
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
