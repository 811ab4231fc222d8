//! How many refusals enter the audit log (`api.refused`, `bastion.refused`): every one,
//! until someone sends them faster than a person could. Each actor (a user, or `unknown` for
//! every client not yet authenticated) has a bucket of `burst` events refilled at
//! `PER_SECOND`; a refusal beyond it is still traced, and counted, not written, and the
//! count rides on that actor's next written refusal (`suppressed`). Unauthenticated clients
//! together can thus add at most one event a second to the hash-chained log, not a thousand,
//! cannot crowd a user's own refusals out of it, and the log still says how many they sent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Refusals an actor may have written per second, after its burst.
pub const PER_SECOND: f64 = 1.0;

#[derive(Debug)]
pub struct RefusalThrottle {
    /// Refusals an actor may have written in a row.
    burst: f64,
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
    /// Count it only; `first` on the first left out since the last one written.
    Skip { first: bool },
}

impl RefusalThrottle {
    pub fn new(burst: u32) -> RefusalThrottle {
        RefusalThrottle {
            burst: f64::from(burst),
            buckets: Mutex::default(),
        }
    }

    pub fn admit(&self, actor: &str, now: Instant) -> Admit {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let burst = self.burst;
        // Actors are configured users plus `unknown`, but keep the map small regardless.
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| b.suppressed > 0 || b.tokens < burst);
        }
        let b = buckets.entry(actor.to_string()).or_insert(Bucket {
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_is_written_then_one_a_second_with_the_count_left_out() {
        let t = RefusalThrottle::new(10);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(t.admit("unknown", t0), Admit::Write { suppressed: 0 });
        }
        assert_eq!(t.admit("unknown", t0), Admit::Skip { first: true });
        for _ in 0..999 {
            assert_eq!(t.admit("unknown", t0), Admit::Skip { first: false });
        }
        // Other actors have their own bucket.
        assert_eq!(t.admit("alice", t0), Admit::Write { suppressed: 0 });
        let later = t0 + Duration::from_millis(1000);
        assert_eq!(t.admit("unknown", later), Admit::Write { suppressed: 1000 });
        assert_eq!(t.admit("unknown", later), Admit::Skip { first: true });
        // Refilled to the burst, never beyond it.
        let idle = later + Duration::from_secs(3600);
        for _ in 0..10 {
            assert!(matches!(t.admit("unknown", idle), Admit::Write { .. }));
        }
        assert!(matches!(t.admit("unknown", idle), Admit::Skip { .. }));
    }
}
