//! The pty gate against synthetic byte streams that mimic bash/readline: what the engineer
//! types goes in as input, what readline would echo goes in as output.

use crate::guardrail::{InputReport, PtyGuard, Source, Verdict};

use super::destructive;

/// A guard with a record of everything forwarded upstream.
pub(super) struct Term {
    guard: PtyGuard,
    up: Vec<u8>,
}

impl Term {
    pub(super) fn new(rows: u16, cols: u16) -> Term {
        let mut t = Term {
            guard: PtyGuard::new(destructive(), rows, cols),
            up: Vec::new(),
        };
        t.out("$ ");
        t
    }

    /// Target output.
    pub(super) fn out(&mut self, s: &str) {
        self.guard.feed_output(s.as_bytes());
    }

    /// Client input; returns the report.
    pub(super) fn input(&mut self, bytes: &[u8]) -> InputReport {
        self.guard.feed_input(bytes, &mut self.up)
    }

    /// Types `s` one key at a time, each echoed by the shell as it is.
    pub(super) fn type_echo(&mut self, s: &str) {
        for c in s.chars() {
            let mut b = [0u8; 4];
            let key = c.encode_utf8(&mut b);
            let r = self.input(key.as_bytes());
            assert_eq!(r, InputReport::default(), "typing {c:?} checks nothing");
            self.out(key);
        }
    }

    /// Presses Enter.
    pub(super) fn enter(&mut self) -> InputReport {
        self.input(b"\r")
    }

    /// What went upstream since the last call.
    pub(super) fn take_up(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.up)).into_owned()
    }

    /// After a block, bash answers the Ctrl-C with `^C` and a fresh prompt.
    pub(super) fn shell_cancels(&mut self) {
        self.out("^C\r\n$ ");
    }
}

pub(super) fn blocked_rule(r: &InputReport) -> Option<String> {
    r.blocked.as_ref().and_then(|b| b.verdict.rule_id())
}

#[test]
fn plain_typing_blocks_and_the_shell_stays_usable() {
    let mut t = Term::new(24, 80);
    t.type_echo("rm -rf /");
    let r = t.enter();
    assert_eq!(
        blocked_rule(&r).as_deref(),
        Some("destructive/rm-recursive-system")
    );
    let b = r.blocked.as_ref().expect("blocked");
    assert!(b.cancelled);
    assert_eq!(
        b.notice,
        "\r\njitgate: blocked by guardrail \"destructive/rm-recursive-system\": \
         recursive delete of / or a system directory\r\n"
    );
    assert_eq!(r.checked.len(), 1);
    assert_eq!(r.checked[0].text, "rm -rf /");
    assert_eq!(r.checked[0].source, Source::Screen);
    assert_eq!(
        t.take_up(),
        "rm -rf /\x03",
        "the Enter is withheld, Ctrl-C sent instead"
    );

    t.shell_cancels();
    t.type_echo("ls -la");
    let r = t.enter();
    assert_eq!(r.blocked, None);
    assert_eq!(r.checked.len(), 1);
    assert_eq!(r.checked[0].text, "ls -la");
    assert_eq!(r.checked[0].verdict, Verdict::Allow);
    assert_eq!(t.take_up(), "ls -la\r");
}

#[test]
fn history_recall_edited_into_a_blocked_line() {
    let mut t = Term::new(24, 80);
    // Up recalls a harmless comment line.
    assert_eq!(t.input(b"\x1b[A"), InputReport::default());
    t.out("# rm -rf /");
    // Ctrl-A: readline moves the cursor back to the start of the line.
    t.input(b"\x01");
    t.out("\x1b[10D");
    // Ctrl-D twice: readline deletes the characters under the cursor.
    t.input(b"\x04");
    t.out("\x1b[P");
    t.input(b"\x04");
    t.out("\x1b[P");
    // Ctrl-E, then Enter: the screen shows `$ rm -rf /`.
    t.input(b"\x05");
    t.out("\x1b[8C");
    let r = t.enter();
    assert_eq!(
        blocked_rule(&r).as_deref(),
        Some("destructive/rm-recursive-system")
    );
    assert_eq!(r.checked[0].text, "rm -rf /");
    assert_eq!(t.take_up(), "\x1b[A\x01\x04\x04\x05\x03");
}

#[test]
fn tab_completion_into_a_blocked_path() {
    let mut t = Term::new(24, 80);
    t.type_echo("rm -rf /e");
    t.input(b"\t");
    t.out("tc/");
    let r = t.enter();
    assert_eq!(
        blocked_rule(&r).as_deref(),
        Some("destructive/rm-recursive-system")
    );
    assert_eq!(r.checked[0].text, "rm -rf /etc/");
    assert_eq!(
        r.checked[0].source,
        Source::Screen,
        "only the screen shows the completion"
    );
}

