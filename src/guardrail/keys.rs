//! Decodes the bytes a terminal sends (keys and escape sequences) one byte at a time.
//!
//! Only what the line gate needs is told apart: Enter, the editing keys the typed-line model
//! follows, Ctrl-C, and the bracketed-paste start marker. Every other sequence is a
//! [`Key::Other`]. Sequence bytes are held until the sequence ends (at most [`MAX_SEQ`]; a
//! longer one is passed on as it comes), so the caller can keep a paste marker back.
//!
//! Enter (CR, LF, Ctrl-O) and Ctrl-C are never swallowed by a sequence: one that comes while
//! a sequence is unfinished (Esc then Enter in vi mode; `ESC CR`, which many terminals send
//! for Alt+Enter) ends it, the held bytes become a key of their own, and the control byte is
//! decoded as Enter or Ctrl-C after it ([`Step::Cut`]).

/// Longest escape sequence held back whole; longer ones are forwarded as they come.
pub const MAX_SEQ: usize = 32;

/// The bracketed-paste start and end markers.
pub const PASTE_START: &[u8] = b"\x1b[200~";
pub const PASTE_END: &[u8] = b"\x1b[201~";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable byte (ASCII or part of a UTF-8 character).
    Text(u8),
    Enter,
    Interrupt,
    Backspace,
    Delete,
    KillWord,
    KillToStart,
    KillToEnd,
    Home,
    End,
    Left,
    Right,
    /// Up, Down, Ctrl-P/N/R/S and the like: the line is replaced by something not typed.
    Recall,
    PasteStart,
    /// Any other key or sequence (Tab, Alt-…, function keys, mouse reports).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    Esc,
    Csi,
    Ss3,
}

/// One escape sequence in progress.
#[derive(Debug)]
pub struct KeyDecoder {
    state: State,
    seq: [u8; MAX_SEQ],
    len: usize,
    /// Bytes of `seq` already handed to the caller to forward.
    sent: usize,
    /// After a [`Step::Cut`]: where the cut-off sequence ends in `seq` (the control byte
    /// follows it), until its bytes are taken.
    cut: Option<usize>,
}

impl Default for KeyDecoder {
    fn default() -> Self {
        KeyDecoder {
            state: State::Ground,
            seq: [0; MAX_SEQ],
            len: 0,
            sent: 0,
            cut: None,
        }
    }
}

/// What one byte did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The byte belongs to a sequence still in progress; nothing to forward yet.
    Held,
    /// A key is complete; forward `KeyDecoder::take_unsent()`.
    Key(Key),
    /// Enter or Ctrl-C ended an unfinished sequence: the sequence is a [`Key::Other`] (forward
    /// `take_unsent()`), then the byte is this key (forward `take_unsent()` again).
    Cut(Key),
}

impl KeyDecoder {
    pub fn push(&mut self, b: u8) -> Step {
        if self.state == State::Ground {
            self.len = 0;
            self.sent = 0;
        }
        self.cut = None;
        if let Some(slot) = self.seq.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
        let step = self.step(b);
        if step == Step::Held && self.len >= MAX_SEQ {
            // Too long to hold: hand it on as it is and start afresh.
            self.state = State::Ground;
            return Step::Key(Key::Other);
        }
        step
    }

