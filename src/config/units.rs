//! Durations (`90s`, `15m`, `1h`, `7d`) and sizes (`64MiB`) as people write them in TOML.

use std::time::Duration;

/// Parses `90s`, `15m`, `1h`, `2h30m`, `7d`. A bare number is refused: the unit is never guessed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; write e.g. \"90s\", \"15m\" or \"1h\"".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "bad duration {text:?}: unknown unit {ch:?} (use s, m, h or d)"
                ));
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("bad duration {text:?}: a number must come before {ch:?}"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("duration {text:?} is too large"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "bad duration {text:?}: the number {digits} has no unit (s, m, h or d)"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration the way `parse_duration` reads it: `15m`, `1h30m`, `45s`.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, name) in [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
        if secs >= unit {
            out.push_str(&format!("{}{}", secs / unit, name));
            secs %= unit;
        }
    }
    out
}

/// Parses `64MiB`, `512KiB`, `1GiB`, `1000B` or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad size {text:?}: write e.g. \"64MiB\""))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "bad size {text:?}: unknown unit {other:?} (B, KiB, MiB, GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let table = [
            ("90s", Ok(90)),
            ("15m", Ok(900)),
            ("1h", Ok(3600)),
            ("2h30m", Ok(9000)),
            ("7d", Ok(604_800)),
            ("15", Err("has no unit")),
            ("m", Err("a number must come before")),
            ("5y", Err("unknown unit")),
            ("", Err("empty")),
        ];
        for (text, want) in table {
            match (parse_duration(text), want) {
                (Ok(d), Ok(secs)) => assert_eq!(d.as_secs(), secs, "{text}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn duration_round_trip() {
        for secs in [1, 59, 60, 900, 3600, 5400, 90_061] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("5MB").unwrap_err().contains("unknown unit"));
    }
}
