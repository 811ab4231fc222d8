//! Guardrails in the relay: exec commands, shells without a pty and interactive shells.

use jitgate::store::CommandFilter;

use super::lab::{self, Lab, output, text};
use super::pty::{pane_shows, pane_shows_n, tmux};

const NOTICE: &str =
    "jitgate: blocked by guardrail \"destructive/rm-rf-root\": no recursive deletes from /";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocked_exec_never_reaches_the_target() {
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    let mut events = lab.hub.events();
    let victim = lab.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let out = output(
        lab.ssh(&["root@db1", &format!("rm -rf {}", victim.display())]),
        60,
    )
    .await;
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(NOTICE), "{}", text(&out.stderr));
    assert!(victim.exists(), "the command must not have run");
    // A warning runs and is reported.
    let out = output(
        lab.ssh(&["root@db1", "reboot --help >/dev/null 2>&1; echo ran"]),
        60,
    )
    .await;
    assert_eq!(text(&out.stdout), "ran\n", "{}", text(&out.stderr));

    let commands = lab
        .store
        .list_commands(CommandFilter::default())
        .await
        .unwrap();
    let verdicts: Vec<(&str, Option<&str>)> = commands
        .iter()
        .map(|(c, _)| (c.verdict.as_str(), c.rule.as_deref()))
        .collect();
    assert!(
        verdicts.contains(&("blocked", Some("destructive/rm-rf-root"))),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&("warned", Some("destructive/reboot"))),
        "{verdicts:?}"
    );
    let kinds: Vec<String> = lab
        .store
        .audit_events(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.kind)
        .collect();
    assert!(kinds.iter().any(|k| k == "guardrail.block"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "guardrail.warn"), "{kinds:?}");
    let first = events.try_recv().expect("a webhook event");
    assert_eq!(
        (first.kind.as_str(), first.request_id),
        ("guardrail.block", Some(id))
    );
    // The block is marked in the session's recording.
    let sessions = lab.ended_sessions(id).await;
    let blocked = sessions
        .iter()
        .find(|s| s.exit_status == Some(126))
        .unwrap();
    let cast = std::fs::read_to_string(
        lab.config
            .server
            .recordings_dir
            .join(blocked.recording.as_deref().unwrap()),
    )
    .unwrap();
    assert!(
        cast.contains("\"m\"") && cast.contains("rm-rf-root"),
        "{cast}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_script_without_a_pty_stops_at_the_blocked_line() {
    let lab = Lab::start().await;
    let victim = lab.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let script = lab.path().join("script.sh");
    std::fs::write(
        &script,
        format!("echo one\nrm -rf {}\necho two\n", victim.display()),
    )
    .unwrap();
    // A shell session, and execs of shells that read their commands from standard input.
    for exec in [
        None,
        Some("bash -s"),
        Some("cd / && exec sh"),
        Some("env sh -s x"),
    ] {
        // A request each: blocks count over a request, and its third would end it.
        lab.grant("db1", "root", 1, 3600, 0).await;
        let mut args = vec!["-T", "root@db1"];
        args.extend(exec);
        let mut cmd = lab.ssh(&args);
        cmd.stdin(std::fs::File::open(&script).unwrap());
        let out = output(cmd, 60).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(126), "{exec:?}: {err}");
        assert!(err.contains(NOTICE), "{exec:?}: {err}");
        // What came before the blocked line ran, and its output arrived.
        assert_eq!(text(&out.stdout), "one\n", "{exec:?}");
        assert!(victim.exists(), "{exec:?}");
    }
    // An exec whose input is data is not line-checked: the same bytes arrive whole.
    let mut cmd = lab.ssh(&["-T", "root@db1", "cat"]);
    cmd.stdin(std::fs::File::open(&script).unwrap());
    let out = output(cmd, 60).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, std::fs::read(&script).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_lost_while_a_block_ends_the_session_still_gives_the_block() {
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    let victim = lab.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    // The line before the blocked one kills the shell's sshd: the connection to the target
    // drops while the bastion waits for the target to finish.
    let script = lab.path().join("lost.sh");
    std::fs::write(
        &script,
        format!("echo one\nkill -9 $PPID\nrm -rf {}\n", victim.display()),
    )
    .unwrap();
    let mut cmd = lab.ssh(&["-T", "root@db1"]);
    cmd.stdin(std::fs::File::open(&script).unwrap());
    let out = output(cmd, 60).await;
    let err = text(&out.stderr);
    // Stderr after EOF would be a protocol error, and ssh would exit 255.
    assert_eq!(out.status.code(), Some(126), "{err}");
    assert!(err.contains(NOTICE), "{err}");
    assert!(victim.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_block_after_the_targets_eof_ends_the_session_with_126() {
    use tokio::io::AsyncWriteExt;
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    let victim = lab.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let mut cmd = lab.ssh(&["-T", "root@db1"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The shell's output goes elsewhere: sshd sends EOF, and the bastion passes it on (after
    // waiting 2 s for a status) while the shell still reads its input.
    stdin.write_all(b"exec >/dev/null 2>&1\n").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    stdin
        .write_all(format!("rm -rf {}\n", victim.display()).as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("ssh ends")
        .unwrap();
    // No stderr after the EOF (a protocol error: ssh would exit 255); the status still goes.
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    assert!(victim.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql_piped_into_sqlite3_stops_at_the_blocked_statement() {
    lab::require("sqlite3");
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    let db = lab.path().join("app.db");
    let db = db.to_str().unwrap();
    let sql = lab.path().join("x.sql");
    std::fs::write(
        &sql,
        "CREATE TABLE keep(x);\nINSERT INTO keep VALUES(1);\nSELECT 'before';\nDROP TABLE keep;\nSELECT 'after';\n",
    )
    .unwrap();
    // `sqlite3 FILE` reads its statements from standard input: each line is checked.
    let mut cmd = lab.ssh(&["-T", "root@db1", "sqlite3", db]);
    cmd.stdin(std::fs::File::open(&sql).unwrap());
    let out = output(cmd, 60).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(126), "{err}");
    assert!(
        err.contains("jitgate: blocked by guardrail \"destructive/drop-table\": no DROP TABLE"),
        "{err}"
    );
    // The statements before the blocked one ran to their end before the session ended (their
    // output arrived), the rest did not: the table is still there. An SQL operand is not read
    // from standard input, so this exec is not gated.
    assert_eq!(text(&out.stdout), "before\n");
    let count = format!("sqlite3 {db} 'select count(*) from keep'");
    let out = output(lab.ssh(&["root@db1", &count]), 60).await;
    assert_eq!(format!("{}{}", text(&out.stdout), text(&out.stderr)), "1\n");
}

/// A tmux pane running `ssh -tt root@db1 [remote]` through the lab's bastion, with a prompt
/// that reads `ready>` (its echo does not); returns the tmux socket and a victim folder that
/// a blocked `rm -rf` must leave in place.
async fn interactive(lab: &Lab, remote: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    lab::require("tmux");
    let victim = lab.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let sock = lab.path().join("tmux.sock");
    let ssh = format!(
        "ssh -F {} -J alice@127.0.0.1:{} -tt root@db1 {remote}; sleep 30",
        lab.ssh_config.display(),
        lab.port
    );
    let pane = sock.clone();
    tokio::task::spawn_blocking(move || {
        tmux(
            &pane,
            &[
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "120",
                "-y",
                "30",
                &ssh,
            ],
        );
        // The echo shows rea''dy, only the prompt shows ready.
        line(&pane, "export PS1='rea''dy> '");
        pane_shows_n(&pane, "ready>", 1);
    })
    .await
    .unwrap();
    (sock, victim)
}

/// Types `text` and Enter into the pane.
fn line(sock: &std::path::Path, text: &str) {
    tmux(sock, &["send-keys", "-t", "t", text, "Enter"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shell_started_by_exec_on_a_pty_is_gated_like_a_shell() {
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    let (sock, victim) = interactive(&lab, "bash --norc").await;
    let rm = format!("rm -rf {}", victim.display());
    tokio::task::spawn_blocking(move || {
        line(&sock, &rm);
        pane_shows_n(&sock, "blocked by guardrail", 1);
        line(&sock, "echo still-$((1+1))");
        pane_shows(&sock, "still-2");
    })
    .await
    .unwrap();
    assert!(victim.exists(), "the typed command must not have run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interactive_block_cancels_the_line_and_three_flag_the_request() {
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    let (sock, victim) = interactive(&lab, "").await;
    let rm = format!("rm -rf {}", victim.display());
    tokio::task::spawn_blocking(move || {
        line(&sock, &rm);
        pane_shows_n(&sock, "blocked by guardrail", 1);
        pane_shows_n(&sock, "ready>", 2);
        line(&sock, "echo still-$((1+1))");
        pane_shows(&sock, "still-2");
        pane_shows_n(&sock, "ready>", 3);
        // The default max_blocks is 3: the third block ends the session.
        line(&sock, &rm);
        pane_shows_n(&sock, "blocked by guardrail", 2);
        pane_shows_n(&sock, "ready>", 4);
        line(&sock, &rm);
        pane_shows(&sock, "flagged for review");
    })
    .await
    .unwrap();
    assert!(victim.exists());
    let request = lab.store.get_request(id).await.unwrap().unwrap();
    assert!(request.flagged, "{request:?}");
    assert_eq!(request.state, jitgate::model::RequestState::Revoked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocks_are_counted_over_the_request_not_one_session() {
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    let victim = lab.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let rm = format!("rm -rf {}", victim.display());
    // Three connections, one blocked exec each: the rule's max_blocks (3) is reached.
    for n in 1..=3 {
        let out = output(lab.ssh(&["root@db1", &rm]), 60).await;
        assert_eq!(out.status.code(), Some(126), "{n}: {}", text(&out.stderr));
    }
    let request = lab.store.get_request(id).await.unwrap().unwrap();
    assert!(request.flagged, "{request:?}");
    assert_eq!(request.state, jitgate::model::RequestState::Revoked);
    let out = output(lab.ssh(&["root@db1", "echo in"]), 60).await;
    assert_ne!(out.status.code(), Some(0), "the access is over");
    assert!(victim.exists());
}
