//! Admins' commands: init, serve, check-config, guardrail test, recordings prune.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use jitgate::ca::CaKeys;
use jitgate::config::Config;
use jitgate::server::{self, Parts};

use super::{ConfigArg, UsageError, load_config};

#[derive(Subcommand, Debug)]
pub enum GuardrailAction {
    /// Check commands: exit 0 when all are allowed, 1 when any is blocked.
    Test {
        #[command(flatten)]
        config: ConfigArg,
        /// Check against this set only (default: every set).
        #[arg(long)]
        set: Option<String>,
        /// A file of commands, one per line (# comments and blank lines skipped).
        #[arg(long)]
        file: Option<PathBuf>,
        /// The command to check.
        #[arg(last = true)]
        command: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RecordingsAction {
    /// Remove recordings older than `recordings.retention`, entering each removal in the audit log.
    Prune(ConfigArg),
}

pub fn init(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path)?;
    let (keys, created) = CaKeys::ensure(&cfg.ca_dir())?;
    for p in &created {
        println!("created {}", p.display());
    }
    if created.is_empty() {
        println!(
            "CA keys already present in {}; nothing overwritten",
            cfg.ca_dir().display()
        );
    }
    print_trust_lines(&cfg, &keys);
    Ok(ExitCode::SUCCESS)
}

fn print_trust_lines(cfg: &Config, keys: &CaKeys) {
    let target_pub = cfg.ca_dir().join("target_ca.pub");
    println!();
    println!(
        "# On every target, in sshd_config (copy {} there):",
        target_pub.display()
    );
    println!("TrustedUserCAKeys /etc/ssh/jitgate_target_ca.pub");
    println!("# whose content is:");
    println!("{}", keys.trusted_user_ca_line());
    println!();
    println!("# For engineers, in ~/.ssh/known_hosts (jitgate ssh-config --install does it):");
    println!("{}", keys.known_hosts_line());
}

/// Every session holds descriptors (sockets both ways, its recording) and the API takes
/// up to 1,024 connections: the soft limit on open files, often 1,024, is raised to the hard
/// one, as servers commonly do.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct passed, nothing else.
    let raised = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max
        {
            return;
        }
        let want = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0
    };
    if !raised {
        tracing::warn!(
            soft = limit.rlim_cur,
            hard = limit.rlim_max,
            error = %std::io::Error::last_os_error(),
            "could not raise the open-file limit"
        );
    }
}

pub async fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    init_logging();
    // Under a file size limit (`ulimit -f`) a write past it then fails with EFBIG, which the
    // recorder reports (its session is closed, its recording sealed as it stands), rather
    // than the signal killing the server and every session with it.
    // SAFETY: sets a signal's disposition; no handler runs.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    raise_open_file_limit();
    let mut cfg = load_config(path)?;
    let api = tokio::net::TcpListener::bind(cfg.server.api_listen)
        .await
        .map_err(|e| {
            UsageError(format!(
                "cannot listen on {} (server.api_listen): {e}",
                cfg.server.api_listen
            ))
        })?;
    let ssh = tokio::net::TcpListener::bind(cfg.server.ssh_listen)
        .await
        .map_err(|e| {
            UsageError(format!(
                "cannot listen on {} (server.ssh_listen): {e}",
                cfg.server.ssh_listen
            ))
        })?;
    // Port 0 means "any": from here on the configuration names the ports really bound.
    cfg.server.api_listen = api.local_addr()?;
    cfg.server.ssh_listen = ssh.local_addr()?;
    let parts = Parts::open(cfg)?;
    for p in &parts.created_keys {
        tracing::info!(path = %p.display(), "created CA key");
    }
    if !parts.created_keys.is_empty() {
        print_trust_lines(&parts.cfg, &parts.ca);
    }
    let scheme = if parts.cfg.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!(
        "jitgate serving: api {scheme}://{} ssh {}",
        parts.cfg.server.api_listen, parts.cfg.server.ssh_listen
    );
    server::run(parts, api, ssh, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JITGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path)?;
    println!(
        "{}: ok ({} hosts, {} users, {} roles, {} guardrail sets, {} webhooks)",
        path.display(),
        cfg.hosts.len(),
        cfg.users.len(),
        cfg.roles.len(),
        cfg.guardrails.len(),
        cfg.webhooks.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints each command's verdict; exit 0 when all are allowed, 1 when any is blocked.
pub fn guardrail(action: GuardrailAction) -> anyhow::Result<ExitCode> {
    use jitgate::guardrail::{exit_code, test_command_file, test_commands};
    let GuardrailAction::Test {
        config,
        set,
        file,
        command,
    } = action;
    let cfg = load_config(&config.config)?;
    if let Some(name) = &set
        && cfg.guardrail_set(name).is_none()
    {
        let known: Vec<&str> = cfg.guardrails.iter().map(|s| s.name.as_str()).collect();
        return Err(UsageError(format!(
            "no guardrail set named {name:?}; known: {}",
            known.join(", ")
        ))
        .into());
    }
    let checks = match (file, command.is_empty()) {
        (Some(path), true) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
            test_command_file(&cfg.guardrails, set.as_deref(), &text)?
        }
        (None, false) => test_commands(&cfg.guardrails, set.as_deref(), &[command.join(" ")])?,
        _ => return Err(UsageError("give one command after --, or --file FILE".into()).into()),
    };
    for check in &checks {
        println!("{check}");
    }
    Ok(ExitCode::from(exit_code(&checks) as u8))
}

