//! Masking secrets in the recorded copy of a stream, across chunk boundaries.
//!
//! A secret can reach the bastion split over many chunks (a PEM private key block spans many
//! lines and several SSH packets), so matching chunk by chunk would miss it. `MaskStream` holds
//! back the tail of the decoded text and matches the configured regexes over all of it:
//!
//! - **Window**: the last `MAX_SECRET` bytes are always held back while text streams, so
//!   any secret up to `MAX_SECRET` bytes long is seen whole. Once `WINDOW` bytes are held,
//!   all but the last `MAX_SECRET` are released, so each byte is matched about
//!   `(CONTEXT + WINDOW) / (WINDOW - MAX_SECRET)` times (9/7), not once per chunk. A match that straddles
//!   the release point keeps the text from its start held (up to `HARD_LIMIT`, beyond which an
//!   over-long match is released masked).
//! - **Time**: text is held at most `HOLD` seconds after it arrived; when the oldest chunk
//!   falls due, every chunk older than `HOLD / 2` goes with it (so a steady trickle is matched
//!   at most every `HOLD / 2`), masked as far as known at that moment. An idle interactive
//!   session's recording thus catches up within `HOLD` and memory drops back to the
//!   look-behind. When a match's pieces arrive more than `HOLD / 2` apart, the pieces already
//!   written stay as they were and the rest is masked (see look-behind): harmless when the
//!   early piece is a keyword (`password=`), a partial leak when it is the front of a secret
//!   (page one of `less id_rsa`, shown 200 ms before page two brings the key's end).
//! - **Look-behind**: the last `CONTEXT` (= `MAX_SECRET`) bytes already released stay in front
//!   of the held text and take part in matching. A match that began in them masks its held
//!   part, so a secret typed one key at a time after its keyword (`--password=hunter2`,
//!   echoed key by key over seconds) is recorded as the keyword and masks, never as the
//!   secret; and the rest of any secret up to `MAX_SECRET` bytes whose front was released by
//!   time is masked, however long that front. An idle stream keeps only the look-behind, in
//!   an allocation of at most `2 * CONTEXT` bytes.
//! - **Timing**: each chunk keeps its own time and sequence number; a mask replaces the text it
//!   covers inside the chunk where the match starts, so playback timing is unchanged.
//!
//! Only the recording is touched: the bytes relayed to the engineer never pass through here.

use std::fmt;
use std::ops::Range;

use regex::bytes::Regex;

use super::utf8::{Text, is_boundary};

/// What a masked secret reads as in the recording.
pub const MASK: &str = "[MASKED]";
/// Secrets up to this many bytes are masked even when split over many chunks.
pub const MAX_SECRET: usize = 16 * 1024;
/// Held text is matched and released once it reaches this many bytes.
pub const WINDOW: usize = 8 * MAX_SECRET;
/// Held text never exceeds this many bytes (plus one chunk).
pub const HARD_LIMIT: usize = 2 * WINDOW;
/// Seconds a chunk is held at most before it is written.
pub const HOLD: f64 = 0.2;
/// Bytes of released text kept in front of the held text for matching: a secret's front
/// released by time is at most `MAX_SECRET` bytes behind its rest.
pub const CONTEXT: usize = MAX_SECRET;
/// An idle stream's buffer is given back once its allocation is larger than this.
const IDLE_CAPACITY: usize = 2 * CONTEXT;

/// The configured mask patterns, compiled once and shared by every recording.
///
/// Each pattern is searched on its own: a `RegexSet` of the defaults runs at a fraction of the
/// speed because it loses each pattern's literal prefilter.
///
/// The patterns run over bytes (held text is bytes, so that chunks need not be copied into
/// `String`s), but each must first compile as a `&str` regex, which refuses any pattern that
/// could match something other than whole UTF-8 characters; a match thus starts and ends on
/// character boundaries, and `ranges` widens it to them regardless.
///
/// A pattern with a capture group named `secret` masks only that group (`mysql … -pSECRET`
/// keeps the command and hides the password); any other pattern masks its whole match.
#[derive(Clone)]
pub struct Masker {
    regexes: Vec<(Regex, Option<usize>)>,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Masker({} patterns)", self.regexes.len())
    }
}

