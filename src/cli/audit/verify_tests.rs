//! `audit verify`'s checks of prunes and recordings, on hand-made chains (hashes unchecked
//! here: the chain is verified before these run).

use jitgate::model::{AuditEvent, NewAuditEvent};

use super::*;

const REC: &str = "2026/11/22/s1.cast";
/// 2026-11-22 00:00:00 UTC, the day of `REC`.
const NOV22: i64 = 1_795_305_600;
const DAY: i64 = 86_400;

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
    chain_under(Some("30d"), close, at, prune)
}

/// `chain`, with `retention` entered in the chain first (or none).
fn chain_under(
    retention: Option<&str>,
    close: bool,
    at: i64,
    prune: &[(&str, &str)],
) -> Vec<AuditEvent> {
    let start = NOV22 + 15 * 3600;
    let mut v = Vec::new();
    if let Some(r) = retention {
        v.push(event(0, NOV22, "recordings.retention", &[("retention", r)]));
    }
    v.push(event(1, start, "session.started", &[("recording", REC)]));
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
fn a_prune_must_agree_with_the_chain() {
    let good = [("sha256", "aa"), ("retention", "30d")];
    let now = NOV22 + 40 * DAY;
    let due = NOV22 + 31 * DAY;
    let events = chain(true, due, &good);
    let prunes = checked_prunes(&events, now).unwrap();
    assert!(prunes.pruned.contains(REC));
    assert_eq!(prunes.retentions.len(), 1);
    assert!(
        prunes.retentions[0].starts_with("30d from event 0 ("),
        "{prunes:?}"
    );
    // Raised since: the prune stays valid under the retention in force when it ran.
    let mut raised = chain(true, due, &good);
    raised.push(event(
        4,
        now,
        "recordings.retention",
        &[("retention", "365d")],
    ));
    assert!(checked_prunes(&raised, now).unwrap().pruned.contains(REC));
    // Without its session's start, the recording counts from the end of its folder's day.
    let alone = {
        let mut v = chain(true, NOV22 + 30 * DAY + 300, &good);
        v.drain(1..3);
        v
    };
    let cases: [(&str, Vec<AuditEvent>, &str); 10] = [
        (
            "too young",
            chain(true, NOV22 + 30 * DAY + 300, &good),
            "younger than",
        ),
        ("too young, no start", alone, "younger than"),
        (
            "other hash",
            chain(true, due, &[("sha256", "bb"), ("retention", "30d")]),
            "but its session sealed aa",
        ),
        ("still open", chain(false, due, &good), "session was open"),
        (
            "no retention",
            chain(true, due, &[("sha256", "aa")]),
            "without a valid retention",
        ),
        (
            "no hash",
            chain(true, due, &[("retention", "30d")]),
            "without its sha256",
        ),
        (
            "none in force",
            chain_under(None, true, due, &good),
            "before any retention entered the chain",
        ),
        (
            "forged: 0s, dated now",
            chain(true, now, &[("sha256", "aa"), ("retention", "0s")]),
            "under a retention of 0s, shorter than the 30d in force since event 0",
        ),
        (
            "shorter than in force",
            chain(true, due, &[("sha256", "aa"), ("retention", "7d")]),
            "shorter than the 30d in force",
        ),
        (
            "dated in the future",
            chain_under(Some("7d"), true, now + 3600, &good),
            "later than now",
        ),
    ];
    for (name, events, want) in cases {
        let err = checked_prunes(&events, now).expect_err(name);
        assert!(err.contains(want) && err.contains(REC), "{name}: {err}");
    }
    // A little clock skew is allowed.
    assert!(checked_prunes(&chain(true, now + 60, &good), now).is_ok());
    // A retention event must name one.
    let mut bad = chain(true, due, &good);
    bad[0] = event(0, NOV22, "recordings.retention", &[("retention", "soon")]);
    let err = checked_prunes(&bad, now).expect_err("bad retention");
    assert!(err.contains("event 0 enters no valid retention"), "{err}");
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
