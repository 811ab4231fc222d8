//! A channel's setup as the relay lets it through: at most one pty request, before the start,
//! and one shell, exec or subsystem to start it; and input held until the target has answered
//! the pty request, so that it goes through the gate the answer calls for.

use std::time::Duration;

use super::{Pending, Shared};

/// What the channel asked for so far. sshd refuses a second start and a pty request after the
/// start (a second pty request ends its connection), but the gate is chosen here before its
/// answer could come back: a second start would replace the gate, a pty request refused after
/// the start would turn a pty gate into the line gate. So the relay drops such a request and
/// sends nothing upstream; the gate stays as it is.
#[derive(Debug, Default)]
pub(super) struct Setup {
    pty: bool,
    started: bool,
}

impl Setup {
    /// Whether a pty request goes upstream.
    pub(super) fn pty(&mut self) -> bool {
        let ok = !self.pty && !self.started;
        self.pty |= ok;
        ok
    }

    /// Whether a shell, exec or subsystem request goes upstream.
    pub(super) fn start(&mut self) -> bool {
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
    let wait = async {
        while s.pending().contains(&Pending::Pty) {
            // `notify_one` keeps a permit when nobody waits yet: no answer is missed.
            s.replied.notified().await;
        }
    };
    tokio::time::timeout(PTY_ANSWER_WAIT, wait).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Req {
        Pty,
        Start,
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