    fn step(&mut self, b: u8) -> Step {
        if self.state != State::Ground && matches!(b, b'\r' | b'\n' | 0x0f | 0x03) {
            // Not held: the byte was stored at `len - 1` (a sequence in progress is shorter
            // than `MAX_SEQ`).
            self.state = State::Ground;
            self.cut = Some(self.len.saturating_sub(1));
            return Step::Cut(control(b));
        }
        match self.state {
            State::Ground => match b {
                0x1b => {
                    self.state = State::Esc;
                    Step::Held
                }
                _ => Step::Key(control(b)),
            },
            State::Esc => match b {
                b'[' => {
                    self.state = State::Csi;
                    Step::Held
                }
                b'O' => {
                    self.state = State::Ss3;
                    Step::Held
                }
                0x1b => Step::Held,
                b'b' | b'f' | b'd' | 0x7f | 0x08 => {
                    self.state = State::Ground;
                    // Alt-b/f move by words, Alt-d/Alt-Backspace kill a word: not modelled.
                    Step::Key(Key::Recall)
                }
                _ => {
                    self.state = State::Ground;
                    Step::Key(Key::Other)
                }
            },
            State::Ss3 => {
                self.state = State::Ground;
                Step::Key(match b {
                    b'M' => Key::Enter,
                    b'A' | b'B' => Key::Recall,
                    b'C' => Key::Right,
                    b'D' => Key::Left,
                    b'H' => Key::Home,
                    b'F' => Key::End,
                    _ => Key::Other,
                })
            }
            State::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.state = State::Ground;
                    Step::Key(self.csi_key())
                } else if (0x20..=0x3f).contains(&b) {
                    Step::Held
                } else {
                    // A control byte inside a sequence ends it; pass everything on.
                    self.state = State::Ground;
                    Step::Key(Key::Other)
                }
            }
        }
    }

    fn csi_key(&self) -> Key {
        let body = self.seq.get(..self.len).unwrap_or_default();
        match body {
            b"\x1b[200~" => Key::PasteStart,
            b"\x1b[A" | b"\x1b[B" => Key::Recall,
            b"\x1b[C" => Key::Right,
            b"\x1b[D" => Key::Left,
            b"\x1b[H" | b"\x1b[1~" | b"\x1b[7~" => Key::Home,
            b"\x1b[F" | b"\x1b[4~" | b"\x1b[8~" => Key::End,
            b"\x1b[3~" => Key::Delete,
            _ => Key::Other,
        }
    }

    /// The bytes of the current key not yet handed out; marks them handed out. After a
    /// [`Step::Cut`], the first call gives the sequence's bytes, the second the control byte.
    pub fn take_unsent(&mut self) -> &[u8] {
        let to = self.cut.take().unwrap_or(self.len).min(self.len);
        let from = self.sent.min(to);
        self.sent = to;
        self.seq.get(from..to).unwrap_or_default()
    }

    /// Whether the held bytes may be the start of a paste marker (then they stay held).
    pub fn holding_paste_prefix(&self) -> bool {
        self.state != State::Ground && self.len > 1 && PASTE_START.starts_with(self.held())
    }

    fn held(&self) -> &[u8] {
        self.seq.get(..self.len).unwrap_or_default()
    }

    /// Whether a sequence is in progress.
    pub fn in_sequence(&self) -> bool {
        self.state != State::Ground
    }

    /// Forgets any sequence in progress.
    pub fn reset(&mut self) {
        self.state = State::Ground;
        self.len = 0;
        self.sent = 0;
        self.cut = None;
    }
}

