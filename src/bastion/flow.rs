//! Flow control for one relayed channel's input, around a limit of russh 0.65.
//!
//! russh grants a peer more window as soon as data arrives, and hands each message to its
//! channel by blocking its session loop on a bounded queue. A loop that blocks there also stops
//! reading everything behind that message, including the peer's window adjustments. With data
//! flowing both ways through the bastion, four waits can then close a circle:
//!
//! 1. the relay waits for the engineer's window to send output;
//! 2. the engineer's window adjustment sits in the nested session behind input nobody reads;
//! 3. the input is not read because the relay waits for the target's window to forward it;
//! 4. the target's window adjustment sits in the upstream session behind output the relay
//!    does not take, because its output buffer is full, because of (1).
//!
//! An engineer who stops reading for a moment while sending (`ssh db1 cat < big | less`)
//! closed that circle for good. `UpQueue` breaks it at (2)/(3): the engineer's input is read
//! into a queue of its own, bounded at `UP_BUFFER` bytes, except while output to the engineer
//! has waited for window longer than `STALL` — then input is read past the bound so the
//! adjustment behind it is reached. A queue that still grows to `UP_LIMIT` means the engineer
//! sends without ever reading; the relay then closes the channel with a notice rather than
//! hold more memory.
//!
//! The circle also closes across the channels of one multiplexed connection (OpenSSH's
//! `ControlMaster`): a download whose reader pauses fills its queue and holds the upstream
//! session, so an upload on another channel waits for the target's window, its queue fills,
//! and the nested session stops reading — the download's window adjustments included. So a
//! stall is the connection's, not the channel's (`Stalls`): while any channel's output waits
//! for the engineer, every channel of that connection reads its input past the bound.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Bytes of the engineer's input queued for the target before reading pauses, each message
/// counted with its `MSG_COST`.
pub const UP_BUFFER: usize = 2 << 20;
/// Bytes of queued input at which the channel is closed instead.
pub const UP_LIMIT: usize = 64 << 20;
/// How long output may wait for the engineer's window before input is read past the bound.
pub const STALL: Duration = Duration::from_millis(50);
/// What a queued message holds besides its data bytes: its slot in the relay's queue (the
/// message and its cost) and 64 bytes for the data's allocation and the allocator's rounding.
/// Counted on top of every message's data, so that one-byte messages cannot hold several
/// times the bound.
const MSG_COST: usize = std::mem::size_of::<(russh::ChannelMsg, usize)>() + 64;

/// Output stalls on one connection to the engineer, shared by its channels' queues.
#[derive(Debug, Default)]
pub struct Stalls {
    /// Sends to the engineer waiting for window longer than `STALL` (each channel's output
    /// and its guardrail notices may all wait).
    count: AtomicUsize,
    /// Woken, every waiter at once, when a stall begins.
    begun: Notify,
}

/// One channel's input between reading it and forwarding it.
#[derive(Debug, Default)]
pub struct UpQueue {
    queued: AtomicUsize,
    stalls: Arc<Stalls>,
    wake: Notify,
}

/// The queue reached `UP_LIMIT` bytes: the engineer sends and does not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stuck(pub usize);

impl UpQueue {
    /// A queue for one channel of the connection whose output stalls are `stalls`.
    pub fn new(stalls: Arc<Stalls>) -> UpQueue {
        UpQueue {
            stalls,
            ..UpQueue::default()
        }
    }

    /// Waits until another message may be read: the queue is under `UP_BUFFER`, or output
    /// to the engineer is stalled on any channel of the connection.
    pub async fn room(&self) -> Result<(), Stuck> {
        loop {
            if let Some(room) = self.now() {
                return room;
            }
            // Registered, then checked again: a stall that begins after the check still wakes
            // this wait (`notify_waiters` keeps no permit).
            let begun = self.stalls.begun.notified();
            let mut begun = std::pin::pin!(begun);
            begun.as_mut().enable();
            if let Some(room) = self.now() {
                return room;
            }
            // `notify_one` keeps a permit when nobody waits yet, so no wake-up is lost
            // between the checks above and this wait.
            tokio::select! {
                () = self.wake.notified() => {}
                () = begun => {}
            }
        }
    }

    /// What `room` says at once, if it need not wait.
    fn now(&self) -> Option<Result<(), Stuck>> {
        let queued = self.queued.load(Ordering::Acquire);
        if queued >= UP_LIMIT {
            return Some(Err(Stuck(queued)));
        }
        let open = queued < UP_BUFFER || self.stalls.count.load(Ordering::Acquire) > 0;
        open.then_some(Ok(()))
    }

    /// A message of `len` data bytes was queued; returns what it counts for: its bytes and
    /// `MSG_COST`.
    pub fn add(&self, len: usize) -> usize {
        let cost = len + MSG_COST;
        self.queued.fetch_add(cost, Ordering::AcqRel);
        cost
    }