#[test]
fn backspace_ctrl_w_and_ctrl_u_edits() {
    // Backspace turns `/x` into `/`.
    let mut t = Term::new(24, 80);
    t.type_echo("rm -rf /x");
    t.input(b"\x7f");
    t.out("\x08\x1b[K");
    assert!(t.enter().blocked.is_some());

    // Ctrl-W removes the word `/tmp/x`, then `/` is typed.
    let mut t = Term::new(24, 80);
    t.type_echo("rm -rf /tmp/x");
    t.input(b"\x17");
    t.out("\x08\x08\x08\x08\x08\x08\x1b[K");
    t.type_echo("/");
    let r = t.enter();
    assert_eq!(r.checked[0].text, "rm -rf /");
    assert!(r.blocked.is_some());

    // Ctrl-U throws a dangerous line away; what replaces it runs.
    let mut t = Term::new(24, 80);
    t.type_echo("rm -rf /");
    t.input(b"\x15");
    t.out("\r$ \x1b[K");
    t.type_echo("ls");
    let r = t.enter();
    assert_eq!(r.blocked, None);
    assert_eq!(r.checked[0].text, "ls");
    assert_eq!(t.take_up(), "rm -rf /\x15ls\r");
}

#[test]
fn wrapped_long_lines_are_read_whole_even_when_the_screen_scrolls() {
    // A 20-column, 4-row terminal with the prompt on the last row: the line wraps three
    // times and scrolls the screen.
    let mut t = Term::new(4, 20);
    t.out("\r\n\r\n\r\n$ ");
    let long = "echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; rm -rf /e";
    t.type_echo(long);
    t.input(b"\t");
    t.out("tc");
    let r = t.enter();
    assert_eq!(r.checked[0].text, format!("{long}tc"));
    assert_eq!(r.checked[0].source, Source::Screen);
    assert_eq!(
        blocked_rule(&r).as_deref(),
        Some("destructive/rm-recursive-system")
    );

    // A long safe line is allowed.
    t.shell_cancels();
    t.type_echo("echo bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    assert_eq!(t.enter().blocked, None);
}

#[test]
fn a_line_typed_ahead_of_its_prompt_is_read_whole() {
    // `echo ok`, Enter, then a history recall, all before the shell answered: the recalled
    // line's start is not where the cursor stood when its first key arrived.
    let mut t = Term::new(24, 80);
    t.type_echo("echo ok");
    assert_eq!(t.enter().blocked, None);
    assert_eq!(t.input(b"\x1b[A"), InputReport::default());
    // The shell now prints the output, its prompt and the recalled line.
    t.out("\r\nok\r\n$ rm -rf /");
    let r = t.enter();
    assert_eq!(
        blocked_rule(&r).as_deref(),
        Some("destructive/rm-recursive-system"),
        "{r:?}"
    );
    // Plain text typed ahead is judged as typed, whatever prompt comes.
    t.shell_cancels();
    t.type_echo("ls");
    assert_eq!(t.enter().blocked, None);
    t.input(b"rm -rf /");
    t.out("\r\nfile\r\n[a much longer prompt]$ rm -rf /");
    assert_eq!(
        blocked_rule(&t.enter()).as_deref(),
        Some("destructive/rm-recursive-system")
    );
    t.shell_cancels();
    t.type_echo("ls");
    assert_eq!(t.enter().blocked, None);
    t.input(b"echo fine");
    t.out("\r\nfile\r\n[rm -rf /]$ echo fine");
    assert_eq!(t.enter().blocked, None);
}

#[test]
fn a_risky_prompt_is_not_part_of_the_command() {
    let mut t = Term::new(24, 80);
    t.out("\r\n[reboot; rm -rf /]$ ");
    t.type_echo("ls");
    let r = t.enter();
    assert_eq!(r.blocked, None);
    assert_eq!(r.checked[0].text, "ls");

    // Enter on an empty line under that prompt checks nothing.
    t.out("\r\n[reboot; rm -rf /]$ ");
    let r = t.enter();
    assert_eq!(r, InputReport::default());
    assert!(t.take_up().ends_with('\r'));
}

#[test]
fn full_screen_programs_are_not_line_checked() {
    let mut t = Term::new(24, 80);
    t.type_echo("vi notes.txt");
    assert_eq!(t.enter().blocked, None);
    t.out("\x1b[?1049h\x1b[H\x1b[2Jrm -rf /\r\n~\r\n");
    assert!(t.guard.alternate_screen());
    t.take_up();
    let r = t.input(b"ddirm -rf /\x1b:wq\r");
    assert_eq!(r, InputReport::default());
    assert_eq!(t.take_up(), "ddirm -rf /\x1b:wq\r");
    // vi exits; the shell is checked again.
    t.out("\x1b[?1049l\r\n$ ");
    t.type_echo("reboot");
    assert!(t.enter().blocked.is_some());
}

#[test]
fn a_lone_escape_reaches_a_full_screen_program_at_once() {
    let mut t = Term::new(24, 80);
    t.out("\x1b[?1049h");
    t.input(b"\x1b");
    assert_eq!(t.take_up(), "\x1b");
}

#[test]
fn a_paste_with_one_bad_line_forwards_none_of_it() {
    let mut t = Term::new(24, 80);
    t.out("\x1b[?2004h");
    let r = t.input(b"\x1b[200~ls\recho one\rrm -rf /\recho two\x1b[201~");
    assert_eq!(t.take_up(), "", "nothing of the paste goes upstream");
    let b = r.blocked.as_ref().expect("blocked");
    assert!(!b.cancelled);
    assert_eq!(
        blocked_rule(&r).as_deref(),
        Some("destructive/rm-recursive-system")
    );
    let texts: Vec<&str> = r.checked.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["ls", "echo one", "rm -rf /", "echo two"]);
    assert!(r.checked.iter().all(|c| c.source == Source::Paste));

    // The guard still works, and a good paste (split over several reads) goes up whole.
    assert_eq!(t.input(b"\x1b[20"), InputReport::default());
    assert_eq!(t.input(b"0~ls\recho hi\x1b[2"), InputReport::default());
    assert_eq!(t.take_up(), "", "held until the paste ends");
    let r = t.input(b"01~");
    assert_eq!(r.blocked, None);
    assert_eq!(r.checked.len(), 2);
    assert_eq!(t.take_up(), "\x1b[200~ls\recho hi\x1b[201~");
}

