//! The bastion end to end: the real OpenSSH client through the in-process bastion to real
//! sshd targets.

mod lab;

use jitgate::store::SessionFilter;
use lab::{Lab, output, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_relays_stdout_stderr_and_exit_status() {
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    let out = output(lab.ssh(&["root@db1", "echo out; echo err >&2; exit 3"]), 60).await;
    assert_eq!(text(&out.stdout), "out\n", "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("err"), "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(3));
    let sessions = lab
        .store
        .list_sessions(SessionFilter {
            request_id: Some(id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let s = &sessions[0];
    assert_eq!(
        (s.user.as_str(), s.host.as_str(), s.login.as_str()),
        ("alice", "db1", "root")
    );
    assert_eq!(s.exit_status, Some(3));
    assert!(s.ended_at.is_some());
    assert_eq!(s.bytes_down, 8, "{s:?}");
}
