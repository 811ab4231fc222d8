//! The guardrails behind the relay's hook points: the exec command is checked whole; a shell
//! with a pty goes through the pty line gate (terminal emulation of the target's output); a
//! shell without one through the line gate (each input line before it is forwarded).
//!
//! An allowed exec is gated the same way afterwards when it is a shell in all but name: with
//! a pty (`ssh -t db1 bash`, `sudo -i`, `psql`), what is typed into it goes through the pty
//! gate; without one, a shell reading standard input (`ssh db1 bash -s < script`) goes
//! through the line gate. Other execs (`scp -t`, `rsync --server`) carry data, not commands.
//!
//! The pty gate is only for a pty the rule allowed and the target granted: a pty the target
//! refuses turns it back into the line gate (the relay holds input until the target has
//! answered), and a window-change on a channel without a pty changes nothing.

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
    /// Rows and columns of the pty, once requested (and while not refused).
    size: Option<(u16, u16)>,
    /// What started reads commands from its input without a pty too: a shell, or an exec
    /// that is one in all but name.
    reads_lines: bool,
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
            reads_lines: false,
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

    fn pty_refused(&mut self) {
        self.size = None;
        if let Mode::Pty(_) = self.mode {
            self.mode = if self.reads_lines {
                self.shell_mode()
            } else {
                Mode::Raw
            };
        }
    }

    /// Without a pty there is no screen to size: a window-change then changes nothing.
    fn resize(&mut self, cols: u32, rows: u32) {
        if self.size.is_none() {
            return;
        }
        self.size = Some((dim(rows), dim(cols)));
        if let Mode::Pty(g) = &mut self.mode {
            g.resize(dim(rows), dim(cols));
        }
    }

    fn shell(&mut self) {
        self.reads_lines = true;
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
            self.reads_lines = reads_commands_from_stdin(command);
            if self.size.is_some() || self.reads_lines {
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

    fn line_needs_screen(&self) -> bool {
        matches!(&self.mode, Mode::Pty(g) if g.line_needs_screen())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Action, GuardrailRule, GuardrailSet, SetDefault, SetMode};
    use crate::guardrail::Guardrails;

    fn guard() -> Guard {
        let set = GuardrailSet {
            name: "destructive".into(),
            default: SetDefault::Allow,
            mode: SetMode::Enforce,
            rules: vec![GuardrailRule {
                name: "rm-rf-root".into(),
                pattern: r"rm\s+-rf\s+/".into(),
                action: Action::Block,
                message: "no recursive deletes from /".into(),
            }],
        };
        let rails = Arc::new(Guardrails::compile(&[set]).expect("compiles"));
        Guard::new(
            rails
                .checker(&["destructive".into()])
                .expect("the set exists"),
        )
    }

    #[derive(Debug, Clone, Copy)]
    enum Step {
        Pty,
        Resize,
        Shell,
        Exec(&'static str),
        Refused,
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Gate {
        Pty,
        Lines,
        Raw,
    }

    /// Which gate `g` uses now, and whether it blocks a line whose Ctrl-U empties the typed
    /// model (the pty gate then reads an empty screen; a shell reading lines runs it).
    fn gate(g: &mut Guard) -> (Gate, bool) {
        let kind = if g.reads_screen() {
            Gate::Pty
        } else if matches!(g.mode, Mode::Lines(_)) {
            Gate::Lines
        } else {
            Gate::Raw
        };
        let blocked = match g.input(b"rm -rf /srv \x15\n") {
            InputGate::Gated(g) => g.checked.iter().any(Checked::is_blocked),
            InputGate::Forward => false,
        };
        (kind, blocked)
    }

    #[test]
    fn the_pty_gate_needs_a_pty_the_target_granted() {
        use Step::{Exec, Pty, Refused, Resize, Shell};
        let cases: [(&str, &[Step], Gate); 8] = [
            ("a pty, then a shell", &[Pty, Shell], Gate::Pty),
            ("a shell without a pty", &[Shell], Gate::Lines),
            ("a window-change, no pty", &[Resize, Shell], Gate::Lines),
            (
                "a window-change after the start",
                &[Shell, Resize],
                Gate::Lines,
            ),
            // The shell is started before the target's answer to the pty comes back.
            (
                "a pty the target refused",
                &[Pty, Shell, Refused],
                Gate::Lines,
            ),
            (
                "refused, then resized",
                &[Pty, Shell, Refused, Resize],
                Gate::Lines,
            ),
            (
                "a stdin shell, pty refused",
                &[Pty, Exec("bash -s"), Refused],
                Gate::Lines,
            ),
            (
                "data, pty refused",
                &[Pty, Exec("cat > /tmp/x"), Refused],
                Gate::Raw,
            ),
        ];
        for (what, steps, want) in cases {
            let mut g = guard();
            for step in steps {
                match *step {
                    Pty => g.pty("xterm", 80, 24),
                    Resize => g.resize(100, 30),
                    Shell => g.shell(),
                    Exec(command) => assert!(matches!(g.exec(command), ExecGate::Allow(_))),
                    Refused => g.pty_refused(),
                }
            }
            let (kind, blocked) = gate(&mut g);
            assert_eq!(kind, want, "{what}");
            if kind == Gate::Lines {
                assert!(blocked, "{what}: the line gate blocks what it is sent");
            }
        }
    }

    #[test]
    fn a_line_needs_the_screen_once_a_key_is_more_than_the_keys_show() {
        let mut g = guard();
        g.pty("xterm", 80, 24);
        g.shell();
        let steps: [(&[u8], bool); 9] = [
            (b"ls -l", false),
            // Editing keys the typed model follows: a password corrected at a silent prompt.
            (b"\x7f\x15hunter\x08", false),
            (b"\x1b[D\x1b[C\x01\x05", false),
            (b"\r", false),
            (b"ls", false),
            (b"\x1b[A", true),
            (b"\r", false),
            (b"rm -rf /sr\t", true),
            (b"\x03", false),
        ];
        for (keys, needs) in steps {
            g.input(keys);
            assert_eq!(g.line_needs_screen(), needs, "after {keys:?}");
        }
        let mut lines = guard();
        lines.shell();
        lines.input(b"\x1b[A");
        assert!(!lines.line_needs_screen(), "the line gate reads no screen");
    }
}
