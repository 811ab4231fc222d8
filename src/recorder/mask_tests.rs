//! Masking across chunks: the default patterns, split secrets, hold-back bounds.

use super::*;
use crate::config::DEFAULT_MASKS;

fn defaults() -> Masker {
    let p: Vec<String> = DEFAULT_MASKS.iter().map(|s| s.to_string()).collect();
    Masker::new(&p).expect("default masks compile")
}

const PEM: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\n\
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
QyNTUxOQAAACDm1wH3JY4yHbq0Yk0tF3l9kGf0jvQdWm5S0b3s6jXq5wAAAJhQ0VRGUNFU\n\
RgAAAAtzc2gtZWQyNTUxOQAAACDm1wH3JY4yHbq0Yk0tF3l9kGf0jvQdWm5S0b3s6jXq5w\n\
-----END OPENSSH PRIVATE KEY-----";

/// Feeds `chunks` one per millisecond, then ends the stream; returns the recorded text.
fn stream(m: &Masker, chunks: &[&str]) -> (String, Vec<Piece>) {
    let mut s = MaskStream::default();
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        s.push(m, i as f64 * 0.001, i as u64, (*c).into(), &mut out);
    }
    s.flush(m, &mut out);
    assert!(s.segs.is_empty() && s.buf.len() == s.held && s.held <= CONTEXT);
    (out.iter().map(|p| p.2.to_string()).collect(), out)
}

fn chunked(text: &str, size: usize) -> Vec<&str> {
    let mut v = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut n = size.min(rest.len());
        while !rest.is_char_boundary(n) {
            n += 1;
        }
        let (a, b) = rest.split_at(n);
        v.push(a);
        rest = b;
    }
    v
}

#[test]
fn default_masks_cover_the_usual_secrets() {
    let m = defaults();
    let cases = [
        ("ls -la\n", "ls -la\n"),
        ("key AKIAIOSFODNN7EXAMPLE here", "key [MASKED] here"),
        (
            "Authorization: Bearer abc.def-ghi_123",
            "Authorization: [MASKED]",
        ),
        ("PASSWORD=hunter22 next", "[MASKED] next"),
        ("pwd: s3cret", "[MASKED]"),
        ("pwd\n", "pwd\n"),
        ("AKIAIOSFODNN7EXAMPLEX", "AKIAIOSFODNN7EXAMPLEX"),
        // Word boundaries are ASCII: a secret beside a non-ASCII letter is still masked.
        ("clé=AKIAIOSFODNN7EXAMPLEé", "clé=[MASKED]é"),
        ("mot_de_passeépassword=x", "mot_de_passeé[MASKED]"),
        ("export DB_PASSWORD=hunter2 next", "export DB[MASKED] next"),
        ("PGPASSWORD=hunter2 psql", "[MASKED] psql"),
        // `pg` counts wherever it stands, in any case, before any of the three words.
        ("export MYPGPassWd: hunter2", "export MY[MASKED]"),
        ("x_pgpwd=hunter2", "x_[MASKED]"),
        ("Passwd = 'a b' next", "[MASKED] next"),
        ("MYSQL_PWD='a b' mysql", "MYSQL[MASKED] mysql"),
        (
            r#"{"user": "x", "password": "two words"}"#,
            r#"{"user": "x", "[MASKED]}"#,
        ),
        (
            "mysql -u root -phunter2 shop",
            "mysql -u root -p[MASKED] shop",
        ),
        (
            "mysqldump -h db -pS3cr3t --all",
            "mysqldump -h db -p[MASKED] --all",
        ),
        ("mysql -u root -p shop", "mysql -u root -p shop"),
        ("mysql --port 3306", "mysql --port 3306"),
        // A prompt does not mask what follows it on the next line; nor do look-alikes.
        (
            "Password: \r\nroot@db1:~# ls",
            "Password: \r\nroot@db1:~# ls",
        ),
        ("OLDPWD=/root", "OLDPWD=/root"),
    ];
    for (input, want) in cases {
        assert_eq!(m.mask(input), want, "{input:?}");
    }
    assert_eq!(m.mask(&format!("a\n{PEM}\nb")), "a\n[MASKED]\nb");
}

#[test]
fn a_key_block_split_over_many_chunks_is_masked() {
    let m = defaults();
    let text = format!("$ cat id_ed25519\r\n{PEM}\r\n$ ");
    for size in [1, 3, 7, 16, 50] {
        let chunks = chunked(&text, size);
        assert!(chunks.len() >= 5);
        let (got, _) = stream(&m, &chunks);
        assert_eq!(
            got, "$ cat id_ed25519\r\n[MASKED]\r\n$ ",
            "chunk size {size}"
        );
    }
}

