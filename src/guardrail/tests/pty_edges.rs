//! The pty gate at the edges of a line: an Enter inside an unfinished escape sequence, a
//! command continued over several lines, a blocked line the target keeps, and titles that
//! never end.

use crate::guardrail::InputReport;

use super::pty::{Term, blocked_rule};

#[test]
fn titles_and_endless_titles_leave_the_screen_readable() {
    let mut t = Term::new(24, 80);
    t.out("\x1b]0;user@db1: ~\x07");
    t.type_echo("reboot");
    assert!(t.enter().blocked.is_some());
    // `printf '\e]0;'; yes | head -c 8M; printf '\a'`: most of it never reaches the
    // emulation, and the BEL still ends the title there.
    t.shell_cancels();
    t.out("\x1b]0;");
    let yes = "y\n".repeat(64 << 10);
    for _ in 0..64 {
        t.out(&yes);
    }
    t.out("\x07\r\n$ ");
    t.type_echo("halt");
    let r = t.enter();
    assert_eq!(r.checked[0].text, "halt");
    assert!(r.blocked.is_some());
}

#[test]
fn an_enter_right_after_an_escape_is_checked() {
    // bash in vi mode: Esc leaves insert mode (the cursor steps back), Enter runs the line.
    // `ESC CR` is also what many terminals send for Alt+Enter.
    for chunks in [
        &[&b"\x1b\r"[..]][..],
        &[b"\x1b", b"\r"],
        &[b"\x1b[1", b"\r"],
    ] {
        let mut t = Term::new(24, 80);
        t.type_echo("rm -rf /srv");
        let mut last = InputReport::default();
        for chunk in chunks {
            last = t.input(chunk);
        }
        assert_eq!(
            blocked_rule(&last).as_deref(),
            Some("destructive/rm-recursive-system"),
            "{chunks:?}"
        );
        let up = t.take_up();
        assert!(up.ends_with("\x03") && !up.contains('\r'), "{up:?}");
    }
    // An allowed line still goes up with its Esc and Enter.
    let mut t = Term::new(24, 80);
    t.type_echo("ls");
    assert_eq!(t.input(b"\x1b\r").blocked, None);
    assert_eq!(t.take_up(), "ls\x1b\r");
}

#[test]
fn a_line_continued_with_a_backslash_is_checked_joined() {
    // `rm -rf \`, Enter, then `/etc` at bash's `> ` prompt.
    let mut t = Term::new(24, 80);
    t.type_echo("rm -rf \\");
    let r = t.enter();
    assert_eq!(r.blocked, None);
    t.out("\r\n> ");
    t.type_echo("/etc");
    let r = t.enter();
    assert_eq!(
        blocked_rule(&r).as_deref(),
        Some("destructive/rm-recursive-system")
    );
    assert_eq!(r.checked[0].text, "rm -rf \\\n/etc");
    assert_eq!(t.take_up(), "rm -rf \\\r/etc\x03");

    // The same typed ahead of every echo.
    let mut t = Term::new(24, 80);
    let r = t.input(b"rm -rf \\\r/etc\r");
    assert_eq!(
        blocked_rule(&r).as_deref(),
        Some("destructive/rm-recursive-system")
    );
    assert_eq!(t.take_up(), "rm -rf \\\r/etc\x03");

    // Split by a paste.
    let mut t = Term::new(24, 80);
    let r = t.input(b"\x1b[200~rm -rf \\\n/var\x1b[201~");
    assert_eq!(
        blocked_rule(&r).as_deref(),
        Some("destructive/rm-recursive-system")
    );
    assert_eq!(t.take_up(), "");
}

#[test]
fn a_continuation_ends_with_its_command_or_ctrl_c() {
    // An even number of backslashes continues nothing.
    let mut t = Term::new(24, 80);
    t.type_echo("echo rm -rf \\\\");
    assert_eq!(t.enter().blocked, None);
    t.out("\r\nrm -rf \\\r\n$ ");
    t.type_echo("/etc");
    assert_eq!(t.enter().blocked, None);

    // Ctrl-C at the `> ` prompt cancels the whole command.
    let mut t = Term::new(24, 80);
    t.type_echo("rm -rf \\");
    assert_eq!(t.enter().blocked, None);
    t.out("\r\n> ");
    t.input(b"\x03");
    t.out("^C\r\n$ ");
    t.type_echo("/etc");
    assert_eq!(t.enter().blocked, None);

    // A command that ends starts the next one afresh.
    let mut t = Term::new(24, 80);
    t.type_echo("ls \\");
    t.enter();
    t.out("\r\n> ");
    t.type_echo("-la");
    let r = t.enter();
    assert_eq!(r.blocked, None);
    assert_eq!(r.checked[0].text, "-la");
    t.out("\r\n$ ");
    t.type_echo("/etc");
    assert_eq!(t.enter().checked[0].text, "/etc");

    // A paste that ends in a continued line carries it to the next Enter.
    let mut t = Term::new(24, 80);
    assert_eq!(t.input(b"\x1b[200~rm -rf \\\n\x1b[201~").blocked, None);
    t.out("rm -rf \\\r\n> ");
    t.type_echo("/usr");
    assert_eq!(
        blocked_rule(&t.enter()).as_deref(),
        Some("destructive/rm-recursive-system")
    );
}

#[test]
fn a_blocked_line_left_in_place_is_checked_again() {
    // A program that ignores Ctrl-C shows nothing and keeps the line.
    let mut t = Term::new(24, 80);
    t.type_echo("rm -rf /");
    assert!(t.enter().blocked.is_some());
    let r = t.enter();
    assert_eq!(
        blocked_rule(&r).as_deref(),
        Some("destructive/rm-recursive-system"),
        "Enter alone"
    );
    assert_eq!(t.input(b" "), InputReport::default());
    t.out(" ");
    let r = t.enter();
    assert_eq!(
        blocked_rule(&r).as_deref(),
        Some("destructive/rm-recursive-system"),
        "a space, then Enter"
    );
    assert_eq!(r.checked[0].text, "rm -rf /");
    assert_eq!(t.take_up(), "rm -rf /\x03\x03 \x03");
    // Once the target shows something (the shell cancels), the next line is read afresh.
    t.shell_cancels();
    t.type_echo("ls");
    let r = t.enter();
    assert_eq!(r.blocked, None);
    assert_eq!(r.checked[0].text, "ls");
}
