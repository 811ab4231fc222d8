//! How many refusals enter the audit log (`api.refused`, `bastion.refused`): every one,
//! until someone sends them faster than a person could. Each actor (a user, or `unknown` for
//! every client not yet authenticated) has a bucket of `burst` events refilled at
//! `PER_SECOND`; a refusal beyond it is still traced, and counted, not written. The count
//! rides on that actor's next written refusal (`suppressed`); one that no refusal carried
//! within `FLUSH_EVERY`, or before the server stops, is written as a refusal of its own.
//! Unauthenticated clients together can thus add about one event a second to the
//! hash-chained log, not a thousand, cannot crowd a user's own refusals out of it, and the
//! log still says how many they sent: each written refusal stands for itself and the
//! `suppressed` before it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::{NewAuditEvent, UnixTime};
use crate::store::Store;

/// Refusals an actor may have written per second, after its burst.
pub const PER_SECOND: f64 = 1.0;

/// How often counts that no written refusal carried are written on their own.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// The `reason` of a refusal that writes a count (`Counted::event`).
pub const COUNTED_REASON: &str = "refusals counted while throttled";

/// Whose refusals share a bucket: an actor, and the request it names when the bastion's
/// `unknown` shows a certificate the user CA signed (a revoked engineer still trying is
/// then counted apart from strangers).
type Key = (String, Option<i64>);

#[derive(Debug)]
pub struct RefusalThrottle {
    /// The audit events' kind.
    kind: &'static str,
    /// Refusals an actor may have written in a row.
    burst: f64,
    buckets: Mutex<HashMap<Key, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    suppressed: u64,
}

/// Whether to write a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write it, noting how many of this actor's were left out before it.
    Write { suppressed: u64 },
    /// Count it only; `first` on the first left out since the last one written.
    Skip { first: bool },
}

/// One bucket's refusals counted and not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub actor: String,
    pub request: Option<i64>,
    pub refusals: u64,
}

impl Counted {
    /// The event that writes the count: like any written refusal, it stands for one refusal
    /// (the last counted) and `suppressed` for those before it, so the sums stay whole.
    pub fn event(&self, kind: &str, at: UnixTime) -> NewAuditEvent {
        let mut event = NewAuditEvent::new(at, kind, &self.actor).with("reason", COUNTED_REASON);
        if self.refusals > 1 {
            event = event.with("suppressed", self.refusals - 1);
        }
        if let Some(id) = self.request {
            event = event.request(id);
        }
        event
    }
}

impl RefusalThrottle {
    /// A throttle of refusals audited as `kind`.
    pub fn new(kind: &'static str, burst: u32) -> RefusalThrottle {
        RefusalThrottle {
            kind,
            burst: f64::from(burst),
            buckets: Mutex::default(),
        }
    }

