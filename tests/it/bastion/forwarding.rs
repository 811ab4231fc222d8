//! Port and agent forwarding, and the sftp subsystem, as the access rule allows them.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::lab::{self, Lab, output, text};
use crate::sshd::free_port;

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
    // sftp: the subsystem is refused by rule 1, and so is an exec of the sftp server
    // itself (`sftp -s PATH`).
    for extra in [&[][..], &["-s", "/usr/lib/openssh/sftp-server"][..]] {
        let mut sftp = tokio::process::Command::new("sftp");
        sftp.arg("-F")
            .arg(&lab.ssh_config)
            .args(["-o", &lab.jump()])
            .args(extra)
            .args(["-b", "-", "root@db1"])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = output(sftp, 60).await;
        assert_ne!(
            out.status.code(),
            Some(0),
            "sftp {extra:?} should fail: {}",
            text(&out.stderr)
        );
    }
    let reasons = lab.refusals().await;
    assert!(
        reasons.iter().any(|r| r.contains("subsystem \"sftp\"")),
        "{reasons:#?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("an exec of sftp-server is sftp")),
        "{reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("port forwarding")),
        "{reasons:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn port_forwarding_when_the_rule_allows_it() {
    let lab = Lab::start().await;
    lab.grant("db1", "root", 2, 3600, 0).await;
    // -W through the nested connection: a direct-tcpip from the target to its own sshd.
    let target = format!("127.0.0.1:{}", lab.targets[0].port);
    let out = output(lab.ssh(&["-W", &target, "root@db1"]), 60).await;
    assert!(
        text(&out.stdout).starts_with("SSH-2.0-OpenSSH"),
        "stdout {:?}, stderr {}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // -R: the target listens on a port; what connects to it reaches a listener here.
    let here = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = here.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = here.accept().await {
            let _ = conn.write_all(b"hello from the engineer's side\n").await;
        }
    });
    let remote = free_port();
    let forward = format!("127.0.0.1:{remote}:127.0.0.1:{local}");
    let fetch = format!(
        "python3 -c 'import socket; \
         print(socket.create_connection((\"127.0.0.1\", {remote})).makefile().readline().strip())'"
    );
    let out = output(
        lab.ssh(&[
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            &forward,
            "root@db1",
            &fetch,
        ]),
        60,
    )
    .await;
    assert_eq!(
        text(&out.stdout).trim(),
        "hello from the engineer's side",
        "stderr {}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));

    // -R 0: the target picks the port, and the engineer's ssh is told which.
    let any_port = format!("0:127.0.0.1:{local}");
    let out = output(
        lab.ssh(&[
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            &any_port,
            "root@db1",
            "true",
        ]),
        60,
    )
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let port: u16 = err
        .split("Allocated port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no allocated port in {err}"));
    assert_ne!(port, 0);

    // Each forwarding is audited: no recording shows it.
    let opened = lab.forwardings().await;
    for want in [
        format!("local to {target} from"),
        format!("remote listen on 127.0.0.1:{remote}"),
        // Without a bind address, ssh asks for "localhost".
        format!("remote listen on localhost:{port}"),
    ] {
        assert!(
            opened.iter().any(|o| o.starts_with(&want)),
            "{want}: {opened:#?}"
        );
    }
}

/// Connects to the forwarded display as an X client would: the cookie `xauth` holds for
/// it, then prints the first line the X server (here, the test) answers.
const X_CLIENT: &str = r#"python3 -c '
import os, socket, struct, subprocess
display = os.environ["DISPLAY"]
number = int(display.rsplit(":", 1)[1].split(".")[0])
_, proto, cookie = subprocess.check_output(["xauth", "list", display]).decode().split()[:3]
proto, cookie = proto.encode(), bytes.fromhex(cookie)
pad = lambda b: b + bytes(-len(b) % 4)
conn = socket.create_connection(("127.0.0.1", 6000 + number))
conn.sendall(struct.pack("<cxHHHHxx", b"l", 11, 0, len(proto), len(cookie)) + pad(proto) + pad(cookie))
print(conn.makefile("rb").readline().decode().strip())
'"#;

/// A stand-in X server on a free display: reads a client's connection setup and answers
/// with one line naming the authorisation protocol it was given.
async fn x_server() -> (u16, tokio::task::JoinHandle<()>) {
    for display in 40..100u16 {
        let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", 6000 + display)).await
        else {
            continue;
        };
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut head = [0u8; 12];
                if conn.read_exact(&mut head).await.is_err() {
                    continue;
                }
                let proto_len = u16::from_le_bytes([head[6], head[7]]) as usize;
                let mut proto = vec![0; proto_len.next_multiple_of(4)];
                let _ = conn.read_exact(&mut proto).await;
                proto.truncate(proto_len);
                let reply = format!("X server here, given {}\n", String::from_utf8_lossy(&proto));
                let _ = conn.write_all(reply.as_bytes()).await;
            }
        });
        return (display, task);
    }
    panic!("no free X display between :40 and :99");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn x11_forwarding_only_when_the_rule_allows_it() {
    lab::require("xauth");
    lab::require("python3");
    let lab = Lab::start().await;
    let (display, server) = x_server().await;
    let xauthority = lab.path().join("engineer.Xauthority");
    std::fs::write(&xauthority, b"").unwrap();
    let run = |lab: &Lab| {
        // -Y: with no cookie of its own for the display, ssh makes one up and swaps it for
        // the real (empty) one on the way to the X server.
        let mut c = lab.ssh(&["-Y", "root@db1", X_CLIENT]);
        c.env("DISPLAY", format!("127.0.0.1:{display}"))
            .env("XAUTHORITY", &xauthority);
        c
    };
    lab.grant("db1", "root", 2, 3600, 0).await;
    let out = output(run(&lab), 60).await;
    assert_eq!(
        text(&out.stdout).trim(),
        "X server here, given MIT-MAGIC-COOKIE-1",
        "stderr {}",
        text(&out.stderr)
    );
    assert_eq!(lab.forwardings().await, ["x11 X11 display"]);
    // Rule 0 does not allow it: refused at the bastion, so the target has no display.
    lab.grant("db1", "root", 0, 3600, 0).await;
    let out = output(run(&lab), 60).await;
    assert!(
        text(&out.stderr).contains("X11 forwarding request failed"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("X server here"));
    let reasons = lab.refusals().await;
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("X11 forwarding is not allowed")),
        "{reasons:#?}"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_forwarding_only_when_the_rule_allows_it() {
    lab::require("ssh-agent");
    lab::require("ssh-add");
    let lab = Lab::start().await;
    let sock = lab.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let added = std::process::Command::new("ssh-add")
        .arg(&lab.key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", text(&added.stderr));
    let list = |lab: &Lab| {
        let mut c = lab.ssh(&["-A", "root@db1", "ssh-add -l; echo status=$?"]);
        c.env("SSH_AUTH_SOCK", &sock);
        c
    };
    lab.grant("db1", "root", 2, 3600, 0).await;
    let out = output(list(&lab), 60).await;
    let listed = text(&out.stdout);
    assert!(
        listed.contains("alice") && listed.contains("status=0"),
        "{listed} {}",
        text(&out.stderr)
    );
    assert_eq!(lab.forwardings().await, ["agent SSH agent"]);
    // Rule 0 does not allow it: the target sees no agent.
    lab.grant("db1", "root", 0, 3600, 0).await;
    let out = output(list(&lab), 60).await;
    let listed = text(&out.stdout);
    assert!(
        !listed.contains("alice") && !listed.contains("status=0"),
        "{listed}"
    );
    let _ = agent.kill();
    let _ = agent.wait();
}
