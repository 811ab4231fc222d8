//! One session channel's records: the store row (start, end, exit status, bytes) and the
//! asciicast recording, both begun when the channel starts a shell, exec or subsystem.
//!
//! Fails closed: a session that cannot be recorded does not start, and one whose recording
//! fails while it runs is closed by its owner (`SessionLog::failed`). A failed recording is
//! still sealed: its close carries the SHA-256 of the file as it stands and why it failed,
//! and a `recording.failed` event enters the audit log as soon as the failure is known.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use super::Shared;
use super::access::Grant;
use super::gate::Checked;
use crate::model::{self, CommandRecord, NewAuditEvent, now};
use crate::recorder::{Recording, RecordingTap, SessionMeta};
use crate::store::{CommandFilter, SessionEnd, SessionFilter, Store};

/// Closes the sessions a stop without warning (a crash, `kill -9`) left open: each gets its
/// end (when its recording was last written, else when it started), and its recording's
/// SHA-256 as the file stands, so `audit verify` checks it from now on. Run at start, before
/// the bastion accepts: with one server per store, every open session is such a one.
pub async fn seal_cut_off(store: &dyn Store, recordings: &Path) {
    let open = SessionFilter {
        open: true,
        ..SessionFilter::default()
    };
    let sessions = match store.list_sessions(open).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot list the sessions a stop left open");
            return;
        }
    };
    for s in sessions {
        let (written, sha, error) = match &s.recording {
            Some(rel) => match as_it_stands(recordings, rel).await {
                (written, Ok(sha)) => (written, Some(sha), None),
                (written, Err(e)) => {
                    let error = format!("unreadable when sealed at the next start: {e}");
                    tracing::warn!(session = %s.id, %error, "recording of a cut-off session");
                    let owner = Owner {
                        user: &s.user,
                        request: s.request_id,
                        session: &s.id,
                    };
                    audit_failure(store, &owner, rel, &error).await;
                    (written, None, Some(error))
                }
            },
            None => (None, None, None),
        };
        let end = SessionEnd {
            ended_at: written.unwrap_or(s.started_at).max(s.started_at),
            recording_sha256: sha.as_deref(),
            recording_error: error.as_deref(),
            cut_off: true,
            ..SessionEnd::default()
        };
        match store.end_session(&s.id, end).await {
            Ok(()) => {
                tracing::warn!(session = %s.id, user = %s.user, host = %s.host, "sealed a session the last stop cut off");
            }
            Err(e) => tracing::error!(session = %s.id, error = %e, "cannot seal a cut-off session"),
        }
    }
}

/// When the recording `rel` under `root` was last written, and its SHA-256 as the file
/// stands (read on the blocking pool).
async fn as_it_stands(root: &Path, rel: &str) -> (Option<i64>, Result<String, String>) {
    let file = crate::recorder::locate(root, rel);
    let read = tokio::task::spawn_blocking(move || {
        let file = match file {
            Ok(file) => file,
            Err(e) => return (None, Err(e.to_string())),
        };
        let written = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        let sha = crate::recorder::sha256_file(&file).map_err(|e| e.to_string());
        (written, sha)
    })
    .await;
    read.unwrap_or_else(|e| (None, Err(e.to_string())))
}

/// The session a recording belongs to, as its audit events name it.
struct Owner<'a> {
    user: &'a str,
    request: i64,
    session: &'a str,
}

/// Appends `recording.failed`: the recording `rel` stopped on `error`.
async fn audit_failure(store: &dyn Store, owner: &Owner<'_>, rel: &str, error: &str) {
    let event = NewAuditEvent::new(now(), "recording.failed", "jitgate")
        .request(owner.request)
        .session(owner.session)
        .with("user", owner.user)
        .with("recording", rel)
        .with("error", error);
    if let Err(e) = store.append_audit(event).await {
        tracing::error!(session = owner.session, error = %e, "cannot audit a failed recording");
    }
}

/// For a recording that failed on `error`: audits it (unless `audited` already) and returns
/// the SHA-256 of the file as it stands, for the session's close, with the error to seal
/// beside it (which says so, too, when the file cannot be read).
async fn seal_failed(
    store: &dyn Store,
    root: &Path,
    owner: &Owner<'_>,
    rel: &str,
    error: String,
    audited: bool,
) -> (Option<String>, String) {
    if !audited {
        audit_failure(store, owner, rel, &error).await;
    }
    match as_it_stands(root, rel).await.1 {
        Ok(sha) => (Some(sha), error),
        Err(e) => (None, format!("{error}; unreadable when sealed: {e}")),
    }
}

/// What a channel starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    Shell,
    Exec(&'a str),
    Subsystem(&'a str),
}

/// The terminal a channel asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtyInfo {
    pub term: String,
    pub cols: u32,
    pub rows: u32,
}

/// How a relayed session ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub exit_status: Option<u32>,
    /// The signal the target reported as ending the command (`KILL`, `TERM`, …).
    pub exit_signal: Option<String>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Set when the bastion closed it (revocation, expiry, shutdown, a lost target, a
    /// failed recording).
    pub closed_by: Option<String>,
}

