//! Bounds the work one escape sequence of target output can cost the emulation.
//!
//! `vt100` runs a loop per unit of a CSI count for insert-characters (`CSI n @`), insert-lines
//! (`CSI n L`) and scroll-down (`CSI n T`), unbounded by the screen size, each step moving or
//! allocating a row: `printf '\e[65535L'` would cost the bastion millions of row allocations
//! for eight bytes. This filter sits in front of the emulation (never in front of the
//! client) and clamps those counts — and the other editing counts — to the screen size, which
//! gives the same screen. A CSI longer than [`MAX_CSI`] bytes is dropped whole.

/// Longest CSI sequence passed to the emulation.
pub const MAX_CSI: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    Esc,
    Csi,
    /// An overlong CSI: dropped up to its final byte.
    Discard,
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
    /// Passes `bytes` to `sink` in order, with oversized CSI counts clamped to `rows` × `cols`.
    pub fn feed(&mut self, bytes: &[u8], rows: u16, cols: u16, sink: &mut impl FnMut(&[u8])) {
        let mut run_start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            match self.state {
                State::Ground => {
                    if b == 0x1b {
                        self.state = State::Esc;
                        self.esc_sent = false;
                    }
                }
                State::Esc => {
                    if b == b'[' {
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
                    } else if b == 0x1b {
                        self.esc_sent = false;
                    } else {
                        self.state = State::Ground;
                    }
                }
                State::Csi | State::Discard => {
                    run_start = i + 1;
                    self.csi_byte(b, rows, cols, sink);
                }
            }
        }
        if matches!(self.state, State::Ground | State::Esc) {
            sink(bytes.get(run_start..).unwrap_or_default());
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
            0x18 | 0x1a => {
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
            _ => {
                if self.state == State::Csi {
                    if self.len + 1 >= MAX_CSI {
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

    /// The held sequence ends: pass it on, clamped if it asks for more than the screen.
    fn finish(&mut self, rows: u16, cols: u16, sink: &mut impl FnMut(&[u8])) {
        let held = self.buf.get(..self.len).unwrap_or_default();
        let Some((&last, front)) = held.split_last() else {
            return;
        };
        let limit = match last {
            b'L' | b'M' | b'S' | b'T' => rows,
            b'@' | b'P' | b'X' => cols,
            _ => return sink(held),
        };
        // Only the plain form: digits of one count (`[` may have gone on earlier).
        let digits = front.strip_prefix(b"\x1b[").unwrap_or(front);
        let digits = digits.strip_prefix(b"[").unwrap_or(digits);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return sink(held);
        }
        let value = digits.iter().fold(0u32, |v, d| {
            v.saturating_mul(10).saturating_add(u32::from(d - b'0'))
        });
        if value <= u32::from(limit) {
            return sink(held);
        }
        let prefix: &[u8] = if front.starts_with(b"\x1b[") {
            b"\x1b["
        } else {
            b"["
        };
        sink(prefix);
        sink(limit.to_string().as_bytes());
        sink(&[last]);
    }
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
        ];
        for (chunks, want) in cases {
            assert_eq!(run(chunks), *want, "input {chunks:?}");
        }
    }

    #[test]
    fn drops_overlong_sequences() {
        let mut input = b"a\x1b[".to_vec();
        input.extend(std::iter::repeat_n(b'1', 200));
        input.extend_from_slice(b"Lb");
        assert_eq!(run(&[&input]), b"ab");
    }
}
