//! One session channel's records: the store row (start, end, exit status, bytes) and the
//! asciicast recording, both begun when the channel starts a shell, exec or subsystem.
//!
//! Fails closed: a session that cannot be recorded does not start.

use std::sync::Arc;

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
pub async fn seal_cut_off(store: &dyn Store, recordings: &std::path::Path) {
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
        let file = s
            .recording
            .as_ref()
            .and_then(|rel| crate::recorder::locate(recordings, rel).ok());
        let read = tokio::task::spawn_blocking(move || {
            let file = file?;
            let written = std::fs::metadata(&file)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            Some((written, crate::recorder::sha256_file(&file)))
        })
        .await
        .ok()
        .flatten();
        let (written, sha) = match read {
            Some((written, Ok(sha))) => (written, Some(sha)),
            Some((written, Err(e))) => {
                tracing::warn!(session = %s.id, error = %e, "recording of a cut-off session unreadable");
                (written, None)
            }
            None => (None, None),
        };
        let end = SessionEnd {
            ended_at: written.unwrap_or(s.started_at).max(s.started_at),
            recording_sha256: sha.as_deref(),
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
    /// Set when the bastion closed it (revocation, expiry, shutdown, a lost target).
    pub closed_by: Option<String>,
}

pub struct SessionLog {
    shared: Arc<Shared>,
    grant: Grant,
    id: String,
    recording: Option<Recording>,
    started: bool,
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
        }
    }

    pub fn id(&self) -> &str {
        &self.id
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
        let tap = recording.tap();
        self.recording = Some(recording);
        Ok(tap)
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

    /// Closes the recording and writes the session's end.
    pub async fn finish(self, outcome: &Outcome) {
        if !self.started {
            return;
        }
        let sha = match self.recording {
            Some(r) => match r.finish().await {
                Ok(f) => Some(f.sha256),
                Err(e) => {
                    tracing::error!(session = %self.id, error = %e, "recording failed");
                    None
                }
            },
            None => None,
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
                    cut_off: false,
                },
            )
            .await
        {
            tracing::error!(session = %self.id, error = %e, "cannot record a session end");
        }
    }
}
