//! Where a key stands in a TOML file: `roles[1].access[0].max_ttl` → line 40, column 1.
//!
//! Validation speaks in key paths; this turns them (and the byte spans serde reports) into
//! the `file:line:column` people jump to.

use std::collections::HashMap;
use std::ops::Range;

use toml_edit::{Item, Table, Value};

/// Every key path of one document with the byte span of its key (or value, if it has no key).
pub struct Locator {
    text: String,
    spans: Vec<(String, Range<usize>)>,
    by_path: HashMap<String, usize>,
}

impl Locator {
    /// Indexes `text`; a document that does not parse yields an empty index.
    pub fn new(text: &str) -> Locator {
        let mut spans = Vec::new();
        if let Ok(doc) = toml_edit::Document::parse(text) {
            walk_table(doc.as_table(), "", &mut spans);
        }
        let by_path = spans
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (p.clone(), i))
            .collect();
        Locator {
            text: text.to_string(),
            spans,
            by_path,
        }
    }

    /// Line and column (1-based) of `path`, or of its nearest ancestor that is in the file.
    pub fn position_of(&self, path: &str) -> (usize, usize) {
        let mut path = path;
        loop {
            if let Some(&i) = self.by_path.get(path) {
                return self.line_col(self.spans[i].1.start);
            }
            match parent(path) {
                Some(p) => path = p,
                None => return (1, 1),
            }
        }
    }

    /// The innermost key path whose span contains `offset`.
    pub fn path_at(&self, offset: usize) -> Option<&str> {
        self.spans
            .iter()
            .filter(|(_, r)| r.start <= offset && offset <= r.end)
            .max_by_key(|(p, r)| (p.len(), usize::MAX - (r.end - r.start)))
            .map(|(p, _)| p.as_str())
    }

    /// Line and column (1-based) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        (line, col)
    }
}

fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk_table(table: &Table, prefix: &str, out: &mut Vec<(String, Range<usize>)>) {
    for (key, item) in table.iter() {
        let path = join(prefix, key);
        let key_span = table.key(key).and_then(|k| k.span());
        let whole = match (key_span.clone(), item.span()) {
            (Some(k), Some(v)) => k.start.min(v.start)..k.end.max(v.end),
            (k, v) => k
                .or(v)
                .or_else(|| item.as_table().and_then(|t| t.span()))
                .unwrap_or(0..0),
        };
        // Point at the key when there is one: that is the line to edit.
        out.push((
            path.clone(),
            key_span.map_or(whole.clone(), |k| k.start..whole.end),
        ));
        walk_item(item, &path, out);
    }
}

fn walk_item(item: &Item, path: &str, out: &mut Vec<(String, Range<usize>)>) {
    match item {
        Item::Table(t) => walk_table(t, path, out),
        Item::ArrayOfTables(arr) => {
            for (i, t) in arr.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let span = t.span().unwrap_or(0..0);
                out.push((p.clone(), span));
                walk_table(t, &p, out);
            }
        }
        Item::Value(v) => walk_value(v, path, out),
        Item::None => {}
    }
}

fn walk_value(value: &Value, path: &str, out: &mut Vec<(String, Range<usize>)>) {
    match value {
        Value::Array(arr) => {
            for (i, v) in arr.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push((p.clone(), v.span().unwrap_or(0..0)));
                walk_value(v, &p, out);
            }
        }
        Value::InlineTable(t) => {
            for (key, v) in t.iter() {
                let p = join(path, key);
                let span = t
                    .key(key)
                    .and_then(|k| k.span())
                    .or(v.span())
                    .unwrap_or(0..0);
                out.push((p.clone(), span));
                walk_value(v, &p, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[server]\nhostname = \"b\"\n\n[[roles]]\nname = \"a\"\n\n[[roles]]\nname = \"b\"\n[[roles.access]]\nmax_ttl = \"1h\"\nlogins = [\"x\", \"y\"]\n";

    #[test]
    fn finds_keys_in_arrays_of_tables() {
        let loc = Locator::new(DOC);
        assert_eq!(loc.position_of("server.hostname"), (2, 1));
        assert_eq!(loc.position_of("roles[1].name"), (8, 1));
        assert_eq!(loc.position_of("roles[1].access[0].max_ttl"), (10, 1));
        assert_eq!(loc.position_of("roles[1].access[0].logins[1]"), (11, 16));
        // A key that is absent points at its table.
        assert_eq!(loc.position_of("roles[1].access[0].approvers").0, 9);
    }

    #[test]
    fn path_at_offset() {
        let loc = Locator::new(DOC);
        let off = DOC.find("max_ttl").unwrap();
        assert_eq!(loc.path_at(off), Some("roles[1].access[0].max_ttl"));
    }
}
