//! Bracketed paste (`ESC[200~ … ESC[201~`) in the pty gate: held back until it ends, each of
//! its lines checked, forwarded whole or not at all. The first line joins what is already on
//! the shell's line; a line ending in a backslash continues into the next, and the joined
//! command is checked too (the continuation carries on after the paste, to the next Enter).

use super::super::engine::{Verdict, synthetic_block};
use super::super::keys::{PASTE_END, PASTE_START};
use super::super::lines::continues;
use super::{
    Blocked, CheckedCommand, InputReport, MAX_CONTINUED, MAX_PASTE, PtyGuard, Source,
    too_long_continued,
};

#[derive(Debug)]
pub(super) struct Paste {
    /// Start-marker bytes not yet forwarded (some may have gone up at an earlier call's end).
    marker: Vec<u8>,
    content: Vec<u8>,
    /// Too large: the rest is dropped until the end marker.
    refused: bool,
    /// The last bytes seen, to find the end marker while dropping.
    tail: [u8; 6],
}

impl Paste {
    /// A paste whose start marker's bytes not yet forwarded are `marker`.
    pub(super) fn new(marker: Vec<u8>) -> Paste {
        Paste {
            marker,
            content: Vec::new(),
            refused: false,
            tail: [0; 6],
        }
    }

    /// Bytes held (tests check they stay bounded).
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> usize {
        self.content.len() + self.marker.len()
    }
}

impl PtyGuard {
    pub(super) fn paste_byte(&mut self, b: u8, up: &mut Vec<u8>, report: &mut InputReport) {
        let Some(paste) = self.paste.as_mut() else {
            return;
        };
        paste.tail.rotate_left(1);
        paste.tail[5] = b;
        let ended = paste.tail == PASTE_END;
        if !paste.refused {
            if paste.content.len() < MAX_PASTE + PASTE_END.len() {
                paste.content.push(b);
            } else {
                paste.refused = true;
                paste.content = Vec::new();
                let verdict = synthetic_block(
                    "paste-too-large",
                    &format!("a paste over {MAX_PASTE} bytes cannot be checked"),
                );
                report.blocked = Some(Blocked::new(verdict, false));
            }
        }
        if !ended {
            return;
        }
        let Some(mut paste) = self.paste.take() else {
            return;
        };
        if paste.refused {
            // The shell may have seen part of the start marker: close an empty paste.
            if paste.marker.len() < PASTE_START.len() {
                up.extend_from_slice(&paste.marker);
                up.extend_from_slice(PASTE_END);
            }
            return;
        }
        let body_len = paste.content.len().saturating_sub(PASTE_END.len());
        paste.content.truncate(body_len);
        self.finish_paste(paste, up, report);
    }

    fn finish_paste(&mut self, paste: Paste, up: &mut Vec<u8>, report: &mut InputReport) {
        let text = String::from_utf8_lossy(&paste.content);
        let mut worst = Verdict::Allow;
        let mut segments = split_lines(&text).peekable();
        let mut first = true;
        let mut multi_line = false;
        // The lines before this one that continue into it.
        let mut before = self.continued.clone();
        while let Some(seg) = segments.next() {
            let last = segments.peek().is_none();
            if !last {
                multi_line = true;
            }
            // The first line joins what is already on the shell's line.
            let (raw, line, verdict) = if first {
                let anchor = self.line_start();
                let on_screen = format!("{}{seg}", self.screen_line(anchor));
                let typed = format!("{}{seg}", self.typed.text());
                let (a, a_text) = self.check_joined(&before, &on_screen);
                let (b, b_text) = self.check_joined(&before, &typed);
                if b.rank() > a.rank() {
                    (typed, b_text, b)
                } else {
                    (on_screen, a_text, a)
                }
            } else {
                let (v, text) = self.check_joined(&before, seg);
                (seg.to_string(), text, v)
            };
            first = false;
            if !last {
                // A complete line: the shell runs it, or continues it on the next.
                if continues(raw.as_bytes()) {
                    before.push_str(&raw);
                    before.push('\n');
                } else {
                    before.clear();
                }
            }
            let line = line.trim().to_string();
            if line.is_empty() {
                continue;
            }
            worst = worst.max(verdict.clone());
            report.checked.push(CheckedCommand {
                text: line,
                verdict,
                source: Source::Paste,
            });
        }
        if before.len() > MAX_CONTINUED {
            worst = too_long_continued();
        }
        if worst.is_blocked() {
            if paste.marker.len() < PASTE_START.len() {
                up.extend_from_slice(&paste.marker);
                up.extend_from_slice(PASTE_END);
            }
            report.blocked = Some(Blocked::new(worst, false));
            return;
        }
        self.continued = before;
        if self.anchor.is_none() {
            self.anchor = Some(self.line_start());
        }
        up.extend_from_slice(&paste.marker);
        up.extend_from_slice(&paste.content);
        up.extend_from_slice(PASTE_END);
        let last = text.rsplit(['\r', '\n']).next().unwrap_or_default();
        if multi_line {
            // The shell shows the continuation lines from column 0.
            self.typed.clear();
            self.anchor = Some(0);
        }
        self.typed.insert_str(last.as_bytes());
    }
}

/// Lines of a paste: split at `\r\n`, `\r` or `\n`.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').flat_map(|l| l.split('\r'))
}
