//! The relay's hook points for command checks: the exec command before anything goes
//! upstream, every input chunk before it is forwarded, every output chunk (for the terminal
//! emulation a pty line gate needs), resizes and EOF.
//!
//! A `Tap` is per session channel and synchronous: it decides, the relay acts (forwards,
//! shows notices, writes the command index, audits, alerts, marks the recording).

/// A command a gate looked at, for the command index, the audit log and the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub text: String,
    /// `allowed`, `warned`, `blocked` or `would-block`.
    pub verdict: &'static str,
    /// `set/rule` that decided, if any.
    pub rule: Option<String>,
}

impl Checked {
    pub fn is_blocked(&self) -> bool {
        self.verdict == "blocked"
    }
}

/// What happens to an exec command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecGate {
    Allow(Vec<Checked>),
    /// Not forwarded: `notice` (one line) goes to stderr and the exit status is 126.
    Block {
        checked: Vec<Checked>,
        notice: String,
    },
}

/// Text for the engineer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    /// On stderr (no pty) rather than the terminal.
    pub stderr: bool,
}

/// What a gate made of some input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gated {
    /// Forwarded upstream in place of the input.
    pub forward: Vec<u8>,
    pub notice: Option<Notice>,
    pub checked: Vec<Checked>,
    /// A line was blocked where the session cannot go on (no pty): end it with status 126.
    pub end: bool,
    /// A line was blocked and cancelled upstream: what came after it in the same input is
    /// dropped (the gate stopped reading there).
    pub cancelled: bool,
}

/// What happens to a chunk of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputGate {
    /// Forward the chunk as it is.
    Forward,
    Gated(Gated),
}

/// Per-channel hook points. Calls are short and never block.
pub trait Tap: Send {
    fn pty(&mut self, _term: &str, _cols: u32, _rows: u32) {}
    /// The target refused the pty: whatever started reads its input without one.
    fn pty_refused(&mut self) {}
    fn resize(&mut self, _cols: u32, _rows: u32) {}
    fn shell(&mut self) {}
    fn exec(&mut self, _command: &str) -> ExecGate {
        ExecGate::Allow(Vec::new())
    }
    fn input(&mut self, _data: &[u8]) -> InputGate {
        InputGate::Forward
    }
    /// The engineer sent EOF: anything the gate still holds.
    fn eof(&mut self) -> Option<Gated> {
        None
    }
    fn output(&mut self, _data: &[u8], _stderr: bool) {}
    /// Whether the gate reads command lines from the target's screen at Enter (a pty gate).
    fn reads_screen(&self) -> bool {
        false
    }
    /// Whether input was sent that the target has not echoed yet (a pty line gate reads the
    /// line from the screen at Enter, so the relay lets the echo arrive first).
    fn echo_pending(&self) -> bool {
        false
    }
    /// Whether a line ended and the target has shown nothing since (its next prompt): keys
    /// typed now would start a line before its prompt.
    fn prompt_pending(&self) -> bool {
        false
    }
    /// Whether the line being typed holds a key whose effect only the screen shows (history
    /// recall, completion): without its echo, the line is not known.
    fn line_needs_screen(&self) -> bool {
        false
    }
}

/// A tap that sees nothing: every command is allowed unchecked.
pub struct NoTap;
impl Tap for NoTap {}
