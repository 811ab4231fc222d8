//! Port and agent forwarding, and the sftp subsystem, as the access rule allows them.

use super::lab::{self, Lab, output, text};

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
