//! One session channel, relayed faithfully between the engineer and the target: pty-req,
//! shell, exec, subsystem, env (allow-list), window-change, signal, data both ways, EOF,
//! exit-status, exit-signal, close.
//!
//! Requests are answered to the engineer by the inner server's handler, from the same pure
//! `allows` decision used here to choose what goes upstream (russh keeps one pending reply
//! flag per channel, so replies cannot wait for the target). A target that then refuses
//! what we accepted ends the channel with a message.
//!
//! Back-pressure: every write awaits the receiver's SSH window, and russh's per-channel
//! queues are bounded, so a slow reader slows the writer instead of filling memory.
//!
//! Hook points (`Tap`): the exec command before anything goes upstream, every input chunk
//! before it is forwarded, every output chunk before it is shown, and resizes.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, client, server};
use tokio::sync::watch;

use super::sessions::Control;
use crate::config::AccessRule;

/// Exit status of a command the guardrails blocked.
pub const BLOCKED_EXIT: u32 = 126;

/// Variables passed on with `env` requests; others are dropped.
pub fn env_allowed(name: &str) -> bool {
    name == "LANG" || name == "TERM" || name.starts_with("LC_")
}

/// A channel request, as far as the decision to allow it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    Pty,
    Shell,
    Exec,
    Subsystem(&'a str),
    Env(&'a str),
    WindowChange,
    X11,
    Agent,
}

/// Whether `rule` lets this request through. The handler's reply and the relay both use it.
pub fn allows(rule: &AccessRule, req: Request<'_>) -> bool {
    match req {
        Request::Pty => rule.allow_pty,
        Request::Shell | Request::Exec | Request::WindowChange => true,
        Request::Subsystem(name) => name == "sftp" && rule.allow_sftp,
        Request::Env(name) => env_allowed(name),
        // Forwarding X11 and agent channels back to the engineer is not built: refused always.
        Request::X11 | Request::Agent => false,
    }
}

/// What happens to an exec command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecGate {
    Allow,
    /// Not forwarded: `message` goes to stderr and the exit status is 126.
    Block {
        message: String,
    },
}

/// What happens to a chunk of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputGate {
    Forward,
    /// Send `upstream` instead of the chunk, and show `to_client` to the engineer.
    Replace {
        upstream: Vec<u8>,
        to_client: Vec<u8>,
    },
}

/// Per-channel hook points for guardrails and recording. Calls are short and never block.
pub trait Tap: Send {
    fn pty(&mut self, _term: &str, _cols: u32, _rows: u32) {}
    fn resize(&mut self, _cols: u32, _rows: u32) {}
    fn shell(&mut self) {}
    fn exec(&mut self, _command: &str) -> ExecGate {
        ExecGate::Allow
    }
    fn subsystem(&mut self, _name: &str) {}
    fn input(&mut self, _data: &[u8]) -> InputGate {
        InputGate::Forward
    }
    fn output(&mut self, _data: &[u8], _stderr: bool) {}
    /// The session ended; returns the recording's SHA-256 if there is one.
    fn finish(&mut self, _exit_status: Option<u32>) -> Option<String> {
        None
    }
}

/// A tap that sees nothing.
pub struct NoTap;
impl Tap for NoTap {}

/// How a relayed session ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub exit_status: Option<u32>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub recording_sha256: Option<String>,
    /// Set when the bastion closed it (revocation, expiry, shutdown).
    pub closed_by: Option<String>,
}

/// A request sent upstream whose reply is still due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Pty,
    Start,
}

type ClientTx = ChannelWriteHalf<server::Msg>;
type TargetTx = ChannelWriteHalf<client::Msg>;

struct Shared<'a> {
    rule: &'a AccessRule,
    tap: Mutex<Box<dyn Tap>>,
    pending: Mutex<VecDeque<Pending>>,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    exit_status: Mutex<Option<u32>>,
}

