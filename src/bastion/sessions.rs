//! Live connections, each bound to its request: revocation, expiry and shutdown reach every
//! session of a request through here.
//!
//! Every authenticated outer connection registers one `Control` channel. Its relays and its
//! connection tasks watch it: a notice is written to the engineer's terminal, a close ends the
//! session after that notice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// What the relays of one connection should do now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Control {
    /// A numbered message for the engineer; relays print each new number once.
    pub notice: Option<(u64, String)>,
    /// Close every session now, after printing this.
    pub close: Option<String>,
}

/// The sending side of one connection's control channel.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    tx: Arc<watch::Sender<Control>>,
}

impl ControlHandle {
    pub fn new() -> (ControlHandle, watch::Receiver<Control>) {
        let (tx, rx) = watch::channel(Control::default());
        (ControlHandle { tx: Arc::new(tx) }, rx)
    }

    pub fn subscribe(&self) -> watch::Receiver<Control> {
        self.tx.subscribe()
    }

    pub fn notice(&self, text: &str) {
        self.tx.send_modify(|c| {
            let n = c.notice.as_ref().map_or(1, |(n, _)| n + 1);
            c.notice = Some((n, text.to_string()));
        });
    }

    /// Closes the connection's sessions; the first reason wins.
    pub fn close(&self, reason: &str) {
        self.tx.send_modify(|c| {
            if c.close.is_none() {
                c.close = Some(reason.to_string());
            }
        });
    }

    /// Closes at Unix time `at` (a certificate or request ending), if still alive then. The
    /// timer ends with the connection: many short connections under a long grant leave no
    /// sleeping tasks behind.
    pub fn close_at(&self, at: i64, reason: String) {
        let weak = Arc::downgrade(&self.tx);
        let mut rx = self.tx.subscribe();
        let wait = u64::try_from(at - crate::model::now()).unwrap_or(0);
        tokio::spawn(async move {
            let due = tokio::time::sleep(std::time::Duration::from_secs(wait));
            tokio::pin!(due);
            loop {
                tokio::select! {
                    () = &mut due => break,
                    // Every handle dropped: the connection is gone.
                    changed = rx.changed() => if changed.is_err() {
                        return;
                    },
                }
            }
            if let Some(tx) = weak.upgrade() {
                ControlHandle { tx }.close(&reason);
            }
        });
    }

    pub fn is_closed(&self) -> bool {
        self.tx.borrow().close.is_some()
    }
}

/// Waits until `rx` says close, and returns the reason.
pub async fn closed(rx: &mut watch::Receiver<Control>) -> String {
    loop {
        if let Some(reason) = rx.borrow_and_update().close.clone() {
            return reason;
        }
        if rx.changed().await.is_err() {
            // The connection is gone; nothing will ever say close.
            std::future::pending::<()>().await;
        }
    }
}

struct Entry {
    request_id: i64,
    control: ControlHandle,
}

/// Every live, authenticated connection, by a process-unique number, and the requests whose
/// access has ended.
#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    live: Mutex<Live>,
    /// How many times revocations may have been missed (the hub lagged): a connection whose
    /// check began before a miss is checked again once registered (`lagged_since`).
    lags: AtomicU64,
}

#[derive(Default)]
struct Live {
    conns: HashMap<u64, Entry>,
    /// Requests `close_request` ended, with why: a connection that checked its request just
    /// before the revocation and registers just after it is closed at once, not missed.
    ended: HashMap<i64, Ended>,
}

struct Ended {
    reason: String,
    /// No certificate for the request is valid from then on, so none can register: the
    /// entry is dropped.
    until: i64,
}

