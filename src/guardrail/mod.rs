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
//! - [`reads_commands_from_stdin`] tells an exec that reads commands from standard input
//!   (`bash -s`, `sudo -i`, `psql`, `sh -c 'exec bash'`) from one whose input is data
//!   (`scp -t`, `pg_dump`), so the former is gated like a shell without a pty.
//! - [`test_commands`] backs `jitgate guardrail test`.
//!
//! Everything here is synchronous, pure (no I/O, no clock) and never panics on any byte stream;
//! buffers are bounded, so work is linear in the bytes fed.
//!
//! How the bastion uses it, per session channel (`checker = rails.checker(&rule.guardrails)?`,
//! with `rails: Arc<Guardrails>` compiled once at start):
//! - **exec**: `checker.check(command)`; if `is_blocked()`, write `format!("{verdict}\n")` to
//!   stderr, exit status 126, send nothing upstream. If allowed, its input is then gated as a
//!   shell's: with a pty as below; without one as below when the command reads its commands
//!   from standard input.
//! - **shell with a pty**: `PtyGuard::new(checker, rows, cols)`; `resize` on window-change;
//!   every target→client byte also goes to `feed_output`; every client→target chunk goes
//!   through `feed_input(chunk, &mut up)`, and only `up` is sent upstream. When
//!   `report.blocked` is set, write `blocked.notice` to the client (not to the recording's
//!   output stream; mark it there instead). Record every `report.checked` entry.
//! - **shell without a pty**: `LineGate::new(checker)`; `feed(chunk, &mut up)` and, on client
//!   EOF, `finish(&mut up)`; send only `up`. When `blocked` is set, write `blocked.notice` to
//!   stderr and end the session with exit status 126.

mod clamp;
mod engine;
mod keys;
mod lines;
mod normalise;
mod pty;
mod report;
mod stdin;
mod typed;

pub use engine::{Checker, DEFAULT_RULE, GuardrailError, Guardrails, Hit, Verdict};
pub use lines::{DEFAULT_MAX_LINE, LineGate, LineReport};
pub use normalise::normalise;
pub use pty::{
    Blocked, CheckedCommand, InputReport, MAX_CONTINUED, MAX_PASTE, MAX_TYPED, PtyGuard, Source,
};
pub use report::{CommandCheck, exit_code, read_command_file, test_command_file, test_commands};
pub use stdin::{reads_commands_from_stdin, runs_program};

#[cfg(test)]
mod tests;
