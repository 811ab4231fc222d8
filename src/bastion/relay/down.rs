//! Target → engineer: the target's messages drained into a queue bounded in bytes, then
//! forwarded in order (the parent module says why the drain must keep going).

use std::sync::atomic::Ordering;
use std::time::Duration;

use russh::{ChannelMsg, ChannelReadHalf, Sig, server};
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};
use tokio::time::Instant;

use super::{ClientTx, Pending, Shared, eof, extended, line, tell};

/// Bytes one channel's queue of target output may hold while the engineer's side is busy,
/// each message counted with its `MSG_OVERHEAD`: more than the window the bastion grants the
/// target (2 MiB) in the packets a target sends, and a bound on memory however small they are.
const DOWN_BUFFER: usize = 4 << 20;
/// What a queued message holds besides its data bytes: its slot in the queue (the message
/// and its permit), and 64 bytes for the data's allocation (russh's clone of a packet's
/// `Bytes` adds a shared header) and the allocator's rounding. Counting data bytes alone, a
/// target that sends one byte a packet would queue a hundred times the bound.
const MSG_OVERHEAD: usize = std::mem::size_of::<(ChannelMsg, SemaphorePermit<'static>)>() + 64;
/// How long the target's EOF may wait for the exit status behind it (see `down`).
const EOF_WAIT: Duration = Duration::from_secs(2);

/// What a message from the target counts against `DOWN_BUFFER`.
fn cost(msg: &ChannelMsg) -> u32 {
    let data = match msg {
        ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len(),
        _ => 0,
    };
    u32::try_from((data + MSG_OVERHEAD).min(DOWN_BUFFER)).unwrap_or(u32::MAX)
}

/// Target → engineer: output, EOF, exit status, replies. Returns the notice given when the
/// target's channel ended without a close: its connection was lost.
pub(super) async fn down(
    s: &Shared<'_>,
    t_rx: &mut ChannelReadHalf,
    c_tx: &ClientTx,
    handle: &server::Handle,
) -> Option<String> {
    // Drain the target's messages into a queue bounded in bytes, so the upstream session can
    // always reach the target's next window adjustment (the up direction waits for it) while
    // the nested session is busy: that pair of waits could otherwise hold each other.
    let budget = Semaphore::new(DOWN_BUFFER);
    let (q_tx, mut q_rx) = mpsc::unbounded_channel();
    let drain = {
        let budget = &budget;
        // `q_tx` moves in: when the target's messages end, so does the queue, and the
        // forwarder hears of it once it has sent what is queued.
        async move {
            while let Some(msg) = t_rx.wait().await {
                let Ok(permit) = budget.acquire_many(cost(&msg)).await else {
                    return;
                };
                let last = matches!(msg, ChannelMsg::Close);
                if q_tx.send((msg, permit)).is_err() || last {
                    return;
                }
            }
        }
    };
    let forward = async {
        // The target's EOF waits (up to `EOF_WAIT`) for the exit status that usually follows
        // it. An engineer's ssh may answer EOF with its close, and russh answers that close at
        // once (sshd waits for its child first), so a status sent after it is lost: the
        // engineer's ssh, or a ControlMaster's client, then exits 255.
        let mut eof_due: Option<Instant> = None;
        loop {
            let next = match eof_due {
                None => q_rx.recv().await,
                Some(due) => match tokio::time::timeout_at(due, q_rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => {
                        // No status came: the EOF goes on its own.
                        eof_due = None;
                        if s.blocked.get().is_none() && eof(s, c_tx).await.is_err() {
                            return None;
                        }
                        continue;
                    }
                },
            };
            let Some((msg, permit)) = next else {
                // The messages ended without a close: the connection to the target is gone
                // (russh closes no channel when its connection drops).
                return Some(lost(s, c_tx).await);
            };
            if s.blocked.get().is_some() {
                // The guardrails ended the session (`relay::act`): the target's output up to
                // its close still reaches the engineer; its EOF, status and close do not, the
                // block's go instead.
                eof_due = None;
                let output = matches!(
                    msg,
                    ChannelMsg::Data { .. } | ChannelMsg::ExtendedData { .. }
                );
                let close = matches!(msg, ChannelMsg::Close);
                if close || (output && !forward_down(s, msg, c_tx, handle).await) {
                    return None;
                }
                continue;
            }
            if eof_due.is_none() && matches!(msg, ChannelMsg::Eof) {
                eof_due = Some(Instant::now() + EOF_WAIT);
                continue;
            }
            // A status goes before the held EOF, anything else (the close) after it.
            let status = matches!(
                msg,
                ChannelMsg::ExitStatus { .. } | ChannelMsg::ExitSignal { .. }
            );
            if !status && eof_due.take().is_some() && eof(s, c_tx).await.is_err() {
                return None;
            }
            let go_on = forward_down(s, msg, c_tx, handle).await;
            drop(permit);
            if eof_due.take().is_some() && eof(s, c_tx).await.is_err() {
                return None;
            }
            if !go_on {
                return None;
            }
        }
    };
    tokio::select! {
        lost = forward => lost,
        () = async { drain.await; std::future::pending::<()>().await } => None,
    }
}

/// The target's connection was lost: tells the engineer (`tell`) and marks the recording. No
/// exit status is sent, none being known, so the engineer's ssh exits 255, as OpenSSH's does
/// when its connection to the target drops. While a block ends the session
/// (`Shared::blocked`), the block's notice, status and EOF follow.
async fn lost(s: &Shared<'_>, c_tx: &ClientTx) -> String {
    let text = format!("the connection to {} was lost", s.host);
    tracing::info!(host = %s.host, "the upstream connection was lost");
    if let Some(r) = s.rec.get() {
        r.marker(&format!("jitgate: {text}")).await;
    }
    let _ = tell(s, c_tx, line(&text)).await;
    if s.blocked.get().is_none() {
        let _ = eof(s, c_tx).await;
    }
    text
}

/// Forwards one message from the target; false when the channel is done.
async fn forward_down(
    s: &Shared<'_>,
    msg: ChannelMsg,
    c_tx: &ClientTx,
    handle: &server::Handle,
) -> bool {
    let id = c_tx.id();
    let sent = match msg {
        ChannelMsg::Data { data } => {
            s.bytes_down.fetch_add(data.len() as u64, Ordering::Relaxed);
            s.tap().output(&data, false);
            s.output_seen.notify_one();
            if let Some(r) = s.rec.get() {
                r.output(&data).await;
            }
            s.input.to_engineer(c_tx.data_bytes(data)).await
        }
        ChannelMsg::ExtendedData { data, ext } => {
            s.bytes_down.fetch_add(data.len() as u64, Ordering::Relaxed);
            s.tap().output(&data, ext == 1);
            s.output_seen.notify_one();
            if let Some(r) = s.rec.get() {
                r.output(&data).await;
            }
            s.input.to_engineer(extended(s, c_tx, ext, data)).await
        }
        ChannelMsg::Eof => eof(s, c_tx).await,
        ChannelMsg::Close => return false,
        ChannelMsg::ExitStatus { exit_status } => {
            *s.exit_status.lock().unwrap_or_else(|e| e.into_inner()) = Some(exit_status);
            c_tx.exit_status(exit_status).await
        }
        ChannelMsg::ExitSignal {
            signal_name,
            core_dumped,
            error_message,
            lang_tag,
        } => {
            *s.exit_signal.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(signal_text(&signal_name));
            handle
                .exit_signal_request(id, signal_name, core_dumped, error_message, lang_tag)
                .await
                .map_err(|()| russh::Error::SendError)
        }
        ChannelMsg::XonXoff { client_can_do } => handle
            .xon_xoff_request(id, client_can_do)
            .await
            .map_err(|()| russh::Error::SendError),
        ChannelMsg::Success => {
            s.pending().pop_front();
            s.replied.notify_one();
            Ok(())
        }
        ChannelMsg::Failure => {
            let what = s.pending().pop_front();
            match what {
                Some(Pending::Pty) => {
                    // Before the input held for this answer goes on (`pty_answered`).
                    s.tap().pty_refused();
                    s.replied.notify_one();
                    c_tx.extended_data_bytes(1, line("the target could not allocate a terminal"))
                        .await
                }
                Some(Pending::Start) | None => {
                    let _ = c_tx
                        .extended_data_bytes(1, line("the target refused to start this session"))
                        .await;
                    return false;
                }
            }
        }
        _ => Ok(()),
    };
    sent.is_ok()
}

/// A signal's name as the session's records keep it (`KILL`, `TERM`, …). A name the target
/// made up is kept to 32 characters that cannot disturb a table or a log line.
fn signal_text(sig: &Sig) -> String {
    let name = match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name,
    };
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+'))
        .take(32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_message_counts_its_overhead_with_its_bytes() {
        let data = |n: usize| ChannelMsg::Data {
            data: bytes::Bytes::from(vec![b'x'; n]),
        };
        let overhead = u32::try_from(MSG_OVERHEAD).unwrap();
        let cases = [
            ("a one-byte packet", data(1), 1 + overhead),
            ("a full packet", data(32 << 10), (32 << 10) + overhead),
            ("EOF", ChannelMsg::Eof, overhead),
            (
                "stderr",
                ChannelMsg::ExtendedData {
                    data: bytes::Bytes::from_static(b"err"),
                    ext: 1,
                },
                3 + overhead,
            ),
            // Never more than the whole budget, or it could never be queued.
            ("past the bound", data(DOWN_BUFFER + 1), DOWN_BUFFER as u32),
        ];
        for (what, msg, want) in cases {
            assert_eq!(cost(&msg), want, "{what}");
        }
        // One-byte packets fill the budget at a few tens of thousands, not four million.
        const { assert!(DOWN_BUFFER / (1 + MSG_OVERHEAD) < 40_000) };
    }

    #[test]
    fn signal_names_are_kept_short_and_plain() {
        assert_eq!(signal_text(&Sig::KILL), "KILL");
        assert_eq!(signal_text(&Sig::Custom("WINCH".into())), "WINCH");
        assert_eq!(
            signal_text(&Sig::Custom(format!("X\n\u{1b}[2J{}", "Y".repeat(40)))),
            format!("X2J{}", "Y".repeat(29))
        );
    }
}
