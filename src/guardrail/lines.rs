//! The gate for a shell without a pty (`ssh host < script.sh`, or an exec of a shell that
//! reads standard input, `ssh host bash -s < script.sh`): each input line is checked before
//! it is forwarded.
//!
//! Input is buffered until a newline; a complete line that is allowed is forwarded with its
//! newline. A line ending in an odd number of backslashes is continued on the next one (the
//! shell reads `rm -rf \` and `  /var` as one command): it is held until the logical line
//! ends, which is then checked whole, and each of its physical lines alone too (a `\` that
//! ends a comment continues nothing), the strictest verdict deciding for all of them. The
//! first blocked line closes the gate: it and everything after it are never forwarded, and
//! the caller ends the session (exit status 126, the verdict's message on stderr). A logical
//! line longer than the gate's limit cannot be checked and blocks.

use super::engine::{Checker, Verdict, synthetic_block};
use super::pty::{Blocked, CheckedCommand, Source};

/// Longest line checked by default.
pub const DEFAULT_MAX_LINE: usize = 64 << 10;

/// What one call did; the bytes to forward went into the caller's buffer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LineReport {
    /// Each non-blank line checked, in order (the blocked one last).
    pub checked: Vec<CheckedCommand>,
    /// Set once, when a line is blocked; end the session with exit status 126.
    pub blocked: Option<Blocked>,
}

/// Checks the input of one session channel without a pty, line by line.
pub struct LineGate {
    checker: Checker,
    /// The logical line so far: physical lines, each but the last continued.
    buf: Vec<u8>,
    max_line: usize,
    closed: bool,
}

impl std::fmt::Debug for LineGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineGate")
            .field("buffered", &self.buf.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl LineGate {
    pub fn new(checker: Checker) -> LineGate {
        LineGate::with_max_line(checker, DEFAULT_MAX_LINE)
    }

    pub fn with_max_line(checker: Checker, max_line: usize) -> LineGate {
        LineGate {
            checker,
            buf: Vec::new(),
            max_line: max_line.max(1),
            closed: false,
        }
    }

    /// Whether a line was blocked (nothing more will be forwarded).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes held waiting for a newline (tests check they stay bounded).
    #[cfg(test)]
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Client bytes: appends every complete allowed line to `up`.
    pub fn feed(&mut self, bytes: &[u8], up: &mut Vec<u8>) -> LineReport {
        let mut report = LineReport::default();
        let mut rest = bytes;
        while !self.closed && !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let (line, after) = rest.split_at(i + 1);
                    rest = after;
                    if self.buf.len() + line.len() > self.max_line + 1 {
                        self.too_long(&mut report);
                        break;
                    }
                    self.buf.extend_from_slice(line);
                    if !continues(&self.buf) {
                        self.flush_line(up, &mut report);
                    }
                }
                None => {
                    if self.buf.len() + rest.len() > self.max_line {
                        self.too_long(&mut report);
                        break;
                    }
                    self.buf.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
        report
    }

    /// The client sent EOF: checks and forwards a last line without a newline.
    pub fn finish(&mut self, up: &mut Vec<u8>) -> LineReport {
        let mut report = LineReport::default();
        if !self.closed && !self.buf.is_empty() {
            self.flush_line(up, &mut report);
        }
        report
    }

    /// Checks the buffered logical line; forwards it, or closes the gate.
    fn flush_line(&mut self, up: &mut Vec<u8>, report: &mut LineReport) {
        let all = String::from_utf8_lossy(&self.buf);
        let text = all.trim();
        let mut verdict = if text.is_empty() {
            Verdict::Allow
        } else {
            self.checker.check(text)
        };
        let mut shown = text;
        if text.contains('\n') {
            // Continued: each physical line alone too; the strictest names the text.
            for piece in text.split('\n').map(str::trim).filter(|p| !p.is_empty()) {
                let v = self.checker.check(piece);
                if v.rank() > verdict.rank() {
                    (verdict, shown) = (v, piece);
                }
            }
        }
        if !text.is_empty() {
            report.checked.push(CheckedCommand {
                text: shown.to_string(),
                verdict: verdict.clone(),
                source: Source::Line,
            });
        }
        if verdict.is_blocked() {
            self.close(verdict, report);
        } else {
            up.extend_from_slice(&self.buf);
            self.buf.clear();
        }
    }

    fn too_long(&mut self, report: &mut LineReport) {
        let verdict = synthetic_block(
            "line-too-long",
            &format!(
                "an input line over {} bytes cannot be checked",
                self.max_line
            ),
        );
        self.close(verdict, report);
    }

    fn close(&mut self, verdict: Verdict, report: &mut LineReport) {
        self.closed = true;
        self.buf = Vec::new();
        report.blocked = Some(Blocked::for_stderr(verdict));
    }
}

/// Whether `line`, which ends in a newline, is continued on the next one: an odd number of
/// backslashes before its line end (`\r\n` counts as one: a stricter join than bash's).
pub(crate) fn continues(line: &[u8]) -> bool {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    body.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}
