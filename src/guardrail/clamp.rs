//! Bounds the work and memory one escape sequence of target output can cost the emulation.
//!
//! This filter sits in front of the emulation (never in front of the client or the
//! recording, which get the target's bytes as they are) and keeps its screen the same while:
//! - clamping counts: `vt100` runs a loop per unit of a CSI count for insert-characters
//!   (`CSI n @`), insert-lines (`CSI n L`) and scroll-down (`CSI n T`), unbounded by the
//!   screen size, each step moving or allocating a row: `printf '\e[65535L'` would cost the
//!   bastion millions of row allocations for eight bytes. Every count of those — and of the
//!   other editing sequences — is clamped to the screen size, whatever separators or
//!   sub-parameters follow it (`\e[65535;L`, `\e[65535:1@`). A CSI longer than [`MAX_CSI`]
//!   bytes is dropped whole.
//! - bounding control strings: `vte` keeps an OSC string (`ESC ]`) in a buffer that grows
//!   until the string ends, so `printf '\e]0;'; yes` would grow it without end. Of each
//!   control string — OSC, DCS (`ESC P`), SOS (`ESC X`), PM (`ESC ^`) and APC (`ESC _`) —
//!   only the first [`MAX_STRING`] bytes go on; the rest is dropped up to the terminator,
//!   which goes on so the emulation leaves the string where the target's terminal does.
//!
//! The states follow `vte`'s where they matter: an Esc is still pending across the controls
//! and the bytes `vte` executes or ignores in its Escape state (`ESC LF [` is a CSI); a
//! string ends where `vte` ends it (OSC: BEL, CAN, SUB or Esc; the others: CAN, SUB, Esc or
//! the 8-bit ST). `vte` honours no other 8-bit (C1) introducer, so neither does this.

/// Longest CSI sequence passed to the emulation.
pub const MAX_CSI: usize = 64;
/// Bytes of one control string (OSC, DCS, SOS, PM, APC) passed to the emulation.
pub const MAX_STRING: usize = 4096;

/// CAN: `vte` leaves any sequence on it, and `vt100` does nothing with it.
const CAN: u8 = 0x18;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    Esc,
    Csi,
    /// An overlong CSI: dropped up to its final byte.
    Discard,
    /// Inside a control string, `passed` bytes of which went on.
    Str {
        osc: bool,
        passed: usize,
    },
}

#[derive(Debug)]
pub struct CsiClamp {
    state: State,
    buf: [u8; MAX_CSI],
    len: usize,
    /// In `Esc`: the Esc already went to the sink.
    esc_sent: bool,
}

impl Default for CsiClamp {
    fn default() -> Self {
        CsiClamp {
            state: State::Ground,
            buf: [0; MAX_CSI],
            len: 0,
            esc_sent: false,
        }
    }
}

