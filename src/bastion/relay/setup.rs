//! A channel's setup as the relay lets it through: one shell, exec or subsystem starts it.

use super::Shared;

/// What the channel asked for so far. sshd refuses a second start, but the gate is chosen
/// here before its answer could come back: a second start would replace the gate (a fresh
/// screen, perhaps another mode) for the input sent meanwhile. So the relay drops it and
/// sends nothing upstream; the gate stays as it is.
#[derive(Debug, Default)]
pub(super) struct Setup {
    started: bool,
}

impl Setup {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_start_goes_upstream() {
        let mut setup = Setup::default();
        let starts: Vec<bool> = (0..3).map(|_| setup.start()).collect();
        assert_eq!(starts, [true, false, false]);
    }
}
