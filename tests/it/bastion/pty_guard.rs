//! The pty gate through the real ssh client to a real bash on a real sshd: the command line
//! is read as the shell shows it (history, completion, line editing), pastes are checked
//! before any of them runs, REPL lines are checked, full-screen programs are not, and a
//! prompt is never mistaken for a command, nor an Esc before Enter or a continued line for a
//! harmless one. The lab's set blocks `rm\s+-rf\s+/` and DROP TABLE.

use super::lab::{self, Lab};
use super::pty::{pane_shows, pane_shows_n, tmux};

const BLOCKED: &str = "blocked by guardrail";
/// The prompt as tmux shows it (trailing space trimmed).
const PROMPT: &str = "rm -rf />";

/// A tmux pane holding `ssh -tt … root@db1` through the bastion, with a prompt that itself
/// looks risky; returns the tmux socket.
async fn shell(lab: &Lab) -> std::path::PathBuf {
    lab::require("tmux");
    lab.grant("db1", "root", 0, 3600, 0).await;
    let sock = lab.path().join("tmux.sock");
    let ssh = format!(
        "ssh -F {} -J alice@127.0.0.1:{} -tt root@db1; sleep 60",
        lab.ssh_config.display(),
        lab.port
    );
    let sock2 = sock.clone();
    tokio::task::spawn_blocking(move || {
        tmux(
            &sock2,
            &[
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "160",
                "-y",
                "40",
                &ssh,
            ],
        );
        // The prompt reads "rm -rf /> " (typed with an escape, so the typed line is harmless):
        // only what is typed after the prompt may count.
        literal(&sock2, "export PS1=$'rm -rf \\x2f> '; cd /tmp");
        key(&sock2, "Enter");
        pane_shows_n(&sock2, PROMPT, 1);
    })
    .await
    .unwrap();
    sock
}

fn literal(sock: &std::path::Path, text: &str) {
    tmux(sock, &["send-keys", "-t", "t", "-l", text]);
}

fn key(sock: &std::path::Path, k: &str) {
    tmux(sock, &["send-keys", "-t", "t", k]);
}

/// Waits until the screen's last line is a bare prompt (bash's, python's: they end in '>'),
/// as a person would before typing: a line typed ahead of its prompt starts before the
/// prompt, and a risky-looking prompt would then count against it.
fn ready(sock: &std::path::Path) {
    for _ in 0..600 {
        let screen = tmux(sock, &["capture-pane", "-p", "-t", "t"]);
        if screen
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim_end().ends_with('>'))
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "no prompt:\n{}",
        tmux(sock, &["capture-pane", "-p", "-t", "t"])
    );
}

/// At a fresh prompt, types `text` and Enter, then waits for `want` to show.
fn line(sock: &std::path::Path, text: &str, want: &str) {
    ready(sock);
    literal(sock, text);
    key(sock, "Enter");
    pane_shows(sock, want);
}

fn victim(lab: &Lab, name: &str) -> std::path::PathBuf {
    let v = lab.path().join(name);
    std::fs::create_dir_all(v.join("inside")).unwrap();
    v
}

