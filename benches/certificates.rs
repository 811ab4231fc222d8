//! Certificates through the API, end to end: a signed request that policy approves at once,
//! then a signed certificate call, against the real server on loopback with SQLite.
//! Budget (DESIGN.md): at least 1,000 certificates a second on a 2-core machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jitgate::api::client::{Client, Signer};
use jitgate::api::dto::{CertificateView, CreateRequest, RequestView};
use jitgate::ca::generate_ed25519;
use jitgate::config::Config;
use jitgate::server::{Parts, run};

/// Certificates per measured batch, and how many callers run at once.
const BATCH: usize = 256;
const CALLERS: usize = 16;

struct Fixture {
    rt: tokio::runtime::Runtime,
    clients: Vec<Arc<Client>>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<_> = (0..CALLERS).map(|_| generate_ed25519()).collect();
    let mut users = String::new();
    for (i, k) in keys.iter().enumerate() {
        users.push_str(&format!(
            "[[users]]\nname = \"u{i}\"\nroles = [\"engineer\"]\nkeys = [\"{}\"]\n",
            k.public_key().to_openssh().unwrap()
        ));
    }
    let text = format!(
        r#"[server]
data_dir = "data"
api_listen = "127.0.0.1:0"
ssh_listen = "127.0.0.1:0"
hostname = "127.0.0.1"
[[hosts]]
name = "web1"
address = "127.0.0.1:1"
{users}
[[roles]]
name = "engineer"
[[roles.access]]
hosts = ["web1"]
logins = ["deploy"]
max_ttl = "1h"
require_reason = false
"#
    );
    let path = dir.path().join("jitgate.toml");
    std::fs::write(&path, &text).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let url = rt.block_on(async {
        let mut cfg = Config::load(&path).unwrap();
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ssh = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        cfg.server.api_listen = api.local_addr().unwrap();
        cfg.server.ssh_listen = ssh.local_addr().unwrap();
        let url = format!("http://{}", cfg.server.api_listen);
        let parts = Parts::open(cfg).unwrap();
        tokio::spawn(run(parts, api, ssh, async {
            let _ = stop_rx.await;
        }));
        url
    });
    let clients = keys
        .into_iter()
        .map(|k| Arc::new(Client::new(&url, Signer::Key(Box::new(k)), None).unwrap()))
        .collect();
    Fixture {
        rt,
        clients,
        _dir: dir,
        _stop: stop_tx,
    }
}

/// One certificate: request (approved by policy) then certificate.
async fn one(client: &Client) {
    let body = CreateRequest {
        host: "web1".into(),
        login: "deploy".into(),
        ttl: "15m".into(),
        reason: String::new(),
    };
    let req: RequestView = client.post("/v1/requests", &body).await.unwrap();
    assert_eq!(req.state, "approved");
    let _: CertificateView = client
        .post(
            &format!("/v1/requests/{}/certificate", req.id),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
}

async fn batch(clients: &[Arc<Client>]) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..BATCH / CALLERS {
                one(&c).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn certificates(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("api");
    group.throughput(Throughput::Elements(BATCH as u64));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("certificates_sqlite", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += f.rt.block_on(batch(&f.clients));
            }
            total
        })
    });
    group.finish();
    // A plain figure for scripts/bench.sh: one long run, certificates per second.
    let runs = 8;
    let took: Duration = (0..runs).map(|_| f.rt.block_on(batch(&f.clients))).sum();
    println!(
        "certificates_per_second {:.0}",
        (runs * BATCH) as f64 / took.as_secs_f64()
    );
}

criterion_group!(benches, certificates);
criterion_main!(benches);
