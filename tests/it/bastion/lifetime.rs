//! A session's lifetime: how the remote command ends it (exit signal), and revocation,
//! certificate or request expiry and shutdown closing it after a notice.

use jitgate::store::SessionFilter;

use super::lab::{Lab, output, text};

/// `ssh db1 'echo started; sleep 60'`, once its first line shows the session is live; the
/// client's stdout is handed back so that it stays open.
async fn live_session(lab: &Lab) -> (tokio::process::Child, tokio::process::ChildStdout) {
    let mut cmd = lab.ssh(&["root@db1", "echo started; sleep 60"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 8];
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::io::AsyncReadExt::read_exact(&mut stdout, &mut first),
    )
    .await
    .expect("session starts")
    .unwrap();
    assert_eq!(&first, b"started\n");
    (child, stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_closes_a_live_session_with_a_notice() {
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    let (mut child, _stdout) = live_session(&lab).await;
    lab.store
        .revoke(id, "carol", "done here", false, jitgate::model::now())
        .await
        .unwrap();
    lab.hub.end_access(id);
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .expect("the client exits after revocation")
        .unwrap();
    assert_ne!(status.code(), Some(0));
    let mut err = String::new();
    let mut stderr = child.stderr.take().unwrap();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err)
        .await
        .unwrap();
    assert!(err.contains("revoked by carol: done here"), "{err}");
    // The revoked certificate no longer opens anything.
    let out = output(lab.ssh(&["root@db1", "true"]), 60).await;
    assert_eq!(out.status.code(), Some(255));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificate_expiry_closes_the_session() {
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    let t = jitgate::model::now();
    lab.certify(id, t - 60, t + 4).await;
    let mut cmd = lab.ssh(&["root@db1", "sleep 60"]);
    cmd.stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the client exits when the certificate ends")
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("ended at"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_notices_then_closes_and_records_every_session() {
    let mut lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    let (child, _stdout) = live_session(&lab).await;
    lab.shutdown().await;
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("the client exits after shutdown")
        .unwrap();
    let err = text(&out.stderr);
    assert!(
        err.contains("shutting down; this session closes in 2s"),
        "{err}"
    );
    // Nothing half-written: the session's end is in the store once run returned.
    let sessions = lab
        .store
        .list_sessions(SessionFilter {
            request_id: Some(id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].ended_at.is_some(), "{sessions:?}");
    // And nothing listens any more.
    assert!(std::net::TcpStream::connect(("127.0.0.1", lab.port)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jitgate_serve_on_sigterm_gives_notice_and_grace_then_stops() {
    let mut lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    let config = lab.path().join("jitgate.toml");
    let mut server = tokio::task::spawn_blocking(move || crate::util::Server::start(&config))
        .await
        .unwrap();
    lab.port = server.ssh_port;
    let mut cmd = lab.ssh(&["root@db1", "echo started; sleep 60"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 8];
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::io::AsyncReadExt::read_exact(&mut stdout, &mut first),
    )
    .await
    .expect("session starts through jitgate serve")
    .unwrap();
    let pid = server.child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the client exits after SIGTERM and the grace period")
        .unwrap();
    let err = text(&out.stderr);
    assert!(err.contains("shutting down"), "{err}");
    let status = tokio::task::spawn_blocking(move || server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "jitgate serve exits cleanly: {status}");
    let sessions = lab.ended_sessions(id).await;
    assert_eq!(sessions.len(), 1);
}

/// What `ssh -v` says about how the remote command ended: the channel request that carried
/// it (`exit-status` or `exit-signal`) and the exit status it made of that.
fn end_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| {
            (l.contains("client_input_channel_req") && l.contains("rtype exit-"))
                || l.starts_with("debug1: Exit status")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_killed_by_a_signal_ends_the_client_as_directly() {
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    // The shell kills itself: sshd reports exit-signal TERM, not an exit status.
    let command = "echo before; kill -TERM $$; echo after";
    let direct = output(lab.direct_ssh(0, &["-v", "root@127.0.0.1", command]), 60).await;
    let via = output(lab.ssh(&["-v", "root@db1", command]), 60).await;
    let (direct_err, via_err) = (text(&direct.stderr), text(&via.stderr));
    assert_eq!(text(&direct.stdout), "before\n", "{direct_err}");
    assert_eq!(text(&via.stdout), "before\n", "{via_err}");
    // OpenSSH's ssh exits 255 when the command died of a signal.
    assert_eq!(direct.status.code(), Some(255), "{direct_err}");
    assert_eq!(via.status.code(), Some(255), "{via_err}");
    let direct_end = end_lines(&direct_err);
    assert_eq!(
        direct_end,
        [
            "debug1: client_input_channel_req: channel 0 rtype exit-signal reply 0",
            "debug1: Exit status -1",
        ],
        "{direct_err}"
    );
    assert_eq!(end_lines(&via_err), direct_end, "{via_err}");
    // The session's row and its close in the audit log keep the signal, not a status.
    let sessions = lab.ended_sessions(id).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].exit_status, None, "{sessions:?}");
    assert_eq!(
        sessions[0].exit_signal.as_deref(),
        Some("TERM"),
        "{sessions:?}"
    );
    assert_eq!(sessions[0].bytes_down, 7, "{sessions:?}");
    let events = lab.store.audit_events(None).await.unwrap();
    let closed = events
        .iter()
        .find(|e| e.event.kind == "session.closed")
        .expect("session.closed audited");
    assert_eq!(
        closed.event.data.get("exit_signal").map(String::as_str),
        Some("TERM"),
        "{closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_that_closes_its_output_before_it_exits_still_reports_its_status() {
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    // sshd sends EOF when the output closes and the exit status when the command exits; the
    // client answers that EOF with its close at once (its input is already at EOF).
    let command = "echo two; exec >&- 2>&-; sleep 0.5; exit 4";
    let direct = output(lab.direct_ssh(0, &["root@127.0.0.1", command]), 60).await;
    let via = output(lab.ssh(&["root@db1", command]), 60).await;
    assert_eq!(text(&direct.stdout), "two\n", "{}", text(&direct.stderr));
    assert_eq!(direct.status.code(), Some(4), "{}", text(&direct.stderr));
    assert_eq!(text(&via.stdout), "two\n", "{}", text(&via.stderr));
    assert_eq!(via.status.code(), Some(4), "{}", text(&via.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_target_ends_the_session_with_a_notice() {
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    // The session's sshd dies mid-session, as in a reboot: its connection drops with no exit
    // status and no close; OpenSSH's ssh then exits 255.
    let command = "echo started; sleep 1; kill -9 $PPID";
    let direct = output(lab.direct_ssh(0, &["root@127.0.0.1", command]), 60).await;
    assert_eq!(
        text(&direct.stdout),
        "started\n",
        "{}",
        text(&direct.stderr)
    );
    assert_eq!(direct.status.code(), Some(255), "{}", text(&direct.stderr));
    let via = output(lab.ssh(&["root@db1", command]), 30).await;
    let err = text(&via.stderr);
    assert_eq!(text(&via.stdout), "started\n", "{err}");
    assert!(
        err.contains("jitgate: the connection to db1 was lost"),
        "{err}"
    );
    assert_eq!(via.status.code(), Some(255), "{err}");
    let sessions = lab.ended_sessions(id).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].exit_status, None, "{sessions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_expiry_closes_the_session_while_the_certificate_is_valid() {
    let lab = Lab::start().await;
    // Approved now for 8 s; the certificate stays valid for an hour.
    let id = lab.grant("db1", "root", 0, 8, 0).await;
    let t = jitgate::model::now();
    lab.certify(id, t - 60, t + 3600).await;
    let request = lab.store.get_request(id).await.unwrap().unwrap();
    let expires_at = request.expires_at.expect("an approved request expires");
    assert!(expires_at <= t + 8, "{request:?}");
    let (child, _stdout) = live_session(&lab).await;
    let out = tokio::time::timeout(std::time::Duration::from_secs(40), child.wait_with_output())
        .await
        .expect("the client exits when the request expires, long before sleep 60 ends")
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    let notice = format!(
        "access through request {id} ended at {}; closing",
        jitgate::model::format_time(expires_at)
    );
    assert_eq!(
        err.lines().filter(|l| l.contains(&notice)).count(),
        1,
        "one notice line: {err}"
    );
    // Closed for the request, not the certificate: it was still valid.
    assert!(jitgate::model::now() < t + 3600);
    let sessions = lab.ended_sessions(id).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let ended = sessions[0].ended_at.expect("an end");
    assert!(ended >= expires_at, "{sessions:?}");
    // And the expired request no longer opens anything.
    let out = output(lab.ssh(&["root@db1", "true"]), 60).await;
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert!(
        lab.refusals()
            .await
            .iter()
            .any(|r| r.contains(&format!("request {id} expired at"))
                && r.contains("run jitgate request")),
        "{:?}",
        lab.refusals().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_connection_holds_at_most_ten_sessions() {
    // OpenSSH multiplexing: one master connection to db1, then sessions over it.
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    let sock = lab.control_master("root@db1").await;
    let mux = ["-S", &sock, "-o", "ControlMaster=no"];
    let mut held = Vec::new();
    for _ in 0..jitgate::bastion::MAX_SESSIONS {
        let mut args = mux.to_vec();
        args.extend(["root@db1", "echo up; sleep 30"]);
        let mut c = lab.ssh(&args);
        c.stdout(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut line = String::new();
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
        tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
            .await
            .unwrap();
        assert_eq!(line, "up\n");
        held.push(child);
    }
    // The eleventh is refused on that connection (the client then opens a new one, as it
    // does when sshd's MaxSessions refuses it), and the refusal is audited.
    let mut args = mux.to_vec();
    args.extend(["root@db1", "echo eleventh"]);
    let out = output(lab.ssh(&args), 60).await;
    assert!(
        text(&out.stderr).contains("Session open refused by peer"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        lab.refusals()
            .await
            .iter()
            .any(|r| r.contains("more than 10 session channels on one connection")),
        "{:?}",
        lab.refusals().await
    );
    // One ends: the connection has room again.
    let mut first = held.remove(0);
    first.kill().await.unwrap();
    let _ = first.wait().await;
    let mut args = mux.to_vec();
    args.extend(["root@db1", "echo room"]);
    let mut room = false;
    for _ in 0..50 {
        let out = output(lab.ssh(&args), 60).await;
        if !text(&out.stderr).contains("refused by peer") && text(&out.stdout) == "room\n" {
            room = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(room, "a freed session slot is used again");
    let _ = output(lab.ssh(&["-S", &sock, "-O", "exit", "root@db1"]), 30).await;
}
