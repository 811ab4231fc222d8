//! Robustness: arbitrary output and input byte streams, from a seeded generator, never make
//! the gates panic, and the work they keep is bounded (so time is linear in the input).
//! Shapes are asserted, never wall-clock time.

use crate::guardrail::{LineGate, MAX_CONTINUED, MAX_PASTE, MAX_TYPED, PtyGuard};

use super::destructive;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pieces that exercise terminals and line editing more than uniform bytes would.
const PIECES: &[&[u8]] = &[
    b"\x1b[200~",
    b"\x1b[201~",
    b"\x1b[?1049h",
    b"\x1b[?1049l",
    b"\x1b[?2004h",
    b"\r",
    b"\n",
    b"\r\n",
    b"\x03",
    b"\x04",
    b"\x7f",
    b"\x17",
    b"\x15",
    b"\x01",
    b"\x05",
    b"\x0b",
    b"\t",
    b"\x1b[A",
    b"\x1b[D",
    b"\x1b[C",
    b"\x1b[P",
    b"\x1b[K",
    b"\x1b[2J",
    b"\x1b[H",
    b"\x1b[99;999H",
    b"\x1b[65535@",
    b"\x1b[9999L",
    b"\x1b[9999M",
    b"\x1b[1;65535r",
    b"\x1b[65535X",
    b"\x1bOM",
    b"\x1b[8;0;0t",
    b"\x1b]0;title\x07",
    b"\x1b[",
    b"\x1b",
    b"rm -rf /",
    b"ls -la",
    b"$ ",
    "é€😀".as_bytes(),
    b"\xff\xfe\xc3",
    b"DROP TABLE t;",
    b"\x1b[38;5;196m",
    b"\x1b[?25l",
    b"\x1bP",
    b"\x1b[1;2;3;4;5;6;7;8;9;10;11;12;13;14;15;16;17;18;19;20;21;22;23;24;25m",
];

fn stream(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        match rng.below(3) {
            0 => out.push(rng.next() as u8),
            1 => out.extend_from_slice(PIECES[rng.below(PIECES.len())]),
            _ => {
                for _ in 0..rng.below(12) {
                    out.push(b' ' + rng.below(95) as u8);
                }
            }
        }
    }
    out
}

#[test]
fn pty_guard_survives_arbitrary_streams_with_bounded_state() {
    let checker = destructive();
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let rows = rng.below(70) as u16;
        let cols = rng.below(300) as u16;
        let mut guard = PtyGuard::new(checker.clone(), rows, cols);
        let mut total_in = 0usize;
        let mut total_up = 0usize;
        let mut blocks = 0usize;
        for _ in 0..40 {
            let len = 1 + rng.below(200);
            let chunk = stream(&mut rng, len);
            match rng.below(5) {
                0 => guard.resize(rng.below(400) as u16, rng.below(2000) as u16),
                1 | 2 => guard.feed_output(&chunk),
                _ => {
                    let mut up = Vec::new();
                    let r = guard.feed_input(&chunk, &mut up);
                    // Work per call is bounded by its bytes: at most one check per byte
                    // (each Enter or paste line), each over bounded text.
                    assert!(r.checked.len() <= chunk.len(), "seed {seed}");
                    total_in += chunk.len();
                    total_up += up.len();
                    if r.blocked.is_some() {
                        blocks += 1;
                    }
                }
            }
            assert!(
                guard.buffered_bytes() <= MAX_TYPED + MAX_CONTINUED + MAX_PASTE + 64,
                "seed {seed}: {} bytes held",
                guard.buffered_bytes()
            );
        }
        // Nothing is invented: what goes up is what came in, plus a Ctrl-C or a closing
        // paste marker per block, plus held sequence bytes flushed late.
        assert!(total_up <= total_in + blocks * 12 + 64, "seed {seed}");
    }
}

#[test]
fn an_endless_paste_is_refused_and_memory_stays_bounded() {
    let mut guard = PtyGuard::new(destructive(), 24, 80);
    let mut up = Vec::new();
    let r = guard.feed_input(b"\x1b[200~", &mut up);
    assert_eq!(r.blocked, None);
    let chunk = vec![b'a'; 64 << 10];
    let mut refused = 0;
    for _ in 0..((MAX_PASTE >> 16) + 3) {
        let r = guard.feed_input(&chunk, &mut up);
        if r.blocked.is_some() {
            refused += 1;
        }
        assert!(guard.buffered_bytes() <= MAX_PASTE + 64);
    }
    assert_eq!(refused, 1, "refused once");
    assert!(up.is_empty());
    // The end marker may come in the same read as the overflow.
    let mut last = vec![b'a'; 64 << 10];
    last.extend_from_slice(b"\x1b[201~ls\r");
    guard.feed_input(&last, &mut up);
    assert_eq!(
        up, b"ls\r",
        "the refused paste never goes up; what follows it does"
    );
}

#[test]
fn line_gate_survives_arbitrary_streams_with_bounded_state() {
    let checker = destructive();
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0xd1b5_4a32_d192_ed03) | 1);
        let max_line = 1 + rng.below(4096);
        let mut gate = LineGate::with_max_line(checker.clone(), max_line);
        let mut total_in = 0;
        let mut up = Vec::new();
        for _ in 0..40 {
            let len = 1 + rng.below(300);
            let chunk = stream(&mut rng, len);
            total_in += chunk.len();
            let r = gate.feed(&chunk, &mut up);
            assert!(r.checked.len() <= chunk.len());
            assert!(gate.buffered_bytes() <= max_line + 1, "seed {seed}");
        }
        gate.finish(&mut up);
        assert!(
            up.len() <= total_in,
            "seed {seed}: forwards only what came in"
        );
    }
}

#[test]
fn gates_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<PtyGuard>();
    send::<LineGate>();
    send::<crate::guardrail::Checker>();
}
