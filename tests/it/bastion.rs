//! The bastion end to end: the real OpenSSH client through the in-process bastion to real
//! sshd targets. Access and relaying here; the rest by theme in the submodules.

mod forwarding;
mod guardrails;
mod identity;
mod lab;
mod lifetime;
mod nested;
mod pty;
mod pty_guard;
mod refusals;
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

    // A shell on the bastion itself: it is only a jump host.
    let mut direct = tokio::process::Command::new("ssh");
    direct
        .arg("-F")
        .arg(&lab.ssh_config)
        .args(["-p", &lab.port.to_string(), "alice@127.0.0.1", "true"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = output(direct, 60).await;
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("this is a jump host; use: ssh -J alice@bastion.test root@db1"),
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
        "is still pending approval",
        "was not issued by this jitgate",
        "expired at",
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
    let sock = lab.control_master("root@db2").await;
    let mux = ["-S", sock.as_str(), "-o", "ControlMaster=no", "root@db2"];
    // b closes its output well before it exits: the master answers that EOF with its close,
    // and the exit status must still reach b's client.
    let a = output(lab.ssh(&[&mux[..], &["echo one"]].concat()), 60);
    let b_cmd = "echo two; exec >&- 2>&-; sleep 0.3; exit 4";
    let b = output(lab.ssh(&[&mux[..], &[b_cmd]].concat()), 60);
    let (a, b) = tokio::join!(a, b);
    assert_eq!(text(&a.stdout), "one\n", "{}", text(&a.stderr));
    assert_eq!(text(&b.stdout), "two\n", "{}", text(&b.stderr));
    assert_eq!(b.status.code(), Some(4), "{}", text(&b.stderr));
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
