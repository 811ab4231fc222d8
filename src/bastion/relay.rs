//! One session channel, relayed faithfully between the engineer and the target: pty-req,
//! shell, exec, subsystem, env (allow-list), window-change, signal, data both ways, EOF,
//! exit-status, exit-signal, close.
//!
//! Requests are answered to the engineer by the inner server's handler, from the same pure
//! `allows` decision and the same one-start `Setup` used here to choose what goes upstream
//! (russh keeps one pending reply flag per channel, so replies cannot wait for the target).
//! A target that then refuses what we accepted ends the channel with a message (a refused
//! pty only gets the message: the session goes on without one, through the line gate). A
//! channel starts once, with at most one pty requested before it: `setup` drops anything
//! else, and holds input until the target has answered the pty request.
//!
//! Back-pressure: every write awaits the receiver's SSH window, and russh's per-channel
//! queues are bounded, so a slow reader slows the writer instead of filling memory.
//!
//! russh hands a channel's data over by blocking its session loop on a bounded queue, and
//! grants window as data arrives rather than as it is consumed. With data flowing both ways,
//! the nested and upstream session loops could then wait on each other (each one's window
//! adjustment sits unread behind data the other must take first; `flow` walks through the
//! circle). Target output drains into a queue bounded at `down::DOWN_BUFFER` bytes; the
//! engineer's input drains into `flow::UpQueue`, which reads past its bound while output to
//! the engineer is stalled, so the nested loop always reaches the engineer's next window
//! adjustment; the nested server reads and writes its channel through two bounded queues
//! (`bridge`).
//!
//! Hook points (`Tap`): the exec command before anything goes upstream, every input chunk
//! before it is forwarded (`typing` holds each Enter until the screen has caught up), every
//! output chunk before it is shown, resizes, and the target's refusal of a pty.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, client, server};
use tokio::sync::{Notify, mpsc, watch};

use super::flow::{Stalls, Stuck, UpQueue};
use super::gate::{ExecGate, Gated, InputGate, Tap};
use super::record::{Outcome, PtyInfo, SessionLog, Start};
use super::requests::{Request, allows};
use super::sessions::Control;
use crate::config::AccessRule;
use crate::recorder::RecordingTap;

mod down;
mod notice;
mod setup;
mod typing;
use down::down;
use notice::{close_with_notice, eof, extended, line, no_pty_answer, notices, tell};
pub(super) use setup::Setup;
use setup::{pty_answered, started_once};
use typing::forward_keys;

/// How long a session the guardrails ended without a pty waits for the target to finish
/// the input forwarded before the blocked line (see `act`).
const BLOCKED_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Exit status of a command the guardrails blocked.
pub const BLOCKED_EXIT: u32 = 126;

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
    /// The target's inventory name, for notices.
    host: String,
    tap: Mutex<Box<dyn Tap>>,
    pending: Mutex<VecDeque<Pending>>,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    exit_status: Mutex<Option<u32>>,
    exit_signal: Mutex<Option<String>>,
    pty: Mutex<Option<PtyInfo>>,
    rec: OnceLock<RecordingTap>,
    input: UpQueue,
    /// Woken whenever target output has been fed to the gate (see `settle`).
    output_seen: Notify,
    setup: Mutex<Setup>,
    /// Woken whenever the target answers a request (see `pty_answered`).
    replied: Notify,
    /// The guardrails ended this session without a pty: the block's notice, given once the
    /// target has finished the input forwarded before it (see `act`).
    blocked: OnceLock<String>,
    /// Whether the engineer's side of the channel has had its EOF (`notice::eof`): no
    /// extended data goes after it (`notice::extended`).
    engineer_eof: notice::EngineerEof,
}

impl Shared<'_> {
    fn tap(&self) -> std::sync::MutexGuard<'_, Box<dyn Tap>> {
        self.tap.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn pending(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn setup(&self) -> std::sync::MutexGuard<'_, Setup> {
        self.setup.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Starts the session's records; on failure tells the engineer and returns false.
    async fn start(&self, log: &mut SessionLog, what: Start<'_>, c_tx: &ClientTx) -> bool {
        let pty = self.pty.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match log.start(what, pty.as_ref()).await {
            Ok(tap) => {
                // Set once: a channel starts once (`setup`).
                let _ = self.rec.set(tap);
                true
            }
            Err(msg) => {
                let _ = tell(self, c_tx, line(&msg)).await;
                let _ = c_tx.exit_status(1).await;
                let _ = eof(self, c_tx).await;
                let _ = c_tx.close().await;
                false
            }
        }
    }
}