impl CsiClamp {
    /// Passes `bytes` to `sink` in order, with oversized CSI counts clamped to `rows` × `cols`
    /// and control strings cut to [`MAX_STRING`] bytes.
    pub fn feed(&mut self, bytes: &[u8], rows: u16, cols: u16, sink: &mut impl FnMut(&[u8])) {
        // Bytes from `run_start` on go to the sink as one slice, unless held or dropped.
        let mut run_start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            match self.state {
                State::Ground => {
                    if b == 0x1b {
                        self.state = State::Esc;
                        self.esc_sent = false;
                    }
                }
                State::Esc => match b {
                    b'[' => {
                        // Everything before the CSI goes on; the CSI is held from here (its
                        // Esc too, unless that already went on).
                        if self.esc_sent {
                            sink(bytes.get(run_start..i).unwrap_or_default());
                            self.buf[0] = b'[';
                            self.len = 1;
                        } else {
                            let upto = i.saturating_sub(1).max(run_start);
                            sink(bytes.get(run_start..upto).unwrap_or_default());
                            self.buf[0] = 0x1b;
                            self.buf[1] = b'[';
                            self.len = 2;
                        }
                        self.state = State::Csi;
                        run_start = i + 1;
                    }
                    0x1b => self.esc_sent = false,
                    b']' | b'P' | b'X' | b'^' | b'_' => {
                        self.state = State::Str {
                            osc: b == b']',
                            passed: 0,
                        };
                    }
                    CAN | 0x1a => self.state = State::Ground,
                    // `vte` executes or ignores these and stays in its Escape state: they go
                    // on now, the Esc with them.
                    0x00..=0x1f | 0x7f..=0xff => {
                        sink(bytes.get(run_start..=i).unwrap_or_default());
                        run_start = i + 1;
                        self.esc_sent = true;
                    }
                    _ => self.state = State::Ground,
                },
                State::Csi | State::Discard => {
                    run_start = i + 1;
                    self.csi_byte(b, rows, cols, sink);
                }
                State::Str { osc, passed } => match b {
                    0x1b => {
                        self.state = State::Esc;
                        self.esc_sent = false;
                    }
                    CAN | 0x1a => self.state = State::Ground,
                    0x07 if osc => self.state = State::Ground,
                    0x9c if !osc => self.state = State::Ground,
                    _ if passed < MAX_STRING => {
                        self.state = State::Str {
                            osc,
                            passed: passed + 1,
                        };
                    }
                    _ => {
                        // Dropped: what came before it goes on.
                        if run_start < i {
                            sink(bytes.get(run_start..i).unwrap_or_default());
                        }
                        run_start = i + 1;
                    }
                },
            }
        }
        if !matches!(self.state, State::Csi | State::Discard) {
            if run_start < bytes.len() {
                sink(bytes.get(run_start..).unwrap_or_default());
            }
            self.esc_sent = true;
        }
    }

    fn csi_byte(&mut self, b: u8, rows: u16, cols: u16, sink: &mut impl FnMut(&[u8])) {
        match b {
            0x1b => {
                // Esc aborts the sequence and starts a new one.
                self.flush_held(sink);
                sink(&[0x1b]);
                self.state = State::Esc;
                self.esc_sent = true;
            }
            CAN | 0x1a => {
                self.flush_held(sink);
                sink(&[b]);
                self.state = State::Ground;
            }
            // Other controls act in the middle of a sequence; pass them on at once.
            0x00..=0x1f => sink(&[b]),
            0x40..=0x7e => {
                if self.state == State::Csi {
                    self.push(b);
                    self.finish(rows, cols, sink);
                }
                self.len = 0;
                self.state = State::Ground;
            }
            // `vte` ignores these inside a sequence.
            0x7f..=0xff => {}
            _ => {
                if self.state == State::Csi {
                    if self.len + 1 >= MAX_CSI {
                        if self.buf[0] == b'[' {
                            // Its Esc went on: leave the emulation's Escape state harmlessly.
                            sink(&[CAN]);
                        }
                        self.len = 0;
                        self.state = State::Discard;
                    } else {
                        self.push(b);
                    }
                }
            }
        }
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn flush_held(&mut self, sink: &mut impl FnMut(&[u8])) {
        if self.state == State::Csi {
            sink(self.buf.get(..self.len).unwrap_or_default());
        }
        self.len = 0;
    }

    /// The held sequence ends: pass it on, with every count over the screen clamped when it
    /// is one whose count `vt100` loops over.
    fn finish(&mut self, rows: u16, cols: u16, sink: &mut impl FnMut(&[u8])) {
        let held = self.buf.get(..self.len).unwrap_or_default();
        let Some(&last) = held.last() else {
            return;
        };
        let limit = match last {
            b'L' | b'M' | b'S' | b'T' => rows,
            b'@' | b'P' | b'X' => cols,
            _ => return sink(held),
        };
        if !held
            .split(|b| !b.is_ascii_digit())
            .any(|n| count(n) > u32::from(limit))
        {
            return sink(held);
        }
        // Each run of digits is one count (parameter or sub-parameter), as `vte` reads them;
        // the final byte is no digit, so every run ends before it.
        let limit_text = limit.to_string();
        let mut from = 0;
        for (j, &b) in held.iter().enumerate() {
            if !b.is_ascii_digit() {
                let digits = held.get(from..j).unwrap_or_default();
                sink(if count(digits) > u32::from(limit) {
                    limit_text.as_bytes()
                } else {
                    digits
                });
                sink(&[b]);
                from = j + 1;
            }
        }
    }
}

