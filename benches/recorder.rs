//! Recorder speed: 64 MiB of session output (`yes`-style text lines, in 32 KiB chunks, as the
//! relay hands them over) through a real `Recording` into a file in a temp folder, with the
//! default masks and without, and a shell's directory listing with the default masks (text
//! where a mask's literal prefilter finds many candidates): decoding, masking, formatting,
//! hashing and writing, from the first `output` call to `finish` (which fsyncs). Criterion
//! reports the throughput.
//!
//! Run with `cargo bench --bench recorder`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jitgate::config::{DEFAULT_MASKS, Recordings};
use jitgate::recorder::{Recorder, SessionMeta};

const CHUNK: usize = 32 << 10;
const CHUNKS: usize = 2048;
const LINE: &str = "the quick brown fox jumps over the lazy dog 0123456789\n";
const LISTING: &str =
    "-rw------- 1 postgres postgres 16777216 Dec  5 10:21 pg_wal/000000010000000000000042\r\n";

fn recorder(root: &std::path::Path, masks: bool) -> Recorder {
    let cfg = Recordings {
        retention: None,
        max_exec_recording: u64::MAX,
        mask: if masks {
            DEFAULT_MASKS.iter().map(|s| s.to_string()).collect()
        } else {
            Vec::new()
        },
    };
    Recorder::new(root.to_path_buf(), &cfg).expect("recorder")
}

fn meta(id: String) -> SessionMeta {
    SessionMeta {
        session_id: id,
        channel: None,
        user: "bench".into(),
        login: "root".into(),
        host: "db1".into(),
        request_id: 1,
        width: 80,
        height: 24,
        started_at: 1_795_342_500,
        command: Some("yes".into()),
        term: None,
        shell: None,
        record_input: false,
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    // `Bytes`, as the relay hands over what it forwards.
    let chunk = |line: &str| -> bytes::Bytes {
        line.bytes().cycle().take(CHUNK).collect::<Vec<u8>>().into()
    };
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("recorder");
    group.throughput(Throughput::Bytes((CHUNK * CHUNKS) as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (name, line, masks) in [
        ("64MiB_default_masks", LINE, true),
        ("64MiB_no_masks", LINE, false),
        ("64MiB_listing_default_masks", LISTING, true),
    ] {
        let chunk = chunk(line);
        let rec = runtime.block_on(async { recorder(dir.path(), masks) });
        group.bench_function(name, |b| {
            b.iter(|| {
                let id = format!("s{}", next.fetch_add(1, Ordering::Relaxed));
                runtime.block_on(async {
                    let r = rec.start(meta(id)).expect("start");
                    for _ in 0..CHUNKS {
                        r.output(&chunk).await;
                    }
                    let done = r.finish().await.expect("finish");
                    // Each sample writes 64 MiB; keep the temp folder from filling the disk.
                    std::fs::remove_file(dir.path().join(&done.path)).expect("remove");
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
