//! Nested servers: at most `MAX_NESTED` on one jump connection, and how the target connection
//! each one dials is named.

use tokio::io::AsyncBufReadExt;

use super::lab::{Lab, output, text};

/// `ssh` to the bastion itself over the multiplexing socket `sock`.
fn to_bastion(lab: &Lab, sock: &str, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("ssh");
    c.arg("-F")
        .arg(&lab.ssh_config)
        .args(["-S", sock, "-p", &lab.port.to_string()])
        .args(args)
        .arg("alice@127.0.0.1")
        .kill_on_drop(true);
    c
}

/// Starts a multiplexing master connection to the bastion itself (no jump through it yet);
/// returns its control socket.
async fn jump_master(lab: &Lab) -> String {
    let sock = lab.path().join("jump.sock");
    let sock = sock.to_str().unwrap().to_string();
    let master = output(
        to_bastion(lab, &sock, &["-M", "-o", "ControlPersist=60", "-fN"]),
        60,
    )
    .await;
    assert_eq!(master.status.code(), Some(0), "{}", text(&master.stderr));
    sock
}

/// Opens a `-W db1:22` stdio forward over the master connection (one `direct-tcpip`
/// channel, one nested server) and waits for the nested server's banner.
async fn open_nested(lab: &Lab, sock: &str) -> Option<tokio::process::Child> {
    let mut c = to_bastion(lab, sock, &["-o", "ControlMaster=no", "-W", "db1:22"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        out.read_line(&mut banner),
    )
    .await
    .expect("a banner or the end within 30s")
    .unwrap();
    (read > 0 && banner.starts_with("SSH-2.0-")).then_some(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_jump_connection_runs_at_most_ten_nested_servers() {
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    let sock = jump_master(&lab).await;
    let sock = sock.as_str();
    let mut held = Vec::new();
    for n in 0..jitgate::bastion::MAX_NESTED {
        held.push(
            open_nested(&lab, sock)
                .await
                .unwrap_or_else(|| panic!("nested server {} did not start", n + 1)),
        );
    }
    // The eleventh channel is refused, and the refusal audited.
    assert!(
        open_nested(&lab, sock).await.is_none(),
        "an eleventh nested server"
    );
    let reasons = lab.refusals().await;
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("more than 10 nested connections on one jump connection")),
        "{reasons:?}"
    );
    // One ends: the connection has room again.
    let mut first = held.remove(0);
    first.kill().await.unwrap();
    let _ = first.wait().await;
    let mut room = None;
    for _ in 0..50 {
        room = open_nested(&lab, sock).await;
        if room.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(room.is_some(), "a freed nested slot is used again");
    let _ = output(to_bastion(&lab, sock, &["-O", "exit"]), 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_target_certificate_names_the_connection_its_sessions_are_stored_under() {
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    let out = output(lab.ssh(&["root@db1", "true"]), 60).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let log = lab.targets[0].log();
    let named = format!("jitgate:request={id}:user=alice:connection=");
    let connection: String = log
        .split(&named)
        .nth(1)
        .unwrap_or_else(|| panic!("no key id naming request {id} in {log}"))
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    assert!(!connection.is_empty(), "{log}");
    let sessions = lab.ended_sessions(id).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(
        sessions[0].id.starts_with(&format!("{connection}-")),
        "{connection} {sessions:?}"
    );
}

/// A russh client's handler that takes any host key: the test below is about channel
/// requests, which no OpenSSH client sends in that order.
struct AnyHostKey;

impl russh::client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_start_or_a_late_pty_on_one_channel_is_answered_with_failure() {
    use std::sync::Arc;
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    // OpenSSH carries the jump (`-W db1:22`); a russh client logs in to the nested server
    // over its standard input and output.
    let mut jump = tokio::process::Command::new("ssh");
    jump.arg("-F")
        .arg(&lab.ssh_config)
        .args([
            "-p",
            &lab.port.to_string(),
            "-W",
            "db1:22",
            "alice@127.0.0.1",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut jump = jump.spawn().unwrap();
    let stream = tokio::io::join(jump.stdout.take().unwrap(), jump.stdin.take().unwrap());
    let config = Arc::new(russh::client::Config::default());
    let mut nested = russh::client::connect_stream(config, stream, AnyHostKey)
        .await
        .unwrap();
    let key = russh::keys::load_secret_key(&lab.key, None).unwrap();
    let cert = format!("{}-cert.pub", lab.key.display());
    let cert = ssh_key::Certificate::read_file(std::path::Path::new(&cert)).unwrap();
    let auth = nested
        .authenticate_openssh_cert("root", Arc::new(key), cert)
        .await
        .unwrap();
    assert!(auth.success(), "{auth:?}");
    let mut channel = nested.channel_open_session().await.unwrap();
    channel.exec(true, "echo one").await.unwrap();
    // The relay drops a pty request after the start, and a second start; the replies must
    // say so.
    channel
        .request_pty(true, "xterm", 80, 24, 0, 0, &[])
        .await
        .unwrap();
    channel.exec(true, "echo two").await.unwrap();
    let (mut replies, mut out) = (Vec::new(), Vec::new());
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(30), channel.wait())
            .await
            .expect("the channel ends within 30s");
        match msg {
            Some(russh::ChannelMsg::Success) => replies.push("success"),
            Some(russh::ChannelMsg::Failure) => replies.push("failure"),
            Some(russh::ChannelMsg::Data { data }) => out.extend_from_slice(&data),
            Some(russh::ChannelMsg::Close) | None => break,
            Some(_) => {}
        }
    }
    assert_eq!(replies, ["success", "failure", "failure"]);
    assert_eq!(text(&out), "one\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nested_login_with_an_expired_certificate_is_audited() {
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    // The jump logs in with a current certificate; the nested login, inside it, offers one
    // past its window, which the SSH library refuses before jitgate's checks.
    let current = lab.path().join("current-cert.pub");
    std::fs::copy(format!("{}-cert.pub", lab.key.display()), &current).unwrap();
    let t = jitgate::model::now();
    lab.certify(id, t - 600, t - 60).await;
    let expired = format!("{}-cert.pub", lab.key.display());
    let common = std::fs::read_to_string(&lab.ssh_config)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("CertificateFile"))
        .collect::<Vec<_>>()
        .join("\n");
    let config = lab.path().join("ssh_config_hops");
    std::fs::write(
        &config,
        format!(
            "Host 127.0.0.1\n  CertificateFile {}\nHost db1\n  CertificateFile {expired}\n{common}\n",
            current.display()
        ),
    )
    .unwrap();
    let mut ssh = tokio::process::Command::new("ssh");
    ssh.arg("-F")
        .arg(&config)
        .arg("-J")
        .arg(format!("alice@127.0.0.1:{}", lab.port))
        .args(["root@db1", "true"])
        .kill_on_drop(true);
    let out = output(ssh, 60).await;
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    // The engineer is known from the jump's login: the refusal is theirs, at the nested stage.
    let mut refused = Vec::new();
    for _ in 0..100 {
        refused = lab.store.audit_events(None).await.unwrap();
        refused.retain(|e| e.event.kind == "bastion.refused");
        let inner = refused.iter().map(|e| &e.event).find(|e| {
            e.data.get("stage").map(String::as_str) == Some("inner")
                && e.data["reason"].starts_with("no certificate reached jitgate's checks")
        });
        if let Some(e) = inner {
            assert_eq!(e.actor, "alice");
            assert_eq!(e.request_id, Some(id));
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the nested refusal was not audited: {refused:#?}");
}
