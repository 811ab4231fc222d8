//! Streaming, lossy UTF-8 decoding: bytes arrive in arbitrary chunks, text leaves whole.
//!
//! An incomplete multi-byte sequence at the end of a chunk is carried into the next one, so a
//! character split by the transport is never split in the recording; bytes that can never be
//! UTF-8 become U+FFFD, as `String::from_utf8_lossy` would make them.
//!
//! Text leaves as `Text`: a chunk that is valid UTF-8 as it came (nearly all of them) is
//! checked once and kept, not copied.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;

/// Bytes known to be UTF-8, shared and sliced without copying.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Text(Bytes);

impl Text {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text in `range`, which must start and end on character boundaries (the callers
    /// cut where a regex match or a character boundary says); anything else is a bug, and
    /// gives the boundaries widened outward rather than broken text.
    pub(crate) fn slice(&self, range: Range<usize>) -> Text {
        let b = &self.0;
        let mut start = range.start.min(b.len());
        let mut end = range.end.clamp(start, b.len());
        debug_assert!(is_boundary(b, start) && is_boundary(b, end), "{range:?}");
        while !is_boundary(b, start) {
            start -= 1;
        }
        while !is_boundary(b, end) {
            end += 1;
        }
        Text(b.slice(start..end))
    }

    /// Checks `bytes`; on invalid UTF-8, a lossy copy.
    pub(crate) fn from_utf8_lossy(bytes: Vec<u8>) -> Text {
        match String::from_utf8(bytes) {
            Ok(s) => s.into(),
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned().into(),
        }
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Bytes::from(s.into_bytes()))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

/// Whether `i` is a character boundary of the UTF-8 in `b` (or its end).
pub(crate) fn is_boundary(b: &[u8], i: usize) -> bool {
    b.get(i).is_none_or(|&c| (c as i8) >= -0x40)
}

/// Carries at most 3 bytes (the start of one incomplete character) between chunks.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    carry: Vec<u8>,
}

impl Utf8Stream {
    /// Decodes `bytes` after whatever was carried; keeps an incomplete tail for next time.
    pub(crate) fn decode(&mut self, bytes: Bytes) -> Text {
        if self.carry.is_empty() {
            match std::str::from_utf8(&bytes) {
                Ok(_) => return Text(bytes),
                Err(e) if e.error_len().is_none() => {
                    let good = e.valid_up_to();
                    self.carry = bytes[good..].to_vec();
                    return Text(bytes.slice(..good));
                }
                Err(_) => {}
            }
        }
        self.decode_copy(&bytes).into()
    }

    /// `decode` for a chunk after a carried tail or with bytes that are not UTF-8.
    fn decode_copy(&mut self, bytes: &[u8]) -> String {
        let joined;
        let mut input: &[u8] = if self.carry.is_empty() {
            bytes
        } else {
            let mut v = std::mem::take(&mut self.carry);
            v.extend_from_slice(bytes);
            joined = v;
            &joined
        };
        let mut out = String::with_capacity(input.len());
        loop {
            match std::str::from_utf8(input) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (good, rest) = input.split_at(e.valid_up_to());
                    // Safe: from_utf8 just said these bytes are valid.
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            input = &rest[n..];
                        }
                        None => {
                            // A valid prefix of a character cut off by the chunk's end.
                            self.carry = rest.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    /// Ends the stream: a character still incomplete can never complete.
    pub(crate) fn finish(&mut self) -> Text {
        if self.carry.is_empty() {
            Text::default()
        } else {
            self.carry.clear();
            char::REPLACEMENT_CHARACTER.to_string().into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> String {
        let mut d = Utf8Stream::default();
        let mut s: String = chunks
            .iter()
            .map(|c| d.decode(Bytes::copy_from_slice(c)).to_string())
            .collect();
        s.push_str(&d.finish().to_string());
        s
    }

    #[test]
    fn decodes_across_chunk_boundaries() {
        let euro = "€".as_bytes(); // 3 bytes
        let crab = "🦀".as_bytes(); // 4 bytes
        let cases: &[(&[&[u8]], &str)] = &[
            (&[b"plain"], "plain"),
            (&[&euro[..1], &euro[1..]], "€"),
            (&[&euro[..2], &euro[2..]], "€"),
            (&[&crab[..1], &crab[1..2], &crab[2..3], &crab[3..]], "🦀"),
            (&[b"a\xff", b"b"], "a\u{fffd}b"),
            (&[b"\xe2\x82", b"x"], "\u{fffd}x"),
            (&[b"ok\xe2\x82"], "ok\u{fffd}"),
            (&[b"\xc3", b"\xa9t\xc3", b"\xa9"], "été"),
        ];
        for (chunks, want) in cases {
            assert_eq!(run(chunks), *want, "{chunks:?}");
        }
    }

    #[test]
    fn valid_text_is_shared_not_copied() {
        let mut d = Utf8Stream::default();
        let whole = Bytes::from_static("plain é text".as_bytes());
        assert_eq!(d.decode(whole.clone()).as_bytes().as_ptr(), whole.as_ptr());
        // A chunk cut inside a character: its front is shared, the tail carried.
        let cut = Bytes::from_static(&"ab€".as_bytes()[..3]);
        let front = d.decode(cut.clone());
        assert_eq!(
            (front.as_bytes(), front.as_bytes().as_ptr()),
            (&b"ab"[..], cut.as_ptr())
        );
        assert_eq!(d.decode(Bytes::from_static(&"€".as_bytes()[1..])), "€");
    }

    #[test]
    fn slices_stay_on_character_boundaries() {
        let t = Text::from("a€b");
        assert_eq!(t.slice(1..4), "€");
        assert_eq!(t.slice(0..0), "");
        assert_eq!(t.slice(4..99), "b");
    }

    #[test]
    fn never_emits_a_split_character() {
        let text = "ä€🦀x".repeat(50);
        let bytes = text.as_bytes();
        for size in 1..8 {
            let mut d = Utf8Stream::default();
            let mut all = String::new();
            for c in bytes.chunks(size) {
                let part = d.decode(Bytes::copy_from_slice(c)).to_string();
                assert!(!part.contains('\u{fffd}'), "size {size}");
                all.push_str(&part);
            }
            assert_eq!(all, text);
        }
    }
}