    pub fn admit(&self, actor: &str, request: Option<i64>, now: Instant) -> Admit {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let burst = self.burst;
        // Actors are configured users plus `unknown`, but keep the map small regardless.
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| b.suppressed > 0 || b.tokens < burst);
        }
        let b = buckets
            .entry((actor.to_string(), request))
            .or_insert(Bucket {
                tokens: burst,
                at: now,
                suppressed: 0,
            });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * PER_SECOND).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Admit::Write {
                suppressed: std::mem::take(&mut b.suppressed),
            }
        } else {
            b.suppressed += 1;
            Admit::Skip {
                first: b.suppressed == 1,
            }
        }
    }

    /// Takes every bucket's count. The tokens stay as they are: a flood goes on being
    /// counted, not written.
    pub fn drain(&self) -> Vec<Counted> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets
            .iter_mut()
            .filter(|(_, b)| b.suppressed > 0)
            .map(|((actor, request), b)| Counted {
                actor: actor.clone(),
                request: *request,
                refusals: std::mem::take(&mut b.suppressed),
            })
            .collect()
    }

    /// Writes every count as a refusal of its own.
    pub async fn flush(&self, store: &dyn Store, at: UnixTime) {
        for counted in self.drain() {
            if let Err(e) = store.append_audit(counted.event(self.kind, at)).await {
                tracing::error!(
                    error = %e,
                    kind = self.kind,
                    actor = counted.actor,
                    refusals = counted.refusals,
                    "cannot audit refusals counted while throttled"
                );
            }
        }
    }

    /// Runs `server`, flushing every `FLUSH_EVERY` while it runs and once more when it has
    /// stopped, so that no count is left in memory; `clock` dates the events.
    pub async fn flushing(
        &self,
        store: &dyn Store,
        clock: fn() -> UnixTime,
        server: impl Future<Output = ()>,
    ) {
        let (stopped, mut done) = tokio::sync::oneshot::channel::<()>();
        let server = async {
            server.await;
            drop(stopped);
        };
        // Joined, not raced: a flush in progress never holds up the server, and the server
        // stopping never cuts a flush short.
        let flush = async {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            loop {
                tokio::select! {
                    _ = &mut done => break,
                    _ = tick.tick() => self.flush(store, clock()).await,
                }
            }
            self.flush(store, clock()).await;
        };
        tokio::join!(server, flush);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_written_then_one_a_second_with_the_count_left_out() {
        let t = RefusalThrottle::new("api.refused", 10);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(t.admit("unknown", None, t0), Admit::Write { suppressed: 0 });
        }
        assert_eq!(t.admit("unknown", None, t0), Admit::Skip { first: true });
        for _ in 0..999 {
            assert_eq!(t.admit("unknown", None, t0), Admit::Skip { first: false });
        }
        // Other actors have their own bucket.
        assert_eq!(t.admit("alice", None, t0), Admit::Write { suppressed: 0 });
        let later = t0 + Duration::from_millis(1000);
        assert_eq!(
            t.admit("unknown", None, later),
            Admit::Write { suppressed: 1000 }
        );
        assert_eq!(t.admit("unknown", None, later), Admit::Skip { first: true });
        // Refilled to the burst, never beyond it.
        let idle = later + Duration::from_secs(3600);
        for _ in 0..10 {
            assert!(matches!(
                t.admit("unknown", None, idle),
                Admit::Write { .. }
            ));
        }
        assert!(matches!(t.admit("unknown", None, idle), Admit::Skip { .. }));
    }

    #[test]
    fn a_drain_takes_each_count_once_and_leaves_the_flood_throttled() {
        let t = RefusalThrottle::new("bastion.refused", 2);
        let t0 = Instant::now();
        for _ in 0..5 {
            t.admit("unknown", None, t0);
        }
        for _ in 0..3 {
            t.admit("unknown", Some(7), t0);
        }
        t.admit("alice", None, t0);
        let mut counted = t.drain();
        counted.sort_by_key(|c| c.request);
        let counted_of = |request, refusals| Counted {
            actor: "unknown".into(),
            request,
            refusals,
        };
        assert_eq!(counted, [counted_of(None, 3), counted_of(Some(7), 1)]);
        assert_eq!(t.drain(), []);
        // Taken once: the next written refusal carries only what came after the drain, and
        // the bucket was not refilled by it.
        assert_eq!(t.admit("unknown", None, t0), Admit::Skip { first: true });
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            t.admit("unknown", None, later),
            Admit::Write { suppressed: 1 }
        );
    }

    #[test]
    fn a_count_written_on_its_own_stands_for_every_refusal_it_counted() {
        for refusals in [1, 2, 15] {
            let counted = Counted {
                actor: "unknown".into(),
                request: Some(7),
                refusals,
            };
            let event = counted.event("bastion.refused", 1_000);
            let suppressed: u64 = event
                .data
                .get("suppressed")
                .map_or(0, |n| n.parse().unwrap());
            assert_eq!(1 + suppressed, refusals, "{event:?}");
            assert_eq!(event.data["reason"], COUNTED_REASON);
            assert_eq!(
                (event.kind.as_str(), event.actor.as_str()),
                ("bastion.refused", "unknown")
            );
            assert_eq!((event.request_id, event.at), (Some(7), 1_000));
        }
    }
}
