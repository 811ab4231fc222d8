//! The asciicast v2 format: the header, event lines, and a strict validator.
//!
//! A file is newline-delimited JSON: a header object on the first line, then one event per
//! line, `[time, code, data]`, time in seconds (a float) since the header's timestamp, never
//! decreasing; code `o` output, `i` input, `r` resize (data `"WxH"`), `m` marker.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::utf8::Text;

/// The header line. Field order is the order written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub version: u8,
    pub width: u16,
    pub height: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_time_limit: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

impl Header {
    /// The header as one line, newline included.
    pub fn line(&self) -> String {
        // A struct of strings and numbers always serialises.
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// One event line, newline included. `t` is written with microsecond precision.
pub fn event_line(t: f64, code: char, data: &str) -> String {
    let mut line = Vec::with_capacity(data.len() + 32);
    push_event_line(&mut line, t, code, data);
    // Built from a `&str`, `char`s and ASCII only.
    String::from_utf8(line).unwrap_or_default()
}

/// Appends one event line to `out`: what `event_line` returns, without a `String` of its own.
///
/// The recorder's hot path: terminal output is dense with `\r\n` and escape sequences, and a
/// general JSON serialiser spends most of its time on them, so each byte is escaped here
/// from a table, the same way `serde_json` writes strings.
pub fn push_event_line(out: &mut Vec<u8>, t: f64, code: char, data: &str) {
    push_event_utf8(out, t, code, data.as_bytes());
}

/// `push_event_line` for the recorder's decoded text.
pub(crate) fn push_event_text(out: &mut Vec<u8>, t: f64, code: char, data: &Text) {
    push_event_utf8(out, t, code, data.as_bytes());
}

/// `data` must be UTF-8 (both callers' types say it is): it is written as it is, escaped.
fn push_event_utf8(out: &mut Vec<u8>, t: f64, code: char, data: &[u8]) {
    use std::io::Write;
    let t = if t.is_finite() && t > 0.0 { t } else { 0.0 };
    // Writing into a `Vec` cannot fail.
    let _ = write!(out, "[{t:.6}, \"{code}\", \"");
    push_json_escaped(out, data);
    out.extend_from_slice(b"\"]\n");
}

/// How each byte is written inside a JSON string: 0 as is, `u` as `\u00XX`, else `\` and it.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

fn push_json_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    // Most output needs no more than this; `push_escape` grows the rest.
    out.reserve(bytes.len() + bytes.len() / 4);
    // Clean bytes are copied in runs, found eight at a time: a word's lowest flagged byte is
    // exactly the first one to escape, so a run ends there and the next starts after it.
    let mut copied = 0;
    let mut i = 0;
    while let Some(word) = bytes.get(i..i + 8)
        && let Ok(w) = <[u8; 8]>::try_from(word)
    {
        let flags = escape_flags(u64::from_le_bytes(w));
        if flags == 0 {
            i += 8;
            continue;
        }
        let at = i + (flags.trailing_zeros() / 8) as usize;
        out.extend_from_slice(&bytes[copied..at]);
        push_escape(out, bytes[at]);
        i = at + 1;
        copied = i;
    }
    for (at, &b) in bytes.iter().enumerate().skip(i) {
        if ESCAPE[b as usize] != 0 {
            out.extend_from_slice(&bytes[copied..at]);
            push_escape(out, b);
            copied = at + 1;
        }
    }
    out.extend_from_slice(&bytes[copied..]);
}

/// Writes one byte that `ESCAPE` says needs escaping.
fn push_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match ESCAPE[b as usize] {
        0 => out.push(b),
        b'u' => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(b >> 4) as usize],
            HEX[(b & 15) as usize],
        ]),
        e => out.extend_from_slice(&[b'\\', e]),
    }
}

/// The high bit of each of the eight bytes in `w` that is a control character, `"` or `\\`.
/// The lowest flag is exact; flags above it can be spurious (a borrow carries into them).
fn escape_flags(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte's high bit survives these only where the byte is below the constant (or equal
    // to it, after the xor): the classic "has a zero byte" test.
    let below_space = w.wrapping_sub(ONES * 0x20) & !w;
    let quote = w ^ (ONES * b'"' as u64);
    let backslash = w ^ (ONES * b'\\' as u64);
    let is_quote = quote.wrapping_sub(ONES) & !quote;
    let is_backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below_space | is_quote | is_backslash) & HIGH
}

/// One parsed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time: f64,
    pub code: char,
    pub data: String,
}

