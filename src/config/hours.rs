//! Allowed hours of an access rule: `"Mon-Fri 08:00-18:00 UTC"`.
//!
//! Days are a range or a comma list (`Mon,Wed,Fri`, `Sat-Sun`, `*`); times are a half-open
//! `HH:MM-HH:MM` window that may wrap past midnight (`22:00-06:00`); the zone is `UTC` or a
//! fixed offset such as `+02:00`. The time of day is always passed in, never read here.

use std::fmt;

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

#[derive(Clone, PartialEq, Eq)]
pub struct Hours {
    /// Bit `d` set: weekday `d` (0 = Monday) is allowed.
    days: u8,
    /// Minutes after midnight, local to `offset_minutes`.
    start: u32,
    end: u32,
    offset_minutes: i32,
    text: String,
}

impl fmt::Debug for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hours({:?})", self.text)
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Hours {
    pub fn parse(text: &str) -> Result<Hours, String> {
        let usage = || format!("bad hours {text:?}: write e.g. \"Mon-Fri 08:00-18:00 UTC\"");
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [days, times, zone] = parts.as_slice() else {
            return Err(usage());
        };
        let days = parse_days(days).ok_or_else(usage)?;
        let (start, end) = times.split_once('-').ok_or_else(usage)?;
        let start = parse_hhmm(start).ok_or_else(usage)?;
        let end = parse_hhmm(end).ok_or_else(usage)?;
        if start == end {
            return Err(format!("bad hours {text:?}: the window is empty"));
        }
        let offset_minutes = parse_zone(zone).ok_or_else(|| {
            format!("bad hours {text:?}: zone must be UTC or an offset such as +02:00")
        })?;
        Ok(Hours {
            days,
            start,
            end,
            offset_minutes,
            text: text.to_string(),
        })
    }

    /// Whether the instant `unix_secs` falls inside these hours.
    pub fn contains(&self, unix_secs: i64) -> bool {
        let local = unix_secs + i64::from(self.offset_minutes) * 60;
        let days_since_epoch = local.div_euclid(86_400);
        let minute = (local.rem_euclid(86_400) / 60) as u32;
        // 1970-01-01 was a Thursday (index 3 with Monday = 0).
        let weekday = (days_since_epoch + 3).rem_euclid(7) as u8;
        if self.start < self.end {
            self.day_allowed(weekday) && (self.start..self.end).contains(&minute)
        } else if minute >= self.start {
            // Window wraps past midnight: the evening part belongs to today…
            self.day_allowed(weekday)
        } else if minute < self.end {
            // …and the early-morning part to the day it started.
            self.day_allowed((weekday + 6) % 7)
        } else {
            false
        }
    }

    /// When the allowed stretch that contains `unix_secs` ends (callers check `contains`
    /// first): the first instant after it that is outside. Windows that meet, such as
    /// `00:00-24:00` on consecutive days, count as one; `None` when they never end.
    pub fn ends_after(&self, unix_secs: i64) -> Option<i64> {
        let mut t = unix_secs;
        // Seven days of windows at most; an eighth that meets the last means every day.
        for _ in 0..8 {
            t = self.window_end(t);
            if !self.contains(t) {
                return Some(t);
            }
        }
        None
    }

    /// The end of the window that contains `unix_secs` (which must be inside one).
    fn window_end(&self, unix_secs: i64) -> i64 {
        let offset = i64::from(self.offset_minutes) * 60;
        let local = unix_secs + offset;
        let midnight = local - local.rem_euclid(86_400);
        let minute = (local.rem_euclid(86_400) / 60) as u32;
        let end = i64::from(self.end) * 60;
        let local_end = if self.start > self.end && minute >= self.start {
            // The evening part of a window that wraps: it ends tomorrow.
            midnight + 86_400 + end
        } else {
            midnight + end
        };
        local_end - offset
    }

    fn day_allowed(&self, weekday: u8) -> bool {
        self.days & (1 << weekday) != 0
    }
}

fn day_index(name: &str) -> Option<u8> {
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(name))
        .map(|i| i as u8)
}

fn parse_days(text: &str) -> Option<u8> {
    if text == "*" {
        return Some(0x7f);
    }
    let mut mask = 0u8;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day_index(a)?, day_index(b)?);
                let mut d = a;
                loop {
                    mask |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << day_index(part)?,
        }
    }
    Some(mask)
}

fn parse_hhmm(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    // 24:00 is accepted as the end of the day.
    if (h < 24 && m < 60) || (h == 24 && m == 0) {
        Some(h * 60 + m)
    } else {
        None
    }
}

