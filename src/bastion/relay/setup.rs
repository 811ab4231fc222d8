//! A channel's setup as the relay lets it through: at most one pty request, before the start,
//! and one shell, exec or subsystem to start it; and input held until the target has answered
//! the pty request, so that it goes through the gate the answer calls for.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Pending, Shared};

/// What the channel asked for so far. sshd refuses a second start and a pty request after the
/// start (a second pty request ends its connection), but the gate is chosen here before its
/// answer could come back: a second start would replace the gate, a pty request refused after
/// the start would turn a pty gate into the line gate. So the relay drops such a request and
/// sends nothing upstream; the gate stays as it is.
///
/// The nested server's handler keeps one too, so that what it answers the engineer matches
/// what the relay does: a dropped request is answered with failure, not success.
#[derive(Debug, Default)]
pub struct Setup {
    pty: bool,
    started: bool,
}

impl Setup {
    /// Whether a pty request goes upstream.
    pub fn pty(&mut self) -> bool {
        let ok = !self.pty && !self.started;
        self.pty |= ok;
        ok
    }

    /// Whether a shell, exec or subsystem request goes upstream.
    pub fn start(&mut self) -> bool {
        !std::mem::replace(&mut self.started, true)
    }
}

/// Whether this start is the channel's first (see `Setup`); a later one is dropped.
pub(super) fn started_once(s: &Shared<'_>) -> bool {
    let first = s.setup().start();
    if !first {
        tracing::info!(host = %s.host, "a second start on one channel, dropped");
    }
    first
}

/// Longest input waits for the target's answer to a pty request.
pub(super) const PTY_ANSWER_WAIT: Duration = Duration::from_secs(5);

/// Waits until the target has answered the pty request, if one is out: until then, which
/// gate this channel's input goes through is not known (a shell whose pty the target refused
/// reads lines). The answer comes within a round trip, before anyone types; false when it has
/// not come within `PTY_ANSWER_WAIT` (the caller closes the channel: no gate can be chosen).
pub(super) async fn pty_answered(s: &Shared<'_>) -> bool {
    answered(&s.pending, &s.replied, PTY_ANSWER_WAIT).await
}

/// Whether `pending` holds no pty request within `bound`, woken by `replied` at each answer.
async fn answered(pending: &Mutex<VecDeque<Pending>>, replied: &Notify, bound: Duration) -> bool {
    let out = || {
        pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&Pending::Pty)
    };
    // The relay asks at every message from the engineer: no timer unless one is out.
    if !out() {
        return true;
    }
    let wait = async {
        while out() {
            // `notify_one` keeps a permit when nobody waits yet: no answer is missed.
            replied.notified().await;
        }
    };
    tokio::time::timeout(bound, wait).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Req {
        Pty,
        Start,
    }

    #[tokio::test]
    async fn input_waits_for_a_pty_answer_a_bounded_time() {
        let bound = Duration::from_millis(100);
        let pending = Mutex::new(VecDeque::from([Pending::Pty, Pending::Start]));
        let replied = Notify::new();
        // No answer: false once the bound is over, not before.
        let start = std::time::Instant::now();
        assert!(!answered(&pending, &replied, bound).await);
        assert!(start.elapsed() >= bound);
        // The answer comes: the wait ends then, true.
        let answer = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            pending.lock().unwrap().pop_front();
            replied.notify_one();
        };
        let (ok, ()) = tokio::join!(
            answered(&pending, &replied, Duration::from_secs(10)),
            answer
        );
        assert!(ok);
        // Nothing out: no wait at all.
        assert!(answered(&pending, &replied, Duration::ZERO).await);
    }

    #[test]
    fn one_pty_before_one_start_goes_upstream() {
        use Req::{Pty, Start};
        let cases: [(&str, &[Req], &[bool]); 6] = [
            ("pty then shell", &[Pty, Start], &[true, true]),
            ("no pty", &[Start], &[true]),
            ("a second start", &[Pty, Start, Start], &[true, true, false]),
            (
                "a third start",
                &[Start, Start, Start],
                &[true, false, false],
            ),
            ("a second pty", &[Pty, Pty, Start], &[true, false, true]),
            ("a pty after the start", &[Start, Pty], &[true, false]),
        ];
        for (what, reqs, want) in cases {
            let mut setup = Setup::default();
            let got: Vec<bool> = reqs
                .iter()
                .map(|r| match r {
                    Pty => setup.pty(),
                    Start => setup.start(),
                })
                .collect();
            assert_eq!(got, want, "{what}");
        }
    }
}
