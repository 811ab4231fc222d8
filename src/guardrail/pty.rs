//! The interactive gate: a session with a pty, checked line by line as the shell shows it.
//!
//! [`PtyGuard`] keeps a terminal emulation (`vt100`) of what the target printed and follows
//! what the engineer types. When Enter is pressed it reads the command line from the screen —
//! from where the cursor stood when this line's first key was typed, to the end of the
//! logical (possibly wrapped) line — so history recall, tab completion and line editing are
//! seen as the shell shows them. The typed bytes are checked too (they run ahead of the echo);
//! the stricter verdict wins. A blocked Enter is replaced upstream by Ctrl-C; until the target
//! shows something after it (a program that ignores Ctrl-C shows nothing and keeps the
//! line), the next line is read from where the blocked one began, so that Enter, or a space
//! and Enter, checks the blocked text again.
//!
//! The start is kept as an offset in cells from the start of its logical line, not as a screen
//! row, so it survives the screen scrolling while a long line wraps; a bracketed paste of
//! several lines moves it to column 0 (the shell shows continuation lines there).
//!
//! A line that ends in a backslash is continued: the shell shows its `> ` prompt and runs
//! both lines as one command. Its text is carried to the next Enter, which checks the joined
//! command as well as its own line (a `\` that ends a comment continues nothing); Ctrl-C or
//! a block drops it.
//!
//! Full-screen programs (alternate screen: vi, less, top) are not line-checked. A bracketed
//! paste (`ESC[200~ … ESC[201~`) is held back until it ends, each of its lines checked, and
//! forwarded whole or not at all (`paste.rs`). Limits: a paste over `MAX_PASTE` bytes is
//! refused; the typed model keeps at most `MAX_TYPED` bytes of a line (the screen still shows
//! all of it); a command continued over `MAX_CONTINUED` bytes is blocked.

mod paste;

use super::clamp::CsiClamp;
use super::engine::{Checker, Verdict, synthetic_block};
use super::keys::{Key, KeyDecoder, Step};
use super::lines::continues;
use super::typed::TypedLine;
use paste::Paste;

/// Largest bracketed paste checked; a larger one is refused whole.
pub const MAX_PASTE: usize = 1 << 20;
/// Bytes of one typed line the typed model keeps.
pub const MAX_TYPED: usize = 4096;
/// Longest text of continued lines carried to the next Enter.
pub const MAX_CONTINUED: usize = 64 << 10;
/// Terminal sizes are clamped to this range (the emulation allocates rows × cols cells).
const MIN_SIZE: u16 = 2;
const MAX_ROWS: u16 = 200;
const MAX_COLS: u16 = 512;

/// Where a checked command's text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The target's screen at Enter.
    Screen,
    /// The keys typed since the line began (it was stricter than the screen).
    Typed,
    /// One line of a bracketed paste.
    Paste,
    /// One input line of a session without a pty.
    Line,
}

/// A command that was checked, for the audit index and the recording's markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCommand {
    pub text: String,
    pub verdict: Verdict,
    pub source: Source,
}

/// What to do when a command was blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// Always a [`Verdict::Block`].
    pub verdict: Verdict,
    /// Write this to the engineer (not upstream): with a pty, to the terminal, as
    /// `\r\njitgate: blocked by guardrail "<set>/<rule>": <message>\r\n`; without one, to
    /// stderr, as that line ending in `\n`.
    pub notice: String,
    /// Whether Ctrl-C (`\x03`) was put in the forwarded bytes to cancel the line upstream.
    pub cancelled: bool,
}

impl Blocked {
    /// For a pty: the notice starts on a fresh line and ends with CR LF.
    pub(crate) fn new(verdict: Verdict, cancelled: bool) -> Blocked {
        let notice = format!("\r\n{verdict}\r\n");
        Blocked {
            verdict,
            notice,
            cancelled,
        }
    }

    /// Without a pty: the notice is one stderr line.
    pub(crate) fn for_stderr(verdict: Verdict) -> Blocked {
        let notice = format!("{verdict}\n");
        Blocked {
            verdict,
            notice,
            cancelled: false,
        }
    }
}

/// The result of [`PtyGuard::feed_input`]; the bytes to forward went into the caller's buffer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InputReport {
    /// Every command checked while handling these bytes, in order (blocked ones included).
    pub checked: Vec<CheckedCommand>,
    /// Set when a command was blocked; input after it in the same call was dropped.
    pub blocked: Option<Blocked>,
}