    /// A message that counted `cost` left the queue.
    pub fn taken(&self, cost: usize) {
        self.queued.fetch_sub(cost, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// Runs one send to the engineer; if it waits for window longer than `STALL`, marks the
    /// connection's output as stalled until it completes, so that every channel's input is
    /// read past the bound meanwhile.
    pub async fn to_engineer<F: Future>(&self, send: F) -> F::Output {
        let mut send = std::pin::pin!(send);
        tokio::select! {
            biased;
            out = &mut send => return out,
            () = tokio::time::sleep(STALL) => {}
        }
        let stalls = &self.stalls;
        stalls.count.fetch_add(1, Ordering::AcqRel);
        stalls.begun.notify_waiters();
        // Ends the stall however the send ends, dropped included (the relay's select drops
        // the loser): a stall left counted would unbound every queue of the connection.
        let _ended = Ended(stalls);
        send.await
    }
}

/// Counts one stall out when dropped.
struct Ended<'a>(&'a Stalls);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `room` completes at once.
    async fn has_room(q: &UpQueue) -> Option<Result<(), Stuck>> {
        tokio::select! {
            biased;
            r = q.room() => Some(r),
            () = std::future::ready(()) => None,
        }
    }

    #[tokio::test]
    async fn reading_pauses_at_the_bound_and_resumes_as_input_leaves() {
        let q = UpQueue::default();
        let a = q.add(UP_BUFFER - MSG_COST - 1);
        assert_eq!(has_room(&q).await, Some(Ok(())));
        let b = q.add(32 * 1024);
        assert_eq!(has_room(&q).await, None, "over the bound, reading waits");
        let waiting = q.room();
        q.taken(b);
        assert_eq!(waiting.await, Ok(()));
        q.taken(a);
        assert_eq!(q.queued.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_stalled_engineer_lets_input_past_the_bound_until_the_limit() {
        let q = UpQueue::default();
        q.add(UP_BUFFER);
        assert_eq!(has_room(&q).await, None);
        // Output that waits for window longer than STALL opens the bound...
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let sending = q.to_engineer(rx);
        let reader = async {
            assert_eq!(q.room().await, Ok(()));
            // ...up to the limit, where the channel is given up.
            q.add(UP_LIMIT);
            assert_eq!(
                q.room().await,
                Err(Stuck(UP_LIMIT + UP_BUFFER + 2 * MSG_COST))
            );
            tx.send(()).unwrap();
        };
        let (sent, ()) = tokio::join!(sending, reader);
        assert!(sent.is_ok());
        assert!(
            q.stalls.count.load(Ordering::Relaxed) == 0,
            "the stall ends with the send"
        );
    }

    #[test]
    fn every_message_counts_its_overhead_with_its_bytes() {
        let q = UpQueue::default();
        let cases = [
            ("a one-byte key", 1, 1 + MSG_COST),
            ("a full packet", 32 << 10, (32 << 10) + MSG_COST),
            ("a request", 0, MSG_COST),
        ];
        for (what, len, want) in cases {
            assert_eq!(q.add(len), want, "{what}");
        }
        // One-byte keys reach the limit at a few hundred thousand, not 64 million.
        const { assert!(UP_LIMIT / (1 + MSG_COST) < 500_000) };
    }

    #[tokio::test]
    async fn a_stall_on_one_channel_opens_every_queue_of_its_connection() {
        let conn = Arc::new(Stalls::default());
        let (download, upload) = (UpQueue::new(Arc::clone(&conn)), UpQueue::new(conn));
        let elsewhere = UpQueue::default();
        upload.add(UP_BUFFER);
        elsewhere.add(UP_BUFFER);
        // The upload already waits for room when the download's output stalls.
        let waiting = upload.room();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stalled = download.to_engineer(rx);
        let reader = async {
            assert_eq!(waiting.await, Ok(()), "the upload reads on");
            assert_eq!(has_room(&elsewhere).await, None, "another connection waits");
            tx.send(()).unwrap();
        };
        let (sent, ()) = tokio::join!(stalled, reader);
        assert!(sent.is_ok());
        assert_eq!(has_room(&upload).await, None, "the stall is over");
    }

    #[tokio::test]
    async fn a_stalled_send_that_is_dropped_ends_its_stall() {
        let q = UpQueue::default();
        q.add(UP_BUFFER);
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        {
            let send = q.to_engineer(rx);
            tokio::pin!(send);
            let past_stall = tokio::time::sleep(STALL * 2);
            tokio::select! {
                _ = &mut send => panic!("the send has no window"),
                () = past_stall => {}
            }
            assert_eq!(has_room(&q).await, Some(Ok(())), "stalled: reads on");
        }
        assert_eq!(has_room(&q).await, None, "the dropped send's stall ended");
    }

    #[tokio::test]
    async fn a_send_that_completes_in_time_is_no_stall() {
        let q = UpQueue::default();
        q.add(UP_BUFFER);
        assert_eq!(q.to_engineer(async { 7 }).await, 7);
        assert_eq!(has_room(&q).await, None);
    }
}
