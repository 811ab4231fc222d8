//! The no-pty gate: lines before a blocked one are forwarded, it and later ones are not.

use crate::guardrail::{LineGate, Source};

use super::destructive;

#[test]
fn forwards_lines_until_one_is_blocked() {
    let mut gate = LineGate::new(destructive());
    let mut up = Vec::new();
    let r = gate.feed(b"echo one\nmkdir -p /tmp/x\nrm -rf /\necho two\n", &mut up);
    assert_eq!(up, b"echo one\nmkdir -p /tmp/x\n");
    let texts: Vec<&str> = r.checked.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["echo one", "mkdir -p /tmp/x", "rm -rf /"]);
    assert!(r.checked.iter().all(|c| c.source == Source::Line));
    let b = r.blocked.expect("blocked");
    assert_eq!(
        b.notice,
        "jitgate: blocked by guardrail \"destructive/rm-recursive-system\": \
         recursive delete of / or a system directory\n"
    );
    assert!(gate.is_closed());
    let r = gate.feed(b"echo three\n", &mut up);
    assert_eq!(r.checked.len(), 0);
    assert_eq!(
        up, b"echo one\nmkdir -p /tmp/x\n",
        "nothing after the block"
    );
    assert_eq!(gate.finish(&mut up).blocked, None);
}

#[test]
fn lines_split_across_reads_are_checked_whole() {
    let mut gate = LineGate::new(destructive());
    let mut up = Vec::new();
    assert_eq!(gate.feed(b"ls -l", &mut up).checked.len(), 0);
    assert!(up.is_empty(), "a partial line waits");
    gate.feed(b"a\r\nrm -r", &mut up);
    assert_eq!(up, b"ls -la\r\n");
    let r = gate.feed(b"f /etc\n", &mut up);
    assert!(r.blocked.is_some());
    assert_eq!(up, b"ls -la\r\n");
}

#[test]
fn the_last_line_without_newline_is_checked_at_eof() {
    let mut gate = LineGate::new(destructive());
    let mut up = Vec::new();
    gate.feed(b"uptime\nreboot", &mut up);
    assert_eq!(up, b"uptime\n");
    let r = gate.finish(&mut up);
    assert!(r.blocked.is_some());
    assert_eq!(up, b"uptime\n");

    let mut gate = LineGate::new(destructive());
    let mut up = Vec::new();
    gate.feed(b"uptime", &mut up);
    assert_eq!(gate.finish(&mut up).blocked, None);
    assert_eq!(up, b"uptime");
}

#[test]
fn blank_lines_pass_unrecorded_and_overlong_lines_block() {
    let mut gate = LineGate::with_max_line(destructive(), 16);
    let mut up = Vec::new();
    let r = gate.feed(b"\n  \nls\n", &mut up);
    assert_eq!(up, b"\n  \nls\n");
    assert_eq!(r.checked.len(), 1);
    let r = gate.feed(b"echo 0123456789abcdef", &mut up);
    let rule = r.blocked.and_then(|b| b.verdict.rule_id());
    assert_eq!(rule.as_deref(), Some("jitgate/line-too-long"));
    assert_eq!(up, b"\n  \nls\n");
}

/// Reads, what is forwarded, the blocking rule, the texts checked.
type Case<'a> = (&'a [&'a [u8]], &'a [u8], Option<&'a str>, &'a [&'a str]);

#[test]
fn continued_lines_are_checked_joined_before_any_is_forwarded() {
    let cases: &[Case] = &[
        (
            &[b"echo a\nrm -rf \\\n", b"  /var\necho b\n"],
            b"echo a\n",
            Some("destructive/rm-recursive-system"),
            &["echo a", "rm -rf \\\n  /var"],
        ),
        (
            &[b"rm -rf \\\r\n/etc\r\n"],
            b"",
            Some("destructive/rm-recursive-system"),
            &["rm -rf \\\r\n/etc"],
        ),
        // `\` ending a comment continues nothing for bash: each line is checked alone too.
        (
            &[b"# clean up \\\nrm -rf /\n"],
            b"",
            Some("destructive/rm-recursive-system"),
            &["rm -rf /"],
        ),
        // An even number of backslashes is an escaped backslash: no continuation.
        (
            &[b"echo \\\\\nls\n"],
            b"echo \\\\\nls\n",
            None,
            &["echo \\\\", "ls"],
        ),
        (
            &[b"ls \\\n", b"  -la \\\n", b"  /tmp\n"],
            b"ls \\\n  -la \\\n  /tmp\n",
            None,
            &["ls \\\n  -la \\\n  /tmp"],
        ),
    ];
    for (reads, forwarded, rule, texts) in cases {
        let mut gate = LineGate::new(destructive());
        let mut up = Vec::new();
        let mut checked = Vec::new();
        let mut blocked = None;
        for read in *reads {
            let r = gate.feed(read, &mut up);
            checked.extend(r.checked.into_iter().map(|c| c.text));
            blocked = blocked.or(r.blocked);
        }
        assert_eq!(&up, forwarded, "{reads:?}");
        assert_eq!(
            blocked.and_then(|b| b.verdict.rule_id()).as_deref(),
            *rule,
            "{reads:?}"
        );
        assert_eq!(&checked, texts, "{reads:?}");
    }
}

#[test]
fn a_continued_line_waits_for_its_end_and_is_bounded() {
    let mut gate = LineGate::new(destructive());
    let mut up = Vec::new();
    assert_eq!(gate.feed(b"ls \\\n", &mut up).checked.len(), 0);
    assert!(up.is_empty(), "held until the logical line ends");
    // EOF ends it.
    assert_eq!(gate.finish(&mut up).blocked, None);
    assert_eq!(up, b"ls \\\n");

    // The limit counts the whole logical line.
    let mut gate = LineGate::with_max_line(destructive(), 16);
    let mut up = Vec::new();
    gate.feed(b"echo 0123 \\\n", &mut up);
    let r = gate.feed(b"456789abcdef\n", &mut up);
    let rule = r.blocked.and_then(|b| b.verdict.rule_id());
    assert_eq!(rule.as_deref(), Some("jitgate/line-too-long"));
    assert!(up.is_empty());
}
