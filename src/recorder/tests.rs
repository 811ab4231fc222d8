//! Recordings end to end through `Recorder::start` and `finish`, on real files.

use super::*;
use crate::config::DEFAULT_MASKS;

fn cfg(max_exec_recording: u64) -> config::Recordings {
    config::Recordings {
        retention: None,
        max_exec_recording,
        mask: DEFAULT_MASKS.iter().map(|s| s.to_string()).collect(),
    }
}

fn meta(id: &str) -> SessionMeta {
    SessionMeta {
        session_id: id.into(),
        channel: None,
        user: "alice".into(),
        login: "postgres".into(),
        host: "db1".into(),
        request_id: 42,
        width: 120,
        height: 40,
        // 2026-11-22 10:15:00 UTC
        started_at: 1_795_342_500,
        command: None,
        term: Some("xterm-256color".into()),
        shell: Some("/bin/bash".into()),
        record_input: true,
    }
}

fn read(root: &Path, f: &Finished) -> (String, CastSummary) {
    let text = std::fs::read_to_string(root.join(&f.path)).expect("read recording");
    let summary = validate_cast(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (text, summary)
}

#[tokio::test]
async fn a_shell_session_is_recorded_as_valid_asciicast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Recorder::new(dir.path().to_path_buf(), &cfg(1 << 20)).expect("recorder");
    let r = rec.start(meta("s1")).expect("start");
    assert_eq!(r.path(), "2026/11/22/s1.cast");
    r.output(b"$ ").await;
    r.input(b"ls\r").await;
    let tap = r.tap();
    tap.output("ls\r\nfile  été\r\n".as_bytes()).await;
    r.resize(100, 30).await;
    r.marker("guardrail warn: prod/sudo").await;
    let f = r.finish().await.expect("finish");
    assert_eq!(f.path, "2026/11/22/s1.cast");

    let (text, s) = read(dir.path(), &f);
    assert_eq!(
        f.sha256,
        sha256_file(&dir.path().join(&f.path)).expect("hash")
    );
    assert_eq!(f.bytes, text.len() as u64);
    assert_eq!(s.header.width, 120);
    assert_eq!(s.header.timestamp, Some(1_795_342_500));
    assert_eq!(
        s.header.title.as_deref(),
        Some("alice as postgres@db1 (request 42)")
    );
    assert_eq!(s.header.command, None);
    assert_eq!(
        s.header.env.get("TERM").map(String::as_str),
        Some("xterm-256color")
    );
    assert_eq!(
        s.header.env.get("SHELL").map(String::as_str),
        Some("/bin/bash")
    );
    assert_eq!(s.output, "$ ls\r\nfile  été\r\n");
    assert_eq!((s.input_events, s.resizes), (1, 1));
    assert_eq!(s.markers, ["guardrail warn: prod/sudo"]);
    // Late events through a tap go nowhere, do not panic, and are not counted as waiting.
    tap.output(b"late").await;
    assert_eq!(
        rec.in_flight.available_permits(),
        crate::recorder::MAX_IN_FLIGHT_TOTAL
    );
    let all = validate_all(dir.path()).expect("all valid");
    assert_eq!(all.len(), 1);
    std::fs::write(dir.path().join("2026/bad.cast"), "{}\n").expect("write");
    let err = validate_all(dir.path()).expect_err("bad file");
    assert!(err.contains("bad.cast"), "{err}");
}

#[tokio::test]
async fn exec_recordings_name_the_command_masked_and_stop_at_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Recorder::new(dir.path().to_path_buf(), &cfg(4096)).expect("recorder");
    let mut m = meta("s2");
    m.channel = Some(3);
    m.width = 0;
    m.command = Some("mysql --password=hunter2 -e 'select 1'".into());
    m.record_input = false;
    let r = rec.start(m).expect("start");
    r.input(b"not recorded").await;
    for _ in 0..1000 {
        r.output(&[b'x'; 100]).await;
    }
    let f = r.finish().await.expect("finish");
    assert_eq!(f.path, "2026/11/22/s2-3.cast");
    let (_, s) = read(dir.path(), &f);
    assert_eq!(
        s.header.command.as_deref(),
        Some("mysql --[MASKED] -e 'select 1'")
    );
    assert_eq!((s.header.width, s.header.height), (80, 24));
    assert_eq!(s.input_events, 0);
    assert!(f.bytes < 4096 + 200, "{}", f.bytes);
    assert!(
        s.markers
            .last()
            .is_some_and(|m| m.contains("capped at 4096"))
    );
}

