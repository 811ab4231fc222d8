//! `audit verify`'s checks of prunes and recordings, on hand-made chains (hashes unchecked
//! here: the chain is verified before these run).

use std::time::Duration;

use jitgate::model::{AuditEvent, NewAuditEvent};

use super::*;

const REC: &str = "2026/11/22/s1.cast";
/// 2026-11-22 00:00:00 UTC, the day of `REC`.
const NOV22: i64 = 1_795_305_600;
const DAY: i64 = 86_400;
const THIRTY: Option<Duration> = Some(Duration::from_secs(30 * DAY as u64));

fn event(seq: i64, at: i64, kind: &str, data: &[(&str, &str)]) -> AuditEvent {
    let mut e = NewAuditEvent::new(at, kind, "system").session("s1");
    for (k, v) in data {
        e = e.with(k, v);
    }
    AuditEvent {
        seq,
        event: e,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// A session started at 15:00 on `REC`'s day and closed a minute later with hash `aa`, then
/// a prune at `at`.
fn chain(close: bool, at: i64, prune: &[(&str, &str)]) -> Vec<AuditEvent> {
    let start = NOV22 + 15 * 3600;
    let mut v = vec![event(1, start, "session.started", &[("recording", REC)])];
    if close {
        v.push(event(
            2,
            start + 60,
            "session.closed",
            &[("recording", REC), ("recording_sha256", "aa")],
        ));
    }
    let mut data = vec![("recording", REC)];
    data.extend_from_slice(prune);
    v.push(event(3, at, "recording.pruned", &data));
    v
}

#[test]
fn a_prune_must_agree_with_the_chain_and_the_configuration() {
    let good = [("sha256", "aa"), ("retention", "30d")];
    let now = NOV22 + 40 * DAY;
    let due = NOV22 + 31 * DAY;
    let events = chain(true, due, &good);
    assert!(checked_prunes(&events, THIRTY, now).unwrap().contains(REC));
    // Without its session's start, the recording counts from the end of its folder's day.
    let alone = &chain(true, NOV22 + 30 * DAY + 300, &good)[2..];
    let short = Some(Duration::from_secs(7 * DAY as u64));
    type Case<'a> = (&'a str, Vec<AuditEvent>, Option<Duration>, &'a str);
    let cases: [Case; 10] = [
        (
            "too young",
            chain(true, NOV22 + 30 * DAY + 300, &good),
            THIRTY,
            "younger than",
        ),
        (
            "too young, no start",
            alone.to_vec(),
            THIRTY,
            "younger than",
        ),
        (
            "other hash",
            chain(true, due, &[("sha256", "bb"), ("retention", "30d")]),
            THIRTY,
            "but its session sealed aa",
        ),
        (
            "still open",
            chain(false, due, &good),
            THIRTY,
            "session was open",
        ),
        (
            "no retention",
            chain(true, due, &[("sha256", "aa")]),
            THIRTY,
            "without a valid retention",
        ),
        (
            "no hash",
            chain(true, due, &[("retention", "30d")]),
            THIRTY,
            "without its sha256",
        ),
        (
            "none configured",
            chain(true, due, &good),
            None,
            "no recordings.retention is configured",
        ),
        (
            "forged: 0s, dated now",
            chain(true, now, &[("sha256", "aa"), ("retention", "0s")]),
            THIRTY,
            "under a retention of 0s, shorter than the configured 30d",
        ),
        (
            "shorter than configured",
            chain(true, due, &[("sha256", "aa"), ("retention", "7d")]),
            THIRTY,
            "shorter than the configured",
        ),
        (
            "dated in the future",
            chain(true, now + 3600, &good),
            short,
            "later than now",
        ),
    ];
    for (name, events, retention, want) in cases {
        let err = checked_prunes(&events, retention, now).expect_err(name);
        assert!(err.contains(want) && err.contains(REC), "{name}: {err}");
    }
    // A little clock skew is allowed.
    let events = chain(true, now + 60, &good);
    assert!(checked_prunes(&events, short, now).is_ok());
}

/// A start and a close of session `s1` naming `rel`, the close with `extra` data.
fn closed(rel: &str, extra: &[(&str, &str)]) -> Vec<AuditEvent> {
    let mut data = vec![("recording", rel)];
    data.extend_from_slice(extra);
    vec![
        event(1, NOV22, "session.started", &[("recording", REC)]),
        event(2, NOV22 + 60, "session.closed", &data),
    ]
}

#[test]
fn a_close_without_a_hash_passes_only_when_the_file_is_gone_for_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let none = HashSet::new();
    let file = root.join(REC);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "{}\n").unwrap();
    let sha = jitgate::recorder::sha256_file(&file).unwrap();

    let ok = check_recordings(&closed(REC, &[("recording_sha256", &sha)]), root, &none).unwrap();
    assert_eq!((ok.checked, ok.warnings.len()), (1, 0));
    let failed = [("recording_error", "No space left on device")];
    let err = check_recordings(&closed(REC, &failed), root, &none).unwrap_err();
    assert!(
        err.contains(&format!(
            "recording {REC} (event 2, session s1) exists but its session sealed no hash"
        )),
        "{err}"
    );
    std::fs::remove_file(&file).unwrap();
    let gone = check_recordings(&closed(REC, &failed), root, &none).unwrap();
    assert_eq!(gone.checked, 0);
    assert!(
        gone.warnings[0].contains("never sealed: No space left on device"),
        "{:?}",
        gone.warnings
    );
    let cut = check_recordings(&closed(REC, &[("cut_off", "x")]), root, &none).unwrap();
    assert_eq!(cut.warnings.len(), 1);
    let err = check_recordings(&closed(REC, &[]), root, &none).unwrap_err();
    assert!(err.contains("sealed neither a hash nor why"), "{err}");
}

#[test]
fn a_close_must_name_the_recording_its_session_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let other = "2026/11/22/s2.cast";
    let err = check_recordings(
        &closed(other, &[("recording_sha256", "aa")]),
        dir.path(),
        &HashSet::new(),
    )
    .unwrap_err();
    assert!(
        err.contains(&format!(
            "event 2 closes session s1 with recording {other}, but it started with {REC}"
        )),
        "{err}"
    );
    // A session still open is listed, not failed.
    let open = check_recordings(&closed(REC, &[])[..1], dir.path(), &HashSet::new()).unwrap();
    assert_eq!(open.open, [format!("{REC} (session s1)")]);
}
