//! `jitgate audit verify`: offline, against the store's file and the recordings folder. The
//! hash chain first (and a kept head), then every `recording.pruned` event against the rest
//! of the chain (the retention in force, sessions, hashes), then every recording a session's
//! close names.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::path::Path;
use std::process::ExitCode;

use jitgate::config::{format_duration, parse_duration};
use jitgate::model::{AuditEvent, UnixTime};
use jitgate::store::audit::Head;

use crate::cli::load_config;

/// How far ahead of this machine's clock a prune event may be dated: the two hosts' clocks
/// may differ a little, never by days.
const CLOCK_SKEW: i64 = 300;

/// Walks the hash chain, checks it still holds `kept` (a head from an earlier run), checks
/// the prunes, then re-hashes every recording a closed session named.
pub(super) async fn verify(config: &Path, kept: Option<&Head>) -> anyhow::Result<ExitCode> {
    use jitgate::store::{SqliteStore, Store, audit};
    let cfg = load_config(config)?;
    let jitgate::config::StoreUrl::Sqlite(db) = &cfg.store;
    let store = SqliteStore::open_readonly(db)?;
    // The store refuses a row it cannot read back as written (data not in the form the
    // chain hashed), naming it.
    let events = match store.audit_events(None).await {
        Ok(events) => events,
        Err(e) => return Ok(broken(e)),
    };
    let checked = audit::verify_chain(&events)
        .and_then(|_| kept.map_or(Ok(()), |h| audit::check_head(&events, h)));
    if let Err(e) = checked {
        return Ok(broken(e));
    }
    // Recordings removed by retention are expected to be gone, once each removal is shown
    // to agree with the rest of the chain.
    let prunes = match checked_prunes(&events, jitgate::model::now()) {
        Ok(prunes) => prunes,
        Err(e) => return Ok(broken(e)),
    };
    for line in &prunes.retentions {
        println!("retention: {line}");
    }
    let report = match check_recordings(&events, &cfg.server.recordings_dir, &prunes.pruned) {
        Ok(report) => report,
        Err(e) => return Ok(broken(e)),
    };
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    if !report.open.is_empty() {
        println!(
            "not sealed: {} recording(s) whose hash never entered the chain (a session still \
             open, or cut off by a stop and sealed when `serve` next starts), so not verified: \
             {}",
            report.open.len(),
            report.open.join(", ")
        );
    }
    let head = Head::of(&events).map_or("none (no events)".to_string(), |h| h.to_string());
    let reaches = kept.map_or(String::new(), |h| format!("; holds the kept head {h}"));
    println!(
        "audit log intact: {} events, {} recordings verified{reaches}; head {head}",
        events.len(),
        report.checked
    );
    Ok(ExitCode::SUCCESS)
}

fn broken(e: impl Display) -> ExitCode {
    println!("audit log NOT intact: {e}");
    ExitCode::from(1)
}

/// What the recordings showed, when nothing was wrong.
#[derive(Debug, Default)]
struct Recordings {
    /// Recordings whose hash matched the one sealed.
    checked: usize,
    /// Recordings absent with no hash sealed, for a reason the chain records.
    warnings: Vec<String>,
    /// Recordings of sessions not closed, as `path (session ID)`.
    open: Vec<String>,
}

/// Checks every recording a `session.closed` names under `root`: it is the one its session
/// started with; its file has the hash the close sealed (unless `pruned` and gone); a close
/// that sealed no hash is a failure while the file exists, and, once it is gone, a warning
/// when the close says why (`recording_error`, `cut_off`), else a failure.
fn check_recordings<'a>(
    events: &'a [AuditEvent],
    root: &Path,
    pruned: &HashSet<&str>,
) -> Result<Recordings, String> {
    let mut report = Recordings::default();
    let mut started: Vec<(&'a str, &'a str)> = Vec::new();
    let mut recording_of: HashMap<&'a str, &'a str> = HashMap::new();
    let mut closed: HashSet<&'a str> = HashSet::new();
    for e in events {
        let session = e.event.session_id.as_deref().unwrap_or("?");
        let rel = e.event.data.get("recording").map(String::as_str);
        match e.event.kind.as_str() {
            "session.started" => {
                if let Some(rel) = rel {
                    recording_of.insert(session, rel);
                    started.push((session, rel));
                }
            }
            "session.closed" => {
                closed.insert(session);
                let first = recording_of.get(session).copied();
                if rel != first {
                    let name = |r: Option<&str>| r.map_or("none".to_string(), |r| r.to_string());
                    return Err(format!(
                        "event {} closes session {session} with recording {}, but it started \
                         with {}",
                        e.seq,
                        name(rel),
                        name(first)
                    ));
                }
                if let Some(rel) = rel {
                    check_closed(e, session, rel, root, pruned, &mut report)?;
                }
            }
            _ => {}
        }
    }
    report.open = started
        .into_iter()
        .filter(|(session, rel)| !closed.contains(session) && !pruned.contains(rel))
        .map(|(session, rel)| format!("{rel} (session {session})"))
        .collect();
    Ok(report)
}

