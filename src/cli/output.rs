//! Printing: aligned tables for people, JSON for scripts, times in UTC.

use std::borrow::Cow;

use serde::Serialize;

pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `2026-11-22 10:15 UTC`.
pub fn time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map_or_else(
        || t.to_string(),
        |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// `10:15 UTC` when today, else the full time.
pub fn short_time(t: i64, now: i64) -> String {
    if t / 86_400 == now / 86_400 {
        chrono::DateTime::from_timestamp(t, 0)
            .map_or_else(|| t.to_string(), |d| d.format("%H:%M UTC").to_string())
    } else {
        time(t)
    }
}

/// `text` as a terminal may show it: what would redraw the screen (a carriage return, an
/// escape sequence, a bidirectional override; `model::redraws_terminal`) is written as its
/// Rust escape, so a reason or a command from someone else cannot disguise what is around it.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(jitgate::model::redraws_terminal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if jitgate::model::redraws_terminal(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Prints rows under a header, columns padded to their widest cell; the last column free.
/// Every cell is `clean`ed.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<Cow<str>>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| clean(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(|cell| cell.as_ref()).collect());
    }
}