/// What a valid file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct CastSummary {
    pub header: Header,
    pub events: usize,
    /// Time of the last event (0 without events).
    pub duration: f64,
    pub output_events: usize,
    pub input_events: usize,
    pub resizes: usize,
    pub markers: Vec<String>,
    /// All `o` data concatenated.
    pub output: String,
}

/// Parses the header line; errors say what is wrong.
pub fn parse_header(line: &str) -> Result<Header, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("header: not JSON: {e}"))?;
    let obj = v.as_object().ok_or("header: not a JSON object")?;
    match obj.get("version") {
        Some(n) if n.as_u64() == Some(2) => {}
        Some(other) => return Err(format!("header: version is {other}, expected 2")),
        None => return Err("header: no version".into()),
    }
    for key in ["width", "height"] {
        match obj.get(key) {
            Some(n) if n.as_u64().is_some_and(|n| n > 0 && n <= u16::MAX as u64) => {}
            Some(other) => return Err(format!("header: {key} is {other}, expected an integer")),
            None => return Err(format!("header: no {key}")),
        }
    }
    if let Some(t) = obj.get("timestamp")
        && !(t.is_i64() || t.is_u64())
    {
        return Err(format!("header: timestamp is {t}, expected an integer"));
    }
    for key in ["duration", "idle_time_limit"] {
        if let Some(n) = obj.get(key)
            && !n.is_number()
        {
            return Err(format!("header: {key} is {n}, expected a number"));
        }
    }
    for key in ["command", "title"] {
        if let Some(s) = obj.get(key)
            && !s.is_string()
        {
            return Err(format!("header: {key} is {s}, expected a string"));
        }
    }
    if let Some(env) = obj.get("env") {
        let env = env.as_object().ok_or("header: env is not an object")?;
        if let Some((k, _)) = env.iter().find(|(_, v)| !v.is_string()) {
            return Err(format!("header: env.{k} is not a string"));
        }
    }
    serde_json::from_value(v).map_err(|e| format!("header: {e}"))
}

/// Parses one event line (without its newline).
pub fn parse_event(line: &str) -> Result<Event, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let arr = v.as_array().ok_or("not a JSON array")?;
    if arr.len() != 3 {
        return Err(format!("{} elements, expected 3", arr.len()));
    }
    let time = arr[0]
        .as_f64()
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or_else(|| format!("time {} is not a number >= 0", arr[0]))?;
    let code = match arr[1].as_str() {
        Some(c @ ("o" | "i" | "r" | "m")) => c.chars().next().unwrap_or('o'),
        _ => return Err(format!("code {} is not one of o, i, r, m", arr[1])),
    };
    let data = arr[2]
        .as_str()
        .ok_or_else(|| format!("data {} is not a string", arr[2]))?
        .to_string();
    if code == 'r' && parse_size(&data).is_none() {
        return Err(format!("resize data {data:?} is not \"WxH\""));
    }
    Ok(Event { time, code, data })
}