#[tokio::test]
async fn a_key_printed_in_many_chunks_is_masked_in_the_file_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Recorder::new(dir.path().to_path_buf(), &cfg(1 << 20)).expect("recorder");
    let r = rec.start(meta("s3")).expect("start");
    let key = "-----BEGIN RSA PRIVATE KEY-----\r\nMIIEpAIBAAKCAQEA1\r\nxyz0123456789\r\n-----END RSA PRIVATE KEY-----\r\n";
    for chunk in key.as_bytes().chunks(5) {
        r.output(chunk).await;
    }
    r.output(b"AKIAIOSFOD").await;
    r.output(b"NN7EXAMPLE done\r\n").await;
    let f = r.finish().await.expect("finish");
    let (text, s) = read(dir.path(), &f);
    assert_eq!(s.output, "[MASKED]\r\n[MASKED] done\r\n");
    assert!(!text.contains("MIIE") && !text.contains("AKIA"));
}

#[tokio::test]
async fn markers_quoting_a_command_are_masked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Recorder::new(dir.path().to_path_buf(), &cfg(1 << 20)).expect("recorder");
    let r = rec.start(meta("s5")).expect("start");
    r.marker("jitgate: blocked by x/y: mysql -u root -phunter2 -e 'DROP DATABASE shop'")
        .await;
    let f = r.finish().await.expect("finish");
    let (text, _) = read(dir.path(), &f);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("-p[MASKED] -e 'DROP DATABASE shop'"),
        "{text}"
    );
}

#[tokio::test]
async fn recordings_are_never_overwritten_and_ids_must_be_file_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Recorder::new(dir.path().to_path_buf(), &cfg(1 << 20)).expect("recorder");
    let r = rec.start(meta("s4")).expect("start");
    assert!(matches!(
        rec.start(meta("s4")),
        Err(RecorderError::Exists { .. })
    ));
    r.finish().await.expect("finish");
    for bad in ["", "../x", "a/b", "a b", "a.cast"] {
        assert!(
            matches!(rec.start(meta(bad)), Err(RecorderError::BadSessionId(_))),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn lines_reach_the_disk_while_the_session_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Recorder::new(dir.path().to_path_buf(), &cfg(1 << 20)).expect("recorder");
    let r = rec.start(meta("s5")).expect("start");
    let path = dir.path().join(r.path());
    r.output(b"hello\r\n").await;
    // Not finished: the periodic flush must write it (polled, not timed).
    let mut seen = false;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let text = std::fs::read_to_string(&path).expect("read");
        if text.contains("hello") {
            validate_cast(&text).expect("valid while running");
            seen = true;
            break;
        }
    }
    assert!(seen, "output never reached the file before finish");
    drop(r);
}

#[tokio::test]
async fn a_dropped_recording_still_ends_as_a_valid_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Recorder::new(dir.path().to_path_buf(), &cfg(1 << 20)).expect("recorder");
    let r = rec.start(meta("s6")).expect("start");
    let path = dir.path().join(r.path());
    r.output(b"bye\r\n").await;
    drop(r);
    let mut text = String::new();
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        text = std::fs::read_to_string(&path).expect("read");
        if text.contains("bye") {
            break;
        }
    }
    assert_eq!(validate_cast(&text).expect("valid").output, "bye\r\n");
}

#[test]
fn start_needs_a_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Recorder::new(dir.path().to_path_buf(), &cfg(1 << 20)).expect("recorder");
    assert!(matches!(
        rec.start(meta("s7")),
        Err(RecorderError::NoRuntime)
    ));
}

#[test]
fn bad_mask_patterns_are_errors() {
    let mut c = cfg(1);
    c.mask.push("(".into());
    assert!(matches!(
        Recorder::new(PathBuf::from("/nonexistent"), &c),
        Err(RecorderError::Mask(_))
    ));
}

/// The bastion keeps recordings in per-channel state shared by tasks and awaits `finish`
/// from a boxed future: these bounds must hold.
#[test]
fn handles_can_cross_tasks() {
    fn shared<T: Send + Sync + 'static>() {}
    fn boxed(
        r: Recording,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Finished, RecorderError>> + Send>> {
        Box::pin(r.finish())
    }
    shared::<Recorder>();
    shared::<Recording>();
    shared::<RecordingTap>();
    let _ = boxed;
}

#[test]
fn only_the_recorders_layout_is_located() {
    let root = Path::new("/srv/recordings");
    assert_eq!(
        locate(root, "2026/11/22/s1-0.cast").unwrap(),
        root.join("2026/11/22/s1-0.cast")
    );
    for bad in [
        "../data/ca/user_ca",
        "/etc/shadow",
        "2026/11/22/../../../x.cast",
        "2026/11/22/.cast",
        "2026/11/22/.hidden.cast",
        "2026/11/22/s1.txt",
        "2026/11/s1.cast",
        "2026/11/22/x/s1.cast",
        "20x6/11/22/s1.cast",
        "2026\\11\\22\\s1.cast",
        "",
    ] {
        assert!(locate(root, bad).is_err(), "{bad:?}");
    }
}
