//! The engineer's keys through a pty gate: each Enter waits until the screen the gate reads
//! its line from has caught up with the keys before it, and a line the screen never showed is
//! cancelled rather than run unchecked.

use std::time::Duration;

use bytes::Bytes;

use super::{After, ClientTx, Shared, TargetTx, gate_input, line};
use crate::bastion::gate::Tap;
use crate::bastion::record::SessionLog;

/// Longest an Enter waits for the echo of the keys before it, when the keys say what the
/// line is (text and editing keys).
const ECHO_WAIT: Duration = Duration::from_millis(250);
/// Longest an Enter waits for the echo of a line recalled or completed; without it, the line
/// is cancelled (`cancel_line`).
const UNSEEN_ECHO_WAIT: Duration = Duration::from_secs(2);
/// Output must pause this long before the echo counts as complete.
const ECHO_QUIET: Duration = Duration::from_millis(15);
/// What the engineer reads when a line is cancelled for want of its echo.
const NOT_SHOWN: &str = "cancelled: the target did not show this line within 2s, so it could \
                         not be checked; enter it again";

/// Forwards one chunk of the engineer's input through the gate; false when the channel is
/// done.
///
/// Keys typed ahead of their echo: the keys go first, and each Enter after them waits until
/// the screen the gate reads the line from has caught up: the first Enter of a chunk always,
/// a later one when its line holds more than plain text (recalled or completed, so only the
/// screen shows it; plain text is checked as typed, and a pasted script is not slowed line by
/// line). Such a later line also waits for its prompt before its first key, so that the gate
/// knows where the line begins. A line holding a recall or a completion
/// (`Tap::line_needs_screen`) can only be judged from the screen: it waits up to
/// `UNSEEN_ECHO_WAIT` for its echo, and without it is cancelled, not run. Without a pty nothing is read from a screen, and bulk input is not
/// scanned.
pub(super) async fn forward_keys(
    s: &Shared<'_>,
    log: &mut SessionLog,
    mut data: Bytes,
    c_tx: &ClientTx,
    t_tx: &TargetTx,
) -> bool {
    let mut first = true;
    while s.tap().reads_screen() {
        let Some((at, len)) = enter_key(&data) else {
            break;
        };
        let keys = data.split_to(at);
        let edited = keys.iter().any(|&b| b < 0x20 || b == 0x7f);
        if !first && edited {
            settle(s, |t| t.prompt_pending(), ECHO_WAIT).await;
        }
        if !keys.is_empty() {
            match gate_input(s, log, keys, c_tx, t_tx).await {
                Ok(After::Go) => {}
                Ok(After::Dropped) => return true,
                Ok(After::End) | Err(_) => return false,
            }
        }
        if (first || edited) && s.tap().echo_pending() {
            let bound = if s.tap().line_needs_screen() {
                UNSEEN_ECHO_WAIT
            } else {
                ECHO_WAIT
            };
            settle(s, |t| t.echo_pending(), bound).await;
            if !may_judge(&**s.tap()) {
                return cancel_line(s, log, c_tx, t_tx).await;
            }
        }
        first = false;
        match gate_input(s, log, data.split_to(len), c_tx, t_tx).await {
            Ok(After::Go) => {}
            // A blocked Enter drops the rest of what came with it.
            Ok(After::Dropped) => return true,
            Ok(After::End) | Err(_) => return false,
        }
    }
    match gate_input(s, log, data, c_tx, t_tx).await {
        Ok(After::Go | After::Dropped) => true,
        Ok(After::End) | Err(_) => false,
    }
}

/// The first Enter key in `data`, as its offset and length: CR, LF, Ctrl-O (operate and get
/// next) or the keypad's `ESC O M`, as the line gate reads them.
fn enter_key(data: &[u8]) -> Option<(usize, usize)> {
    data.iter().enumerate().find_map(|(i, &b)| match b {
        b'\r' | b'\n' | 0x0f => Some((i, 1)),
        0x1b if data[i + 1..].starts_with(b"OM") => Some((i, 3)),
        _ => None,
    })
}

/// Waits for the target to show what `pending` says it owes (the echo of what was typed
/// before an Enter, or the prompt after one): for output to arrive and then pause for
/// `ECHO_QUIET` (a shell redraws an edited line in several writes), at most `bound` in all
/// (a prompt that does not echo, such as a password's, costs that once).
async fn settle(s: &Shared<'_>, pending: impl Fn(&dyn Tap) -> bool, bound: Duration) {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let until = if pending(&**s.tap()) {
            deadline
        } else {
            (tokio::time::Instant::now() + ECHO_QUIET).min(deadline)
        };
        tokio::select! {
            () = s.output_seen.notified() => {}
            () = tokio::time::sleep_until(until) => return,
        }
    }
}

/// Whether an Enter may be judged once the wait for its echo is over: the screen has caught
/// up, or the line's keys are all ones the typed model follows (text, editing keys).
/// Otherwise the screen is stale (a recalled or completed line not shown yet) and the typed
/// model does not know the line: the check would pass what it never saw.
fn may_judge(tap: &dyn Tap) -> bool {
    !tap.echo_pending() || !tap.line_needs_screen()
}

/// Cancels the line instead of handing over its Enter, as a block does (Ctrl-C through the
/// gate, which then starts its next line afresh; the rest of the input is dropped), and tells
/// the engineer why. False when the channel is done.
async fn cancel_line(
    s: &Shared<'_>,
    log: &mut SessionLog,
    c_tx: &ClientTx,
    t_tx: &TargetTx,
) -> bool {
    match gate_input(s, log, Bytes::from_static(b"\x03"), c_tx, t_tx).await {
        Ok(After::Go | After::Dropped) => {}
        Ok(After::End) | Err(_) => return false,
    }
    if let Some(r) = s.rec.get() {
        r.marker(&format!("jitgate: {NOT_SHOWN}")).await;
    }
    s.input
        .to_engineer(c_tx.data_bytes(line(NOT_SHOWN)))
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gate whose echo and line state are set by hand.
    struct Fake {
        echo_pending: bool,
        line_needs_screen: bool,
    }

    impl Tap for Fake {
        fn echo_pending(&self) -> bool {
            self.echo_pending
        }
        fn line_needs_screen(&self) -> bool {
            self.line_needs_screen
        }
    }

    #[test]
    fn a_recalled_line_without_its_echo_is_not_judged() {
        let cases = [
            ("echoed plain text", false, false, true),
            ("echoed recall or completion", false, true, true),
            // Text and editing keys are judged from the typed model (a silent prompt).
            ("typed and edited, not echoed", true, false, true),
            // Up or Tab, then Enter on a stale screen: the line is cancelled.
            ("recall or completion not echoed", true, true, false),
        ];
        for (what, echo_pending, line_needs_screen, judged) in cases {
            let tap = Fake {
                echo_pending,
                line_needs_screen,
            };
            assert_eq!(may_judge(&tap), judged, "{what}");
        }
    }

    #[test]
    fn enter_keys_are_found_in_all_their_forms() {
        type Found = Option<(usize, usize)>;
        let cases: [(&[u8], Found); 6] = [
            (b"ls\r", Some((2, 1))),
            (b"ls\n", Some((2, 1))),
            (b"ls\x0f", Some((2, 1))),
            (b"ls\x1bOM", Some((2, 3))),
            (b"ls\x1b[A", None),
            (b"", None),
        ];
        for (data, want) in cases {
            assert_eq!(enter_key(data), want, "{data:?}");
        }
    }
}