/// The recording `rel` that the close `e` of `session` names (see `check_recordings`).
fn check_closed(
    e: &AuditEvent,
    session: &str,
    rel: &str,
    root: &Path,
    pruned: &HashSet<&str>,
    report: &mut Recordings,
) -> Result<(), String> {
    let data = &e.event.data;
    let seq = e.seq;
    let path =
        jitgate::recorder::locate(root, rel).map_err(|err| format!("event {seq} names {err}"))?;
    // Present as far as the folder shows: a dangling link counts as there.
    let present = std::fs::symlink_metadata(&path).is_ok();
    // A pruned recording that is still there (a crash between the event and the removal)
    // is checked like any other.
    if pruned.contains(rel) && !present {
        return Ok(());
    }
    let Some(want) = data.get("recording_sha256") else {
        if present {
            return Err(format!(
                "recording {rel} (event {seq}, session {session}) exists but its session sealed \
                 no hash"
            ));
        }
        let why = data.get("recording_error").map(String::as_str).or(data
            .get("cut_off")
            .map(|_| "cut off by a stop and unreadable when sealed"));
        let Some(why) = why else {
            return Err(format!(
                "recording {rel} (event {seq}, session {session}) is missing, and its session \
                 sealed neither a hash nor why"
            ));
        };
        report.warnings.push(format!(
            "recording {rel} (session {session}) is absent and was never sealed: {why}"
        ));
        return Ok(());
    };
    match jitgate::recorder::sha256_file(&path) {
        Ok(have) if &have == want => {
            report.checked += 1;
            Ok(())
        }
        Ok(have) => Err(format!(
            "recording {rel} (event {seq}) was changed: sha256 {have}, the chain recorded {want}"
        )),
        Err(err) => Err(format!(
            "recording {rel} (event {seq}) cannot be read: {err}"
        )),
    }
}

/// What the prunes in the chain showed, when nothing was wrong.
#[derive(Debug, Default)]
struct Prunes<'a> {
    /// The recordings `recording.pruned` events removed.
    pruned: HashSet<&'a str>,
    /// Each retention that came into force (a `recordings.retention` event), as a line for
    /// the auditor: a retention shortened to explain away a deletion shows here.
    retentions: Vec<String>,
}

/// The recordings that `recording.pruned` events removed, each checked against the rest of
/// the chain: a `recordings.retention` event (which `recordings prune` appends whenever the
/// configured retention differs from the one last entered) put a retention in force before
/// it, and the event names no shorter one; the event is not dated after `now` (beyond
/// `CLOCK_SKEW`); the session was closed, the hash is the one its close sealed; and the
/// recording was at least as old as the retention the event names, counted as `jitgate
/// recordings prune` counts it (from its session's start, or, with none in the chain, the
/// end of its folder's day). The retention is taken from the chain, not from today's
/// configuration, so that raising it later leaves earlier prunes valid. A hash chain cannot
/// tell a forged event appended after its newest one from a real one (a kept head only shows
/// that nothing before it changed), but it can refuse one that explains away a recording
/// the retention in force would not have touched, and it shows every change of retention.
fn checked_prunes(events: &[AuditEvent], now: UnixTime) -> Result<Prunes<'_>, String> {
    let mut out = Prunes::default();
    let mut in_force: Option<(std::time::Duration, i64)> = None;
    let mut started: HashMap<&str, i64> = HashMap::new();
    // Closed sessions' recordings, with the hash their close sealed, if any.
    let mut closed: HashMap<&str, Option<&str>> = HashMap::new();
    for e in events {
        let data = &e.event.data;
        if e.event.kind == "recordings.retention" {
            let Some(r) = data.get("retention").and_then(|r| parse_duration(r).ok()) else {
                return Err(format!("event {} enters no valid retention", e.seq));
            };
            in_force = Some((r, e.seq));
            out.retentions.push(format!(
                "{} from event {} ({}, by {})",
                format_duration(r),
                e.seq,
                jitgate::model::format_time(e.event.at),
                e.event.actor
            ));
            continue;
        }
        let Some(rel) = data.get("recording").map(String::as_str) else {
            continue;
        };
        match e.event.kind.as_str() {
            "session.started" => {
                started.entry(rel).or_insert(e.event.at);
            }
            "session.closed" => {
                closed.insert(rel, data.get("recording_sha256").map(String::as_str));
            }
            "recording.pruned" => {
                let why = |what: String| format!("recording {rel} (event {}) {what}", e.seq);
                let Some(sha) = data.get("sha256") else {
                    return Err(why("was pruned without its sha256".into()));
                };
                let Some(named) = data.get("retention").and_then(|r| parse_duration(r).ok()) else {
                    return Err(why("was pruned without a valid retention".into()));
                };
                let Some((force, set_by)) = in_force else {
                    return Err(why(
                        "was pruned before any retention entered the chain".into()
                    ));
                };
                if named < force {
                    return Err(why(format!(
                        "was pruned under a retention of {}, shorter than the {} in force since \
                         event {set_by}",
                        format_duration(named),
                        format_duration(force)
                    )));
                }
                if e.event.at > now.saturating_add(CLOCK_SKEW) {
                    return Err(why(format!(
                        "was pruned at {}, later than now ({now})",
                        e.event.at
                    )));
                }
                match closed.get(rel) {
                    Some(Some(seal)) if seal != sha => {
                        return Err(why(format!(
                            "was pruned with sha256 {sha}, but its session sealed {seal}"
                        )));
                    }
                    None if started.contains_key(rel) => {
                        return Err(why("was pruned while its session was open".into()));
                    }
                    _ => {}
                }
                let Some(day) = jitgate::recorder::day_of(rel) else {
                    return Err(why("is not a recording path".into()));
                };
                let start = jitgate::recorder::counted_start(day, started.get(rel).copied());
                let age = e.event.at.saturating_sub(start);
                if age < i64::try_from(named.as_secs()).unwrap_or(i64::MAX) {
                    return Err(why(format!(
                        "was pruned {age}s after its recording started, younger than the \
                         retention the event names ({})",
                        format_duration(named)
                    )));
                }
                out.pruned.insert(rel);
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
