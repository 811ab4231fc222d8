//! The one normal form every command is matched in, so that trivial spacing and quoting
//! variations do not slip past a rule.
//!
//! What is normalised (and nothing else):
//! - line ends: `\r\n` and `\r` become `\n` (each line is its own command boundary);
//! - a backslash before a line end (a continued line) becomes a space;
//! - every run of other whitespace (spaces, tabs, Unicode spaces) becomes one space, and the
//!   text is trimmed;
//! - the quoting characters `'`, `"` and `\` are removed, so `rm -rf "/"`, `rm -rf '/etc'` and
//!   `\rm -rf /` read as `rm -rf /`.
//!
//! Case is kept: rules that should ignore case say `(?i)`. Removing quotes can only make more
//! text look like a command (`echo "a; rm -rf /"` reads as two commands), never less; the
//! shipped rules accept that rare false positive.

use std::borrow::Cow;

/// `command` in normal form; borrowed when it already is.
pub fn normalise(command: &str) -> Cow<'_, str> {
    if is_normal(command) {
        return Cow::Borrowed(command);
    }
    let mut out = String::with_capacity(command.len());
    let mut space = false;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        let c = match c {
            '\\' if matches!(chars.peek(), Some('\n' | '\r')) => {
                if chars.next() == Some('\r') && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                ' '
            }
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                '\n'
            }
            c => c,
        };
        match c {
            '\'' | '"' | '\\' => {}
            '\n' => {
                trim_end_space(&mut out);
                out.push('\n');
                space = false;
            }
            c if c.is_whitespace() => space = true,
            c => {
                if space && !out.is_empty() && !out.ends_with('\n') {
                    out.push(' ');
                }
                space = false;
                out.push(c);
            }
        }
    }
    trim_end_space(&mut out);
    Cow::Owned(out)
}

fn trim_end_space(s: &mut String) {
    while s.ends_with(' ') {
        s.pop();
    }
}

/// Whether `normalise` would return `s` unchanged (the common case: no allocation).
fn is_normal(s: &str) -> bool {
    let b = s.as_bytes();
    if b.first() == Some(&b' ') || b.last() == Some(&b' ') {
        return false;
    }
    let mut prev = 0u8;
    for &c in b {
        match c {
            b'\'' | b'"' | b'\\' | b'\r' | b'\t' | 0x0b | 0x0c => return false,
            b' ' if prev == b' ' || prev == b'\n' => return false,
            b'\n' if prev == b' ' => return false,
            c if c >= 0x80 => return false,
            _ => {}
        }
        prev = c;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        let cases = [
            ("ls -la", "ls -la"),
            ("  rm   -rf\t/  ", "rm -rf /"),
            ("rm -rf \"/\"", "rm -rf /"),
            ("rm -rf '/etc'", "rm -rf /etc"),
            ("\\rm -rf /", "rm -rf /"),
            ("a\r\nb\rc", "a\nb\nc"),
            ("rm -rf \\\n /", "rm -rf /"),
            ("rm -rf \\\r\n /", "rm -rf /"),
            ("a  \n  b", "a\nb"),
            ("rm\u{a0}-rf /", "rm -rf /"),
            ("", ""),
            ("   ", ""),
            ("échec  x", "échec x"),
        ];
        for (input, want) in cases {
            assert_eq!(normalise(input), want, "input {input:?}");
        }
    }

    #[test]
    fn already_normal_text_is_borrowed() {
        assert!(matches!(normalise("rm -rf /tmp/x"), Cow::Borrowed(_)));
        assert!(matches!(normalise("a\nb"), Cow::Borrowed(_)));
        assert!(matches!(normalise("a  b"), Cow::Owned(_)));
    }
}
