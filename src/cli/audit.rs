//! Auditors' commands: sessions, replay, commands, audit and audit verify.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use jitgate::api::dto::*;

use super::{ConfigArg, Global, client, load_config, output, parse_since};

#[derive(Args, Debug)]
pub struct SessionArgs {
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    host: Option<String>,
    /// 24h, 7d, 2026-11-01 or RFC 3339.
    #[arg(long)]
    since: Option<String>,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    pub session: String,
    /// Playback speed factor.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Cap idle pauses at this many seconds.
    #[arg(long)]
    pub idle_limit: Option<f64>,
    /// Print the output without timing.
    #[arg(long)]
    pub cat: bool,
}

#[derive(Args, Debug)]
pub struct CommandArgs {
    #[arg(long)]
    host: Option<String>,
    #[arg(long)]
    user: Option<String>,
    /// Only commands matching this regex.
    #[arg(long)]
    grep: Option<String>,
    #[arg(long)]
    since: Option<String>,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    action: Option<AuditAction>,
    #[arg(long)]
    since: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Offline: walk the hash chain and re-hash every recording; exit 0 intact, 1 not.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// A head an earlier verify printed (SEQ:HASH), kept outside the database: the log must
    /// still hold that event unchanged, or its end was cut off or its past rewritten.
    #[arg(long, value_name = "SEQ:HASH")]
    head: Option<jitgate::store::audit::Head>,
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlencode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn since(text: &Option<String>) -> anyhow::Result<Option<String>> {
    text.as_deref()
        .map(|s| parse_since(s, jitgate::model::now()).map(|t| t.to_string()))
        .transpose()
}

pub async fn sessions(g: &Global, a: SessionArgs) -> anyhow::Result<ExitCode> {
    let q = query(&[
        ("user", a.user),
        ("host", a.host),
        ("since", since(&a.since)?),
    ]);
    let list: Vec<SessionView> = client(g)?.get(&format!("/v1/sessions{q}")).await?;
    if g.json {
        output::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.request_id.to_string(),
                s.user.clone(),
                format!("{}@{}", s.login, s.host),
                output::time(s.started_at),
                s.ended_at
                    .map(output::time)
                    .unwrap_or_else(|| "live".into()),
                match (&s.exit_status, &s.exit_signal) {
                    (Some(code), _) => code.to_string(),
                    (None, Some(signal)) => format!("SIG{signal}"),
                    (None, None) => String::new(),
                },
            ]
        })
        .collect();
    output::table(
        &[
            "SESSION", "REQUEST", "USER", "ACCESS", "STARTED", "ENDED", "EXIT",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn replay(g: &Global, a: ReplayArgs) -> anyhow::Result<ExitCode> {
    use jitgate::recorder::{PlayOptions, cat, play_terminal};
    if a.speed <= 0.0 || a.speed.is_nan() {
        return Err(super::UsageError("--speed must be more than 0".into()).into());
    }
    let bytes = client(g)?
        .get_bytes(&format!("/v1/sessions/{}/recording", urlencode(&a.session)))
        .await?;
    // The player sleeps and reads keys: keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let mut out = std::io::stdout().lock();
        if a.cat {
            cat(bytes.as_slice(), &mut out)
        } else {
            play_terminal(
                bytes.as_slice(),
                &mut out,
                &PlayOptions {
                    speed: a.speed,
                    idle_limit: a.idle_limit,
                },
            )
            .map(|_| ())
        }
    })
    .await??;
    Ok(ExitCode::SUCCESS)
}

