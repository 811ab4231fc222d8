//! Streaming, lossy UTF-8 decoding: bytes arrive in arbitrary chunks, text leaves whole.
//!
//! An incomplete multi-byte sequence at the end of a chunk is carried into the next one, so a
//! character split by the transport is never split in the recording; bytes that can never be
//! UTF-8 become U+FFFD, as `String::from_utf8_lossy` would make them.

/// Carries at most 3 bytes (the start of one incomplete character) between chunks.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    carry: Vec<u8>,
}

impl Utf8Stream {
    /// Decodes `bytes` after whatever was carried; keeps an incomplete tail for next time.
    pub(crate) fn decode(&mut self, bytes: &[u8]) -> String {
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
    pub(crate) fn finish(&mut self) -> String {
        if self.carry.is_empty() {
            String::new()
        } else {
            self.carry.clear();
            char::REPLACEMENT_CHARACTER.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> String {
        let mut d = Utf8Stream::default();
        let mut s: String = chunks.iter().map(|c| d.decode(c)).collect();
        s.push_str(&d.finish());
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
    fn never_emits_a_split_character() {
        let text = "ä€🦀x".repeat(50);
        let bytes = text.as_bytes();
        for size in 1..8 {
            let mut d = Utf8Stream::default();
            let mut all = String::new();
            for c in bytes.chunks(size) {
                let part = d.decode(c);
                assert!(!part.contains('\u{fffd}'), "size {size}");
                all.push_str(&part);
            }
            assert_eq!(all, text);
        }
    }
}