/// The victim folder of a history test is still whole: the edited line did not run.
fn assert_not_run(v: &std::path::Path) {
    assert!(
        v.join("inside").exists(),
        "the edited history line must not have run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_editing_and_line_editing_are_seen_as_the_shell_shows_them() {
    let lab = Lab::start().await;
    let v = victim(&lab, "victim-history");
    let sock = shell(&lab).await;
    let path = v.display().to_string();
    tokio::task::spawn_blocking(move || {
        // Plain typing works, and the risky-looking prompt blocks nothing.
        line(&sock, "echo plain-$((2+3))", "plain-5");
        // A harmless line from history, edited into a blocked one: Up, Ctrl-A, Ctrl-D ×2, "rm".
        line(&sock, &format!("xx -rf {path}"), "xx: command not found");
        ready(&sock);
        key(&sock, "Up");
        key(&sock, "C-a");
        key(&sock, "C-d");
        key(&sock, "C-d");
        literal(&sock, "rm");
        key(&sock, "Enter");
        pane_shows_n(&sock, BLOCKED, 1);
        // Ctrl-U clears a risky line; what runs is what was typed after it.
        ready(&sock);
        literal(&sock, "rm -rf /nonexistent-u");
        key(&sock, "C-u");
        line(&sock, "echo cleared-$((1+1))", "cleared-2");
        // Ctrl-W removes words: "echo words rm -rf /x" → "echo words rm".
        ready(&sock);
        literal(&sock, "echo words-$((3+3)) rm -rf /nonexistent-w");
        key(&sock, "C-w");
        key(&sock, "C-w");
        key(&sock, "Enter");
        pane_shows(&sock, "words-6 rm");
        // Backspace: the slash is gone before Enter.
        ready(&sock);
        literal(&sock, "echo bs rm -rf /");
        key(&sock, "BSpace");
        literal(&sock, "gone");
        key(&sock, "Enter");
        pane_shows(&sock, "bs rm -rf gone");
        // Still exactly one block, and the shell still works.
        let screen = pane_shows(&sock, "bs rm -rf gone");
        assert_eq!(screen.matches(BLOCKED).count(), 1, "{screen}");
    })
    .await
    .unwrap();
    assert_not_run(&v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_history_edit_typed_ahead_of_its_echo_is_still_checked_as_shown() {
    // The whole edit and its Enter in one write: the screen cannot show the edited line
    // yet when the Enter arrives, so the bastion must wait for the echo before judging.
    let lab = Lab::start().await;
    let v = victim(&lab, "victim-ahead");
    let sock = shell(&lab).await;
    let path = v.display().to_string();
    tokio::task::spawn_blocking(move || {
        line(&sock, &format!("xx -rf {path}"), "xx: command not found");
        ready(&sock);
        tmux(
            &sock,
            &[
                "send-keys",
                "-t",
                "t",
                "Up",
                "C-a",
                "C-d",
                "C-d",
                "r",
                "m",
                "Enter",
            ],
        );
        pane_shows_n(&sock, BLOCKED, 1);
    })
    .await
    .unwrap();
    assert_not_run(&v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_enter_of_a_typed_ahead_write_waits_for_its_echo() {
    // A command, then a history edit ended by Ctrl-J (also Enter to a shell), all in one
    // write: the second Enter must wait for the screen too, whatever byte it is.
    let lab = Lab::start().await;
    let v = victim(&lab, "victim-second");
    let sock = shell(&lab).await;
    let path = v.display().to_string();
    tokio::task::spawn_blocking(move || {
        // A prompt that blocks nothing, so that only the recalled line can.
        ready(&sock);
        literal(&sock, "export PS1='calm> '");
        key(&sock, "Enter");
        pane_shows_n(&sock, "calm>", 2);
        line(&sock, &format!("xx -rf {path}"), "xx: command not found");
        ready(&sock);
        let mut keys = vec!["send-keys", "-t", "t"];
        keys.extend(["e", "c", "h", "o", " ", "o", "k", "Enter"]);
        keys.extend(["Up", "Up", "C-a", "C-d", "C-d", "r", "m", "C-j"]);
        tmux(&sock, &keys);
        pane_shows_n(&sock, BLOCKED, 1);
    })
    .await
    .unwrap();
    assert_not_run(&v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tab_completion_and_pastes_are_checked_before_anything_runs() {
    let lab = Lab::start().await;
    let v = victim(&lab, "victim-tab");
    let parent = lab.path().display().to_string();
    let sock = shell(&lab).await;
    let path = v.display().to_string();
    tokio::task::spawn_blocking(move || {
        // What is typed has no "rm -rf /": only the completion (direxpand) makes it one.
        ready(&sock);
        literal(&sock, &format!("shopt -s direxpand; cd {parent}"));
        key(&sock, "Enter");
        pane_shows_n(&sock, PROMPT, 2);
        ready(&sock);
        literal(&sock, "rm -rf $PWD/victim-t");
        key(&sock, "Tab");
        pane_shows(&sock, &format!("rm -rf {path}/"));
        key(&sock, "Enter");
        pane_shows_n(&sock, BLOCKED, 1);
        // A multi-line paste with one bad line: none of it runs.
        let paste = format!("echo first-$((10+1))\nrm -rf {path}\necho third-$((10+3))\n");
        ready(&sock);
        tmux(&sock, &["set-buffer", "-b", "p", &paste]);
        tmux(&sock, &["paste-buffer", "-p", "-b", "p", "-t", "t"]);
        pane_shows_n(&sock, BLOCKED, 2);
        // Nothing of the paste went upstream, so bash prints no new prompt: type on.
        literal(&sock, "echo after-$((4+4))");
        key(&sock, "Enter");
        let screen = pane_shows(&sock, "after-8");
        assert!(
            !screen.contains("first-11") && !screen.contains("third-13"),
            "{screen}"
        );
    })
    .await
    .unwrap();
    assert!(v.join("inside").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repl_lines_are_checked_and_full_screen_editors_are_not() {
    lab::require("vi");
    let lab = Lab::start().await;
    let v = victim(&lab, "victim-repl");
    let file = lab.path().join("notes.txt");
    std::fs::write(&file, "remember: never run rm -rf / here\n").unwrap();
    let sock = shell(&lab).await;
    let path = v.display().to_string();
    let notes = file.display().to_string();
    tokio::task::spawn_blocking(move || {
        // A REPL's line is checked like a shell's.
        line(&sock, "/usr/bin/python3 -q", ">>>");
        line(&sock, "import os", ">>>");
        ready(&sock);
        literal(&sock, &format!("os.system('rm -rf {path}')"));
        key(&sock, "Enter");
        pane_shows_n(&sock, BLOCKED, 1);
        // DROP TABLE at a REPL prompt, as a DBA would type it into a client library.
        line(
            &sock,
            "import sqlite3; db = sqlite3.connect(':memory:'); db.execute('create table t (x)')",
            ">>>",
        );
        ready(&sock);
        literal(&sock, "db.execute('DROP TABLE t')");
        key(&sock, "Enter");
        pane_shows_n(&sock, BLOCKED, 2);
        line(
            &sock,
            "print('still', db.execute('select count(*) from t').fetchone())",
            "still (0,)",
        );
        line(&sock, "print('repl-ok', 6*7)", "repl-ok 42");
        // Wait for bash's prompt before typing on: a line typed ahead of its prompt starts
        // before the prompt, so a risky-looking prompt would count (a false block).
        let prompts = pane_shows(&sock, PROMPT).matches(PROMPT).count();
        ready(&sock);
        literal(&sock, "exit()");
        key(&sock, "Enter");
        pane_shows_n(&sock, PROMPT, prompts + 1);
        // vi on a file that contains "rm -rf /": Enter inside it is not line-checked.
        let prompts = pane_shows(&sock, PROMPT).matches(PROMPT).count();
        line(&sock, &format!("vi {notes}"), "never run");
        literal(&sock, ":2");
        key(&sock, "Enter");
        literal(&sock, ":q!");
        key(&sock, "Enter");
        // Keys typed before vi has exited are vi's: wait for the prompt.
        pane_shows_n(&sock, PROMPT, prompts + 1);
        line(&sock, "echo after-vi-$((5+5))", "after-vi-10");
        let screen = pane_shows(&sock, "after-vi-10");
        assert_eq!(screen.matches(BLOCKED).count(), 2, "{screen}");
    })
    .await
    .unwrap();
    assert!(v.join("inside").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_escape_before_enter_and_a_continued_line_are_still_checked() {
    let lab = Lab::start().await;
    let v = victim(&lab, "victim-vi");
    let sock = shell(&lab).await;
    let path = v.display().to_string();
    tokio::task::spawn_blocking(move || {
        // A command continued with a backslash, finished at bash's `> ` prompt.
        ready(&sock);
        literal(&sock, "rm -rf \\");
        key(&sock, "Enter");
        // `ready` waits for the `> ` prompt: the line before it ends in the backslash.
        ready(&sock);
        literal(&sock, &path);
        key(&sock, "Enter");
        pane_shows_n(&sock, BLOCKED, 1);
        // bash in vi mode: Esc leaves insert mode and Enter runs the line (ESC CR, as many
        // terminals also send for Alt+Enter).
        ready(&sock);
        literal(&sock, "set -o vi");
        key(&sock, "Enter");
        ready(&sock);
        literal(&sock, &format!("rm -rf {path}"));
        tmux(&sock, &["send-keys", "-t", "t", "Escape", "Enter"]);
        pane_shows_n(&sock, BLOCKED, 2);
    })
    .await
    .unwrap();
    assert_not_run(&v);
}
