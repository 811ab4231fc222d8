//! A session's lifetime: revocation, certificate expiry and shutdown close it after a notice.

use jitgate::store::SessionFilter;

use super::lab::{Lab, output, text};

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
