//! A model of the line the engineer typed, following the readline editing keys.
//!
//! It is a second opinion next to the screen: it sees keys before the target echoes them (a
//! fast unbracketed paste), but it cannot know what history recall or tab completion put on
//! the line (the screen shows those). Keys it cannot follow leave the model as it was, or
//! empty it for a recall. At most `cap` bytes are kept; the rest of a longer line is ignored.

use super::keys::Key;

#[derive(Debug)]
pub struct TypedLine {
    buf: Vec<u8>,
    /// Byte offset of the cursor, always on a character boundary of `buf`.
    cursor: usize,
    cap: usize,
}

impl TypedLine {
    pub fn new(cap: usize) -> TypedLine {
        TypedLine {
            buf: Vec::new(),
            cursor: 0,
            cap,
        }
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.cursor = 0;
        if self.buf.capacity() > 4096 {
            self.buf.shrink_to(4096);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Inserts `text` at the cursor, as far as the cap allows.
    pub fn insert_str(&mut self, text: &[u8]) {
        for &b in text {
            self.insert(b);
        }
    }

    pub fn key(&mut self, key: Key) {
        match key {
            Key::Text(b) => self.insert(b),
            Key::Backspace => {
                let from = self.prev_boundary(self.cursor);
                self.buf.drain(from..self.cursor);
                self.cursor = from;
            }
            Key::Delete => {
                let to = self.next_boundary(self.cursor);
                self.buf.drain(self.cursor..to);
            }
            Key::KillWord => {
                let mut from = self.cursor;
                while from > 0 && self.buf.get(from - 1) == Some(&b' ') {
                    from -= 1;
                }
                while from > 0 && self.buf.get(from - 1).is_some_and(|&c| c != b' ') {
                    from -= 1;
                }
                self.buf.drain(from..self.cursor);
                self.cursor = from;
            }
            Key::KillToStart => {
                self.buf.drain(..self.cursor);
                self.cursor = 0;
            }
            Key::KillToEnd => self.buf.truncate(self.cursor),
            Key::Home => self.cursor = 0,
            Key::End => self.cursor = self.buf.len(),
            Key::Left => self.cursor = self.prev_boundary(self.cursor),
            Key::Right => self.cursor = self.next_boundary(self.cursor),
            Key::Recall | Key::Enter | Key::Interrupt => self.clear(),
            Key::PasteStart | Key::Other => {}
        }
    }

    fn insert(&mut self, b: u8) {
        if self.buf.len() >= self.cap {
            return;
        }
        let at = self.cursor.min(self.buf.len());
        self.buf.insert(at, b);
        self.cursor = at + 1;
        // A continuation byte belongs to the character before the cursor; keep the cursor on
        // a boundary by moving past any continuation bytes that follow it.
        while self
            .buf
            .get(self.cursor)
            .is_some_and(|&c| is_continuation(c))
        {
            self.cursor += 1;
        }
    }

    fn prev_boundary(&self, mut i: usize) -> usize {
        i = i.min(self.buf.len());
        if i == 0 {
            return 0;
        }
        i -= 1;
        while i > 0 && self.buf.get(i).is_some_and(|&c| is_continuation(c)) {
            i -= 1;
        }
        i
    }

    fn next_boundary(&self, mut i: usize) -> usize {
        if i >= self.buf.len() {
            return self.buf.len();
        }
        i += 1;
        while self.buf.get(i).is_some_and(|&c| is_continuation(c)) {
            i += 1;
        }
        i
    }
}

fn is_continuation(b: u8) -> bool {
    b & 0xc0 == 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(keys: &[Key]) -> String {
        let mut t = TypedLine::new(64);
        for &k in keys {
            t.key(k);
        }
        t.text()
    }

    fn text(s: &str) -> Vec<Key> {
        s.bytes().map(Key::Text).collect()
    }

    #[test]
    fn follows_editing_keys() {
        use Key::*;
        let cases: Vec<(Vec<Key>, &str)> = vec![
            (text("ls -la"), "ls -la"),
            ([text("lsx"), vec![Backspace]].concat(), "ls"),
            ([text("rm -rf /tmp"), vec![KillWord]].concat(), "rm -rf "),
            (
                [text("rm -rf /"), vec![KillToStart], text("ls")].concat(),
                "ls",
            ),
            (
                [text("rf /"), vec![Home], text("rm -")].concat(),
                "rm -rf /",
            ),
            (
                [text("# rm"), vec![Home, Delete, Delete, End], text(" x")].concat(),
                "rm x",
            ),
            ([text("abc"), vec![Left, Left, KillToEnd]].concat(), "a"),
            ([text("ls"), vec![Recall], text("x")].concat(), "x"),
            ([text("é"), vec![Backspace]].concat(), ""),
            ([text("aé"), vec![Left], text("b")].concat(), "abé"),
            (
                [text("a"), vec![Left, Left, Right, Right, Right], text("b")].concat(),
                "ab",
            ),
        ];
        for (keys, want) in cases {
            assert_eq!(typed(&keys), want, "keys {keys:?}");
        }
    }

    #[test]
    fn stays_within_its_cap() {
        let mut t = TypedLine::new(8);
        t.insert_str(b"0123456789abcdef");
        assert_eq!(t.len(), 8);
    }
}
