//! What the engineer reads from the bastion itself: one-line notices on stderr, and closing
//! a channel with one (revocation, expiry, shutdown, a failed recording, a target that does
//! not answer); and the one rule every stderr write keeps, the target's included: nothing
//! after the engineer's EOF (`extended`, `eof`).

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{ClientTx, Shared, TargetTx};
use crate::bastion::sessions::Control;

/// One line for the engineer's terminal, from the bastion.
pub(super) fn line(text: &str) -> Vec<u8> {
    format!("\r\njitgate: {text}\r\n").into_bytes()
}

/// A target that leaves a pty request unanswered: the channel is closed, as no gate can be
/// chosen for its input. Returns false (the channel is done).
pub(super) async fn no_pty_answer(s: &Shared<'_>, c_tx: &ClientTx, t_tx: &TargetTx) -> bool {
    let _ = t_tx.close().await;
    let text = format!(
        "closing: the target did not answer the terminal request within {}s",
        super::setup::PTY_ANSWER_WAIT.as_secs()
    );
    close_with_notice(s, c_tx, &text).await;
    false
}

/// Whether the engineer's side of the channel has had its EOF (`eof`), for `extended`.
#[derive(Default)]
pub(super) struct EngineerEof {
    /// Taken by a send of extended data from its check to its end, and by the EOF.
    sent: tokio::sync::Mutex<bool>,
    /// Cancelled as the EOF comes: a send still waiting for the engineer's window gives way.
    coming: CancellationToken,
}

/// `bytes` on the engineer's stderr (`extended`).
pub(super) async fn tell(
    s: &Shared<'_>,
    c_tx: &ClientTx,
    bytes: Vec<u8>,
) -> Result<(), russh::Error> {
    extended(s, c_tx, 1, bytes).await
}

/// Extended data (stderr: `ext` 1) for the engineer, unless their side of the channel has had
/// its EOF: extended data after it is a protocol error, for which OpenSSH drops the whole
/// connection (every session a ControlMaster carries with it).
pub(super) async fn extended(
    s: &Shared<'_>,
    c_tx: &ClientTx,
    ext: u32,
    bytes: impl Into<bytes::Bytes>,
) -> Result<(), russh::Error> {
    let e = &s.engineer_eof;
    if e.coming.is_cancelled() {
        return Ok(());
    }
    let sent = e.sent.lock().await;
    if *sent {
        return Ok(());
    }
    // An EOF on its way cuts short a send still waiting for the engineer's window (it has
    // queued nothing then), so that the EOF never waits on an engineer who reads nothing.
    tokio::select! {
        biased;
        () = e.coming.cancelled() => Ok(()),
        sent = c_tx.extended_data_bytes(ext, bytes) => sent,
    }
}

/// Sends the engineer's EOF once; after it, `extended` sends nothing.
pub(super) async fn eof(s: &Shared<'_>, c_tx: &ClientTx) -> Result<(), russh::Error> {
    let e = &s.engineer_eof;
    e.coming.cancel();
    let mut sent = e.sent.lock().await;
    if *sent {
        return Ok(());
    }
    *sent = true;
    c_tx.eof().await
}

/// Tells the engineer why on stderr, then ends the channel.
pub(super) async fn close_with_notice(s: &Shared<'_>, c_tx: &ClientTx, text: &str) {
    // An engineer's ssh that reads nothing (suspended, a stalled link) has no window for the
    // notice: the channel closes without it rather than stay open.
    let notice = async {
        let _ = tell(s, c_tx, line(text)).await;
        let _ = eof(s, c_tx).await;
    };
    let _ = tokio::time::timeout(NOTICE_WAIT, notice).await;
    let _ = c_tx.close().await;
}

/// Longest a closing notice waits for room in the engineer's window.
const NOTICE_WAIT: Duration = Duration::from_millis(500);

/// Prints each notice on the engineer's stderr; returns when told to close.
pub(super) async fn notices(
    s: &Shared<'_>,
    control: &mut watch::Receiver<Control>,
    c_tx: &ClientTx,
) -> String {
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
            let _ = s.input.to_engineer(tell(s, c_tx, line(&text))).await;
        }
        if control.changed().await.is_err() {
            // The connection is gone; nothing will ever say close.
            std::future::pending::<()>().await;
        }
    }
}
