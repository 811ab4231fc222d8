//! Interactive shells through a pty, driven with tmux: type, read, resize.

use super::lab::{self, Lab, text};

/// Runs tmux on its own socket.
pub fn tmux(sock: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("tmux")
        .arg("-S")
        .arg(sock)
        .args(args)
        .env("TERM", "xterm")
        .output()
        .unwrap();
    assert!(out.status.success(), "tmux {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Waits until the pane shows `want` (up to 30 s).
pub fn pane_shows(sock: &std::path::Path, want: &str) -> String {
    pane_shows_n(sock, want, 1)
}

/// Waits until the pane (with its scrollback) shows `want` at least `n` times.
pub fn pane_shows_n(sock: &std::path::Path, want: &str, n: usize) -> String {
    let mut screen = String::new();
    for _ in 0..600 {
        screen = tmux(sock, &["capture-pane", "-p", "-S", "-200", "-t", "t"]);
        if screen.matches(want).count() >= n {
            return screen;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the pane never showed {want:?}:\n{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interactive_shell_through_a_pty_types_reads_and_resizes() {
    lab::require("tmux");
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    let sock = lab.path().join("tmux.sock");
    let ssh = format!(
        "ssh -F {} -J alice@127.0.0.1:{} -tt root@db1",
        lab.ssh_config.display(),
        lab.port
    );
    let sock2 = sock.clone();
    tokio::task::spawn_blocking(move || {
        let sock = sock2;
        tmux(
            &sock,
            &["new-session", "-d", "-s", "t", "-x", "80", "-y", "24", &ssh],
        );
        // The echo shows rea''dy, only the prompt shows ready.
        tmux(
            &sock,
            &["send-keys", "-t", "t", "export PS1='rea''dy> '", "Enter"],
        );
        pane_shows(&sock, "ready>");
        tmux(&sock, &["send-keys", "-t", "t", "echo $((6*7))x", "Enter"]);
        pane_shows(&sock, "42x");
        tmux(&sock, &["send-keys", "-t", "t", "tty", "Enter"]);
        pane_shows(&sock, "/dev/pts/");
        tmux(
            &sock,
            &["resize-window", "-t", "t", "-x", "100", "-y", "30"],
        );
        tmux(&sock, &["send-keys", "-t", "t", "stty size", "Enter"]);
        pane_shows(&sock, "30 100");
        tmux(&sock, &["send-keys", "-t", "t", "exit 7", "Enter"]);
        for _ in 0..600 {
            let alive = std::process::Command::new("tmux")
                .arg("-S")
                .arg(&sock)
                .args(["has-session", "-t", "t"])
                .output()
                .unwrap();
            if !alive.status.success() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the shell did not exit");
    })
    .await
    .unwrap();
    let sessions = lab.ended_sessions(id).await;
    assert_eq!(sessions[0].exit_status, Some(7));
    let rel = sessions[0].recording.clone().unwrap();
    let cast = std::fs::read_to_string(lab.config.server.recordings_dir.join(rel)).unwrap();
    let header = cast.lines().next().unwrap();
    assert!(
        header.contains("\"width\":80") && header.contains("\"height\":24"),
        "{header}"
    );
    assert!(
        cast.contains("\"r\", \"100x30\"") || cast.contains("\"r\",\"100x30\""),
        "{cast}"
    );
    assert!(cast.contains("42x"), "{cast}");
}