/// The interactive line gate of one session channel with a pty.
pub struct PtyGuard {
    checker: Checker,
    parser: vt100::Parser,
    clamp: CsiClamp,
    keys: KeyDecoder,
    typed: TypedLine,
    /// Cells from the start of the logical line to where this line's input began.
    anchor: Option<usize>,
    paste: Option<Paste>,
    /// Keys went upstream and no output has come back since.
    unechoed: bool,
    /// A line ended (Enter, Ctrl-C) and no output has come back since: the next line's
    /// prompt is not on the screen yet, so where its input begins is not known.
    ended: bool,
    /// The current line began before its prompt showed (typed ahead).
    ahead: bool,
    /// Every key of the current line was text: the typed model knows it exactly.
    plain: bool,
    /// Every key of the current line was text or an editing key the typed model follows
    /// (Backspace, Delete, the kills, Home, End, Left, Right): without its echo, the line can
    /// still be judged from the keys. Recall, completion and other keys clear it.
    modelled: bool,
    /// Where the last line typed at a prompt began: the width of that prompt.
    prompt_width: Option<usize>,
    /// The lines entered before this one that continue into it (each ending in a backslash
    /// and a newline): with this line they make one command.
    continued: String,
    /// Where a blocked line began, while the target has shown nothing since the block: a
    /// program that ignores Ctrl-C keeps the line, so the next one is read from there.
    blocked_at: Option<usize>,
}

impl std::fmt::Debug for PtyGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No screen contents: they may hold secrets.
        f.debug_struct("PtyGuard")
            .field("size", &self.parser.screen().size())
            .field("anchor", &self.anchor)
            .finish_non_exhaustive()
    }
}

impl PtyGuard {
    /// A gate for a pty of `rows` × `cols` (from the pty request).
    pub fn new(checker: Checker, rows: u16, cols: u16) -> PtyGuard {
        let (rows, cols) = clamp_size(rows, cols);
        PtyGuard {
            checker,
            parser: vt100::Parser::new(rows, cols, 0),
            clamp: CsiClamp::default(),
            keys: KeyDecoder::default(),
            typed: TypedLine::new(MAX_TYPED),
            anchor: None,
            paste: None,
            unechoed: false,
            ended: false,
            ahead: false,
            plain: true,
            modelled: true,
            prompt_width: None,
            continued: String::new(),
            blocked_at: None,
        }
    }