/// The value of a run of ASCII digits (0 when empty), saturating.
fn count(digits: &[u8]) -> u32 {
    digits.iter().fold(0u32, |v, d| {
        v.saturating_mul(10)
            .saturating_add(u32::from(d.wrapping_sub(b'0')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut c = CsiClamp::default();
        let mut out = Vec::new();
        for chunk in chunks {
            c.feed(chunk, 24, 80, &mut |b: &[u8]| out.extend_from_slice(b));
        }
        out
    }

    #[test]
    fn clamps_oversized_counts_and_passes_the_rest() {
        let cases: &[(&[&[u8]], &[u8])] = &[
            (&[b"plain text\r\n"], b"plain text\r\n"),
            (&[b"a\x1b[65535Lb"], b"a\x1b[24Lb"),
            (&[b"\x1b[9999@\x1b[5@"], b"\x1b[80@\x1b[5@"),
            (&[b"\x1b[000000000000000000000000000009999T"], b"\x1b[24T"),
            (&[b"\x1b[99", b"99L"], b"\x1b[24L"),
            (&[b"x\x1b", b"[9999Ly"], b"x\x1b[24Ly"),
            (
                &[b"\x1b[?1049h\x1b[38;5;196m\x1b[2004h"],
                b"\x1b[?1049h\x1b[38;5;196m\x1b[2004h",
            ),
            (&[b"\x1b[99\nL"], b"\n\x1b[24L"),
            (&[b"\x1b[12\x1b[3L"], b"\x1b[12\x1b[3L"),
            (&[b"\x1b]0;title\x07\x1bOA"], b"\x1b]0;title\x07\x1bOA"),
            // Every count is clamped, whatever separator or sub-parameter follows it.
            (&[b"\x1b[65535;L"], b"\x1b[24;L"),
            (&[b"\x1b[65535:1@"], b"\x1b[80:1@"),
            (&[b"\x1b[1;65535M\x1b[3;4P"], b"\x1b[1;24M\x1b[3;4P"),
            (&[b"\x1b[99999:99999X"], b"\x1b[80:80X"),
            // Bytes `vte` ignores inside a CSI do not split a count.
            (&[b"\x1b[6\x7f5535L\x1b[9\xc3\xa99S"], b"\x1b[24L\x1b[24S"),
            // An Esc stays pending across what `vte` executes or ignores after it.
            (&[b"\x1b\n[65535L"], b"\x1b\n[24L"),
            (&[b"\x1b\x80", b"\x07[9999@"], b"\x1b\x80\x07[80@"),
            // A CSI right after a control string is clamped; one inside it is text.
            (&[b"\x1b]0;x\x1b[9999L"], b"\x1b]0;x\x1b[24L"),
            (&[b"\x1b]0;[9999L\x07"], b"\x1b]0;[9999L\x07"),
            (&[b"\x1bP1$q[9999L\x1b\\"], b"\x1bP1$q[9999L\x1b\\"),
        ];
        for (chunks, want) in cases {
            assert_eq!(run(chunks), *want, "input {chunks:?}");
        }
    }

    /// `prefix`, then `n` bytes of `fill`, then `suffix`.
    fn long(prefix: &[u8], fill: u8, n: usize, suffix: &[u8]) -> Vec<u8> {
        let mut v = prefix.to_vec();
        v.resize(prefix.len() + n, fill);
        v.extend_from_slice(suffix);
        v
    }

    #[test]
    fn control_strings_are_cut_and_keep_their_terminators() {
        let cases: &[(Vec<u8>, Vec<u8>)] = &[
            // Short strings go on whole.
            (
                b"\x1b]2;a title\x1b\\$ ".to_vec(),
                b"\x1b]2;a title\x1b\\$ ".to_vec(),
            ),
            // Long ones are cut; the terminator and what follows go on.
            (
                long(b"\x1b]0;", b'y', 3 * MAX_STRING, b"\x07$ "),
                long(b"\x1b]0;", b'y', MAX_STRING - 2, b"\x07$ "),
            ),
            (
                long(b"\x1b]0;", b'y', 2 * MAX_STRING, b"\x1b\\\x1b[9999L"),
                long(b"\x1b]0;", b'y', MAX_STRING - 2, b"\x1b\\\x1b[24L"),
            ),
            (
                long(b"\x1bP", b'q', 2 * MAX_STRING, b"\x9c$ "),
                long(b"\x1bP", b'q', MAX_STRING, b"\x9c$ "),
            ),
            (
                long(b"\x1b_", b'a', 2 * MAX_STRING, b"\x18$ "),
                long(b"\x1b_", b'a', MAX_STRING, b"\x18$ "),
            ),
            // BEL does not end an APC, nor 0x9c an OSC, for `vte`: the cut goes on.
            (
                long(b"\x1b^\x07", b'p', 2 * MAX_STRING, b"\x1a"),
                long(b"\x1b^\x07", b'p', MAX_STRING - 1, b"\x1a"),
            ),
            (
                long(b"\x1b]0;\x9c", b'o', 2 * MAX_STRING, b"\x07"),
                long(b"\x1b]0;\x9c", b'o', MAX_STRING - 3, b"\x07"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&run(&[input]), want, "input {:?}", &input[..8]);
            // The same split into small chunks.
            let chunks: Vec<&[u8]> = input.chunks(7).collect();
            assert_eq!(&run(&chunks), want, "chunked input {:?}", &input[..8]);
        }
    }

    #[test]
    fn an_unterminated_string_costs_the_emulation_a_bounded_amount() {
        // `printf '\e]0;'; yes`: 32 MiB of output that never ends the string.
        let mut c = CsiClamp::default();
        let mut passed = 0;
        c.feed(b"\x1b]0;", 24, 80, &mut |b: &[u8]| passed += b.len());
        let chunk = b"y\n".repeat(32 << 10);
        for _ in 0..512 {
            c.feed(&chunk, 24, 80, &mut |b: &[u8]| passed += b.len());
        }
        // `ESC ]`, then `0;` and what follows up to the limit.
        assert_eq!(passed, 2 + MAX_STRING);
    }

    #[test]
    fn drops_overlong_sequences() {
        let mut input = b"a\x1b[".to_vec();
        input.extend(std::iter::repeat_n(b'1', 200));
        input.extend_from_slice(b"Lb");
        assert_eq!(run(&[&input]), b"ab");
        // Its Esc went on in an earlier read: the emulation leaves its Escape state on CAN,
        // so the `]` after the dropped sequence starts no OSC.
        let rest = &input[2..];
        assert_eq!(run(&[b"a\x1b", rest, b"]0;"]), b"a\x1b\x18b]0;");
    }
}
