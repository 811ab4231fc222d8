//! Guardrails: compiled rule sets; a command in, a verdict out; line reconstruction.
//!
//! - [`Guardrails`] compiles the configured sets once; a [`Checker`] is the selection of sets
//!   that applies to one session and answers [`Checker::check`] with a [`Verdict`] (a value,
//!   never an error).
//! - [`PtyGuard`] gates an interactive session with a pty: it emulates the target's screen and
//!   checks the command line the shell shows when Enter is pressed, and bracketed pastes
//!   before any of them is forwarded.
//! - [`LineGate`] gates a shell without a pty (`ssh host < script.sh`): each input line is
//!   checked before it is forwarded.
//! - [`test_commands`] backs `jitgate guardrail test`.
//!
//! Everything here is synchronous, pure (no I/O, no clock) and never panics on any byte stream;
//! buffers are bounded, so work is linear in the bytes fed.

mod clamp;
mod engine;
mod keys;
mod lines;
mod normalise;
mod pty;
mod report;
mod typed;

pub use engine::{Checker, DEFAULT_RULE, GuardrailError, Guardrails, Hit, Verdict};
pub use lines::{DEFAULT_MAX_LINE, LineGate, LineReport};
pub use normalise::normalise;
pub use pty::{Blocked, CheckedCommand, InputReport, MAX_PASTE, MAX_TYPED, PtyGuard, Source};
pub use report::{CommandCheck, exit_code, read_command_file, test_command_file, test_commands};

#[cfg(test)]
mod tests;
