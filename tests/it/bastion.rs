//! The bastion end to end: the real OpenSSH client through the in-process bastion to real
//! sshd targets. Access and relaying here; file transfer and memory in `transfer`; revocation,
//! expiry and shutdown in `lifetime`.

mod lab;
mod lifetime;
mod transfer;

use lab::{Lab, output, sha256_file, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_relays_stdout_stderr_and_exit_status() {
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    let out = output(lab.ssh(&["root@db1", "echo out; echo err >&2; exit 3"]), 60).await;
    assert_eq!(text(&out.stdout), "out\n", "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("err"), "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(3));
    let sessions = lab.ended_sessions(id).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let s = &sessions[0];
    assert_eq!(
        (s.user.as_str(), s.host.as_str(), s.login.as_str()),
        ("alice", "db1", "root")
    );
    assert_eq!(s.exit_status, Some(3));
    assert!(s.ended_at.is_some());
    assert_eq!(s.bytes_down, 8, "{s:?}");
    // The target saw the bastion's own certificate, naming the request and the engineer.
    let log = lab.targets[0].log();
    assert!(
        log.contains(&format!("jitgate:request={id}:user=alice:connection=")),
        "{log}"
    );
    // Recorded as asciicast, its hash in the audit event that closed the session.
    let rel = s.recording.as_deref().expect("a recording");
    let cast = std::fs::read_to_string(lab.config.server.recordings_dir.join(rel)).unwrap();
    assert!(cast.lines().count() >= 2, "{cast}");
    assert!(cast.contains("out"), "{cast}");
    let closed = lab
        .store
        .audit_events(None)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event.kind == "session.closed")
        .expect("session.closed audited");
    assert_eq!(
        closed
            .event
            .data
            .get("recording_sha256")
            .map(String::as_str),
        Some(sha256_file(&lab.config.server.recordings_dir.join(rel)).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refuses_without_request_expired_out_of_scope_and_wrong_login() {
    let lab = Lab::start().await;

    // No certificate at all: the plain key is refused.
    let cert = format!("{}-cert.pub", lab.key.display());
    let _ = std::fs::remove_file(&cert);
    let out = output(lab.ssh(&["root@db1", "true"]), 60).await;
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );

    // A request still waiting for approval.
    lab.request("db1", "root", 0, 3600, 0, 1).await;
    let out = output(lab.ssh(&["root@db1", "true"]), 60).await;
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));

    // A certificate this jitgate never issued (no record of its serial).
    let t = jitgate::model::now();
    lab.certify_as(9999, t - 60, t + 600, false).await;
    let out = output(lab.ssh(&["root@db1", "true"]), 60).await;
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));

    // A request that expired (created two hours ago for one hour), certificate still valid.
    lab.grant("db1", "root", 0, 3600, 7200).await;
    let out = output(lab.ssh(&["root@db1", "true"]), 60).await;
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));

    // Approved for db1, asking for db2.
    lab.grant("db1", "root", 0, 3600, 0).await;
    let out = output(lab.ssh(&["root@db2", "true"]), 60).await;
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("not in request"),
        "{}",
        text(&out.stderr)
    );

    // Approved for root, logging in as postgres.
    let out = output(lab.ssh(&["postgres@db1", "true"]), 60).await;
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );

    let reasons = lab.refusals().await;
    for want in [
        "only jitgate certificates",
        "is pending",
        "was not issued by this jitgate",
        "is expired",
        "db2 is not in request",
        "not the approved login",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "no refusal with {want:?} in {reasons:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn target_down_is_a_clear_error() {
    let lab = Lab::start().await;
    lab.grant("gone", "root", 0, 3600, 0).await;
    let out = output(lab.ssh(&["root@gone", "true"]), 60).await;
    assert_eq!(out.status.code(), Some(255));
    let err = text(&out.stderr);
    assert!(err.contains("jitgate: cannot reach gone"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_with_the_wrong_host_key_is_refused() {
    let lab = Lab::start().await;
    lab.grant("mitm", "root", 0, 3600, 0).await;
    let out = output(lab.ssh(&["root@mitm", "true"]), 60).await;
    assert_eq!(out.status.code(), Some(255));
    let err = text(&out.stderr);
    assert!(
        err.contains("jitgate: refusing mitm: host key of mitm is SHA256:"),
        "{err}"
    );
    assert!(err.contains("not the pinned"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn env_passes_only_the_allow_list() {
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    let out = output(
        lab.ssh(&[
            "-o",
            "SetEnv=LANG=C.UTF-8 LC_TIME=C JITGATE_SECRET=1",
            "root@db1",
            "echo \"[$LANG][$LC_TIME][$JITGATE_SECRET]\"",
        ]),
        60,
    )
    .await;
    assert_eq!(
        text(&out.stdout),
        "[C.UTF-8][C][]\n",
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn host_certificate_target_and_several_channels_in_one_connection() {
    let lab = Lab::start().await;
    lab.grant("db2", "root", 0, 3600, 0).await;
    // db2 has no pinned key: the bastion trusts it through its host-CA certificate.
    let out = output(lab.ssh(&["root@db2", "echo via-cert"]), 60).await;
    assert_eq!(text(&out.stdout), "via-cert\n", "{}", text(&out.stderr));

    // One inner connection, several session channels: a master and two clients over it.
    let sock = lab.path().join("cm-%C");
    let sock_opt = format!("ControlPath={}", sock.display());
    let mut master = lab.ssh(&["-o", "ControlMaster=yes", "-o", &sock_opt, "-N", "root@db2"]);
    let mut master = master.spawn().unwrap();
    let mut ok = false;
    for _ in 0..200 {
        let check = output(lab.ssh(&["-o", &sock_opt, "-O", "check", "root@db2"]), 30).await;
        if check.status.success() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ok, "control master never came up");
    let a = output(lab.ssh(&["-o", &sock_opt, "root@db2", "echo one"]), 60);
    let b = output(
        lab.ssh(&["-o", &sock_opt, "root@db2", "echo two; exit 4"]),
        60,
    );
    let (a, b) = tokio::join!(a, b);
    assert_eq!(text(&a.stdout), "one\n", "{}", text(&a.stderr));
    assert_eq!(text(&b.stdout), "two\n", "{}", text(&b.stderr));
    assert_eq!(b.status.code(), Some(4));
    let _ = master.kill().await;
}

/// Established client connections to `port` on loopback, from /proc/net/tcp.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && cols[2].ends_with(&format!(":{port:04X}")) && cols[3] == "01"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_targets_in_one_jump_connection() {
    let lab = Lab::start().await;
    let cert = format!("{}-cert.pub", lab.key.display());
    lab.grant("db1", "root", 0, 3600, 0).await;
    let db1_cert = lab.path().join("db1-cert.pub");
    std::fs::copy(&cert, &db1_cert).unwrap();
    lab.grant("db2", "root", 0, 3600, 0).await;
    let db2_cert = lab.path().join("db2-cert.pub");
    std::fs::copy(&cert, &db2_cert).unwrap();
    std::fs::remove_file(&cert).unwrap();
    // The jump connection is multiplexed (authenticated with db1's certificate); each target
    // is logged into with its own request's certificate.
    let config = lab.path().join("ssh_config_mux");
    let common = std::fs::read_to_string(&lab.ssh_config)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("CertificateFile") && !l.contains("ControlMaster"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(
        &config,
        format!(
            "Host 127.0.0.1\n  CertificateFile {}\n  ControlMaster auto\n  ControlPath {}/jump-%C\n  ControlPersist 30\n\
             Host db1\n  CertificateFile {}\nHost db2\n  CertificateFile {}\n{common}\n",
            db1_cert.display(),
            lab.path().display(),
            db1_cert.display(),
            db2_cert.display(),
        ),
    )
    .unwrap();
    let ssh = |target: &str, command: &str| {
        let mut c = tokio::process::Command::new("ssh");
        c.arg("-F")
            .arg(&config)
            .arg("-J")
            .arg(format!("alice@127.0.0.1:{}", lab.port))
            .args([target, command])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        c
    };
    let mut first = ssh("root@db1", "echo one; sleep 3").spawn().unwrap();
    let mut stdout = first.stdout.take().unwrap();
    let mut line = [0u8; 4];
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::io::AsyncReadExt::read_exact(&mut stdout, &mut line),
    )
    .await
    .expect("first session starts")
    .unwrap();
    assert_eq!(&line, b"one\n");
    let second = output(ssh("root@db2", "echo two; sleep 1; echo done"), 60);
    let count = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        connections_to(lab.port)
    };
    let (second, during) = tokio::join!(second, count);
    assert_eq!(
        text(&second.stdout),
        "two\ndone\n",
        "{}",
        text(&second.stderr)
    );
    assert_eq!(during, 1, "both targets share one jump connection");
    assert!(first.wait().await.unwrap().success());
    // End the multiplexing master.
    let mut stop = tokio::process::Command::new("ssh");
    stop.arg("-F")
        .arg(&config)
        .args(["-O", "exit", "-p", &lab.port.to_string(), "alice@127.0.0.1"])
        .stdin(std::process::Stdio::null());
    let _ = output(stop, 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn port_forwarding_and_sftp_refused_by_rule() {
    let lab = Lab::start().await;
    lab.grant("db1", "root", 1, 3600, 0).await;
    // -W through the nested connection is a direct-tcpip there: refused.
    let out = output(lab.ssh(&["-W", "127.0.0.1:22", "root@db1"]), 60).await;
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("port forwarding is not allowed"),
        "{}",
        text(&out.stderr)
    );
    // -R asked with ExitOnForwardFailure: refused, ssh gives up.
    let out = output(
        lab.ssh(&[
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            "0:127.0.0.1:1",
            "root@db1",
            "sleep 5",
        ]),
        60,
    )
    .await;
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // sftp: the subsystem is refused by rule 1.
    let mut sftp = tokio::process::Command::new("sftp");
    sftp.arg("-F")
        .arg(&lab.ssh_config)
        .args(["-o", &lab.jump(), "-b", "-", "root@db1"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = output(sftp, 60).await;
    assert_ne!(
        out.status.code(),
        Some(0),
        "sftp should fail: {}",
        text(&out.stderr)
    );
    let reasons = lab.refusals().await;
    assert!(
        reasons.iter().any(|r| r.contains("subsystem \"sftp\"")),
        "{reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("port forwarding")),
        "{reasons:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_sessions_succeed() {
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    let runs = (0..50).map(|i| {
        let cmd = lab.ssh(&["root@db1", &format!("echo n{i}")]);
        async move { (i, output(cmd, 300).await) }
    });
    for (i, out) in futures_join_all(runs).await {
        assert_eq!(
            text(&out.stdout),
            format!("n{i}\n"),
            "session {i}: {}",
            text(&out.stderr)
        );
    }
}

/// `join_all` without the futures crate: spawn each, await in order.
async fn futures_join_all<F, T>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Runs tmux on its own socket.
fn tmux(sock: &std::path::Path, args: &[&str]) -> String {
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
fn pane_shows(sock: &std::path::Path, want: &str) -> String {
    let mut screen = String::new();
    for _ in 0..600 {
        screen = tmux(sock, &["capture-pane", "-p", "-t", "t"]);
        if screen.contains(want) {
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
        tmux(
            &sock,
            &["send-keys", "-t", "t", "export PS1='ready> '", "Enter"],
        );
        pane_shows(&sock, "ready> ");
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
