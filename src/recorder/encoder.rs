//! Events in, file bytes out: decoding, masking, ordering, the exec cap. No I/O, no clock.
//!
//! Every event arrives with its time (seconds since the recording began) and a sequence
//! number. Output and input text may be held by their `MaskStream`s; any other event that
//! arrives meanwhile waits in `ready` so that lines reach the file in arrival order with
//! non-decreasing times.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::cast::push_event_text;
use super::mask::{MaskStream, Masker, Piece};
use super::utf8::{Text, Utf8Stream};

/// What the session did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    Output(Bytes),
    Input(Bytes),
    Resize(u16, u16),
    Marker(String),
}

impl Event {
    /// Bytes of text the event carries.
    pub(crate) fn len(&self) -> usize {
        match self {
            Event::Output(b) | Event::Input(b) => b.len(),
            Event::Marker(text) => text.len(),
            Event::Resize(..) => 0,
        }
    }
}

pub(crate) struct Encoder {
    masker: Arc<Masker>,
    out_utf8: Utf8Stream,
    in_utf8: Utf8Stream,
    out_mask: MaskStream,
    in_mask: MaskStream,
    /// Lines released but possibly waiting for held text with a lower sequence number,
    /// keyed by (sequence number, release order): a chunk can be released in parts.
    ready: BTreeMap<(u64, u64), (f64, char, Text)>,
    released: u64,
    seq: u64,
    last_t: f64,
    /// Exec channels: bytes the file may hold (header included).
    cap: Option<u64>,
    capped: bool,
    /// Bytes in the file or in `pending`.
    written: u64,
    /// Complete lines not yet handed to the disk (its allocation reused while it is busy).
    pending: Vec<u8>,
}

impl Encoder {
    /// `header_len`: bytes already in the file.
    pub(crate) fn new(masker: Arc<Masker>, header_len: u64, cap: Option<u64>) -> Encoder {
        Encoder {
            masker,
            out_utf8: Utf8Stream::default(),
            in_utf8: Utf8Stream::default(),
            out_mask: MaskStream::default(),
            in_mask: MaskStream::default(),
            ready: BTreeMap::new(),
            released: 0,
            seq: 0,
            last_t: 0.0,
            cap,
            capped: false,
            written: header_len,
            pending: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, t: f64, event: Event) {
        if self.capped {
            return;
        }
        let seq = self.seq;
        self.seq += 1;
        let mut pieces = Vec::new();
        match event {
            Event::Output(bytes) => {
                let text = self.out_utf8.decode(bytes);
                self.out_mask.push(&self.masker, t, seq, text, &mut pieces);
                self.add_pieces('o', pieces);
            }
            Event::Input(bytes) => {
                let text = self.in_utf8.decode(bytes);
                self.in_mask.push(&self.masker, t, seq, text, &mut pieces);
                self.add_pieces('i', pieces);
            }
            Event::Resize(w, h) => {
                self.ready(seq, t, 'r', format!("{w}x{h}").into());
            }
            Event::Marker(text) => {
                // A marker can quote a command line (a guardrail decision): masked like output.
                let text = if self.masker.is_empty() {
                    text
                } else {
                    self.masker.mask(&text)
                };
                self.ready(seq, t, 'm', text.as_str().into());
            }
        }
        self.release(now_or(t, self.last_t));
    }

    /// The clock moved to `now`: releases held text that is due.
    pub(crate) fn tick(&mut self, now: f64) {
        self.release(now);
    }

    /// The recording ends: everything held is written.
    pub(crate) fn finish(&mut self) {
        let mut out = Vec::new();
        let t = self.last_t;
        let tail = self.out_utf8.finish();
        self.out_mask
            .push(&self.masker, t, self.seq, tail, &mut out);
        self.out_mask.flush(&self.masker, &mut out);
        self.add_pieces('o', out);
        let mut inp = Vec::new();
        let tail = self.in_utf8.finish();
        self.in_mask
            .push(&self.masker, t, self.seq + 1, tail, &mut inp);
        self.in_mask.flush(&self.masker, &mut inp);
        self.add_pieces('i', inp);
        self.seq += 2;
        self.write_ready();
    }

    /// When held text next falls due, in seconds since the recording began.
    pub(crate) fn deadline(&self) -> Option<f64> {
        match (self.out_mask.deadline(), self.in_mask.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Complete lines to hand to the disk; `written` once they are.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// The pending lines are on their way to the disk. A busy recording keeps the buffer's
    /// allocation for the next batch; a quiet one (a batch under `KEEP`) gives it back.
    pub(crate) fn written(&mut self) {
        const KEEP: usize = 64 * 1024;
        if self.pending.len() < KEEP && self.pending.capacity() > KEEP {
            self.pending = Vec::new();
        } else {
            self.pending.clear();
        }
    }

    pub(crate) fn capped(&self) -> bool {
        self.capped
    }

    fn add_pieces(&mut self, code: char, pieces: Vec<Piece>) {
        for (t, seq, text) in pieces {
            self.ready(seq, t, code, text);
        }
    }

    fn ready(&mut self, seq: u64, t: f64, code: char, text: Text) {
        self.released += 1;
        self.ready.insert((seq, self.released), (t, code, text));
    }

    fn release(&mut self, now: f64) {
        let mut out = Vec::new();
        self.out_mask.release_due(&self.masker, now, &mut out);
        self.add_pieces('o', out);
        let mut inp = Vec::new();
        self.in_mask.release_due(&self.masker, now, &mut inp);
        self.add_pieces('i', inp);
        self.write_ready();
    }

    /// Writes every ready line not after the oldest held text (a line with the same sequence
    /// number is the released front of that very chunk).
    fn write_ready(&mut self) {
        let horizon = [
            self.out_mask.first_held_seq(),
            self.in_mask.first_held_seq(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(u64::MAX);
        while let Some(entry) = self.ready.first_entry() {
            if entry.key().0 > horizon {
                break;
            }
            let (t, code, text) = entry.remove();
            self.line(t, code, &text);
        }
    }

    fn line(&mut self, t: f64, code: char, data: &Text) {
        if self.capped {
            return;
        }
        let t = now_or(t, self.last_t);
        self.last_t = t;
        let before = self.pending.len();
        push_event_text(&mut self.pending, t, code, data);
        let len = (self.pending.len() - before) as u64;
        if let Some(cap) = self.cap
            && self.written + len > cap
        {
            self.pending.truncate(before);
            let note =
                format!("jitgate: recording capped at {cap} bytes; the session goes on unrecorded");
            push_event_text(&mut self.pending, t, 'm', &note.into());
            self.written += (self.pending.len() - before) as u64;
            self.capped = true;
            self.ready.clear();
            self.out_mask = MaskStream::default();
            self.in_mask = MaskStream::default();
            return;
        }
        self.written += len;
    }
}

/// Times never go back: `t`, or `floor` when `t` is earlier (or not a number).
fn now_or(t: f64, floor: f64) -> f64 {
    if t >= floor { t } else { floor }
}

#[cfg(test)]
#[path = "encoder_tests.rs"]
mod tests;
