//! Auditors' commands: sessions, replay, commands, audit and audit verify (`verify`).

mod verify;

use std::process::ExitCode;

use clap::{Args, Subcommand};
use jitgate::api::dto::*;

use super::{ConfigArg, Global, client, output, parse_since};

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
        return verify::verify(&v.config.config, v.head.as_ref()).await;
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
