//! The control plane end to end: the real `jitgate serve` and CLI, signed calls, policy,
//! approvals, certificates read back by ssh-keygen, refusals and their audit events.

use std::process::Command;

use crate::util::*;

fn standard() -> (Setup, Server) {
    let setup = Setup::new();
    let config = setup.config(Setup::standard_policy());
    let server = Server::start(&config);
    (setup, server)
}

fn audit_kinds(server: &Server, setup: &Setup) -> Vec<String> {
    server
        .audit_events(&setup.dave)
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn auto_approved_request_to_certificate() {
    let (setup, server) = standard();
    // What serve created on its first start is jitgate's alone.
    for dir in ["data", "data/ca", "recordings"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(setup.path().join(dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{dir}");
    }
    let run = server
        .request(&setup.alice, "web1", "deploy", "30m", "INC-1")
        .ok();
    assert!(run.stdout.contains("request 1 approved"), "{run:#?}");
    let run = server.cli(&setup.alice, &["login", "1"]).ok();
    let cert_path = server.home.join(".ssh/jitgate/1-cert.pub");
    assert!(run.stdout.contains(cert_path.to_str().unwrap()), "{run:#?}");
    let config = server.home.join(".ssh/jitgate/1.ssh_config");
    let want = format!(
        "ssh -F {} -J alice@127.0.0.1:{} deploy@web1",
        config.display(),
        server.ssh_port
    );
    assert!(run.stdout.contains(&want), "{}\nwant {want}", run.stdout);

    // Read it back with OpenSSH's own tool.
    let out = Command::new(require_tool("ssh-keygen"))
        .arg("-L")
        .arg("-f")
        .arg(&cert_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Type: ssh-ed25519-cert-v01@openssh.com user certificate"),
        "{text}"
    );
    assert!(text.contains("Key ID: \"jitgate:1:alice\""), "{text}");
    assert!(
        text.contains("Principals: \n                alice"),
        "{text}"
    );
    assert!(text.contains("jitgate-request@jitgate"), "{text}");
    assert!(text.contains("permit-pty"), "{text}");
    assert!(
        !text.contains("permit-port-forwarding"),
        "rule does not allow it: {text}"
    );
    let serial: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Serial: "))
        .unwrap()
        .parse()
        .unwrap();
    // The certified key is alice's enrolled key.
    let fp = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(setup.alice.path.with_extension("pub"))
        .output()
        .unwrap();
    let fp = String::from_utf8_lossy(&fp.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(text.contains(&fp), "certifies alice's key {fp}: {text}");

    // A second certificate gets another serial.
    let run = server.cli(&setup.alice, &["login", "1", "--json"]).ok();
    assert_ne!(run.json()["serial"].as_u64().unwrap(), serial);
    let kinds = audit_kinds(&server, &setup);
    for k in ["request.created", "request.approved", "cert.issued"] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
}

#[test]
fn certificate_validity_is_skew_to_end_of_access() {
    let (setup, server) = standard();
    server
        .request(&setup.alice, "web1", "deploy", "20m", "x")
        .ok();
    let cert = server
        .cli(&setup.alice, &["login", "1", "--json"])
        .ok()
        .json();
    let req = server
        .cli(&setup.alice, &["show", "1", "--json"])
        .ok()
        .json();
    assert_eq!(cert["valid_before"], req["expires_at"]);
    let approved = req["approved_at"].as_i64().unwrap();
    assert_eq!(req["expires_at"].as_i64().unwrap(), approved + 20 * 60);
    let after = cert["valid_after"].as_i64().unwrap();
    let now = jitgate::model::now();
    assert!(
        (now - 120 - after).abs() <= 5,
        "valid_after = now - clock_skew (2m): {after} vs {now}"
    );
}

#[test]
fn one_approval_from_an_approver() {
    let (setup, server) = standard();
    let run = server
        .request(&setup.alice, "db1", "postgres", "15m", "INC-2")
        .ok();
    assert!(run.stdout.contains("request 1 pending"), "{run:#?}");
    server
        .cli(&setup.alice, &["login", "1"])
        .refused("still pending");
    let pending = server
        .cli(&setup.bob, &["requests", "--pending", "--json"])
        .ok()
        .json();
    assert_eq!(pending.as_array().unwrap().len(), 1);
    // DESIGN.md's word for the approver's queue.
    let queue = server.cli(&setup.bob, &["pending", "--json"]).ok().json();
    assert_eq!(queue, pending);
    let run = server
        .cli(&setup.bob, &["approve", "1", "--comment", "ok"])
        .ok();
    assert!(run.stdout.contains("request 1 approved"), "{run:#?}");
    server.cli(&setup.alice, &["login", "1"]).ok();
    let shown = server
        .cli(&setup.alice, &["show", "1", "--json"])
        .ok()
        .json();
    assert_eq!(shown["state"], "approved");
    assert_eq!(shown["approvals"][0]["approver"], "bob");
    assert_eq!(shown["approvals"][0]["comment"], "ok");
}

#[test]
fn break_glass_needs_two_distinct_approvers() {
    let (setup, server) = standard();
    server
        .request(&setup.alice, "db1", "root", "30m", "sev1")
        .ok();
    let run = server.cli(&setup.bob, &["approve", "1"]).ok();
    assert!(run.stdout.contains("1 of 2"), "{run:#?}");
    // The same approver again counts once.
    server
        .cli(&setup.bob, &["approve", "1"])
        .refused("already approved");
    assert_eq!(
        server
            .cli(&setup.alice, &["show", "1", "--json"])
            .ok()
            .json()["state"],
        "pending"
    );
    server.cli(&setup.carol, &["approve", "1"]).ok();
    assert_eq!(
        server
            .cli(&setup.alice, &["show", "1", "--json"])
            .ok()
            .json()["state"],
        "approved"
    );
}

#[test]
fn two_approvers_at_once_count_as_two() {
    let (setup, server) = standard();
    server
        .request(&setup.alice, "db1", "root", "30m", "sev1")
        .ok();
    let (b, c) = std::thread::scope(|s| {
        let b = s.spawn(|| server.cli(&setup.bob, &["approve", "1"]));
        let c = s.spawn(|| server.cli(&setup.carol, &["approve", "1"]));
        (b.join().unwrap(), c.join().unwrap())
    });
    assert_eq!((b.code, c.code), (0, 0), "{b:#?} {c:#?}");
    let shown = server
        .cli(&setup.alice, &["show", "1", "--json"])
        .ok()
        .json();
    assert_eq!(shown["state"], "approved");
    assert_eq!(shown["approvals"].as_array().unwrap().len(), 2);
}

#[test]
fn refusals_are_clear_audited_and_change_nothing() {
    let (setup, server) = standard();
    let a = &setup.alice;
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "request", "--host", "db1", "--login", "postgres", "--ttl", "2h", "--reason", "x",
            ],
            "exceeds the maximum of 15m",
        ),
        (
            &[
                "request", "--host", "db9", "--login", "postgres", "--ttl", "5m", "--reason", "x",
            ],
            "unknown host \"db9\"",
        ),
        (
            &[
                "request", "--host", "web1", "--login", "postgres", "--ttl", "5m", "--reason", "x",
            ],
            "login \"postgres\" is not allowed on web1",
        ),
        (
            &[
                "request", "--host", "web1", "--login", "deploy", "--ttl", "5m",
            ],
            "a reason is required",
        ),
    ];
    for (args, msg) in cases {
        server.cli(a, args).refused(msg);
    }
    assert_eq!(
        server
            .cli(a, &["requests", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        0,
        "nothing stored"
    );
    let refused = audit_kinds(&server, &setup)
        .iter()
        .filter(|k| *k == "request.refused")
        .count();
    assert_eq!(refused, cases.len());

    // Self-approval and non-approvers.
    server
        .request(&setup.bob, "db1", "postgres", "5m", "x")
        .ok();
    server
        .cli(&setup.bob, &["approve", "1"])
        .refused("cannot decide your own request");
    server
        .cli(&setup.alice, &["approve", "1"])
        .refused("no request 1 visible to you");
    server
        .cli(&setup.dave, &["approve", "1"])
        .refused("not an approver");
    assert_eq!(
        server.cli(&setup.bob, &["show", "1", "--json"]).ok().json()["state"],
        "pending"
    );
    // Deny, then approving a decided request is refused; denied stays denied.
    server
        .cli(&setup.carol, &["deny", "1", "--reason", "not now"])
        .ok();
    server
        .cli(&setup.carol, &["approve", "1"])
        .refused("already denied");
    server
        .cli(&setup.bob, &["login", "1"])
        .refused("already denied");
    let kinds = audit_kinds(&server, &setup);
    assert_eq!(
        kinds.iter().filter(|k| *k == "approval.refused").count(),
        4,
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "request.denied"));
    // Trying to decide a request one cannot see is audited like any other refusal.
    let events = server.audit_events(&setup.dave);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "approval.refused" && e["actor"] == "alice"),
        "{events:?}"
    );
}