    /// The client's window changed size.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        let (rows, cols) = clamp_size(rows, cols);
        self.parser.screen_mut().set_size(rows, cols);
    }

    /// Bytes the target sent towards the client (feed them as they are relayed).
    pub fn feed_output(&mut self, bytes: &[u8]) {
        self.unechoed = false;
        self.ended = false;
        self.blocked_at = None;
        let (rows, cols) = self.parser.screen().size();
        let parser = &mut self.parser;
        self.clamp
            .feed(bytes, rows, cols, &mut |b: &[u8]| parser.process(b));
    }

    /// Whether keys of the line being typed went upstream and the target has shown nothing
    /// since: an Enter now would be judged on a screen that lags behind the line. The relay
    /// then waits for the echo before it hands the Enter over.
    pub fn echo_pending(&self) -> bool {
        self.unechoed && self.paste.is_none() && !self.alternate_screen()
    }

    /// Whether a line ended and the target has shown nothing since: a line typed now starts
    /// before its prompt is on the screen.
    pub fn prompt_pending(&self) -> bool {
        self.ended && self.paste.is_none() && !self.alternate_screen()
    }

    /// Whether the line being typed holds a key whose effect only the screen shows (history
    /// recall, completion, other keys and sequences): it cannot be judged from the keys.
    /// Text and the editing keys the typed model follows keep it false, so a password
    /// corrected with Backspace at a prompt that echoes nothing is still judged as typed.
    pub fn line_needs_screen(&self) -> bool {
        !self.modelled
    }

    /// Whether a full-screen program holds the terminal (input is then not line-checked).
    pub fn alternate_screen(&self) -> bool {
        self.parser.screen().alternate_screen()
    }

    /// Bytes the client typed. Appends what must go upstream now to `up` (usually `bytes`
    /// unchanged) and reports what was checked. On a block, `up` ends with Ctrl-C (or, for a
    /// paste, holds nothing of it) and the rest of `bytes` is dropped.
    pub fn feed_input(&mut self, bytes: &[u8], up: &mut Vec<u8>) -> InputReport {
        let mut report = InputReport::default();
        for &b in bytes {
            if self.paste.is_some() {
                self.paste_byte(b, up, &mut report);
            } else {
                match self.keys.push(b) {
                    Step::Held => {}
                    Step::Key(key) => self.key(key, up, &mut report),
                    Step::Cut(key) => {
                        self.key(Key::Other, up, &mut report);
                        self.key(key, up, &mut report);
                    }
                }
            }
            // A blocked Enter drops the rest; a refused paste does not (its end must be seen).
            if report.blocked.as_ref().is_some_and(|b| b.cancelled) {
                self.keys.reset();
                return report;
            }
        }
        // Hand on a partial sequence now (a lone Esc must reach vi at once), unless it may
        // still become a paste marker.
        if self.keys.in_sequence() && (self.alternate_screen() || !self.keys.holding_paste_prefix())
        {
            up.extend_from_slice(self.keys.take_unsent());
        }
        report
    }

    fn key(&mut self, key: Key, up: &mut Vec<u8>, report: &mut InputReport) {
        if self.alternate_screen() {
            up.extend_from_slice(self.keys.take_unsent());
            if matches!(key, Key::Enter | Key::Interrupt) {
                self.reset_line();
                self.continued = String::new();
            }
            return;
        }
        match key {
            Key::Enter => {
                let (mut verdict, checked, line) = self.check_line();
                if let Some(c) = checked {
                    report.checked.push(c);
                }
                let continued = line.as_deref().is_some_and(|l| continues(l.as_bytes()));
                let line = line.unwrap_or_default();
                if continued && self.continued.len() + line.len() > MAX_CONTINUED {
                    verdict = verdict.max(too_long_continued());
                }
                if verdict.is_blocked() {
                    up.push(0x03);
                    report.blocked = Some(Blocked::new(verdict, true));
                    self.continued = String::new();
                    self.blocked_at = self.anchor.or(self.blocked_at);
                } else {
                    up.extend_from_slice(self.keys.take_unsent());
                    if continued {
                        self.continued.push_str(&line);
                        self.continued.push('\n');
                    } else {
                        self.continued = String::new();
                    }
                }
                self.reset_line();
            }
            Key::Interrupt => {
                up.extend_from_slice(self.keys.take_unsent());
                self.reset_line();
                self.continued = String::new();
            }
            Key::PasteStart => {
                self.paste = Some(Paste::new(self.keys.take_unsent().to_vec()));
            }
            key => {
                if let (None, Some(at)) = (self.anchor, self.blocked_at) {
                    // The blocked line may still be there: this one goes on from its start,
                    // and the screen is read, not only the keys.
                    self.anchor = Some(at);
                    self.plain = false;
                    self.modelled = false;
                } else if self.anchor.is_none() {
                    // Typed ahead of its prompt (in the same write as the Enter before it),
                    // the cursor still stands on the line before: the line is read from
                    // where the last prompt ended instead.
                    self.ahead = self.ended;
                    self.anchor = Some(if self.ahead {
                        self.prompt_width.unwrap_or(0)
                    } else {
                        let at = self.cursor_offset();
                        self.prompt_width = Some(at);
                        at
                    });
                }
                if !matches!(key, Key::Text(_)) {
                    self.plain = false;
                }
                if matches!(key, Key::Recall | Key::Other) {
                    self.modelled = false;
                }
                self.typed.key(key);
                up.extend_from_slice(self.keys.take_unsent());
                self.unechoed = true;
            }
        }
    }

    fn reset_line(&mut self) {
        self.anchor = None;
        self.typed.clear();
        self.ended = true;
        self.ahead = false;
        self.plain = true;
        self.modelled = true;
    }

    /// Checks the line at Enter: the screen from the anchor, and the typed text (each joined
    /// to the lines that continue into it, too). Also gives the line as the shell holds it,
    /// when it is known and non-empty, for a continuation.
    fn check_line(&mut self) -> (Verdict, Option<CheckedCommand>, Option<String>) {
        if self.ahead && self.plain {
            // Typed ahead as plain text: the keys are the line, whatever the prompt.
            let typed = self.typed.text();
            let typed = typed.trim();
            let (verdict, text) = self.check_joined(&self.continued, typed);
            let c = checked(text, &verdict, Source::Typed);
            return (
                verdict,
                c,
                Some(typed.to_string()).filter(|t| !t.is_empty()),
            );
        }
        let anchor = self.line_start();
        let screen = self.screen_line(anchor);
        let typed = self.typed.text();
        let typed = typed.trim();
        let (screen_verdict, screen_text) = self.check_joined(&self.continued, &screen);
        // The line the shell holds: the screen's, or, with nothing echoed, the typed one.
        let line = if screen.is_empty() { typed } else { &screen };
        let line = Some(line.to_string()).filter(|l| !l.is_empty());
        if typed.is_empty() || typed == screen {
            let c = checked(screen_text, &screen_verdict, Source::Screen);
            return (screen_verdict, c, line);
        }
        let (typed_verdict, typed_text) = self.check_joined(&self.continued, typed);
        if typed_verdict.rank() > screen_verdict.rank() {
            let c = checked(typed_text, &typed_verdict, Source::Typed);
            (typed_verdict, c, line)
        } else if screen.is_empty() {
            // Nothing echoed (a password prompt, or the echo is still on its way): the typed
            // text is not recorded unless a rule matched it.
            (screen_verdict, None, line)
        } else {
            let c = checked(screen_text, &screen_verdict, Source::Screen);
            (screen_verdict, c, line)
        }
    }

    /// Checks `line` alone and, after lines that continue into it (`before`), the command
    /// they make together; the stricter verdict, with the text it was given for (`line` on a
    /// tie).
    fn check_joined(&self, before: &str, line: &str) -> (Verdict, String) {
        let alone = if line.trim().is_empty() {
            Verdict::Allow
        } else {
            self.checker.check(line)
        };
        if before.is_empty() {
            return (alone, line.to_string());
        }
        let whole = format!("{before}{line}");
        let joined = self.checker.check(&whole);
        if joined.rank() > alone.rank() {
            (joined, whole)
        } else {
            (alone, line.to_string())
        }
    }

    /// Bytes held in the guard's own buffers (tests check they stay bounded).
    #[cfg(test)]
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.typed.len() + self.continued.len() + self.paste.as_ref().map_or(0, Paste::held_bytes)
    }

    /// Where the current line began: its anchor, else where a blocked line still shown
    /// began, else the cursor.
    fn line_start(&self) -> usize {
        self.anchor
            .or(self.blocked_at)
            .unwrap_or_else(|| self.cursor_offset())
    }

    /// Cells from the start of the cursor's logical line to the cursor.
    fn cursor_offset(&self) -> usize {
        let screen = self.parser.screen();
        let (_, cols) = screen.size();
        let (row, col) = screen.cursor_position();
        let start = logical_start(screen, row);
        usize::from(row - start) * usize::from(cols) + usize::from(col.min(cols))
    }

    /// The cursor's logical line from `offset` cells on, trimmed.
    fn screen_line(&self, offset: usize) -> String {
        let screen = self.parser.screen();
        let (rows, cols) = screen.size();
        let (row, _) = screen.cursor_position();
        let start = logical_start(screen, row);
        let mut end = start;
        while end + 1 < rows && screen.row_wrapped(end) {
            end += 1;
        }
        let cols_n = usize::from(cols.max(1));
        let first = usize::from(start) + offset / cols_n;
        let (Ok(first), Ok(col)) = (u16::try_from(first), u16::try_from(offset % cols_n)) else {
            return String::new();
        };
        if first > end {
            return String::new();
        }
        let text = if first == end {
            screen
                .rows(col, cols - col)
                .nth(usize::from(first))
                .unwrap_or_default()
        } else {
            screen.contents_between(first, col, end, cols)
        };
        text.trim().to_string()
    }
}

/// The first row of the logical line that `row` is part of.
fn logical_start(screen: &vt100::Screen, mut row: u16) -> u16 {
    while row > 0 && screen.row_wrapped(row - 1) {
        row -= 1;
    }
    row
}

/// The record of a checked line, unless it is blank.
fn checked(text: String, verdict: &Verdict, source: Source) -> Option<CheckedCommand> {
    let text = text.trim();
    (!text.is_empty()).then(|| CheckedCommand {
        text: text.to_string(),
        verdict: verdict.clone(),
        source,
    })
}

/// The block for a command continued over [`MAX_CONTINUED`] bytes.
fn too_long_continued() -> Verdict {
    synthetic_block(
        "line-too-long",
        &format!("a command continued over {MAX_CONTINUED} bytes cannot be checked"),
    )
}

fn clamp_size(rows: u16, cols: u16) -> (u16, u16) {
    (
        rows.clamp(MIN_SIZE, MAX_ROWS),
        cols.clamp(MIN_SIZE, MAX_COLS),
    )
}