impl Shared<'_> {
    fn tap(&self) -> std::sync::MutexGuard<'_, Box<dyn Tap>> {
        self.tap.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn pending(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn line(text: &str) -> Vec<u8> {
    format!("\r\njitgate: {text}\r\n").into_bytes()
}

/// Relays one session channel until either side closes it or `control` says close.
pub async fn relay(
    client: russh::Channel<server::Msg>,
    client_handle: server::Handle,
    target: russh::Channel<client::Msg>,
    rule: &AccessRule,
    tap: Box<dyn Tap>,
    mut control: watch::Receiver<Control>,
) -> Outcome {
    let (mut c_rx, c_tx) = client.split();
    let (mut t_rx, t_tx) = target.split();
    let shared = Shared {
        rule,
        tap: Mutex::new(tap),
        pending: Mutex::new(VecDeque::new()),
        bytes_up: AtomicU64::new(0),
        bytes_down: AtomicU64::new(0),
        exit_status: Mutex::new(None),
    };
    let mut closed_by = None;
    tokio::select! {
        () = up(&shared, &mut c_rx, &c_tx, &t_tx) => {
            let _ = t_tx.close().await;
        }
        () = down(&shared, &mut t_rx, &c_tx, &client_handle) => {
            let _ = c_tx.close().await;
        }
        reason = notices(&mut control, &c_tx) => {
            let _ = c_tx.extended_data_bytes(1, line(&reason)).await;
            let _ = c_tx.eof().await;
            let _ = c_tx.close().await;
            let _ = t_tx.close().await;
            closed_by = Some(reason);
        }
    }
    let exit_status = *shared.exit_status.lock().unwrap_or_else(|e| e.into_inner());
    let recording_sha256 = shared.tap().finish(exit_status);
    Outcome {
        exit_status,
        bytes_up: shared.bytes_up.load(Ordering::Relaxed),
        bytes_down: shared.bytes_down.load(Ordering::Relaxed),
        recording_sha256,
        closed_by,
    }
}

/// Prints each notice on the engineer's stderr; returns when told to close.
async fn notices(control: &mut watch::Receiver<Control>, c_tx: &ClientTx) -> String {
    let mut shown = control.borrow().notice.as_ref().map_or(0, |(n, _)| *n);
    loop {
        let show = {
            let c = control.borrow_and_update();
            if let Some(reason) = &c.close {
                return reason.clone();
            }
            match &c.notice {
                Some((n, text)) if *n > shown => {
                    shown = *n;
                    Some(text.clone())
                }
                _ => None,
            }
        };
        if let Some(text) = show {
            let _ = c_tx.extended_data_bytes(1, line(&text)).await;
        }
        if control.changed().await.is_err() {
            // The connection is gone; nothing will ever say close.
            std::future::pending::<()>().await;
        }
    }
}

/// Engineer → target: requests and input.
async fn up(s: &Shared<'_>, c_rx: &mut ChannelReadHalf, c_tx: &ClientTx, t_tx: &TargetTx) {
    while let Some(msg) = c_rx.wait().await {
        let sent = match msg {
            ChannelMsg::Data { data } => {
                s.bytes_up.fetch_add(data.len() as u64, Ordering::Relaxed);
                let gate = s.tap().input(&data);
                match gate {
                    InputGate::Forward => t_tx.data_bytes(data).await,
                    InputGate::Replace {
                        upstream,
                        to_client,
                    } => {
                        if !to_client.is_empty() {
                            let _ = c_tx.data_bytes(to_client).await;
                        }
                        if upstream.is_empty() {
                            Ok(())
                        } else {
                            t_tx.data_bytes(upstream).await
                        }
                    }
                }
            }
            ChannelMsg::ExtendedData { data, ext } => t_tx.extended_data_bytes(ext, data).await,
            ChannelMsg::Eof => t_tx.eof().await,
            ChannelMsg::Close => return,
            ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                pix_width,
                pix_height,
                terminal_modes,
                ..
            } if allows(s.rule, Request::Pty) => {
                s.tap().pty(&term, col_width, row_height);
                s.pending().push_back(Pending::Pty);
                t_tx.request_pty(
                    true,
                    &term,
                    col_width,
                    row_height,
                    pix_width,
                    pix_height,
                    &terminal_modes,
                )
                .await
            }
            ChannelMsg::RequestShell { .. } => {
                s.tap().shell();
                s.pending().push_back(Pending::Start);
                t_tx.request_shell(true).await
            }
            ChannelMsg::Exec { command, .. } => {
                let text = String::from_utf8_lossy(&command).into_owned();
                let gate = s.tap().exec(&text);
                match gate {
                    ExecGate::Allow => {
                        s.pending().push_back(Pending::Start);
                        t_tx.exec(true, command).await
                    }
                    ExecGate::Block { message } => {
                        let msg = format!("jitgate: {message}\r\n").into_bytes();
                        let _ = c_tx.extended_data_bytes(1, msg).await;
                        *s.exit_status.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(BLOCKED_EXIT);
                        let _ = c_tx.exit_status(BLOCKED_EXIT).await;
                        let _ = c_tx.eof().await;
                        let _ = c_tx.close().await;
                        return;
                    }
                }
            }
            ChannelMsg::RequestSubsystem { name, .. }
                if allows(s.rule, Request::Subsystem(&name)) =>
            {
                s.tap().subsystem(&name);
                s.pending().push_back(Pending::Start);
                t_tx.request_subsystem(true, name).await
            }
            ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            } if allows(s.rule, Request::Env(&variable_name)) => {
                t_tx.set_env(false, variable_name, variable_value).await
            }
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                pix_width,
                pix_height,
            } => {
                s.tap().resize(col_width, row_height);
                t_tx.window_change(col_width, row_height, pix_width, pix_height)
                    .await
            }
            ChannelMsg::Signal { signal } => t_tx.signal(signal).await,
            // Refused requests (already answered with failure) and anything else.
            _ => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Target → engineer: output, EOF, exit status, replies.
async fn down(
    s: &Shared<'_>,
    t_rx: &mut ChannelReadHalf,
    c_tx: &ClientTx,
    handle: &server::Handle,
) {
    let id = c_tx.id();
    while let Some(msg) = t_rx.wait().await {
        let sent = match msg {
            ChannelMsg::Data { data } => {
                s.bytes_down.fetch_add(data.len() as u64, Ordering::Relaxed);
                s.tap().output(&data, false);
                c_tx.data_bytes(data).await
            }
            ChannelMsg::ExtendedData { data, ext } => {
                s.bytes_down.fetch_add(data.len() as u64, Ordering::Relaxed);
                s.tap().output(&data, ext == 1);
                c_tx.extended_data_bytes(ext, data).await
            }
            ChannelMsg::Eof => c_tx.eof().await,
            ChannelMsg::Close => return,
            ChannelMsg::ExitStatus { exit_status } => {
                *s.exit_status.lock().unwrap_or_else(|e| e.into_inner()) = Some(exit_status);
                c_tx.exit_status(exit_status).await
            }
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            } => handle
                .exit_signal_request(id, signal_name, core_dumped, error_message, lang_tag)
                .await
                .map_err(|()| russh::Error::SendError),
            ChannelMsg::XonXoff { client_can_do } => handle
                .xon_xoff_request(id, client_can_do)
                .await
                .map_err(|()| russh::Error::SendError),
            ChannelMsg::Success => {
                s.pending().pop_front();
                Ok(())
            }
            ChannelMsg::Failure => {
                let what = s.pending().pop_front();
                match what {
                    Some(Pending::Pty) => {
                        c_tx.extended_data_bytes(
                            1,
                            line("the target could not allocate a terminal"),
                        )
                        .await
                    }
                    Some(Pending::Start) | None => {
                        let _ = c_tx
                            .extended_data_bytes(
                                1,
                                line("the target refused to start this session"),
                            )
                            .await;
                        return;
                    }
                }
            }
            _ => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_allow_list() {
        for (name, ok) in [
            ("LANG", true),
            ("LC_ALL", true),
            ("LC_CTYPE", true),
            ("TERM", true),
            ("LD_PRELOAD", false),
            ("PATH", false),
            ("lang", false),
        ] {
            assert_eq!(env_allowed(name), ok, "{name}");
        }
    }
}