impl Masker {
    pub fn new(patterns: &[String]) -> Result<Masker, regex::Error> {
        Ok(Masker {
            regexes: patterns
                .iter()
                .map(|p| {
                    let re = regex::Regex::new(p).and_then(|_| Regex::new(p))?;
                    let secret = re.capture_names().position(|n| n == Some("secret"));
                    Ok((re, secret))
                })
                .collect::<Result<_, regex::Error>>()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.regexes.is_empty()
    }

    /// Masks every match in one complete text (e.g. an exec command line).
    pub fn mask(&self, text: &str) -> String {
        let ranges = self.ranges(text.as_bytes());
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        for r in ranges {
            out.push_str(text.get(pos..r.start).unwrap_or_default());
            out.push_str(MASK);
            pos = r.end;
        }
        out.push_str(text.get(pos..).unwrap_or_default());
        out
    }

    /// Every match of every pattern in the UTF-8 `text`, on character boundaries,
    /// overlapping ones merged, in order.
    fn ranges(&self, text: &[u8]) -> Vec<Range<usize>> {
        let mut all: Vec<Range<usize>> = Vec::new();
        for (re, secret) in &self.regexes {
            match secret {
                None => all.extend(re.find_iter(text).map(|m| m.range())),
                Some(group) => all.extend(
                    re.captures_iter(text)
                        .filter_map(|c| c.get(*group).map(|m| m.range())),
                ),
            }
        }
        all.retain(|r| !r.is_empty());
        for r in &mut all {
            *r = floor_boundary(text, r.start)..ceil_boundary(text, r.end);
        }
        all.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(all.len());
        for r in all {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        merged
    }
}

/// A piece of released text: time (seconds since the recording began), sequence number, text.
pub(crate) type Piece = (f64, u64, Text);

/// Held text of one stream (output or input) and the chunks it came from.
#[derive(Debug, Default)]
pub(crate) struct MaskStream {
    /// Up to `CONTEXT` bytes already released (`..held`), then the held chunks end to end,
    /// for matching across them.
    buf: Vec<u8>,
    /// Where the held text starts in `buf`.
    held: usize,
    /// Not due before this time: set when a due release was held back by a match running on
    /// into younger text, so that the writer does not spin until that text is due too.
    retry_at: f64,
    /// Each held chunk, in order: released as it is when no mask falls inside it.
    segs: Vec<Seg>,
}

#[derive(Debug)]
struct Seg {
    /// Offset in `buf`.
    start: usize,
    t: f64,
    seq: u64,
    text: Text,
}

impl MaskStream {
    /// Takes one decoded chunk; releases into `out` whatever the window no longer needs.
    pub(crate) fn push(&mut self, m: &Masker, t: f64, seq: u64, text: Text, out: &mut Vec<Piece>) {
        if text.is_empty() {
            return;
        }
        if m.is_empty() {
            out.push((t, seq, text));
            return;
        }
        self.buf.extend_from_slice(text.as_bytes());
        self.segs.push(Seg {
            start: self.buf.len() - text.len(),
            t,
            seq,
            text,
        });
        let held = self.buf.len() - self.held;
        if held >= WINDOW {
            let want = floor_boundary(&self.buf, self.buf.len() - MAX_SECRET);
            let force = held > HARD_LIMIT;
            self.release(m, want, force, out);
        }
    }

    /// Once the oldest chunk arrived at or before `now - HOLD`, releases every chunk that
    /// arrived at or before `now - HOLD / 2`.
    pub(crate) fn release_due(&mut self, m: &Masker, now: f64, out: &mut Vec<Piece>) {
        if self.segs.first().is_none_or(|s| s.t > now - HOLD) {
            return;
        }
        if now < self.retry_at {
            return;
        }
        let want = self
            .segs
            .iter()
            .find(|s| s.t > now - HOLD / 2.0)
            .map_or(self.buf.len(), |s| s.start);
        if !self.release(m, want, false, out) {
            self.retry_at = now + HOLD / 2.0;
        }
    }

    /// Releases everything (the stream ends).
    pub(crate) fn flush(&mut self, m: &Masker, out: &mut Vec<Piece>) {
        self.release(m, self.buf.len(), false, out);
    }

    /// When the oldest held chunk falls due, in seconds since the recording began.
    pub(crate) fn deadline(&self) -> Option<f64> {
        self.segs.first().map(|s| (s.t + HOLD).max(self.retry_at))
    }

    /// Sequence number of the oldest held chunk: nothing later may be written before it.
    pub(crate) fn first_held_seq(&self) -> Option<u64> {
        self.segs.first().map(|s| s.seq)
    }

    /// Releases the held text up to `want` (an offset in `buf`), or less when a match
    /// straddles `want` and `force` is false; false when nothing could go.
    fn release(&mut self, m: &Masker, want: usize, force: bool, out: &mut Vec<Piece>) -> bool {
        if want <= self.held || self.segs.is_empty() {
            return false;
        }
        // Matches over the look-behind and the held text; what lies in the look-behind was
        // written already, so a match that began there masks from the held text's start.
        let held = self.held;
        let ranges: Vec<Range<usize>> = m
            .ranges(&self.buf)
            .into_iter()
            .filter(|r| r.end > held)
            .map(|r| r.start.max(held)..r.end)
            .collect();
        let mut cut = want;
        if !force
            && cut < self.buf.len()
            && let Some(r) = ranges.iter().find(|r| r.start < cut && r.end > cut)
        {
            cut = r.start;
        }
        if cut <= held {
            return false;
        }
        self.emit(cut, &ranges, out);
        // Keep the last `CONTEXT` bytes before the cut as look-behind.
        let keep = floor_boundary(&self.buf, cut.saturating_sub(CONTEXT));
        let segs = std::mem::take(&mut self.segs);
        for seg in segs {
            let end = seg.start + seg.text.len();
            if end > cut {
                let skip = cut.saturating_sub(seg.start);
                self.segs.push(Seg {
                    start: seg.start.max(cut) - keep,
                    text: seg.text.slice(skip..seg.text.len()),
                    ..seg
                });
            }
        }
        self.buf.drain(..keep);
        self.held = cut - keep;
        if self.segs.is_empty() && self.buf.capacity() > IDLE_CAPACITY {
            // An idle stream goes back to holding its look-behind only. Not every release:
            // a trickle of echoes would shrink and regrow the buffer each time.
            self.buf.shrink_to_fit();
        }
        true
    }

    /// Pushes the chunks' text in `[0, cut)` with `ranges` masked: a chunk no mask touches
    /// goes out as it came (or its front, where `cut` falls inside it), uncopied.
    fn emit(&self, cut: usize, ranges: &[Range<usize>], out: &mut Vec<Piece>) {
        let mut ri = 0;
        for seg in &self.segs {
            if seg.start >= cut {
                break;
            }
            let end = (seg.start + seg.text.len()).min(cut);
            while ranges.get(ri).is_some_and(|r| r.end <= seg.start) {
                ri += 1;
            }
            if ranges.get(ri).is_none_or(|r| r.start >= end) {
                out.push((seg.t, seg.seq, seg.text.slice(0..end - seg.start)));
                continue;
            }
            let mut text = Vec::new();
            let mut pos = seg.start;
            while pos < end {
                while ranges.get(ri).is_some_and(|r| r.end <= pos) {
                    ri += 1;
                }
                match ranges.get(ri) {
                    Some(r) if r.start < end => {
                        if r.start >= pos {
                            text.extend_from_slice(&self.buf[pos..r.start]);
                            text.extend_from_slice(MASK.as_bytes());
                        }
                        pos = r.end.min(end);
                    }
                    _ => {
                        text.extend_from_slice(&self.buf[pos..end]);
                        pos = end;
                    }
                }
            }
            if !text.is_empty() {
                out.push((seg.t, seg.seq, Text::from_utf8_lossy(text)));
            }
        }
    }
}

fn floor_boundary(b: &[u8], mut i: usize) -> usize {
    i = i.min(b.len());
    while i > 0 && !is_boundary(b, i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !is_boundary(b, i) {
        i += 1;
    }
    i.min(b.len())
}

#[cfg(test)]
#[path = "mask_tests.rs"]
mod tests;
