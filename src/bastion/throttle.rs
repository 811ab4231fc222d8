//! How many `bastion.refused` events enter the audit log: every one, until someone sends
//! them faster than a person could. Each actor (an authenticated engineer, or `unknown` for
//! every client not yet authenticated) has a bucket of `BURST` events refilled at
//! `PER_SECOND`. A refusal beyond it is still logged with tracing, and counted, not written;
//! the count rides on that actor's next written refusal (`suppressed`). Unauthenticated
//! clients together can thus add at most one event a second to the hash-chained log, and
//! cannot crowd an engineer's own refusals out of it. (The API's `throttle.rs` does the same
//! for refused calls.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Refusals an actor may have written in a row.
pub const BURST: f64 = 20.0;
/// Refusals an actor may have written per second, after its burst.
pub const PER_SECOND: f64 = 1.0;

#[derive(Debug, Default)]
pub struct RefusalThrottle {
    buckets: Mutex<HashMap<String, Bucket>>,
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
    /// Count it only.
    Skip,
}

impl RefusalThrottle {
    pub fn admit(&self, actor: &str, now: Instant) -> Admit {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Actors are engineers who authenticated plus `unknown`; keep the map small anyway.
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| b.suppressed > 0 || b.tokens < BURST);
        }
        let b = buckets.entry(actor.to_string()).or_insert(Bucket {
            tokens: BURST,
            at: now,
            suppressed: 0,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * PER_SECOND).min(BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Admit::Write {
                suppressed: std::mem::take(&mut b.suppressed),
            }
        } else {
            b.suppressed += 1;
            Admit::Skip
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_is_written_then_one_a_second_with_the_count_left_out() {
        let t = RefusalThrottle::default();
        let t0 = Instant::now();
        for _ in 0..20 {
            assert_eq!(t.admit("unknown", t0), Admit::Write { suppressed: 0 });
        }
        for _ in 0..500 {
            assert_eq!(t.admit("unknown", t0), Admit::Skip);
        }
        // An engineer's refusals have their own bucket.
        assert_eq!(t.admit("alice", t0), Admit::Write { suppressed: 0 });
        let later = t0 + Duration::from_millis(1500);
        assert_eq!(t.admit("unknown", later), Admit::Write { suppressed: 500 });
        assert_eq!(t.admit("unknown", later), Admit::Skip);
        // Refilled to the burst, never beyond it.
        let idle = later + Duration::from_secs(3600);
        for _ in 0..20 {
            assert!(matches!(t.admit("unknown", idle), Admit::Write { .. }));
        }
        assert_eq!(t.admit("unknown", idle), Admit::Skip);
    }
}
