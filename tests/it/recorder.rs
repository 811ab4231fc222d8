//! The recorder against the outside world: the stock asciinema 3.x CLI reads what it writes,
//! and a process killed with SIGKILL mid-recording leaves a valid file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use jitgate::config::{DEFAULT_MASKS, Recordings};
use jitgate::recorder::{Recorder, SessionMeta, cat, validate_cast};

const INSTALL: &str = "cargo install asciinema --locked --version 3.2.0";
const CRASH_DIR: &str = "JITGATE_RECORDER_CRASH_DIR";

fn cfg() -> Recordings {
    Recordings {
        retention: None,
        max_exec_recording: 64 << 20,
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
        request_id: 7,
        width: 100,
        height: 30,
        started_at: 1_795_342_500,
        command: None,
        term: Some("xterm-256color".into()),
        shell: Some("/bin/bash".into()),
        record_input: true,
    }
}

/// The asciinema 3.x CLI; its absence fails the test.
fn asciinema() -> PathBuf {
    let out = Command::new("asciinema").arg("--version").output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).starts_with("asciinema 3.") => {
            PathBuf::from("asciinema")
        }
        Ok(o) => panic!(
            "asciinema 3.x is required, found {:?}; install it with: {INSTALL}",
            String::from_utf8_lossy(&o.stdout).trim()
        ),
        Err(e) => panic!("asciinema 3.x is required ({e}); install it with: {INSTALL}"),
    }
}

async fn record_sample(root: &Path) -> PathBuf {
    let rec = Recorder::new(root.to_path_buf(), &cfg()).expect("recorder");
    let r = rec.start(meta("sample")).expect("start");
    r.output(b"\x1b[1;32malice@db1\x1b[0m:~$ ").await;
    r.input(b"cat notes\r").await;
    let text = "caf\u{e9} \u{1f980} \"quoted\" \\ tab\t\r\nAKIAIOSFODNN7EXAMPLE\r\n";
    for chunk in text.as_bytes().chunks(3) {
        r.output(chunk).await;
    }
    r.resize(120, 40).await;
    r.marker("guardrail warn: prod/cat").await;
    r.output(b"\xff invalid byte\r\n").await;
    let f = r.finish().await.expect("finish");
    root.join(f.path)
}

#[tokio::test]
async fn asciinema_reads_our_recordings() {
    let bin = asciinema();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = record_sample(dir.path()).await;
    let text = std::fs::read_to_string(&file).expect("read");
    validate_cast(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let out = Command::new(&bin)
        .args(["convert", "-f", "raw"])
        .arg(&file)
        .arg("-")
        .output()
        .expect("run asciinema");
    assert!(
        out.status.success(),
        "asciinema convert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ours = b"\x1b[8;30;100t".to_vec(); // asciinema's raw output starts with the size
    cat(text.as_bytes(), &mut ours).expect("cat");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&ours)
    );
    assert!(!text.contains("AKIA"), "masked in the file");

    // Its own v2 writer, fed our file, writes a file our validator accepts.
    let copy = dir.path().join("copy.cast");
    let st = Command::new(&bin)
        .args(["convert", "-f", "asciicast-v2"])
        .arg(&file)
        .arg(&copy)
        .stderr(Stdio::inherit())
        .status()
        .expect("run asciinema");
    assert!(st.success());
    let copy_text = std::fs::read_to_string(&copy).expect("read copy");
    let s = validate_cast(&copy_text).unwrap_or_else(|e| panic!("{e}\n{copy_text}"));
    assert_eq!(s.output, validate_cast(&text).expect("valid").output);
}

/// Run only as the child of `a_killed_recorder_leaves_a_valid_file`: records until killed.
#[test]
fn crash_child_process() {
    let Some(dir) = std::env::var_os(CRASH_DIR) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let rec = Recorder::new(PathBuf::from(dir), &cfg()).expect("recorder");
        let r = rec.start(meta("crash")).expect("start");
        for i in 0u64.. {
            r.output(format!("line {i} {}\r\n", "x".repeat((i % 7) as usize * 300)).as_bytes())
                .await;
            if i % 10 == 0 {
                r.marker(&format!("marker {i}")).await;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
}

#[test]
fn a_killed_recorder_leaves_a_valid_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("2026/11/22/crash.cast");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["recorder::crash_child_process", "--exact", "--nocapture"])
        .env(CRASH_DIR, dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child");
    // Wait (bounded) until the child has written plenty, then SIGKILL it mid-stream.
    let mut lines = 0;
    for _ in 0..600 {
        std::thread::sleep(Duration::from_millis(50));
        lines = std::fs::read(&file).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
        if lines > 200 {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(
        lines > 200,
        "the child wrote only {lines} lines; status {status:?}"
    );

    let bytes = std::fs::read(&file).expect("read");
    let end = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("a complete line");
    let text = std::str::from_utf8(&bytes[..=end]).expect("utf-8");
    let s = validate_cast(text).unwrap_or_else(|e| panic!("{e}"));
    // Every line up to the last complete one is there, in order.
    let mut want = 0;
    // (The text after the last line break may be the front part of a chunk.)
    let whole = &s.output[..s.output.rfind("\r\n").map_or(0, |i| i + 2)];
    for l in whole.split("\r\n").filter(|l| !l.is_empty()) {
        let n: u64 = l
            .split(' ')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("odd line {l:?}"));
        assert_eq!(n, want);
        want += 1;
    }
    assert!(want > 100, "{want}");
    // Our player plays the cut file as it is.
    let mut out = Vec::new();
    cat(&bytes[..], &mut out).expect("cat a crash-cut file");
}
