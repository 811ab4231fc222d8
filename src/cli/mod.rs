//! Command-line interface: the command contract of DESIGN.md, one module per group.
//!
//! Exit codes: 0 success, 1 refused or denied (the reason printed), 2 usage or
//! configuration error, 3 server unreachable. Global `--server`, `--identity` and `--json`
//! are accepted before or after the subcommand.

mod access;
mod admin;
mod audit;
mod output;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use jitgate::api::client::{Client, ClientError, DEFAULT_URL, Signer};
use jitgate::config::{Config, ConfigErrors};

#[derive(Parser, Debug)]
#[command(
    name = "jitgate",
    version,
    about = "Just-in-time SSH access with guardrails"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The jitgate server's API.
    #[arg(long, global = true, env = "JITGATE_URL", default_value = DEFAULT_URL)]
    pub server: String,
    /// Your enrolled SSH key (its private key file; ssh-agent is used when it holds the key).
    #[arg(long, global = true, env = "JITGATE_IDENTITY")]
    pub identity: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust for an https:// server.
    #[arg(long, global = true, env = "JITGATE_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Print JSON instead of text (read commands).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ConfigArg {
    /// The jitgate TOML configuration.
    #[arg(
        long,
        short = 'c',
        env = "JITGATE_CONFIG",
        default_value = "config/jitgate.toml"
    )]
    pub config: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the three CA keys if absent and print the trust lines.
    Init(ConfigArg),
    /// Run the API and the bastion; creates keys on first start.
    Serve(ConfigArg),
    /// Validate a configuration: exit 0, or 2 listing every error with file:line:column.
    CheckConfig(ConfigArg),
    /// Check commands against guardrail sets.
    Guardrail {
        #[command(subcommand)]
        action: admin::GuardrailAction,
    },
    /// Recordings housekeeping: `recordings prune` removes those past retention.
    Recordings {
        #[command(subcommand)]
        action: admin::RecordingsAction,
    },
    /// Ask for access to a host.
    Request(access::RequestArgs),
    /// List requests you may see.
    Requests {
        /// Only undecided requests.
        #[arg(long)]
        pending: bool,
    },
    /// The requests waiting for a decision (`requests --pending`).
    Pending,
    /// Show one request.
    Show { id: i64 },
    /// Approve a request.
    Approve {
        id: i64,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a request.
    Deny {
        id: i64,
        #[arg(long)]
        reason: String,
    },
    /// Revoke a request: its certificate stops working and its sessions close.
    Revoke {
        id: i64,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Fetch the certificate of an approved request and print the ssh command.
    Login {
        id: i64,
        /// Where to write the certificate (default ~/.ssh/jitgate/<id>-cert.pub).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print (or install) the ~/.ssh/config snippet and known_hosts line.
    SshConfig {
        #[arg(long)]
        install: bool,
    },
    /// List recorded sessions.
    Sessions(audit::SessionArgs),
    /// Play a session's recording.
    Replay(audit::ReplayArgs),
    /// The per-command audit index: what ran where, and what was stopped.
    Commands(audit::CommandArgs),
    /// The audit log; `audit verify` checks it offline.
    Audit(audit::AuditArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Init(c) => admin::init(&c.config),
        Command::Serve(c) => admin::serve(&c.config).await,
        Command::CheckConfig(c) => admin::check_config(&c.config),
        Command::Guardrail { action } => admin::guardrail(action),
        Command::Recordings { action } => admin::recordings(action).await,
        Command::Request(args) => access::request(&g, args).await,
        Command::Requests { pending } => access::requests(&g, pending).await,
        Command::Pending => access::requests(&g, true).await,
        Command::Show { id } => access::show(&g, id).await,
        Command::Approve { id, comment } => access::approve(&g, id, comment).await,
        Command::Deny { id, reason } => access::deny(&g, id, reason).await,
        Command::Revoke { id, reason } => access::revoke(&g, id, reason).await,
        Command::Login { id, out } => access::login(&g, id, out).await,
        Command::SshConfig { install } => access::ssh_config(&g, install).await,
        Command::Sessions(args) => audit::sessions(&g, args).await,
        Command::Replay(args) => audit::replay(&g, args).await,
        Command::Commands(args) => audit::commands(&g, args).await,
        Command::Audit(args) => audit::audit(&g, args).await,
    }
}

/// The exit code for an error that reached `main`.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(e) = err.downcast_ref::<ClientError>() {
        return e.exit_code();
    }
    if err.downcast_ref::<ConfigErrors>().is_some() || err.downcast_ref::<UsageError>().is_some() {
        return 2;
    }
    1
}

/// The message for an error that reached `main`: config errors one per line.
pub fn describe(err: &anyhow::Error) -> String {
    if let Some(e) = err.downcast_ref::<ConfigErrors>() {
        return format!("configuration has {} error(s):\n{e}", e.0.len());
    }
    format!("{err:#}")
}

/// A usage error: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// The identity file: `--identity`, else `~/.ssh/id_ed25519`.
pub fn identity_path(g: &Global) -> anyhow::Result<PathBuf> {
    match &g.identity {
        Some(p) => Ok(p.clone()),
        None => Ok(home()?.join(".ssh/id_ed25519")),
    }
}

pub fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| UsageError("HOME is not set".into()).into())
}

pub fn client(g: &Global) -> anyhow::Result<Client> {
    let identity = identity_path(g)?;
    let signer = Signer::from_identity(&identity)?;
    Ok(Client::new(&g.server, signer, g.ca_cert.as_deref())?)
}

/// `--since` accepts a duration ago (`24h`, `7d`), a date (`2026-11-01`) or RFC 3339.
pub fn parse_since(text: &str, now: i64) -> anyhow::Result<i64> {
    if let Ok(d) = jitgate::config::parse_duration(text) {
        return Ok(now.saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp());
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        UsageError(format!(
            "--since {text:?}: use a duration (24h), a date (2026-11-01) or RFC 3339"
        ))
    })?;
    Ok(date
        .and_hms_opt(0, 0, 0)
        .context("midnight")?
        .and_utc()
        .timestamp())
}