#[test]
fn text_that_would_redraw_an_approvers_terminal_is_refused() {
    let (setup, server) = standard();
    // A carriage return would let this reason paint a harmless-looking row over its own in
    // `jitgate requests`.
    let run = server.request(
        &setup.alice,
        "db1",
        "postgres",
        "5m",
        "INC-1\r2  pending  alice  deploy@web1",
    );
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr.contains("would redraw an approver's terminal"),
        "{run:#?}"
    );
    server
        .request(&setup.alice, "db1", "postgres", "5m", "INC-1")
        .ok();
    for args in [
        ["approve", "1", "--comment", "ok\x1b[1A"],
        ["deny", "1", "--reason", "no\u{202e}kO"],
        ["revoke", "1", "--reason", "gone\n"],
    ] {
        let run = server.cli(&setup.bob, &args);
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        assert!(run.stderr.contains("would redraw"), "{args:?}: {run:#?}");
    }
    // Nothing changed: one request, still pending, no approval.
    let list = server.cli(&setup.bob, &["requests", "--json"]).ok().json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["state"], "pending");
    assert_eq!(list[0]["approvals"].as_array().unwrap().len(), 0);
}

#[test]
fn taking_people_out_of_roles_ends_what_the_roles_gave() {
    let setup = Setup::new();
    let config = setup.config(Setup::standard_policy());
    let server = Server::start(&config);
    server
        .request(&setup.alice, "web1", "deploy", "30m", "INC-1")
        .ok();
    server
        .request(&setup.alice, "db1", "root", "30m", "sev1")
        .ok();
    server.cli(&setup.bob, &["approve", "2"]).ok();
    drop(server);

    // bob is no longer an sre-lead: his approval of the break-glass request stays on
    // record and no longer counts, so carol's alone does not open it.
    let text = std::fs::read_to_string(&config).unwrap();
    let bob_out = text.replace(
        r#"roles = ["engineer", "sre-lead"]"#,
        r#"roles = ["engineer"]"#,
    );
    assert_ne!(bob_out, text);
    std::fs::write(&config, &bob_out).unwrap();
    let server = Server::start(&config);
    let run = server.cli(&setup.carol, &["approve", "2"]).ok();
    assert!(run.stdout.contains("1 of 2"), "{run:#?}");
    let show = server.cli(&setup.alice, &["show", "2"]).ok();
    assert!(show.stdout.contains("pending"), "{show:#?}");
    assert!(
        show.stdout.contains("approved   by bob") && show.stdout.contains("does not count"),
        "{show:#?}"
    );
    drop(server);

    // alice is no longer an engineer: request 1, approved, gives her no certificate.
    let alice_out = bob_out.replacen(r#"roles = ["engineer"]"#, "roles = []", 1);
    std::fs::write(&config, alice_out).unwrap();
    let server = Server::start(&config);
    server
        .cli(&setup.alice, &["login", "1"])
        .refused("request 1 was granted through role engineer, which alice no longer holds");
    let refused = server
        .audit_events(&setup.dave)
        .into_iter()
        .filter(|e| e["kind"] == "certificate.refused")
        .count();
    assert_eq!(refused, 1);
}

#[test]
fn revoked_stays_revoked() {
    let (setup, server) = standard();
    server
        .request(&setup.alice, "db1", "postgres", "5m", "x")
        .ok();
    server.cli(&setup.bob, &["approve", "1"]).ok();
    server.cli(&setup.alice, &["login", "1"]).ok();
    server
        .cli(&setup.bob, &["revoke", "1", "--reason", "done"])
        .ok();
    server
        .cli(&setup.alice, &["login", "1"])
        .refused("request 1 is already revoked; for new access, run jitgate request --host");
    server
        .cli(&setup.bob, &["approve", "1"])
        .refused("already revoked");
    server
        .cli(&setup.alice, &["revoke", "1"])
        .refused("already revoked");
    assert_eq!(
        server
            .cli(&setup.alice, &["show", "1", "--json"])
            .ok()
            .json()["state"],
        "revoked"
    );
}

#[test]
fn undecided_request_expires_and_access_ends() {
    let setup = Setup::new();
    // A pending_ttl of one second, so the test sees expiry.
    let config = setup.config_with("pending_ttl = \"1s\"", Setup::standard_policy());
    let server = Server::start(&config);
    server
        .request(&setup.alice, "db1", "postgres", "5m", "x")
        .ok();
    // Access that ends one second after approval.
    server
        .request(&setup.alice, "web1", "deploy", "1s", "x")
        .ok();
    std::thread::sleep(std::time::Duration::from_millis(2200));
    server
        .cli(&setup.bob, &["approve", "1"])
        .refused("request 1 expired at");
    server
        .cli(&setup.alice, &["login", "2"])
        .refused("request 2 expired at")
        .refused("UTC; run jitgate request --host web1 --login deploy again");
    // The sweeper writes the expiry into the audit log.
    let expired = wait_for(std::time::Duration::from_secs(5), || {
        let n = audit_kinds(&server, &setup)
            .iter()
            .filter(|k| *k == "request.expired")
            .count();
        (n == 2).then_some(n)
    });
    assert_eq!(expired, Some(2));
}

#[test]
fn request_wait_returns_when_decided() {
    let (setup, server) = standard();
    let waiter = std::thread::scope(|s| {
        let h = s.spawn(|| {
            server.cli(
                &setup.alice,
                &[
                    "request", "--host", "db1", "--login", "postgres", "--ttl", "5m", "--reason",
                    "x", "--wait",
                ],
            )
        });
        let found = wait_for(std::time::Duration::from_secs(10), || {
            let list = server
                .cli(&setup.bob, &["requests", "--pending", "--json"])
                .json();
            (list.as_array().unwrap().len() == 1).then_some(())
        });
        assert!(found.is_some());
        server
            .cli(&setup.bob, &["deny", "1", "--reason", "no"])
            .ok();
        h.join().unwrap()
    });
    assert_eq!(waiter.code, 1, "{waiter:#?}");
    assert!(
        waiter.stdout.contains("request 1 denied by bob: no"),
        "{waiter:#?}"
    );
}

#[test]
fn global_flags_before_or_after_and_exit_codes() {
    let (setup, server) = standard();
    let key = setup.alice.path.to_str().unwrap();
    // Flags after the subcommand …
    let run = Run::from(
        Command::new(jitgate_bin())
            .args([
                "requests",
                "--server",
                &server.url,
                "--identity",
                key,
                "--json",
            ])
            .env("HOME", &server.home)
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{run:#?}");
    // … and before it.
    let run = Run::from(
        Command::new(jitgate_bin())
            .args([
                "--server",
                &server.url,
                "--identity",
                key,
                "--json",
                "requests",
            ])
            .env("HOME", &server.home)
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{run:#?}");
    // Unreachable server: 3.
    let run = Run::from(
        Command::new(jitgate_bin())
            .args([
                "requests",
                "--server",
                "http://127.0.0.1:9",
                "--identity",
                key,
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(
        run.stderr.contains("cannot reach the jitgate server"),
        "{run:#?}"
    );
    // Usage error: 2.
    assert_eq!(jitgate(&["request", "--host"]).code, 2);
    // A key that is not enrolled: refused with the fingerprint.
    let stranger = keygen(setup.path(), "stranger");
    server
        .cli(&stranger, &["requests"])
        .refused("is not enrolled");
    let events = server.audit_events(&setup.dave);
    let refused = events
        .iter()
        .find(|e| e["kind"] == "api.refused")
        .expect("audited");
    assert_eq!(refused["actor"], "unknown");
    assert!(
        refused["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("is not enrolled")
    );
}

#[test]
fn ssh_agent_signs_when_it_holds_the_key() {
    let (setup, server) = standard();
    let agent_dir = tempfile::tempdir().unwrap();
    let sock = agent_dir.path().join("agent.sock");
    let mut agent = Command::new(require_tool("ssh-agent"))
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .spawn()
        .unwrap();
    wait_for(std::time::Duration::from_secs(5), || {
        sock.exists().then_some(())
    })
    .expect("agent socket");
    // A passphrase-protected copy of alice's key, loaded into the agent.
    let key = setup.path().join("alice-locked");
    std::fs::copy(&setup.alice.path, &key).unwrap();
    std::fs::copy(
        setup.alice.path.with_extension("pub"),
        format!("{}.pub", key.display()),
    )
    .unwrap();
    let out = Command::new("ssh-keygen")
        .args(["-q", "-p", "-N", "sekrit", "-P", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let run = |with_agent: bool| {
        let mut cmd = Command::new(jitgate_bin());
        cmd.args(["requests", "--json"])
            .env("JITGATE_URL", &server.url)
            .env("JITGATE_IDENTITY", &key)
            .env("HOME", &server.home);
        if with_agent {
            cmd.env("SSH_AUTH_SOCK", &sock);
        } else {
            cmd.env_remove("SSH_AUTH_SOCK");
        }
        Run::from(cmd.output().unwrap())
    };
    let without = run(false);
    assert_eq!(without.code, 2, "{without:#?}");
    assert!(without.stderr.contains("ssh-add"), "{without:#?}");
    let out = Command::new("ssh-add")
        .arg(&setup.alice.path)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    run(true).ok();
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn healthz_and_metrics_are_unsigned() {
    let (setup, server) = standard();
    server
        .request(&setup.alice, "web1", "deploy", "5m", "x")
        .ok();
    server.cli(&setup.alice, &["login", "1"]).ok();
    let body = http_get(&format!("{}/metrics", server.url));
    assert!(
        body.contains("jitgate_requests_total{state=\"approved\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("jitgate_certificates_issued_total 1"),
        "{body}"
    );
    assert!(
        body.contains("jitgate_api_request_duration_seconds_bucket"),
        "{body}"
    );
    assert_eq!(http_get(&format!("{}/healthz", server.url)), "ok\n");
}

fn http_get(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

#[test]
fn init_creates_keys_once_and_prints_trust_lines() {
    use std::os::unix::fs::PermissionsExt;
    let setup = Setup::new();
    let config = setup.config(Setup::standard_policy());
    let run = jitgate(&["init", "--config", config.to_str().unwrap()]).ok();
    let ca = setup.path().join("data/ca");
    // The folders init creates (the data folder, where the database goes too) are private.
    for dir in [setup.path().join("data"), ca.clone()] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    for name in ["user_ca", "host_ca", "target_ca"] {
        let mode = std::fs::metadata(ca.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
        assert!(
            run.stdout
                .contains(&format!("created {}", ca.join(name).display())),
            "{run:#?}"
        );
    }
    let host_ca = std::fs::read_to_string(ca.join("host_ca.pub")).unwrap();
    let target_ca = std::fs::read_to_string(ca.join("target_ca.pub")).unwrap();
    let key_of = |line: &str| line.split_whitespace().nth(1).unwrap().to_string();
    assert!(
        run.stdout.contains(&format!(
            "@cert-authority * ssh-ed25519 {}",
            key_of(&host_ca)
        )),
        "{run:#?}"
    );
    assert!(run.stdout.contains("TrustedUserCAKeys"), "{run:#?}");
    assert!(run.stdout.contains(&key_of(&target_ca)), "{run:#?}");
    // The private keys never reach the output.
    assert!(!run.stdout.contains("PRIVATE KEY"));
    let before = std::fs::read(ca.join("user_ca")).unwrap();
    let again = jitgate(&["init", "--config", config.to_str().unwrap()]).ok();
    assert!(again.stdout.contains("nothing overwritten"), "{again:#?}");
    assert_eq!(std::fs::read(ca.join("user_ca")).unwrap(), before);
    // A key others can read is refused, naming the fix.
    std::fs::set_permissions(ca.join("user_ca"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = jitgate(&["init", "--config", config.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("chmod 600"), "{run:#?}");
}

#[test]
fn login_out_never_replaces_the_engineers_known_hosts() {
    let (setup, server) = standard();
    server
        .request(&setup.alice, "web1", "deploy", "20m", "x")
        .ok();
    let ssh = setup.path().join("dot-ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let mine = "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n";
    std::fs::write(ssh.join("known_hosts"), mine).unwrap();
    let out = ssh.join("id_ed25519-cert.pub");
    server
        .cli(
            &setup.alice,
            &["login", "1", "--out", out.to_str().unwrap()],
        )
        .ok();
    assert_eq!(
        std::fs::read_to_string(ssh.join("known_hosts")).unwrap(),
        mine
    );
    let config = std::fs::read_to_string(ssh.join("1.ssh_config")).unwrap();
    let ours = ssh.join("1.known_hosts");
    assert!(
        config.contains(&format!("UserKnownHostsFile {}", ours.display())),
        "{config}"
    );
    assert!(
        std::fs::read_to_string(&ours)
            .unwrap()
            .starts_with("@cert-authority"),
    );
}

#[test]
fn one_server_and_one_prune_per_store() {
    use std::io::Read;
    let setup = Setup::new();
    let config = setup.config(Setup::standard_policy());
    let server = Server::start(&config);
    // A second server on the same store (any ports) would close the first one's live
    // sessions as cut off: it is refused before it reads anything.
    let mut second = Command::new(jitgate_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ended = wait_for(std::time::Duration::from_secs(30), || {
        second.try_wait().unwrap()
    });
    let Some(status) = ended else {
        let _ = second.kill();
        panic!("a second server ran on the same store");
    };
    let mut err = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    let pid = server.child.id();
    assert!(
        err.contains(&format!(
            "another jitgate serve (process {pid}) is using the store"
        )),
        "{err}"
    );
    // The first goes on serving.
    server.cli(&setup.alice, &["requests", "--json"]).ok();
    // A prune while another holds the store's prune lock is refused too.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[server]", "[recordings]\nretention = \"1d\"\n\n[server]"),
    )
    .unwrap();
    let db = setup.path().join("data/jitgate.db");
    let _held = jitgate::store::hold(&db, jitgate::store::Holder::Prune).unwrap();
    let run = jitgate(&["recordings", "prune", "--config", config.to_str().unwrap()]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.stderr.contains("another jitgate recordings prune") && !run.stdout.contains("removed"),
        "{run:#?}"
    );
}

#[test]
fn serve_raises_its_open_file_limit_to_the_hard_one() {
    let setup = Setup::new();
    let config = setup.config(Setup::standard_policy());
    let server = Server::start_with_limit(&config, libc::RLIMIT_NOFILE, 256, 4096);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let figures: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(figures, ["4096", "4096"], "{open_files}");
}