fn control(b: u8) -> Key {
    match b {
        b'\r' | b'\n' | 0x0f => Key::Enter,
        0x03 => Key::Interrupt,
        0x7f | 0x08 => Key::Backspace,
        0x04 => Key::Delete,
        0x17 => Key::KillWord,
        0x15 => Key::KillToStart,
        0x0b => Key::KillToEnd,
        0x01 => Key::Home,
        0x05 => Key::End,
        0x02 => Key::Left,
        0x06 => Key::Right,
        0x10 | 0x0e | 0x12 | 0x13 | 0x19 | 0x14 => Key::Recall,
        b if b >= 0x20 => Key::Text(b),
        _ => Key::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(bytes: &[u8]) -> Vec<(Key, Vec<u8>)> {
        let mut d = KeyDecoder::default();
        let mut out = Vec::new();
        for &b in bytes {
            match d.push(b) {
                Step::Held => {}
                Step::Key(k) => out.push((k, d.take_unsent().to_vec())),
                Step::Cut(k) => {
                    out.push((Key::Other, d.take_unsent().to_vec()));
                    out.push((k, d.take_unsent().to_vec()));
                }
            }
        }
        out
    }

    #[test]
    fn decodes_keys_and_keeps_their_bytes() {
        let cases: &[(&[u8], &[Key])] = &[
            (b"ab\r", &[Key::Text(b'a'), Key::Text(b'b'), Key::Enter]),
            (b"\x1b[A\x1b[D\x1bOC", &[Key::Recall, Key::Left, Key::Right]),
            (b"\x1b[200~x", &[Key::PasteStart, Key::Text(b'x')]),
            (b"\x1b[3~\x1b[1;5C", &[Key::Delete, Key::Other]),
            (
                b"\x01\x05\x17\x15\x0b\x7f",
                &[
                    Key::Home,
                    Key::End,
                    Key::KillWord,
                    Key::KillToStart,
                    Key::KillToEnd,
                    Key::Backspace,
                ],
            ),
            (b"\x1bOM\x03\t", &[Key::Enter, Key::Interrupt, Key::Other]),
            (b"\x1bb\x1bx", &[Key::Recall, Key::Other]),
            // Enter and Ctrl-C end an unfinished sequence and count as themselves.
            (b"\x1b\r", &[Key::Other, Key::Enter]),
            (b"\x1b\x1b\n", &[Key::Other, Key::Enter]),
            (b"\x1b[\x0f", &[Key::Other, Key::Enter]),
            (b"\x1b[1;5\r", &[Key::Other, Key::Enter]),
            (b"\x1bO\r", &[Key::Other, Key::Enter]),
            (
                b"\x1b[2\x03x",
                &[Key::Other, Key::Interrupt, Key::Text(b'x')],
            ),
            (b"\x1b\x03", &[Key::Other, Key::Interrupt]),
        ];
        for (input, want) in cases {
            let got = keys(input);
            let got_keys: Vec<Key> = got.iter().map(|(k, _)| *k).collect();
            assert_eq!(&got_keys, want, "input {input:?}");
            let bytes: Vec<u8> = got.into_iter().flat_map(|(_, b)| b).collect();
            assert_eq!(&bytes, input, "every byte is handed out once");
        }
    }

    #[test]
    fn overlong_sequences_are_passed_on_not_held() {
        let mut input = b"\x1b[".to_vec();
        input.extend(std::iter::repeat_n(b'1', 100));
        input.push(b'm');
        let got = keys(&input);
        let bytes: Vec<u8> = got.iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(bytes, input, "every byte is handed out once");
        assert_eq!(got[0], (Key::Other, input[..MAX_SEQ].to_vec()));
    }

    #[test]
    fn a_cut_sequence_hands_out_each_part_once() {
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"\x1b\r", &[b"\x1b", b"\r"]),
            (b"\x1b[20\n", &[b"\x1b[20", b"\n"]),
        ];
        for (input, want) in cases {
            let got: Vec<Vec<u8>> = keys(input).into_iter().map(|(_, b)| b).collect();
            assert_eq!(&got, want, "input {input:?}");
        }
        // The Esc already went on (it ended an earlier read): the sequence's part is empty.
        let mut d = KeyDecoder::default();
        assert_eq!(d.push(0x1b), Step::Held);
        assert_eq!(d.take_unsent(), b"\x1b");
        assert_eq!(d.push(b'\r'), Step::Cut(Key::Enter));
        assert_eq!(d.take_unsent(), b"");
        assert_eq!(d.take_unsent(), b"\r");
        assert!(!d.in_sequence());
    }

    #[test]
    fn paste_prefix_is_recognised() {
        let mut d = KeyDecoder::default();
        let _ = d.push(0x1b);
        assert!(!d.holding_paste_prefix(), "a lone Esc is not held");
        let _ = d.push(b'[');
        let _ = d.push(b'2');
        assert!(d.holding_paste_prefix());
        let _ = d.push(b'1');
        assert!(!d.holding_paste_prefix());
    }
}