/// `"120x40"` → (120, 40).
pub fn parse_size(s: &str) -> Option<(u16, u16)> {
    let (w, h) = s.split_once('x')?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(w) || !digits(h) {
        return None;
    }
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// Checks `text` against the asciicast v2 specification; errors name the line.
pub fn validate_cast(text: &str) -> Result<CastSummary, String> {
    if text.is_empty() {
        return Err("empty file".into());
    }
    if !text.ends_with('\n') {
        return Err("the last line does not end with a newline".into());
    }
    let mut lines = text[..text.len() - 1].split('\n');
    let header =
        parse_header(lines.next().unwrap_or_default()).map_err(|e| format!("line 1: {e}"))?;
    let mut s = CastSummary {
        header,
        events: 0,
        duration: 0.0,
        output_events: 0,
        input_events: 0,
        resizes: 0,
        markers: Vec::new(),
        output: String::new(),
    };
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let e = parse_event(line).map_err(|e| format!("line {n}: {e}"))?;
        if e.time < s.duration {
            return Err(format!(
                "line {n}: time {} is before the previous event's {}",
                e.time, s.duration
            ));
        }
        s.duration = e.time;
        s.events += 1;
        match e.code {
            'o' => {
                s.output_events += 1;
                s.output.push_str(&e.data);
            }
            'i' => s.input_events += 1,
            'r' => s.resizes += 1,
            _ => s.markers.push(e.data),
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"version":2,"width":80,"height":24,"timestamp":1700000000}"#;

    fn cast(events: &[&str]) -> String {
        let mut s = format!("{HEADER}\n");
        for e in events {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    #[test]
    fn accepts_valid_files() {
        let s = validate_cast(&cast(&[
            r#"[0.1, "o", "hi\u001b[0m"]"#,
            r#"[0.1, "i", "l"]"#,
            r#"[1, "r", "100x30"]"#,
            r#"[2.5, "m", "blocked"]"#,
        ]))
        .expect("valid");
        assert_eq!((s.events, s.output_events, s.resizes), (4, 1, 1));
        assert_eq!(s.output, "hi\u{1b}[0m");
        assert_eq!(s.markers, vec!["blocked"]);
        assert_eq!(s.duration, 2.5);
        assert!(validate_cast(&cast(&[])).is_ok());
    }

    #[test]
    fn rejects_what_the_specification_forbids() {
        let bad_headers = [
            r#"{"version":1,"width":80,"height":24}"#,
            r#"{"width":80,"height":24}"#,
            r#"{"version":2,"width":80.5,"height":24}"#,
            r#"{"version":2,"height":24}"#,
            r#"{"version":2,"width":80,"height":"24"}"#,
            r#"{"version":2,"width":80,"height":24,"timestamp":1.5}"#,
            r#"{"version":2,"width":80,"height":24,"env":{"TERM":1}}"#,
            r#"{"version":2,"width":80,"height":24,"title":3}"#,
            r#"[2,80,24]"#,
        ];
        for h in bad_headers {
            assert!(validate_cast(&format!("{h}\n")).is_err(), "{h}");
        }
        let bad_events = [
            r#"[-0.1, "o", "x"]"#,
            r#"["0.1", "o", "x"]"#,
            r#"[0.1, "x", "x"]"#,
            r#"[0.1, "o", 5]"#,
            r#"[0.1, "o"]"#,
            r#"[0.1, "o", "x", 1]"#,
            r#"[0.1, "r", "80,24"]"#,
            r#"[0.1, "r", "80x"]"#,
            r#"{"t":0.1}"#,
            r#"[0.1, "o", "x"#,
            "",
        ];
        for e in bad_events {
            let err = validate_cast(&cast(&[e])).expect_err(e);
            assert!(err.starts_with("line 2:"), "{e}: {err}");
        }
        let err =
            validate_cast(&cast(&[r#"[2, "o", "a"]"#, r#"[1, "o", "b"]"#])).expect_err("order");
        assert!(err.starts_with("line 3:"), "{err}");
        assert!(validate_cast(HEADER).is_err(), "no final newline");
        assert!(validate_cast("").is_err());
    }

    #[test]
    fn escapes_strings_exactly_as_serde_json_does() {
        let every_ascii: String = (0u8..0x80).map(char::from).collect();
        let mut cases: Vec<String> = [
            every_ascii.as_str(),
            "",
            "plain",
            "\r\n\u{1b}[1;31mred\u{1b}[0m\t\\\"",
            "été ✓ 𝄞 \u{7f}\u{80}\u{2028}",
        ]
        .map(String::from)
        .to_vec();
        // Every character at every offset of a word, so that both the eight-byte path and
        // the byte path meet it.
        for c in (0u8..0x80).map(char::from).chain(['é', '✓']) {
            for at in 0..17 {
                let mut s = "abcdefghijklmnopq".to_string();
                s.insert(at, c);
                cases.push(s);
            }
        }
        for data in &cases {
            let mut ours = Vec::new();
            push_event_line(&mut ours, 0.5, 'o', data);
            let theirs = format!(
                "[0.500000, \"o\", {}]\n",
                serde_json::to_string(data).unwrap()
            );
            assert_eq!(String::from_utf8(ours).unwrap(), theirs, "{data:?}");
        }
    }

    #[test]
    fn writes_what_it_reads() {
        let line = event_line(1.25, 'o', "a\"b\u{1b}\n");
        assert_eq!(line, "[1.250000, \"o\", \"a\\\"b\\u001b\\n\"]\n");
        let e = parse_event(line.trim_end()).expect("parses");
        assert_eq!(
            (e.time, e.code, e.data.as_str()),
            (1.25, 'o', "a\"b\u{1b}\n")
        );
        assert_eq!(event_line(-1.0, 'm', "x"), "[0.000000, \"m\", \"x\"]\n");
        let h = Header {
            version: 2,
            width: 80,
            height: 24,
            timestamp: Some(1),
            idle_time_limit: None,
            command: None,
            title: Some("t".into()),
            env: BTreeMap::from([("TERM".into(), "xterm".into())]),
        };
        assert_eq!(parse_header(h.line().trim_end()), Ok(h));
    }
}