#[test]
fn an_aws_key_split_in_two_chunks_is_masked() {
    let m = defaults();
    let (got, pieces) = stream(&m, &["export KEY=AKIAIOSF", "ODNN7EXAMPLE\n"]);
    assert_eq!(got, "export KEY=[MASKED]\n");
    // The mask sits in the chunk where the key began; the second chunk keeps its own time.
    assert_eq!(pieces.len(), 2);
    assert_eq!(pieces[0].2, "export KEY=[MASKED]");
    assert_eq!((pieces[1].1, pieces[1].2.to_string().as_str()), (1, "\n"));
}

#[test]
fn text_without_secrets_is_unchanged_by_any_chunking() {
    let m = defaults();
    let text = "total 8\r\ndrwxr-xr-x 2 root root 4096 été 🦀\r\n".repeat(40);
    for size in [1, 5, 100, 5000] {
        let (got, _) = stream(&m, &chunked(&text, size));
        assert_eq!(got, text);
    }
}

#[test]
fn held_text_is_released_after_hold_time() {
    let m = defaults();
    let mut s = MaskStream::default();
    let mut out = Vec::new();
    s.push(&m, 1.0, 0, "hello ".into(), &mut out);
    s.push(&m, 1.15, 1, "world".into(), &mut out);
    assert!(out.is_empty(), "held for the look-behind");
    assert_eq!(s.deadline(), Some(1.0 + HOLD));
    s.release_due(&m, 1.0 + HOLD, &mut out);
    assert_eq!(out, vec![(1.0, 0, "hello ".into())]);
    assert_eq!(s.first_held_seq(), Some(1));
    s.release_due(&m, 5.0, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(s.deadline(), None);
}

#[test]
fn a_match_straddling_the_release_point_stays_held_until_complete() {
    let m = defaults();
    let mut s = MaskStream::default();
    let mut out = Vec::new();
    s.push(&m, 0.0, 0, "id AKIAIOSF".into(), &mut out);
    s.push(&m, 0.5, 1, "ODNN7EXAMPLE ok".into(), &mut out);
    // Chunk 0 is due but "AKIA..." runs into chunk 1: only "id " goes.
    s.release_due(&m, 0.3, &mut out);
    assert_eq!(out, vec![(0.0, 0, "id ".into())]);
    s.flush(&m, &mut out);
    let all: String = out.iter().map(|p| p.2.to_string()).collect();
    assert_eq!(all, "id [MASKED] ok");
}

#[test]
fn memory_is_bounded_without_secrets_and_with_an_endless_match() {
    let m = defaults();
    let mut s = MaskStream::default();
    let mut out = Vec::new();
    let chunk = "x".repeat(1000);
    for i in 0..200 {
        s.push(&m, 0.0, i, chunk.as_str().into(), &mut out);
        assert!(s.buf.len() < CONTEXT + WINDOW + chunk.len());
    }
    // `password=` followed by an endless token: the match keeps growing.
    let mut s = MaskStream::default();
    s.push(&m, 0.0, 0, "password=".into(), &mut out);
    for i in 1..(2 * HARD_LIMIT / chunk.len()) as u64 {
        s.push(&m, 0.0, i, chunk.as_str().into(), &mut out);
        assert!(s.buf.len() <= CONTEXT + HARD_LIMIT + chunk.len());
    }
    let released: String = out.iter().map(|p| p.2.to_string()).collect();
    assert!(released.contains(MASK));
    assert!(!released.contains("password="));
}

#[test]
fn without_patterns_nothing_is_held() {
    let m = Masker::new(&[]).expect("empty");
    let mut s = MaskStream::default();
    let mut out = Vec::new();
    s.push(&m, 0.0, 0, "AKIAIOSFODNN7EXAMPLE".into(), &mut out);
    assert_eq!(out, vec![(0.0, 0, "AKIAIOSFODNN7EXAMPLE".into())]);
    assert_eq!(s.deadline(), None);
}

#[test]
fn untouched_chunks_are_released_uncopied() {
    let m = defaults();
    let mut s = MaskStream::default();
    let mut out = Vec::new();
    let chunk = Text::from("x".repeat(WINDOW / 4).as_str());
    let secret = Text::from("\npwd: s3cret\n");
    s.push(&m, 0.0, 0, chunk.clone(), &mut out);
    s.push(&m, 0.0, 1, secret, &mut out);
    s.push(&m, 0.0, 2, chunk.clone(), &mut out);
    s.flush(&m, &mut out);
    assert_eq!(out.len(), 3);
    for i in [0, 2] {
        assert_eq!(
            out[i].2.as_bytes().as_ptr(),
            chunk.as_bytes().as_ptr(),
            "{i}"
        );
    }
    assert_eq!(out[1].2, "\n[MASKED]\n");
}

#[test]
fn only_patterns_that_match_whole_characters_are_taken() {
    // A bytes regex would take this and could cut a character in two.
    assert!(Masker::new(&[r"(?-u:\xC3)".to_string()]).is_err());
    let m = Masker::new(&[r"é+".to_string()]).expect("compiles");
    assert_eq!(m.mask("caféé!"), "caf[MASKED]!");
}

#[test]
fn a_secret_typed_key_by_key_after_its_keyword_is_masked() {
    // An echo of `--password=hunter2` typed one key every 300 ms: each key is released on its
    // own, long after the keyword, and must still be recorded masked.
    let m = defaults();
    let mut s = MaskStream::default();
    let mut out = Vec::new();
    let typed = "mysql --password=hunter2 -pletmein\r\n";
    for (i, c) in typed.char_indices() {
        let t = i as f64 * 0.3;
        s.release_due(&m, t, &mut out);
        s.push(&m, t, i as u64, c.to_string().as_str().into(), &mut out);
    }
    s.release_due(&m, 100.0, &mut out);
    s.flush(&m, &mut out);
    let recorded: String = out.iter().map(|p| p.2.to_string()).collect();
    assert!(recorded.starts_with("mysql --password="), "{recorded}");
    for secret in ["h", "hunter", "letmein", "let"] {
        assert!(!recorded.contains(secret), "{secret} in {recorded}");
    }
    assert!(recorded.contains(MASK), "{recorded}");
    // The look-behind stays small while the stream is idle.
    assert!(s.buf.len() <= CONTEXT && s.segs.is_empty());
}

#[test]
fn the_rest_of_a_secret_whose_long_front_went_by_time_is_masked() {
    // `less id_rsa` of a large key: page one, the BEGIN line and more than a kibibyte, is
    // shown and released by time; page two brings the END a second later.
    let m = defaults();
    let mut s = MaskStream::default();
    let mut out = Vec::new();
    let body = "QUJDRA".repeat(1000);
    let (front, rest) = body.split_at(3000);
    let page_one = format!("-----BEGIN RSA PRIVATE KEY-----\n{front}");
    let page_two = format!("{rest}\n-----END RSA PRIVATE KEY-----\n$ ");
    s.push(&m, 0.0, 0, page_one.as_str().into(), &mut out);
    s.release_due(&m, 1.0, &mut out);
    assert_eq!(
        out.len(),
        1,
        "the front goes unmasked (a documented partial leak)"
    );
    s.push(&m, 2.0, 1, page_two.as_str().into(), &mut out);
    s.flush(&m, &mut out);
    let second = out[1].2.to_string();
    assert_eq!(second, "[MASKED]\n$ ");
    // Idle again: the look-behind is the last released text, in at most twice its memory.
    assert!(s.segs.is_empty() && s.buf.len() <= CONTEXT);
    assert!(s.buf.capacity() <= 2 * CONTEXT, "{}", s.buf.capacity());
}

#[test]
fn a_match_wholly_in_the_look_behind_is_not_masked_again() {
    let m = defaults();
    let mut s = MaskStream::default();
    let mut out = Vec::new();
    s.push(&m, 0.0, 0, "pwd: s3cret\n".into(), &mut out);
    s.release_due(&m, 1.0, &mut out);
    s.push(&m, 2.0, 1, "ls\n".into(), &mut out);
    s.flush(&m, &mut out);
    let recorded: Vec<String> = out.iter().map(|p| p.2.to_string()).collect();
    assert_eq!(recorded, ["[MASKED]\n", "ls\n"]);
}

#[test]
fn a_release_held_back_by_a_match_moves_the_deadline() {
    // The match starts the held text and runs into a younger chunk: nothing can go when the
    // first chunk falls due, and the stream must not report itself due again at once.
    let m = defaults();
    let mut s = MaskStream::default();
    let mut out = Vec::new();
    s.push(&m, 0.0, 0, "AKIAIOSF".into(), &mut out);
    s.push(&m, 0.25, 1, "ODNN7EXAMPLE ok".into(), &mut out);
    s.release_due(&m, 0.3, &mut out);
    assert!(out.is_empty());
    let next = s.deadline().expect("held");
    assert!(next > 0.3, "due again at {next}, already past");
    s.release_due(&m, next, &mut out);
    let recorded: String = out.iter().map(|p| p.2.to_string()).collect();
    assert_eq!(recorded, "[MASKED] ok");
}
