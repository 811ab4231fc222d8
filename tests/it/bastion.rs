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
async fn revocation_closes_a_live_session_with_a_notice() {
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    let mut cmd = lab.ssh(&["root@db1", "echo started; sleep 60"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Wait for the session to be live: its first output line.
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

fn sha256_file(path: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scp_up_and_down_50_mib_and_sftp_when_allowed() {
    lab::require("scp");
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    let local = lab.path().join("big.bin");
    let mut data = vec![0u8; 50 << 20];
    getrandom::fill(&mut data).unwrap();
    std::fs::write(&local, &data).unwrap();
    drop(data);
    let remote = lab.path().join("remote.bin");
    let back = lab.path().join("back.bin");
    let scp = |from: String, to: String| {
        let mut c = tokio::process::Command::new("scp");
        c.arg("-F")
            .arg(&lab.ssh_config)
            .args(["-q", "-o", &lab.jump(), &from, &to])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        c
    };
    let out = output(
        scp(
            local.display().to_string(),
            format!("root@db1:{}", remote.display()),
        ),
        300,
    )
    .await;
    assert!(out.status.success(), "scp up: {}", text(&out.stderr));
    let out = output(
        scp(
            format!("root@db1:{}", remote.display()),
            back.display().to_string(),
        ),
        300,
    )
    .await;
    assert!(out.status.success(), "scp down: {}", text(&out.stderr));
    let want = sha256_file(&local);
    assert_eq!(sha256_file(&remote), want);
    assert_eq!(sha256_file(&back), want);

    // sftp itself, in batch mode.
    let batch = lab.path().join("batch");
    std::fs::write(&batch, format!("ls -l {}\n", remote.display())).unwrap();
    let mut sftp = tokio::process::Command::new("sftp");
    sftp.arg("-F")
        .arg(&lab.ssh_config)
        .args(["-o", &lab.jump(), "-b"])
        .arg(&batch)
        .arg("root@db1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = output(sftp, 60).await;
    assert!(out.status.success(), "sftp: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("52428800"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rsync_and_legacy_scp_through_exec() {
    lab::require("rsync");
    let lab = Lab::start().await;
    lab.grant("db1", "root", 1, 3600, 0).await;
    let src = lab.path().join("tree");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(src.join("sub/b.txt"), "beta\n").unwrap();
    let dst = lab.path().join("copy");
    let rsh = format!(
        "ssh -F {} -J alice@127.0.0.1:{}",
        lab.ssh_config.display(),
        lab.port
    );
    let mut rsync = tokio::process::Command::new("rsync");
    rsync
        .args(["-a", "-e", &rsh])
        .arg(format!("{}/", src.display()))
        .arg(format!("root@db1:{}/", dst.display()))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = output(rsync, 120).await;
    assert!(out.status.success(), "rsync: {}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dst.join("sub/b.txt")).unwrap(),
        "beta\n"
    );
    // Rule 1 has no sftp: scp -O (the exec protocol) still works.
    let mut scp = tokio::process::Command::new("scp");
    scp.arg("-F")
        .arg(&lab.ssh_config)
        .args(["-O", "-q", "-o", &lab.jump()])
        .arg(src.join("a.txt"))
        .arg(format!(
            "root@db1:{}",
            lab.path().join("legacy.txt").display()
        ))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = output(scp, 120).await;
    assert!(out.status.success(), "scp -O: {}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(lab.path().join("legacy.txt")).unwrap(),
        "alpha\n"
    );
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