#[test]
fn a_paste_is_checked_together_with_the_line_before_it() {
    let mut t = Term::new(24, 80);
    t.type_echo("rm -rf ");
    let r = t.input(b"\x1b[200~/etc\x1b[201~");
    assert_eq!(r.checked[0].text, "rm -rf /etc");
    assert!(r.blocked.is_some());
    assert_eq!(t.take_up(), "rm -rf ");
}

#[test]
fn unechoed_fast_input_is_caught_by_the_typed_text() {
    // An unbracketed paste arrives in one read, before any echo.
    let mut t = Term::new(24, 80);
    let r = t.input(b"ls\rrm -rf /\recho after\r");
    assert_eq!(
        t.take_up(),
        "ls\rrm -rf /\x03",
        "the blocked Enter is replaced, what follows it is dropped"
    );
    assert_eq!(
        blocked_rule(&r).as_deref(),
        Some("destructive/rm-recursive-system")
    );
    let last = r.checked.last().expect("checked");
    assert_eq!(
        (last.text.as_str(), last.source),
        ("rm -rf /", Source::Typed)
    );
}

#[test]
fn unechoed_passwords_are_not_recorded() {
    let mut t = Term::new(24, 80);
    t.out("\r\nPassword: ");
    t.input(b"hunter2");
    let r = t.enter();
    assert_eq!(r, InputReport::default());
    assert_eq!(t.take_up(), "hunter2\r");
}

#[test]
fn repl_lines_are_checked() {
    let mut t = Term::new(24, 80);
    t.out("\r\nsqlite> ");
    t.type_echo("DROP TABLE users;");
    let r = t.enter();
    assert_eq!(
        blocked_rule(&r).as_deref(),
        Some("destructive/sql-drop-table")
    );
    t.out("\r\nsqlite> ");
    t.type_echo("SELECT * FROM users WHERE id = 1;");
    assert_eq!(t.enter().blocked, None);
}

#[test]
fn resize_keeps_checking() {
    let mut t = Term::new(24, 80);
    t.guard.resize(0, 0);
    t.guard.resize(40, 120);
    t.out("\r\n$ ");
    t.type_echo("halt");
    assert!(t.enter().blocked.is_some());
}

#[test]
fn keys_sent_and_not_yet_echoed_are_pending_until_output_comes() {
    let mut t = Term::new(24, 80);
    t.out("$ ");
    assert!(!t.guard.echo_pending(), "nothing typed yet");
    t.input(b"\x1b[A");
    assert!(
        t.guard.echo_pending(),
        "Up went upstream, nothing came back"
    );
    t.out("# rm -rf /");
    assert!(!t.guard.echo_pending());
    t.input(b"\x01");
    assert!(t.guard.echo_pending());
    // A full-screen program reads its own keys: nothing is line-checked, nothing waits.
    t.out("\x1b[?1049h");
    t.input(b"j");
    assert!(!t.guard.echo_pending());
}
