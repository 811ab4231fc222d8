//! Prometheus counters in text exposition format: requests by state, certificates issued,
//! API latency. Atomics only; no registry crate.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const STATES: [&str; 6] = [
    "pending", "approved", "denied", "revoked", "expired", "refused",
];
const BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000];

#[derive(Default)]
pub struct Metrics {
    requests: [AtomicU64; 6],
    certificates: AtomicU64,
    latency_buckets: [AtomicU64; 10],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// A request entered `state` (`refused`: denied by policy before it was stored).
    pub fn request(&self, state: &str) {
        if let Some(i) = STATES.iter().position(|s| *s == state) {
            self.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn certificate(&self) {
        self.certificates.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe(&self, took: Duration) {
        // Prometheus buckets are cumulative: an observation counts in every `le` it is under.
        let micros = took.as_micros();
        for (i, le) in BUCKETS_MS.iter().enumerate() {
            if micros <= u128::from(*le) * 1000 {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP jitgate_requests_total Access requests that entered each state.\n");
        out.push_str("# TYPE jitgate_requests_total counter\n");
        for (i, s) in STATES.iter().enumerate() {
            let _ = writeln!(
                out,
                "jitgate_requests_total{{state=\"{s}\"}} {}",
                self.requests[i].load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP jitgate_certificates_issued_total User certificates signed.\n");
        out.push_str("# TYPE jitgate_certificates_issued_total counter\n");
        let _ = writeln!(
            out,
            "jitgate_certificates_issued_total {}",
            self.certificates.load(Ordering::Relaxed)
        );
        out.push_str("# HELP jitgate_api_request_duration_seconds API call latency.\n");
        out.push_str("# TYPE jitgate_api_request_duration_seconds histogram\n");
        for (i, le) in BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                out,
                "jitgate_api_request_duration_seconds_bucket{{le=\"{}\"}} {}",
                *le as f64 / 1000.0,
                self.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "jitgate_api_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "jitgate_api_request_duration_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "jitgate_api_request_duration_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe(Duration::from_micros(1500));
        m.observe(Duration::from_millis(30));
        m.request("approved");
        m.certificate();
        let text = m.render();
        assert!(
            text.contains("jitgate_api_request_duration_seconds_bucket{le=\"0.001\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("jitgate_api_request_duration_seconds_bucket{le=\"0.002\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("jitgate_api_request_duration_seconds_bucket{le=\"0.05\"} 2"),
            "{text}"
        );
        assert!(text.contains("jitgate_api_request_duration_seconds_count 2"));
        assert!(text.contains("jitgate_requests_total{state=\"approved\"} 1"));
        assert!(text.contains("jitgate_certificates_issued_total 1"));
    }
}