pub async fn commands(g: &Global, a: CommandArgs) -> anyhow::Result<ExitCode> {
    let grep = a
        .grep
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| super::UsageError(format!("--grep: {e}")))?;
    let q = query(&[
        ("user", a.user),
        ("host", a.host),
        ("since", since(&a.since)?),
    ]);
    let list: Vec<CommandView> = client(g)?.get(&format!("/v1/commands{q}")).await?;
    let list: Vec<CommandView> = list
        .into_iter()
        .filter(|c| grep.as_ref().is_none_or(|re| re.is_match(&c.text)))
        .collect();
    if g.json {
        output::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            vec![
                output::time(c.at),
                c.user.clone(),
                format!("{}@{}", c.login, c.host),
                c.verdict.clone(),
                c.rule.clone().unwrap_or_default(),
                c.text.clone(),
            ]
        })
        .collect();
    output::table(
        &["TIME", "USER", "ACCESS", "VERDICT", "RULE", "COMMAND"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(g: &Global, a: AuditArgs) -> anyhow::Result<ExitCode> {
    if let Some(AuditAction::Verify(v)) = a.action {
        return verify(&v.config.config, v.head.as_ref()).await;
    }
    let q = query(&[("since", since(&a.since)?)]);
    let events: Vec<AuditEventView> = client(g)?.get(&format!("/v1/audit{q}")).await?;
    if g.json {
        output::json(&events)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let data: Vec<String> = e.data.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            vec![
                e.seq.to_string(),
                output::time(e.at),
                e.kind.clone(),
                e.actor.clone(),
                e.request_id.map(|r| r.to_string()).unwrap_or_default(),
                data.join(" "),
            ]
        })
        .collect();
    output::table(
        &["SEQ", "TIME", "EVENT", "ACTOR", "REQUEST", "DETAILS"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// Walks the hash chain, checks it still holds `kept` (a head from an earlier run), then
/// re-hashes every recording a closed session named, and names those no close sealed.
async fn verify(
    config: &std::path::Path,
    kept: Option<&jitgate::store::audit::Head>,
) -> anyhow::Result<ExitCode> {
    use jitgate::store::{SqliteStore, Store, audit};
    let cfg = load_config(config)?;
    let jitgate::config::StoreUrl::Sqlite(db) = &cfg.store;
    let store = SqliteStore::open_readonly(db)?;
    let events = store.audit_events(None).await?;
    let checked = audit::verify_chain(&events)
        .and_then(|_| kept.map_or(Ok(()), |h| audit::check_head(&events, h)));
    if let Err(e) = checked {
        println!("audit log NOT intact: {e}");
        return Ok(ExitCode::from(1));
    }
    // Recordings removed by retention are expected to be gone, once each removal is shown
    // to agree with the rest of the chain.
    let pruned = match checked_prunes(&events) {
        Ok(pruned) => pruned,
        Err(e) => {
            println!("audit log NOT intact: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut checked = 0;
    let mut sealed = std::collections::HashSet::new();
    for e in &events {
        let (Some(rel), Some(want)) = (
            e.event.data.get("recording"),
            e.event.data.get("recording_sha256"),
        ) else {
            continue;
        };
        if e.event.kind != "session.closed" {
            continue;
        }
        let path = match jitgate::recorder::locate(&cfg.server.recordings_dir, rel) {
            Ok(path) => path,
            Err(err) => {
                println!("audit log NOT intact: event {} names {err}", e.seq);
                return Ok(ExitCode::from(1));
            }
        };
        sealed.insert(rel.as_str());
        // A pruned recording that is still there (a crash between the event and the removal)
        // is checked like any other.
        if pruned.contains(rel.as_str()) && !path.exists() {
            continue;
        }
        match jitgate::recorder::sha256_file(&path) {
            Ok(have) if &have == want => checked += 1,
            Ok(have) => {
                println!(
                    "audit log NOT intact: recording {rel} (event {}) was changed: sha256 {have}, the chain recorded {want}",
                    e.seq
                );
                return Ok(ExitCode::from(1));
            }
            Err(err) => {
                println!(
                    "audit log NOT intact: recording {rel} (event {}) cannot be read: {err}",
                    e.seq
                );
                return Ok(ExitCode::from(1));
            }
        }
    }
    let unsealed = unsealed(&events, &sealed, &pruned);
    if !unsealed.is_empty() {
        println!(
            "not sealed: {} recording(s) whose hash never entered the chain (a session still \
             open, cut off by a crash, or whose recording failed), so not verified: {}",
            unsealed.len(),
            unsealed.join(", ")
        );
    }
    let head = audit::Head::of(&events).map_or("none (no events)".to_string(), |h| h.to_string());
    let reaches = kept.map_or(String::new(), |h| format!("; holds the kept head {h}"));
    println!(
        "audit log intact: {} events, {checked} recordings verified{reaches}; head {head}",
        events.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The recordings that `recording.pruned` events removed, each checked against the rest of
/// the chain: the session was closed, the hash is the one its close sealed, and it was at
/// least as old as the retention the event names. A hash chain cannot tell a forged event
/// appended after its newest one from a real one (a kept head only shows that nothing before
/// it changed), but it can refuse one that explains away a recording retention would not
/// have touched.
fn checked_prunes(
    events: &[jitgate::model::AuditEvent],
) -> Result<std::collections::HashSet<&str>, String> {
    use std::collections::{HashMap, HashSet};
    let mut started: HashMap<&str, i64> = HashMap::new();
    // Closed sessions' recordings, with the hash their close sealed, if any.
    let mut closed: HashMap<&str, Option<&str>> = HashMap::new();
    let mut pruned = HashSet::new();
    for e in events {
        let data = &e.event.data;
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
                let Some(retention) = data
                    .get("retention")
                    .and_then(|r| jitgate::config::parse_duration(r).ok())
                else {
                    return Err(why("was pruned without a valid retention".into()));
                };
                if let Some(start) = started.get(rel) {
                    match closed.get(rel) {
                        None => return Err(why("was pruned while its session was open".into())),
                        Some(Some(seal)) if seal != sha => {
                            return Err(why(format!(
                                "was pruned with sha256 {sha}, but its session sealed {seal}"
                            )));
                        }
                        Some(_) => {}
                    }
                    let age = e.event.at.saturating_sub(*start);
                    if age < i64::try_from(retention.as_secs()).unwrap_or(i64::MAX) {
                        return Err(why(format!(
                            "was pruned {age}s after its session started, younger than the \
                             retention the event names ({})",
                            jitgate::config::format_duration(retention)
                        )));
                    }
                }
                pruned.insert(rel);
            }
            _ => {}
        }
    }
    Ok(pruned)
}

/// Recordings a session start named that no session close sealed with a hash (and that
/// retention has not removed), as `path (session ID)`.
fn unsealed(
    events: &[jitgate::model::AuditEvent],
    sealed: &std::collections::HashSet<&str>,
    pruned: &std::collections::HashSet<&str>,
) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event.kind == "session.started")
        .filter_map(|e| {
            let rel = e.event.data.get("recording")?.as_str();
            let open = !sealed.contains(rel) && !pruned.contains(rel);
            open.then(|| {
                let session = e.event.session_id.as_deref().unwrap_or("?");
                format!("{rel} (session {session})")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use jitgate::model::{AuditEvent, NewAuditEvent};

    use super::checked_prunes;

    const REC: &str = "2026/11/22/s1.cast";
    const DAY: i64 = 86_400;

    fn event(seq: i64, at: i64, kind: &str, data: &[(&str, &str)]) -> AuditEvent {
        let mut e = NewAuditEvent::new(at, kind, "system");
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

    /// A session started at 0 and closed at 60 with hash `aa`, then a prune at `at`.
    fn chain(close: bool, at: i64, prune: &[(&str, &str)]) -> Vec<AuditEvent> {
        let mut v = vec![event(1, 0, "session.started", &[("recording", REC)])];
        if close {
            v.push(event(
                2,
                60,
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
        let events = chain(true, 31 * DAY, &good);
        assert!(checked_prunes(&events).unwrap().contains(REC));
        let cases: [(&str, Vec<AuditEvent>, &str); 5] = [
            ("too young", chain(true, 29 * DAY, &good), "younger than"),
            (
                "other hash",
                chain(true, 31 * DAY, &[("sha256", "bb"), ("retention", "30d")]),
                "but its session sealed aa",
            ),
            (
                "still open",
                chain(false, 31 * DAY, &good),
                "session was open",
            ),
            (
                "no retention",
                chain(true, 31 * DAY, &[("sha256", "aa")]),
                "without a valid retention",
            ),
            (
                "no hash",
                chain(true, 31 * DAY, &[("retention", "30d")]),
                "without its sha256",
            ),
        ];
        for (name, events, want) in cases {
            let err = checked_prunes(&events).expect_err(name);
            assert!(err.contains(want) && err.contains(REC), "{name}: {err}");
        }
    }
}