/// Removes its connection from the registry when dropped.
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().conns.remove(&self.id);
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        // A panic while holding this lock leaves a plain map behind: still usable.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection of `request_id`; one whose request already ended is closed at once.
    pub fn register(self: &Arc<Self>, request_id: i64, control: ControlHandle) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut live = self.lock();
        if let Some(ended) = live.ended.get(&request_id) {
            control.close(&ended.reason);
        }
        live.conns.insert(
            id,
            Entry {
                request_id,
                control,
            },
        );
        drop(live);
        Registration {
            registry: Arc::clone(self),
            id,
        }
    }

    /// Closes every connection of `request_id`, now and when registered later (until
    /// `until`, when no certificate for it is valid any more); returns how many there were.
    /// Forgets the ended requests whose `until` has passed at `now`.
    pub fn close_request(&self, request_id: i64, reason: &str, until: i64, now: i64) -> usize {
        let mut live = self.lock();
        live.ended.retain(|_, e| e.until > now);
        live.ended.insert(
            request_id,
            Ended {
                reason: reason.to_string(),
                until,
            },
        );
        let mut n = 0;
        for e in live.conns.values().filter(|e| e.request_id == request_id) {
            e.control.close(reason);
            n += 1;
        }
        n
    }

    /// Where the count of missed revocations stands: taken before a connection's check.
    pub fn lag_mark(&self) -> u64 {
        self.lags.load(Ordering::Acquire)
    }

    /// Notes that revocations may have been missed; call before sweeping `requests()`.
    pub fn lagged(&self) {
        self.lags.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether revocations may have been missed since `mark`: a connection checked before
    /// then and registered after the sweep must be checked again.
    pub fn lagged_since(&self, mark: u64) -> bool {
        self.lag_mark() != mark
    }

    /// The requests with live connections.
    pub fn requests(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.lock().conns.values().map(|e| e.request_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn notice_all(&self, text: &str) {
        for e in self.lock().conns.values() {
            e.control.notice(text);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A place among at most `max` (sessions on a connection, nested servers on a jump),
/// given back when dropped, also when its task unwinds.
pub struct Slot(Arc<AtomicUsize>);

impl Slot {
    pub fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        if open.fetch_add(1, Ordering::AcqRel) >= max {
            open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(Arc::clone(open)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts the bastion's live tasks (connections, nested servers, sessions) so shutdown can
/// wait until every record is written.
#[derive(Default)]
pub struct Tasks {
    live: AtomicU64,
    idle: tokio::sync::Notify,
}

/// One live task; dropping it marks the task done.
pub struct TaskGuard(Arc<Tasks>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Tasks {
    pub fn enter(self: &Arc<Self>) -> TaskGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        TaskGuard(Arc::clone(self))
    }

    /// Returns once no task is live.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn close_request_reaches_only_that_request() {
        let reg = Arc::new(Registry::default());
        let (a, mut rx_a) = ControlHandle::new();
        let (b, rx_b) = ControlHandle::new();
        let _ga = reg.register(1, a);
        let gb = reg.register(2, b);
        assert_eq!(reg.requests(), vec![1, 2]);
        assert_eq!(reg.close_request(1, "revoked", 100, 0), 1);
        assert_eq!(closed(&mut rx_a).await, "revoked");
        assert!(rx_b.borrow().close.is_none());
        drop(gb);
        assert_eq!(reg.requests(), vec![1]);
    }

    #[tokio::test]
    async fn a_close_timer_ends_with_its_connection() {
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let (c, _rx) = ControlHandle::new();
        c.close_at(crate::model::now() + 3600, "expired".into());
        tokio::task::yield_now().await;
        assert_eq!(metrics.num_alive_tasks(), before + 1);
        drop(c);
        drop(_rx);
        for _ in 0..100 {
            if metrics.num_alive_tasks() == before {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the timer outlived its connection");
    }

    #[tokio::test]
    async fn a_connection_registered_after_its_request_ended_is_closed() {
        // Checked the store before the revocation, registered after it: still closed.
        let reg = Arc::new(Registry::default());
        assert_eq!(reg.close_request(1, "revoked by bob", 100, 0), 0);
        let (late, mut rx) = ControlHandle::new();
        let _g = reg.register(1, late);
        assert_eq!(closed(&mut rx).await, "revoked by bob");
        let (other, rx_other) = ControlHandle::new();
        let _o = reg.register(2, other);
        assert!(rx_other.borrow().close.is_none());
    }

    #[test]
    fn ended_requests_are_forgotten_once_no_certificate_can_be_valid() {
        let reg = Arc::new(Registry::default());
        reg.close_request(1, "one ended", 100, 0);
        reg.close_request(2, "two ended", 500, 50);
        assert_eq!(reg.lock().ended.len(), 2);
        // At 200 no certificate of request 1 is valid: its entry goes, request 2's stays.
        reg.close_request(3, "three ended", 300, 200);
        let mut kept: Vec<i64> = reg.lock().ended.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![2, 3]);
        let (late, rx) = ControlHandle::new();
        let _g = reg.register(1, late);
        assert!(rx.borrow().close.is_none());
        let (late, rx) = ControlHandle::new();
        let _g = reg.register(2, late);
        assert_eq!(rx.borrow().close.as_deref(), Some("two ended"));
    }

    #[test]
    fn a_check_begun_before_a_lag_is_marked_for_a_second_look() {
        let reg = Registry::default();
        let before = reg.lag_mark();
        assert!(!reg.lagged_since(before));
        reg.lagged();
        assert!(reg.lagged_since(before));
        assert!(
            !reg.lagged_since(reg.lag_mark()),
            "a check begun after it is current"
        );
    }

    #[test]
    fn slots_are_capped_and_given_back() {
        let open = Arc::new(AtomicUsize::new(0));
        let held: Vec<Slot> = (0..3).map(|_| Slot::take(&open, 3).unwrap()).collect();
        assert!(Slot::take(&open, 3).is_none());
        assert_eq!(open.load(Ordering::Acquire), 3);
        drop(held);
        assert!(Slot::take(&open, 3).is_some());
    }

    #[tokio::test]
    async fn tasks_idle_waits_for_the_last_guard() {
        let tasks = Arc::new(Tasks::default());
        tasks.idle().await;
        let a = tasks.enter();
        let b = tasks.enter();
        let waiter = tokio::spawn({
            let tasks = Arc::clone(&tasks);
            async move { tasks.idle().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(b);
        waiter.await.unwrap();
    }

    #[test]
    fn notices_are_numbered_and_first_close_wins() {
        let (c, rx) = ControlHandle::new();
        c.notice("one");
        c.notice("two");
        assert_eq!(rx.borrow().notice, Some((2, "two".to_string())));
        c.close("first");
        c.close("second");
        assert_eq!(rx.borrow().close.as_deref(), Some("first"));
        assert!(c.is_closed());
    }
}