fn parse_zone(text: &str) -> Option<i32> {
    if text.eq_ignore_ascii_case("UTC") || text == "Z" {
        return Some(0);
    }
    let text = text.strip_prefix("UTC").unwrap_or(text);
    let sign = match text.chars().next()? {
        '+' => 1,
        '-' => -1,
        _ => return None,
    };
    let minutes = parse_hhmm(&text[1..])? as i32;
    (minutes <= 14 * 60).then_some(sign * minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-23 is a Monday.
    const MON_0000_UTC: i64 = 1_795_392_000;

    fn at(day: i64, hh: i64, mm: i64) -> i64 {
        MON_0000_UTC + day * 86_400 + hh * 3600 + mm * 60
    }

    #[test]
    fn weekday_anchor_is_monday() {
        let h = Hours::parse("Mon 00:00-24:00 UTC").unwrap();
        assert!(h.contains(at(0, 12, 0)));
        assert!(!h.contains(at(1, 12, 0)));
    }

    #[test]
    fn office_hours() {
        let h = Hours::parse("Mon-Fri 08:00-18:00 UTC").unwrap();
        let table = [
            (at(0, 8, 0), true),
            (at(0, 7, 59), false),
            (at(0, 17, 59), true),
            (at(0, 18, 0), false),
            (at(4, 12, 0), true),
            (at(5, 12, 0), false),
            (at(6, 12, 0), false),
        ];
        for (t, want) in table {
            assert_eq!(h.contains(t), want, "at {t}");
        }
    }

    #[test]
    fn wrapping_window_and_offset() {
        let h = Hours::parse("Fri 22:00-06:00 UTC").unwrap();
        assert!(h.contains(at(4, 23, 0)));
        assert!(
            h.contains(at(5, 5, 0)),
            "Saturday early morning belongs to Friday's night"
        );
        assert!(
            !h.contains(at(0, 5, 0)),
            "Monday early morning belongs to Sunday"
        );
        let h = Hours::parse("Mon-Fri 09:00-17:00 +02:00").unwrap();
        assert!(h.contains(at(0, 7, 0)), "07:00 UTC is 09:00 at +02:00");
        assert!(!h.contains(at(0, 6, 59)));
    }

    #[test]
    fn allowed_time_ends_where_the_window_does() {
        let h = Hours::parse("Mon-Fri 08:00-18:00 UTC").unwrap();
        assert_eq!(h.ends_after(at(0, 17, 55)), Some(at(0, 18, 0)));
        assert_eq!(h.ends_after(at(0, 8, 0)), Some(at(0, 18, 0)));
        // A window past midnight ends the next morning, whichever side of midnight.
        let h = Hours::parse("Fri 22:00-06:00 UTC").unwrap();
        assert_eq!(h.ends_after(at(4, 23, 0)), Some(at(5, 6, 0)));
        assert_eq!(h.ends_after(at(5, 5, 59)), Some(at(5, 6, 0)));
        // An offset moves the end with it.
        let h = Hours::parse("Mon-Fri 09:00-17:00 +02:00").unwrap();
        assert_eq!(h.ends_after(at(0, 7, 0)), Some(at(0, 15, 0)));
        // Whole days that meet are one stretch; every day is never over.
        let h = Hours::parse("Mon-Wed 00:00-24:00 UTC").unwrap();
        assert_eq!(h.ends_after(at(0, 12, 0)), Some(at(3, 0, 0)));
        let h = Hours::parse("Sat-Sun 20:00-08:00 +01:00").unwrap();
        assert_eq!(h.ends_after(at(5, 20, 0)), Some(at(6, 7, 0)));
        assert_eq!(h.ends_after(at(6, 6, 59)), Some(at(6, 7, 0)));
        assert_eq!(h.ends_after(at(6, 20, 0)), Some(at(7, 7, 0)));
        let h = Hours::parse("* 00:00-24:00 UTC").unwrap();
        assert_eq!(h.ends_after(at(2, 3, 0)), None);
        let h = Hours::parse("* 06:00-06:01 +14:00").unwrap();
        assert!(h.contains(at(2, 16, 0)));
        assert_eq!(h.ends_after(at(2, 16, 0)), Some(at(2, 16, 1)));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "Mon-Fri",
            "Mon-Fru 08:00-18:00 UTC",
            "Mon 25:00-26:00 UTC",
            "Mon 08:00-08:00 UTC",
            "Mon 08:00-18:00 CEST",
        ] {
            assert!(Hours::parse(bad).is_err(), "{bad}");
        }
    }
}
