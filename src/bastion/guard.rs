//! The guardrails behind the relay's hook points: the exec command is checked whole; a shell
//! with a pty goes through the pty line gate (terminal emulation of the target's output); a
//! shell without one through the line gate (each input line before it is forwarded).
//!
//! An allowed exec is gated the same way afterwards when it is a shell in all but name: with
//! a pty (`ssh -t db1 bash`, `sudo -i`, `psql`), what is typed into it goes through the pty
//! gate; without one, a shell reading standard input (`ssh db1 bash -s < script`) goes
//! through the line gate. Other execs (`scp -t`, `rsync --server`) carry data, not commands.

use super::gate::{Checked, ExecGate, Gated, InputGate, Notice, Tap};
use crate::guardrail::{
    CheckedCommand, Checker, LineGate, PtyGuard, Verdict, reads_commands_from_stdin,
};

enum Mode {
    /// Nothing started yet, a subsystem, or an exec whose input is data: not line-checked.
    Raw,
    Pty(Box<PtyGuard>),
    Lines(LineGate),
}

/// One session channel's guardrails.
pub struct Guard {
    checker: Checker,
    /// Rows and columns of the pty, once requested.
    size: Option<(u16, u16)>,
    mode: Mode,
}

fn dim(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn checked(text: &str, verdict: &Verdict) -> Checked {
    Checked {
        text: text.to_string(),
        verdict: verdict.as_str(),
        rule: verdict.rule_id(),
    }
}

fn all(commands: &[CheckedCommand]) -> Vec<Checked> {
    commands
        .iter()
        .map(|c| checked(&c.text, &c.verdict))
        .collect()
}

impl Guard {
    pub fn new(checker: Checker) -> Guard {
        Guard {
            checker,
            size: None,
            mode: Mode::Raw,
        }
    }

    /// How a shell's input is gated: through the screen with a pty, by lines without one.
    fn shell_mode(&self) -> Mode {
        match self.size {
            Some((rows, cols)) => {
                Mode::Pty(Box::new(PtyGuard::new(self.checker.clone(), rows, cols)))
            }
            None => Mode::Lines(LineGate::new(self.checker.clone())),
        }
    }
}

impl Tap for Guard {
    fn pty(&mut self, _term: &str, cols: u32, rows: u32) {
        self.size = Some((dim(rows), dim(cols)));
    }

    fn resize(&mut self, cols: u32, rows: u32) {
        self.size = Some((dim(rows), dim(cols)));
        if let Mode::Pty(g) = &mut self.mode {
            g.resize(dim(rows), dim(cols));
        }
    }

    fn shell(&mut self) {
        self.mode = self.shell_mode();
    }

    fn exec(&mut self, command: &str) -> ExecGate {
        let verdict = self.checker.check(command);
        let checked = vec![checked(command, &verdict)];
        if verdict.is_blocked() {
            ExecGate::Block {
                checked,
                notice: verdict.to_string(),
            }
        } else {
            if self.size.is_some() || reads_commands_from_stdin(command) {
                self.mode = self.shell_mode();
            }
            ExecGate::Allow(checked)
        }
    }

    fn input(&mut self, data: &[u8]) -> InputGate {
        let mut forward = Vec::with_capacity(data.len());
        match &mut self.mode {
            Mode::Raw => InputGate::Forward,
            Mode::Pty(g) => {
                let report = g.feed_input(data, &mut forward);
                let cancelled = report.blocked.as_ref().is_some_and(|b| b.cancelled);
                InputGate::Gated(Gated {
                    forward,
                    cancelled,
                    notice: report.blocked.map(|b| Notice {
                        text: b.notice,
                        stderr: false,
                    }),
                    checked: all(&report.checked),
                    end: false,
                })
            }
            Mode::Lines(g) => {
                let report = g.feed(data, &mut forward);
                let end = report.blocked.is_some();
                InputGate::Gated(Gated {
                    forward,
                    notice: report.blocked.map(|b| Notice {
                        text: b.notice,
                        stderr: true,
                    }),
                    checked: all(&report.checked),
                    end,
                    cancelled: false,
                })
            }
        }
    }

    fn eof(&mut self) -> Option<Gated> {
        let Mode::Lines(g) = &mut self.mode else {
            return None;
        };
        let mut forward = Vec::new();
        let report = g.finish(&mut forward);
        let end = report.blocked.is_some();
        Some(Gated {
            forward,
            notice: report.blocked.map(|b| Notice {
                text: b.notice,
                stderr: true,
            }),
            checked: all(&report.checked),
            end,
            cancelled: false,
        })
    }

    fn output(&mut self, data: &[u8], _stderr: bool) {
        if let Mode::Pty(g) = &mut self.mode {
            g.feed_output(data);
        }
    }

    fn reads_screen(&self) -> bool {
        matches!(&self.mode, Mode::Pty(g) if !g.alternate_screen())
    }

    fn echo_pending(&self) -> bool {
        matches!(&self.mode, Mode::Pty(g) if g.echo_pending())
    }

    fn prompt_pending(&self) -> bool {
        matches!(&self.mode, Mode::Pty(g) if g.prompt_pending())
    }
}