pub struct SessionLog {
    shared: Arc<Shared>,
    grant: Grant,
    id: String,
    recording: Option<Recording>,
    started: bool,
    /// The recording's error once it failed, for `failed`.
    failure: Arc<watch::Sender<Option<String>>>,
    /// Waits for the recording to fail, then says so and audits it; returns whether it did.
    watcher: Option<tokio::task::JoinHandle<bool>>,
}

fn dim(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

impl SessionLog {
    pub(crate) fn new(shared: Arc<Shared>, grant: Grant, id: String) -> SessionLog {
        SessionLog {
            shared,
            grant,
            id,
            recording: None,
            started: false,
            failure: Arc::new(watch::channel(None).0),
            watcher: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Completes, with the notice for the engineer, when the session's recording fails (a
    /// write error, e.g. a full disk): the owner then closes the session rather than let it
    /// go on unrecorded. Never completes while the recording is well, nor before it starts.
    /// Independent of `self`, so it can be awaited while the log is borrowed elsewhere.
    pub fn failed(&self) -> impl Future<Output = String> + Send + 'static {
        let mut failure = self.failure.subscribe();
        async move {
            let error = failure
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|e| e.clone());
            match error {
                Some(e) => format!("the session recording failed ({e}); the session is closed"),
                None => std::future::pending().await,
            }
        }
    }

    /// The target's inventory name.
    pub fn host(&self) -> &str {
        &self.grant.host.name
    }

    /// Starts the recording and the store row; returns the tap the relay feeds. The error is
    /// one line for the engineer.
    pub async fn start(
        &mut self,
        what: Start<'_>,
        pty: Option<&PtyInfo>,
    ) -> Result<RecordingTap, String> {
        if let Some(r) = &self.recording {
            return Ok(r.tap());
        }
        let recorder = self
            .shared
            .recorder
            .as_ref()
            .map_err(|e| format!("recording is unavailable: {e}"))?;
        let g = &self.grant;
        let started_at = now();
        let meta = SessionMeta {
            session_id: self.id.clone(),
            channel: None,
            user: g.user.clone(),
            login: g.request.login.clone(),
            host: g.host.name.clone(),
            request_id: g.request.id,
            width: pty.map_or(0, |p| dim(p.cols)),
            height: pty.map_or(0, |p| dim(p.rows)),
            started_at,
            command: match what {
                Start::Shell => None,
                Start::Exec(c) => Some(c.to_string()),
                Start::Subsystem(name) => Some(format!("subsystem {name}")),
            },
            term: pty.map(|p| p.term.clone()),
            shell: None,
            record_input: g.rule.record_input,
        };
        let recording = recorder.start(meta).map_err(|e| {
            tracing::error!(session = %self.id, error = %e, "cannot start a recording");
            "cannot start the session's recording".to_string()
        })?;
        let row = model::Session {
            id: self.id.clone(),
            request_id: g.request.id,
            user: g.user.clone(),
            host: g.host.name.clone(),
            login: g.request.login.clone(),
            started_at,
            ended_at: None,
            exit_status: None,
            exit_signal: None,
            bytes_up: 0,
            bytes_down: 0,
            recording: Some(recording.path().to_string()),
        };
        if let Err(e) = self.shared.ctx.store.start_session(row).await {
            tracing::error!(session = %self.id, error = %e, "cannot record a session start");
            let _ = recording.finish().await;
            return Err("cannot record the session".into());
        }
        tracing::info!(session = %self.id, user = %g.user, host = %g.host.name, "session started");
        self.started = true;
        self.watcher = Some(self.watch(&recording));
        let tap = recording.tap();
        self.recording = Some(recording);
        Ok(tap)
    }

    /// Spawns the task that, when `recording` fails, tells `failed` and audits it.
    fn watch(&self, recording: &Recording) -> tokio::task::JoinHandle<bool> {
        let failed = recording.failed();
        let failure = Arc::clone(&self.failure);
        let store = Arc::clone(&self.shared.ctx.store);
        let (user, request) = (self.grant.user.clone(), self.grant.request.id);
        let (session, rel) = (self.id.clone(), recording.path().to_string());
        tokio::spawn(async move {
            let Some(error) = failed.await else {
                return false;
            };
            tracing::error!(%session, %user, %error, "recording failed; closing the session");
            failure.send_replace(Some(error.clone()));
            let owner = Owner {
                user: &user,
                request,
                session: &session,
            };
            audit_failure(&*store, &owner, &rel, &error).await;
            true
        })
    }

    /// Indexes checked commands; audits and alerts warnings and blocks. Returns true once the
    /// request's blocked commands reach the rule's `max_blocks`: the request is then revoked
    /// and flagged for review.
    pub async fn commands(&mut self, checked: &[Checked]) -> bool {
        let shared = &self.shared;
        let g = &self.grant;
        let mut blocked_now = false;
        for c in checked {
            let text = match &shared.masker {
                Ok(m) => m.mask(&c.text),
                Err(_) => "(masked)".to_string(),
            };
            let record = CommandRecord {
                session_id: self.id.clone(),
                at: now(),
                text: text.clone(),
                verdict: c.verdict.to_string(),
                rule: c.rule.clone(),
            };
            if let Err(e) = shared.ctx.store.record_command(record).await {
                tracing::error!(session = %self.id, error = %e, "cannot index a command");
            }
            let kind = match c.verdict {
                "blocked" => "guardrail.block",
                "warned" | "would-block" => "guardrail.warn",
                _ => continue,
            };
            if c.is_blocked() {
                blocked_now = true;
            }
            let rule = c.rule.clone().unwrap_or_default();
            tracing::warn!(session = %self.id, user = %g.user, host = %g.host.name, verdict = c.verdict, %rule, "guardrail");
            let event = NewAuditEvent::new(now(), kind, &g.user)
                .request(g.request.id)
                .session(&self.id)
                .with("command", &text)
                .with("rule", &rule)
                .with("verdict", c.verdict)
                .with("host", &g.host.name);
            let data = event.data.clone();
            if let Err(e) = shared.ctx.store.append_audit(event).await {
                tracing::error!(session = %self.id, error = %e, "cannot audit a guardrail decision");
            }
            shared.ctx.hub.emit(kind, Some(g.request.id), data);
        }
        let limit = g.rule.max_blocks;
        if limit == 0 || !blocked_now {
            return false;
        }
        // Counted over the whole request, every session and connection of it: three blocked
        // `ssh db1 'rm -rf /'` are three sessions of one access.
        let filter = CommandFilter {
            request_id: Some(g.request.id),
            verdict: Some("blocked".into()),
            ..CommandFilter::default()
        };
        let blocks = match shared.ctx.store.list_commands(filter).await {
            Ok(list) => list.len(),
            Err(e) => {
                tracing::error!(request = g.request.id, error = %e, "cannot count blocked commands");
                return false;
            }
        };
        if blocks < limit as usize {
            return false;
        }
        let reason = format!(
            "{blocks} commands blocked under request {} (the last in session {})",
            g.request.id, self.id
        );
        match shared
            .ctx
            .store
            .revoke(g.request.id, "jitgate", &reason, true, now())
            .await
        {
            Ok(_) => {
                let mut data = std::collections::BTreeMap::new();
                data.insert("reason".to_string(), reason);
                data.insert("session".to_string(), self.id.clone());
                shared
                    .ctx
                    .hub
                    .emit("request.flagged", Some(g.request.id), data);
                shared.ctx.hub.end_access(g.request.id);
            }
            Err(e) => tracing::error!(request = g.request.id, error = %e, "cannot flag a request"),
        }
        true
    }

    /// Closes the recording and writes the session's end, with the recording's SHA-256; for a
    /// recording that failed, that of the file as it stands, and why it failed (audited as
    /// `recording.failed` here unless the watcher did so already).
    pub async fn finish(self, outcome: &Outcome) {
        if !self.started {
            return;
        }
        let (sha, error) = match self.recording {
            Some(r) => {
                let rel = r.path().to_string();
                let result = r.finish().await;
                // The writer has ended, so its watcher has audited a failure or ends now.
                let reported = match self.watcher {
                    Some(w) => w.await.unwrap_or(false),
                    None => false,
                };
                match result {
                    Ok(f) => (Some(f.sha256), None),
                    Err(e) => {
                        tracing::error!(session = %self.id, error = %e, "recording failed");
                        let g = &self.grant;
                        let owner = Owner {
                            user: &g.user,
                            request: g.request.id,
                            session: &self.id,
                        };
                        // There is a recording, so there is a recorder.
                        let root = self.shared.recorder.as_ref().map(|r| r.root());
                        let root = root.unwrap_or(Path::new(""));
                        let store = &*self.shared.ctx.store;
                        let (sha, error) =
                            seal_failed(store, root, &owner, &rel, e.to_string(), reported).await;
                        (sha, Some(error))
                    }
                }
            }
            None => (None, None),
        };
        tracing::info!(
            session = %self.id,
            exit = ?outcome.exit_status,
            signal = ?outcome.exit_signal,
            up = outcome.bytes_up,
            down = outcome.bytes_down,
            closed_by = ?outcome.closed_by,
            "session ended"
        );
        if let Err(e) = self
            .shared
            .ctx
            .store
            .end_session(
                &self.id,
                SessionEnd {
                    ended_at: now(),
                    exit_status: outcome
                        .exit_status
                        .map(|s| i32::try_from(s).unwrap_or(i32::MAX)),
                    exit_signal: outcome.exit_signal.as_deref(),
                    bytes_up: outcome.bytes_up,
                    bytes_down: outcome.bytes_down,
                    recording_sha256: sha.as_deref(),
                    recording_error: error.as_deref(),
                    cut_off: false,
                },
            )
            .await
        {
            tracing::error!(session = %self.id, error = %e, "cannot record a session end");
        }
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
