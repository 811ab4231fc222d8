//! Tests of the recording writer: a writer that fails, and the folders synced at finish.

use super::*;
use crate::recorder::MAX_IN_FLIGHT_TOTAL;

fn setup() -> Setup {
    Setup {
        cap: None,
        record_input: false,
        masker: Arc::new(Masker::new(&[]).expect("no masks")),
        total: Arc::new(Semaphore::new(MAX_IN_FLIGHT_TOTAL)),
        new_folders: false,
    }
}

/// A writer on a file it cannot write (opened read-only) fails at its first batch.
fn failing(dir: &Path) -> Recording {
    let full = dir.join("r.cast");
    let head = "{\"version\":2,\"width\":80,\"height\":24}\n";
    std::fs::write(&full, head).expect("header");
    let file = std::fs::File::open(&full).expect("open read-only");
    let handle = tokio::runtime::Handle::current();
    spawn(&handle, file, full, "r.cast".into(), head, setup())
}

#[tokio::test]
async fn a_write_error_is_reported_while_the_session_runs_and_at_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = failing(dir.path());
    let failed = rec.failed();
    rec.output(vec![b'x'; FLUSH_BYTES]).await;
    let error = tokio::time::timeout(Duration::from_secs(10), failed)
        .await
        .expect("reported before finish")
        .expect("a failure, not a clean end");
    assert!(error.contains("Bad file descriptor"), "{error}");
    // Still known to a late asker, and again at finish.
    assert_eq!(rec.failed().await.as_deref(), Some(error.as_str()));
    let err = rec.finish().await.expect_err("the recording failed");
    assert!(matches!(err, RecorderError::Io { .. }), "{err}");
}

#[tokio::test]
async fn a_clean_finish_reports_no_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let full = root.join("ok.cast");
    let file = std::fs::File::create(&full).expect("create");
    let rec = spawn(
        &tokio::runtime::Handle::current(),
        file,
        full,
        "ok.cast".into(),
        "",
        setup(),
    );
    let failed = rec.failed();
    rec.output(b"hello").await;
    rec.finish().await.expect("finished");
    assert_eq!(failed.await, None);
}

#[test]
fn a_finished_recording_s_folders_are_synced() {
    // That the entries reach the disk cannot be seen from here; that the calls are made on
    // the right folders, and fail when one is missing, can.
    let dir = tempfile::tempdir().expect("tempdir");
    let full = dir.path().join("recordings/2026/11/22/s.cast");
    std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
    std::fs::write(&full, "{}\n").expect("write");
    sync_folders(&full, false).expect("the day's folder");
    sync_folders(&full, true).expect("the date folders and the recordings folder");
    let gone = dir.path().join("recordings/2026/11/23/s.cast");
    assert!(sync_folders(&gone, false).is_err());
}
