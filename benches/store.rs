//! Store throughput: one certificate's worth of writes (create_request + next_serial +
//! record_cert) on SQLite, one after another and from 8 concurrent tasks. Budget: at least
//! 2,000 a second on a 2-core machine, i.e. under 500 µs per iteration.
//!
//! Run with `cargo bench --bench store`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jitgate::config::RuleRef;
use jitgate::model::{IssuedCert, NewRequest};
use jitgate::store::{SqliteStore, Store, StoreError};

const T: i64 = 1_800_000_000;

fn ask() -> NewRequest {
    NewRequest {
        requester: "alice".into(),
        host: "db1".into(),
        login: "postgres".into(),
        ttl_secs: 900,
        reason: "INC-4711".into(),
        rule: RuleRef {
            role: "dev".into(),
            index: 0,
            digest: String::new(),
        },
        approvals_needed: 0,
        created_at: T,
        pending_until: T + 3600,
    }
}

/// What the API does for one auto-approved certificate.
async fn issue(store: &SqliteStore) -> Result<(), StoreError> {
    let req = store.create_request(ask()).await?;
    let serial = store.next_serial().await?;
    store
        .record_cert(IssuedCert {
            serial,
            request_id: req.id,
            user: "alice".into(),
            key_fingerprint: "SHA256:bench".into(),
            valid_after: T - 60,
            valid_before: T + 900,
            issued_at: T,
        })
        .await
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("jitgate.db")).expect("open store"));

    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("issue_cert_sequential", |b| {
        b.iter(|| rt.block_on(issue(&store)).expect("issue"));
    });
    const TASKS: u64 = 8;
    g.bench_function("issue_cert_8_tasks", |b| {
        b.iter_custom(|iters| {
            let per_task = iters.div_ceil(TASKS);
            let start = Instant::now();
            rt.block_on(async {
                let tasks: Vec<_> = (0..TASKS)
                    .map(|_| {
                        let store = Arc::clone(&store);
                        tokio::spawn(async move {
                            for _ in 0..per_task {
                                issue(&store).await?;
                            }
                            Ok::<_, StoreError>(())
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task").expect("issue");
                }
            });
            // Scaled back to the iterations asked for.
            start
                .elapsed()
                .mul_f64(iters as f64 / (per_task * TASKS) as f64)
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
