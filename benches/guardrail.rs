//! Guardrail check speed: 1,000 rules (the shipped `destructive` set plus generated,
//! realistically shaped ones, all in one set) against 200-character command lines. Budget:
//! under 20 µs per check at p99. Criterion reports means; the p99 comes from a timed loop of
//! single checks printed at the end.
//!
//! Run with `cargo bench --bench guardrail`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jitgate::config::{Action, Config, GuardrailRule, GuardrailSet, SetDefault, SetMode};
use jitgate::guardrail::{Checker, Guardrails};

const RULES: usize = 1000;

/// The same command boundary the shipped rules use.
const BOUNDARY: &str =
    r"(?:^|[;&|(){}!\n`]|\$\()\s*(?:(?:sudo|doas|env|nohup|xargs)(?:\s+-\S+)*\s+)*(?:\S*/)?";

const TOOLS: &[&str] = &[
    "systemctl",
    "kubectl",
    "helm",
    "terraform",
    "docker",
    "podman",
    "psql",
    "mysql",
    "redis-cli",
    "aws",
    "gcloud",
    "az",
    "zfs",
    "lvremove",
    "vgremove",
    "pvremove",
    "parted",
    "fdisk",
    "sfdisk",
    "crontab",
    "userdel",
    "groupdel",
    "passwd",
    "ufw",
    "firewall-cmd",
    "ip",
    "tc",
    "sysctl",
    "mount",
    "umount",
    "swapoff",
    "kill",
    "pkill",
    "killall",
    "truncate",
    "shred",
    "find",
];
const FLAGS: &[&str] = &[
    "force",
    "all",
    "purge",
    "prune",
    "delete",
    "destroy",
    "recursive",
    "no-backup",
    "yes",
    "cascade",
    "wipe",
    "reset",
    "drop",
    "flush",
    "auto-approve",
    "grace-period=0",
    "now",
];
const DIRS: &[&str] = &[
    "etc",
    "var/lib",
    "srv",
    "opt",
    "data",
    "backup",
    "mnt",
    "var/lib/postgresql",
    "var/lib/mysql",
];
const SQL: &[&str] = &[
    "drop", "alter", "revoke", "grant", "vacuum", "reindex", "cluster", "rename", "disable",
];

fn generated_rules(n: usize) -> Vec<GuardrailRule> {
    (0..n)
        .map(|i| {
            let tool = TOOLS[i % TOOLS.len()];
            let flag = FLAGS[(i / TOOLS.len()) % FLAGS.len()];
            let dir = DIRS[i % DIRS.len()];
            let pattern = match i % 4 {
                0 => format!(r"{BOUNDARY}{tool}\s(?:[^;&|\n]*\s)?--{flag}(?:$|[\s;&|)])"),
                1 => format!(r"{BOUNDARY}{tool}\s(?:[^;&|\n]*\s)?/{dir}/x{i}(?:/|$|[\s;&|)])"),
                2 => format!(
                    r"(?i)\b{}\s+(?:table|index|role|user)\s+t{i}\b",
                    SQL[i % SQL.len()]
                ),
                _ => format!(r"{BOUNDARY}{tool}-{i}\s+(?:-\S+\s+)*{flag}\b"),
            };
            GuardrailRule {
                name: format!("gen-{i}"),
                pattern,
                action: if i % 10 == 0 {
                    Action::Warn
                } else {
                    Action::Block
                },
                message: format!("generated rule {i}"),
            }
        })
        .collect()
}

fn checker() -> Checker {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let text = "include = [\"guardrails/destructive.toml\"]\n\
                [server]\ndata_dir = \"/tmp/jitgate-bench\"\nhostname = \"bench\"\n";
    let shipped = match Config::from_str(text, &dir.join("bench.toml")) {
        Ok(c) => c.guardrails,
        Err(e) => panic!("shipped guardrails do not load: {e}"),
    };
    let mut rules = shipped[0].rules.clone();
    let more = RULES - rules.len();
    rules.extend(generated_rules(more));
    assert_eq!(rules.len(), RULES);
    let set = GuardrailSet {
        name: "bench".into(),
        default: SetDefault::Allow,
        mode: SetMode::Enforce,
        rules,
    };
    let rails = Arc::new(Guardrails::compile(&[set]).expect("compiles"));
    rails.checker(&["bench".to_string()]).expect("set")
}

/// 200-character lines: allowed ones (every rule scanned) and one a rule blocks.
fn lines() -> Vec<String> {
    let raw = [
        "cd /srv/app && git pull --rebase origin main && cargo build --release 2>&1 | tee build.log; ls -la /var/log/nginx/ | grep -v access | head -n 20",
        "kubectl -n payments get pods -o wide --sort-by=.status.startTime | awk '{print $1, $3, $5}' && kubectl -n payments logs deploy/api --since=10m | tail",
        "psql -h db1 -U app -c \"SELECT id, email, created_at FROM users WHERE created_at > now() - interval '1 day' ORDER BY id DESC LIMIT 50\" app",
        "for f in /var/log/app/*.log; do echo \"== $f\"; tail -n 5 \"$f\" | sed -e 's/password=[^ ]*/password=***/g'; done; df -h / /var; uptime",
        "sudo systemctl status nginx postgresql redis --no-pager -l; journalctl -u nginx --since today | grep -c error; rm -rf /   # accident",
    ];
    raw.iter()
        .map(|l| {
            let mut s = l.to_string();
            while s.len() < 200 {
                s.push_str(" x");
            }
            s.truncate(200);
            s
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let checker = checker();
    let lines = lines();
    let mut group = c.benchmark_group("guardrail");
    group.throughput(Throughput::Elements(1));
    group.bench_function("check 1000 rules, 200-char allowed line", |b| {
        b.iter(|| checker.check(std::hint::black_box(&lines[0])))
    });
    group.bench_function("check 1000 rules, 200-char blocked line", |b| {
        b.iter(|| checker.check(std::hint::black_box(&lines[4])))
    });
    group.finish();

    // p99 of single checks, over every line in turn, after a warm-up.
    for line in &lines {
        for _ in 0..1000 {
            std::hint::black_box(checker.check(line));
        }
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(200_000);
    for i in 0..200_000 {
        let line = &lines[i % lines.len()];
        let t = Instant::now();
        std::hint::black_box(checker.check(std::hint::black_box(line)));
        samples.push(t.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "guardrail check, {RULES} rules, 200-char lines, {} samples: p50 {:?}  p99 {:?}  p99.9 {:?}  max {:?}  (budget p99 < 20µs)",
        samples.len(),
        at(0.50),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1]
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