fn dim(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// The engineer's end of a session channel.
pub struct Engineer {
    pub channel: russh::Channel<server::Msg>,
    /// The nested connection's handle, for the requests a channel cannot send itself.
    pub handle: server::Handle,
    /// Output stalls on that connection, shared by its channels (`flow`).
    pub stalls: Arc<Stalls>,
}

/// Relays one session channel until either side closes it or `control` says close.
pub async fn relay(
    engineer: Engineer,
    target: russh::Channel<client::Msg>,
    rule: &AccessRule,
    tap: Box<dyn Tap>,
    log: &mut SessionLog,
    mut control: watch::Receiver<Control>,
) -> Outcome {
    let Engineer {
        channel,
        handle: client_handle,
        stalls,
    } = engineer;
    let (mut c_rx, c_tx) = channel.split();
    let (mut t_rx, t_tx) = target.split();
    let shared = Shared {
        rule,
        host: log.host().to_string(),
        tap: Mutex::new(tap),
        pending: Mutex::new(VecDeque::new()),
        bytes_up: AtomicU64::new(0),
        bytes_down: AtomicU64::new(0),
        exit_status: Mutex::new(None),
        exit_signal: Mutex::new(None),
        pty: Mutex::new(None),
        rec: OnceLock::new(),
        input: UpQueue::new(stalls),
        output_seen: Notify::new(),
        setup: Mutex::new(Setup::default()),
        replied: Notify::new(),
        blocked: OnceLock::new(),
        engineer_eof: notice::EngineerEof::default(),
    };
    let mut closed_by = None;
    // Fails closed: a session whose recording fails does not go on unrecorded.
    let recording_failed = log.failed();
    tokio::select! {
        () = up(&shared, log, &mut c_rx, &c_tx, &t_tx) => {
            if let Some(notice) = shared.blocked.get() {
                // The target did not finish within `BLOCKED_DRAIN` of its EOF.
                end(&shared, &c_tx, notice).await;
            }
            let _ = t_tx.close().await;
        }
        lost = down(&shared, &mut t_rx, &c_tx, &client_handle) => {
            if let Some(notice) = shared.blocked.get() {
                end(&shared, &c_tx, notice).await;
            } else {
                let _ = c_tx.close().await;
            }
            closed_by = lost;
        }
        reason = notices(&shared, &mut control, &c_tx) => {
            if let Some(r) = shared.rec.get() {
                r.marker(&reason).await;
            }
            let _ = t_tx.close().await;
            close_with_notice(&shared, &c_tx, &reason).await;
            closed_by = Some(reason);
        }
        notice = recording_failed => {
            let _ = t_tx.close().await;
            close_with_notice(&shared, &c_tx, &notice).await;
            closed_by = Some(notice);
        }
    }
    let exit_status = *shared.exit_status.lock().unwrap_or_else(|e| e.into_inner());
    let exit_signal = shared
        .exit_signal
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    Outcome {
        exit_status,
        exit_signal,
        bytes_up: shared.bytes_up.load(Ordering::Relaxed),
        bytes_down: shared.bytes_down.load(Ordering::Relaxed),
        closed_by,
    }
}

/// Engineer → target: requests and input, read into `s.input` (see `flow`) and forwarded
/// from there in order.
async fn up(
    s: &Shared<'_>,
    log: &mut SessionLog,
    c_rx: &mut ChannelReadHalf,
    c_tx: &ClientTx,
    t_tx: &TargetTx,
) {
    let (q_tx, mut q_rx) = mpsc::unbounded_channel();
    let read = async {
        let stuck = loop {
            if let Err(stuck) = s.input.room().await {
                break Some(stuck);
            }
            let Some(msg) = c_rx.wait().await else {
                break None;
            };
            let cost = s.input.add(match &msg {
                ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len(),
                _ => 0,
            });
            if q_tx.send((msg, cost)).is_err() {
                break None;
            }
        };
        // The forwarding side finishes what is queued, then ends.
        drop(q_tx);
        stuck
    };
    let forward = async {
        while let Some((msg, cost)) = q_rx.recv().await {
            s.input.taken(cost);
            if !forward_up(s, log, msg, c_tx, t_tx).await {
                return;
            }
        }
    };
    tokio::select! {
        () = forward => {}
        Some(Stuck(queued)) = read => {
            let text = format!(
                "closing: {} MiB of your input are waiting while your ssh reads none of this connection's output",
                queued >> 20
            );
            close_with_notice(s, c_tx, &text).await;
        }
    }
    if s.blocked.get().is_some() {
        // While the target finishes, what the engineer still sends is read and dropped, so
        // the nested session goes on carrying the target's output.
        let _ = tokio::time::timeout(BLOCKED_DRAIN, async {
            while c_rx.wait().await.is_some() {}
            std::future::pending::<()>().await
        })
        .await;
    }
}

/// Forwards one message from the engineer; false when the channel is done.
async fn forward_up(
    s: &Shared<'_>,
    log: &mut SessionLog,
    msg: ChannelMsg,
    c_tx: &ClientTx,
    t_tx: &TargetTx,
) -> bool {
    let sent = match msg {
        ChannelMsg::Data { data } => {
            if !pty_answered(s).await {
                return no_pty_answer(s, c_tx, t_tx).await;
            }
            s.bytes_up.fetch_add(data.len() as u64, Ordering::Relaxed);
            if let Some(r) = s.rec.get() {
                r.input(&data).await;
            }
            return forward_keys(s, log, data, c_tx, t_tx).await;
        }
        ChannelMsg::ExtendedData { data, ext } => t_tx.extended_data_bytes(ext, data).await,
        ChannelMsg::Eof => {
            if !pty_answered(s).await {
                return no_pty_answer(s, c_tx, t_tx).await;
            }
            let held = s.tap().eof();
            if let Some(g) = held {
                match act(s, log, g, c_tx, t_tx).await {
                    Ok(After::Go | After::Dropped) => {}
                    Ok(After::End) | Err(_) => return false,
                }
            }
            t_tx.eof().await
        }
        ChannelMsg::Close => return false,
        ChannelMsg::RequestPty {
            term,
            col_width,
            row_height,
            pix_width,
            pix_height,
            terminal_modes,
            ..
        } if allows(s.rule, Request::Pty) => {
            if !s.setup().pty() {
                tracing::info!(host = %s.host, "a pty request out of order, dropped");
                return true;
            }
            s.tap().pty(&term, col_width, row_height);
            *s.pty.lock().unwrap_or_else(|e| e.into_inner()) = Some(PtyInfo {
                term: term.clone(),
                cols: col_width,
                rows: row_height,
            });
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
            if !started_once(s) {
                return true;
            }
            if !s.start(log, Start::Shell, c_tx).await {
                return false;
            }
            s.tap().shell();
            s.pending().push_back(Pending::Start);
            t_tx.request_shell(true).await
        }
        ChannelMsg::Exec { command, .. } => {
            let text = String::from_utf8_lossy(&command).into_owned();
            if !allows(s.rule, Request::Exec(&text)) {
                // Refused in the handler's reply already (sftp-server under a rule without
                // sftp), like the refused requests below.
                return true;
            }
            if !started_once(s) {
                return true;
            }
            if !s.start(log, Start::Exec(&text), c_tx).await {
                return false;
            }
            let gate = s.tap().exec(&text);
            match gate {
                ExecGate::Allow(checked) => {
                    if report(s, log, &checked).await {
                        end(s, c_tx, "too many blocked commands").await;
                        return false;
                    }
                    s.pending().push_back(Pending::Start);
                    t_tx.exec(true, command).await
                }
                ExecGate::Block { checked, notice } => {
                    report(s, log, &checked).await;
                    end(s, c_tx, &notice).await;
                    return false;
                }
            }
        }
        ChannelMsg::RequestSubsystem { name, .. } if allows(s.rule, Request::Subsystem(&name)) => {
            if !started_once(s) {
                return true;
            }
            if !s.start(log, Start::Subsystem(&name), c_tx).await {
                return false;
            }
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
            if let Some(r) = s.rec.get() {
                r.resize(dim(col_width), dim(row_height)).await;
            }
            t_tx.window_change(col_width, row_height, pix_width, pix_height)
                .await
        }
        ChannelMsg::Signal { signal } => t_tx.signal(signal).await,
        ChannelMsg::AgentForward { .. } if allows(s.rule, Request::Agent) => {
            t_tx.agent_forward(false).await
        }
        ChannelMsg::RequestX11 {
            single_connection,
            x11_authentication_protocol,
            x11_authentication_cookie,
            x11_screen_number,
            ..
        } if allows(s.rule, Request::X11) => {
            t_tx.request_x11(
                false,
                single_connection,
                x11_authentication_protocol,
                x11_authentication_cookie,
                x11_screen_number,
            )
            .await
        }
        // Refused requests (already answered with failure) and anything else.
        _ => Ok(()),
    };
    sent.is_ok()
}

/// What is left of the session after the gate saw some input.
enum After {
    Go,
    /// A command was blocked: drop whatever else came with it.
    Dropped,
    /// The session must end.
    End,
}

/// Passes one piece of input through the gate and on.
async fn gate_input(
    s: &Shared<'_>,
    log: &mut SessionLog,
    data: bytes::Bytes,
    c_tx: &ClientTx,
    t_tx: &TargetTx,
) -> Result<After, russh::Error> {
    let gate = s.tap().input(&data);
    match gate {
        InputGate::Forward => t_tx.data_bytes(data).await.map(|()| After::Go),
        InputGate::Gated(g) => act(s, log, g, c_tx, t_tx).await,
    }
}

/// Indexes, audits and marks what a gate checked; true once the rule's block limit is hit.
async fn report(s: &Shared<'_>, log: &mut SessionLog, checked: &[super::gate::Checked]) -> bool {
    for c in checked.iter().filter(|c| c.verdict != "allowed") {
        let rule = c.rule.as_deref().unwrap_or("-");
        if let Some(r) = s.rec.get() {
            r.marker(&format!("jitgate: {} by {rule}: {}", c.verdict, c.text))
                .await;
        }
    }
    log.commands(checked).await
}

/// Ends a session the guardrails stopped: the notice on stderr, exit status 126.
async fn end(s: &Shared<'_>, c_tx: &ClientTx, notice: &str) {
    let mut text = notice.trim_end().to_string();
    if !text.starts_with("jitgate:") {
        text = format!("jitgate: {text}");
    }
    let _ = tell(s, c_tx, format!("{text}\r\n").into_bytes()).await;
    *s.exit_status.lock().unwrap_or_else(|e| e.into_inner()) = Some(BLOCKED_EXIT);
    // A status may follow the EOF; the EOF goes once.
    let _ = c_tx.exit_status(BLOCKED_EXIT).await;
    let _ = eof(s, c_tx).await;
    let _ = c_tx.close().await;
}

/// Acts on a gate's decision about input; false when the session must end.
async fn act(
    s: &Shared<'_>,
    log: &mut SessionLog,
    g: Gated,
    c_tx: &ClientTx,
    t_tx: &TargetTx,
) -> Result<After, russh::Error> {
    let over = report(s, log, &g.checked).await;
    if !g.forward.is_empty() {
        t_tx.data_bytes(g.forward).await?;
    }
    if g.end {
        // What was forwarded before the blocked line takes effect: the target reads its input
        // to the end (EOF) and finishes, its output still reaches the engineer (`down`), and
        // the session ends with the block's notice and status 126 once the target has closed
        // its side, or after `BLOCKED_DRAIN`. Closed at once, sshd may drop input it has not
        // yet handed to the program.
        let _ = s.blocked.set(g.notice.map(|n| n.text).unwrap_or_default());
        let _ = t_tx.eof().await;
        return Ok(After::End);
    }
    let cancelled = g.cancelled;
    if let Some(n) = g.notice {
        let bytes = n.text.into_bytes();
        if n.stderr {
            s.input.to_engineer(tell(s, c_tx, bytes)).await?;
        } else {
            s.input.to_engineer(c_tx.data_bytes(bytes)).await?;
        }
    }
    if over {
        end(
            s,
            c_tx,
            "too many blocked commands; the request is flagged for review",
        )
        .await;
        let _ = t_tx.close().await;
        return Ok(After::End);
    }
    Ok(if cancelled { After::Dropped } else { After::Go })
}