/// Removes expired recordings, each removal entered in the audit chain.
pub async fn recordings(action: RecordingsAction) -> anyhow::Result<ExitCode> {
    use jitgate::model::{NewAuditEvent, now};
    use jitgate::store::{SqliteStore, Store};
    let RecordingsAction::Prune(ConfigArg { config }) = action;
    let cfg = load_config(&config)?;
    let Some(retention) = cfg.recordings.retention else {
        return Err(UsageError(format!(
            "{}: set recordings.retention (e.g. \"365d\") to prune",
            config.display()
        ))
        .into());
    };
    let jitgate::config::StoreUrl::Sqlite(db) = &cfg.store;
    // Two prunes at once would each enter every removal.
    let _lock = jitgate::store::hold(db, jitgate::store::Holder::Prune)?;
    let store = SqliteStore::open(db)?;
    let now = now();
    let root = &cfg.server.recordings_dir;
    // A session still open (or cut off by a crash and not yet sealed by `serve`) keeps its
    // recording, however old: its hash has not entered the chain.
    let open: std::collections::HashSet<String> = store
        .list_sessions(jitgate::store::SessionFilter {
            open: true,
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter_map(|s| s.recording)
        .collect();
    let events = store.audit_events(None).await?;
    // A recording's age as `audit verify` will count it: from its session's start in the
    // chain, or, with none there, from the end of its folder's day (never from a header
    // that the chain does not back).
    let mut started: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for e in events.iter().filter(|e| e.event.kind == "session.started") {
        if let Some(rel) = e.event.data.get("recording") {
            started.entry(rel.as_str()).or_insert(e.event.at);
        }
    }
    let cutoff = now.saturating_sub(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
    let old_enough = |p: &jitgate::recorder::Pruned| {
        jitgate::recorder::day_of(&p.path).is_some_and(|day| {
            jitgate::recorder::counted_start(day, started.get(p.path.as_str()).copied()) <= cutoff
        })
    };
    let mut pruned = Vec::new();
    for p in jitgate::recorder::expired(root, retention, now)? {
        if open.contains(&p.path) {
            println!("kept {}: its session is still open", p.path);
        } else if !old_enough(&p) {
            println!(
                "kept {}: not yet as old as the retention by the audit log's count",
                p.path
            );
        } else {
            pruned.push(p);
        }
    }
    let named = jitgate::config::format_duration(retention);
    // `audit verify` judges each prune by the retention the chain has in force, not by
    // today's configuration (which may since have been raised): enter it when it changed.
    let in_force = events
        .iter()
        .rev()
        .find(|e| e.event.kind == "recordings.retention")
        .and_then(|e| e.event.data.get("retention"));
    if in_force != Some(&named) {
        let mut event =
            NewAuditEvent::new(now, "recordings.retention", "system").with("retention", &named);
        if let Some(before) = in_force {
            event = event.with("previous", before);
        }
        store.append_audit(event).await?;
        println!("retention {named} entered in the audit chain");
    }
    // The removal enters the chain first: a crash in between leaves a file the chain already
    // calls pruned, never a missing file the chain still expects.
    for p in &pruned {
        let event = NewAuditEvent::new(now, "recording.pruned", "system")
            .with("recording", &p.path)
            .with("sha256", &p.sha256)
            .with("retention", &named);
        store.append_audit(event).await?;
        jitgate::recorder::remove(root, p)?;
        println!("removed {}", p.path);
    }
    println!("{} recording(s) older than {named} removed", pruned.len());
    Ok(ExitCode::SUCCESS)
}
