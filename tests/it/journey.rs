//! The whole product as an engineer and an approver use it: the real `jitgate serve`
//! (API and bastion), the real CLI, stock OpenSSH, and a real sshd target.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::sshd::Sshd;
use crate::util::*;

/// A target trusting the server's target CA, and a config naming it `db1`.
fn lab() -> (Setup, Server, Sshd) {
    lab_started(Server::start)
}

/// `lab`, with the server started by `start`.
fn lab_started(start: impl FnOnce(&std::path::Path) -> Server) -> (Setup, Server, Sshd) {
    let setup = Setup::new();
    // Keys first: the target must trust the target CA before the server runs.
    let bootstrap = setup.config("[[roles]]\nname = \"engineer\"\n");
    jitgate(&["init", "--config", bootstrap.to_str().unwrap()]).ok();
    let target_ca = std::fs::read_to_string(setup.path().join("data/ca/target_ca.pub")).unwrap();
    let sshd = Sshd::start(&setup.path().join("sshd"), target_ca.trim(), None);
    let destructive =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/guardrails/destructive.toml");
    let policy = format!(
        r#"
[[hosts]]
name = "db1"
address = "127.0.0.1:{port}"
labels = {{ env = "prod" }}
host_key = "{host_key}"

[[roles]]
name = "engineer"
[[roles.access]]
hosts = {{ env = "prod" }}
logins = ["root"]
max_ttl = "15m"
approvals = 1
approvers = ["sre-lead"]
guardrails = ["destructive"]
"#,
        port = sshd.port,
        host_key = sshd.host_key
    );
    let config = setup.config(&policy);
    // `include` is a top-level key: it goes before the first table.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("include = [\"{}\"]\n{text}", destructive.display()),
    )
    .unwrap();
    let server = start(&config);
    (setup, server, sshd)
}

/// `jitgate login ID` as alice, and the `ssh …` command it printed.
fn login_command(setup: &Setup, server: &Server, id: &str) -> String {
    let login = server.cli(&setup.alice, &["login", id]).ok();
    let line = login
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("ssh "));
    line.unwrap_or_else(|| panic!("no ssh command in {login:#?}"))
        .trim()
        .to_string()
}

/// Request 1 (db1 as root) by alice, approved by bob; the ssh command `login` printed.
fn approved_command(setup: &Setup, server: &Server, reason: &str) -> String {
    server
        .request(&setup.alice, "db1", "root", "10m", reason)
        .ok();
    server.cli(&setup.bob, &["approve", "1"]).ok();
    login_command(setup, server, "1")
}

/// Starts the `ssh …` command `login` printed, running `remote`, in the background.
fn spawn_printed(command: &str, remote: &str, out: Stdio, err: Stdio) -> Child {
    Command::new("ssh")
        .args(command.split_whitespace().skip(1))
        .args(["-o", "BatchMode=yes", remote])
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap()
}

/// Runs the `ssh …` command `login` printed, with `remote` appended.
fn run_printed(command: &str, remote: &str) -> Run {
    let mut words = command.split_whitespace();
    assert_eq!(words.next(), Some("ssh"), "{command}");
    let out = Command::new(require_tool("ssh"))
        .args(words)
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
        .arg(remote)
        .output()
        .unwrap();
    Run::from(out)
}

#[test]
fn request_approve_login_ssh_revoke() {
    let (setup, server, _sshd) = lab();
    let command = approved_command(&setup, &server, "INC-1");
    assert!(command.contains(" -J alice@127.0.0.1:"), "{command}");

    // The exact printed command reaches the target through the bastion.
    let run = run_printed(&command, "echo through-jitgate; id -un; exit 3");
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(run.stdout.contains("through-jitgate\nroot\n"), "{run:#?}");

    // The session is on record for auditors.
    let sessions = server.cli(&setup.dave, &["sessions", "--json"]).ok().json();
    let s = &sessions.as_array().unwrap()[0];
    assert_eq!(
        (s["user"].as_str(), s["host"].as_str(), s["login"].as_str()),
        (Some("alice"), Some("db1"), Some("root"))
    );
    assert_eq!(s["request_id"], 1);

    // ssh-config --install: plain ssh to db1 goes through the bastion with the current certificate.
    server.cli(&setup.alice, &["ssh-config", "--install"]).ok();
    let config = server.home.join(".ssh/config");
    let out = Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .args(["-o", "BatchMode=yes", "root@db1", "echo via-ssh-config"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("via-ssh-config"),
        "{out:?}"
    );

    // Revoked: the same command no longer opens anything.
    server
        .cli(&setup.bob, &["revoke", "1", "--reason", "done"])
        .ok();
    let run = run_printed(&command, "echo should-not-run");
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(!run.stdout.contains("should-not-run"));
}

#[test]
fn revoke_closes_a_live_session() {
    let (setup, server, _sshd) = lab();
    let command = approved_command(&setup, &server, "INC-2");
    let mut child = spawn_printed(&command, "sleep 300", Stdio::piped(), Stdio::piped());
    // Wait until the bastion has the session on record, then revoke.
    wait_for(Duration::from_secs(15), || {
        let list = server.cli(&setup.dave, &["sessions", "--json"]).json();
        (!list.as_array().unwrap().is_empty()).then_some(())
    })
    .expect("session started");
    server.cli(&setup.bob, &["revoke", "1"]).ok();
    let ended = wait_for(Duration::from_secs(10), || child.try_wait().unwrap());
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(ended.is_some(), "ssh still running after revoke");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("revoked"), "{stderr}");
}

#[test]
fn demo_script_walks_through_and_cleans_up() {
    require_tool("python3");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("JITGATE_BIN", jitgate_bin())
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 0, "{run:#?}");
    for want in [
        "$ jitgate request --host db1",
        "request 1 approved",
        "hello from",
        "refused, as it should be",
        "$ jitgate replay",
        "audit log intact",
        "demo finished",
    ] {
        assert!(run.stdout.contains(want), "{want:?} in {run:#?}");
    }
}

#[test]
fn recording_survives_kill_9_of_the_server() {
    let (setup, mut server, _sshd) = lab();
    let command = approved_command(&setup, &server, "INC-3");
    let output = "for i in $(seq 1 400); do echo line-$i; sleep 0.01; done; sleep 60";
    let mut child = spawn_printed(&command, output, Stdio::null(), Stdio::null());
    let recording = wait_for(Duration::from_secs(15), || {
        let list = server.cli(&setup.dave, &["sessions", "--json"]).json();
        list.as_array()
            .unwrap()
            .first()
            .and_then(|s| s["recording"].as_str().map(String::from))
    })
    .expect("the session has a recording");
    let path = setup.path().join("recordings").join(&recording);
    // Let output flow for a while, then kill the server without warning.
    let seen = wait_for(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.contains("line-100").then_some(())
    });
    server.kill_9();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.is_some(),
        "output reached the recording while the session ran"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    // Valid asciicast up to its last complete line; only a cut last line may be lost.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    if let Err(e) = jitgate::recorder::validate_cast(complete) {
        panic!("{e}\n{complete}");
    }
    assert!(complete.contains("line-100"), "{complete}");
    // No close sealed this recording: verify says so, by name, rather than pass over it.
    let config = setup.path().join("jitgate.toml");
    let verify = || jitgate(&["audit", "verify", "--config", config.to_str().unwrap()]);
    let run = verify();
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout
            .contains("not sealed: 1 recording(s) whose hash never entered the chain")
            && run.stdout.contains(&recording)
            && run.stdout.contains("0 recordings verified"),
        "{run:#?}"
    );
    // The next start closes the session and seals the recording as it stands.
    let server = Server::start(&config);
    let list = server.cli(&setup.dave, &["sessions", "--json"]).json();
    let session = &list.as_array().unwrap()[0];
    assert!(session["ended_at"].as_i64().is_some(), "{session}");
    let run = verify();
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout.contains("1 recordings verified") && !run.stdout.contains("not sealed"),
        "{run:#?}"
    );
    let audit = server.audit_events(&setup.dave);
    assert!(
        audit
            .iter()
            .any(|e| e["kind"] == "session.closed" && e["data"]["cut_off"].is_string()),
        "{audit:#?}"
    );
    // And from now on a change to it is caught.
    let mut text = std::fs::read(&path).unwrap();
    let at = text.windows(8).position(|w| w == b"line-100").unwrap();
    text[at + 5] = b'9';
    std::fs::write(&path, &text).unwrap();
    let run = verify();
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.contains("was changed"), "{run:#?}");
}

/// One recorded exec session through the real server; returns the recording's path.
fn recorded_session(setup: &Setup, server: &Server) -> (String, std::path::PathBuf) {
    let command = approved_command(setup, server, "INC-5");
    let run = run_printed(&command, "echo recorded-output-42");
    assert_eq!(run.code, 0, "{run:#?}");
    let session = wait_for(Duration::from_secs(10), || {
        let list = server.cli(&setup.dave, &["sessions", "--json"]).json();
        let s = list.as_array().unwrap().first().cloned()?;
        s["ended_at"].as_i64().map(|_| s)
    })
    .expect("the session ended and is on record");
    let rel = session["recording"].as_str().unwrap().to_string();
    (
        session["id"].as_str().unwrap().to_string(),
        setup.path().join("recordings").join(rel),
    )
}

/// A file size limit on the server: the 40 MB exec passes it while the recording grows.
const FILE_LIMIT: u64 = 12 << 20;

#[test]
fn a_session_whose_recording_fails_is_closed_and_the_recording_sealed_as_it_stands() {
    let (setup, server, _sshd) =
        lab_started(|config| Server::start_with_file_limit(config, FILE_LIMIT));
    let command = approved_command(&setup, &server, "INC-8");
    let run = run_printed(
        &command,
        "head -c 40000000 /dev/zero | tr '\\0' x | fold -w 99",
    );
    assert_eq!(run.code, 255, "{run:#?}");
    assert!(
        run.stderr
            .contains("jitgate: the session recording failed (")
            && run.stderr.contains("; the session is closed"),
        "{run:#?}"
    );
    assert!(run.stdout.len() < 40_000_000, "{}", run.stdout.len());
    let session = wait_for(Duration::from_secs(10), || {
        let list = server.cli(&setup.dave, &["sessions", "--json"]).json();
        let s = list.as_array().unwrap().first().cloned()?;
        s["ended_at"].as_i64().map(|_| s)
    })
    .expect("the session ended and is on record");
    let id = session["id"].as_str().unwrap();
    let events = server.audit_events(&setup.dave);
    let of = |kind: &str| {
        events
            .iter()
            .find(|e| e["kind"] == kind && e["session_id"] == id)
            .unwrap_or_else(|| panic!("no {kind} for {id}: {events:#?}"))
    };
    assert!(of("recording.failed")["data"]["error"].is_string());
    let failed = events
        .iter()
        .filter(|e| e["kind"] == "recording.failed")
        .count();
    assert_eq!(failed, 1, "audited once: {events:#?}");
    let closed = &of("session.closed")["data"];
    assert!(closed["recording_error"].is_string(), "{closed:#?}");
    let path = setup
        .path()
        .join("recordings")
        .join(session["recording"].as_str().unwrap());
    assert_eq!(
        closed["recording_sha256"].as_str(),
        Some(jitgate::recorder::sha256_file(&path).unwrap().as_str())
    );
    assert!(std::fs::metadata(&path).unwrap().len() <= FILE_LIMIT);
    // Dropped, the server is stopped and every recording checked as asciicast to its end.
    drop(server);
    let config = setup.path().join("jitgate.toml");
    let run = jitgate(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:#?}");
}

#[test]
fn replay_and_tamper_evidence_of_recordings() {
    let (setup, server, _sshd) = lab();
    let (session, path) = recorded_session(&setup, &server);
    // Auditors replay it; the engineer may replay their own; others may not.
    let run = server.cli(&setup.dave, &["replay", &session, "--cat"]).ok();
    assert!(run.stdout.contains("recorded-output-42"), "{run:#?}");
    server
        .cli(&setup.alice, &["replay", &session, "--cat"])
        .ok();
    server
        .cli(&setup.bob, &["replay", &session, "--cat"])
        .refused("only auditors");
    let config = setup.path().join("jitgate.toml");
    let verify = || jitgate(&["audit", "verify", "--config", config.to_str().unwrap()]);
    let run = verify();
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("1 recordings verified"), "{run:#?}");

    let original = std::fs::read(&path).unwrap();
    let rel = path
        .strip_prefix(setup.path().join("recordings"))
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    // One byte changed.
    let mut edited = original.clone();
    let at = edited.windows(2).position(|w| w == b"42").unwrap();
    edited[at] = b'7';
    std::fs::write(&path, &edited).unwrap();
    let run = verify();
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout.contains(&format!("recording {rel}")) && run.stdout.contains("was changed"),
        "{run:#?}"
    );
    // Truncated.
    std::fs::write(&path, &original[..original.len() / 2]).unwrap();
    let run = verify();
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.contains("was changed"), "{run:#?}");
    // Deleted.
    std::fs::remove_file(&path).unwrap();
    let run = verify();
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout.contains(&format!("recording {rel}")) && run.stdout.contains("cannot be read"),
        "{run:#?}"
    );
    // Restored: intact again.
    std::fs::write(&path, &original).unwrap();
    assert_eq!(verify().code, 0);

    // A stored path edited to leave the recordings folder opens nothing.
    let db = setup.path().join("data/jitgate.db");
    sqlite(
        &db,
        &format!("UPDATE sessions SET recording = '../data/ca/user_ca' WHERE id = '{session}'"),
    );
    let run = server.cli(&setup.dave, &["replay", &session, "--cat"]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.stderr.contains("recording path is not valid") && !run.stdout.contains("PRIVATE"),
        "{run:#?}"
    );
}

/// Sets `recordings.retention = "1s"`, lets two seconds pass, and prunes.
fn prune_with_a_second_of_retention(config: &std::path::Path) -> Run {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(
        config,
        text.replace("[server]", "[recordings]\nretention = \"1s\"\n\n[server]"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    jitgate(&["recordings", "prune", "--config", config.to_str().unwrap()]).ok()
}

#[test]
fn prune_removes_expired_recordings_and_verify_stays_green() {
    let (setup, server, _sshd) = lab();
    let (_session, path) = recorded_session(&setup, &server);
    drop(server);
    let config = setup.path().join("jitgate.toml");
    let run = prune_with_a_second_of_retention(&config);
    assert!(
        run.stdout
            .contains("retention 1s entered in the audit chain")
            && run.stdout.contains("1 recording(s) older than 1s removed"),
        "{run:#?}"
    );
    assert!(!path.exists());
    let run = jitgate(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("retention: 1s from event "), "{run:#?}");
}

#[test]
fn prune_counts_a_recording_the_chain_does_not_know_from_the_end_of_its_day() {
    let (setup, server, _sshd) = lab();
    drop(server);
    // A file no session started (a crash between the recording and its store row), whose
    // header says it began a minute ago: verify would count it from the end of today.
    let now = chrono::Utc::now();
    let rel = format!("{}/orphan.cast", now.format("%Y/%m/%d"));
    let path = setup.path().join("recordings").join(&rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let header = format!(
        "{{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": {}}}\n",
        now.timestamp() - 60
    );
    std::fs::write(&path, header).unwrap();
    let config = setup.path().join("jitgate.toml");
    let run = prune_with_a_second_of_retention(&config);
    assert!(
        run.stdout.contains(&format!(
            "kept {rel}: not yet as old as the retention by the audit log's count"
        )),
        "{run:#?}"
    );
    assert!(path.exists());
    let run = jitgate(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:#?}");
}

#[test]
fn prune_keeps_open_sessions_and_verify_refuses_a_prune_retention_would_not_make() {
    let (setup, server, _sshd) = lab();
    let command = approved_command(&setup, &server, "INC-7");
    let mut child = spawn_printed(&command, "sleep 300", Stdio::null(), Stdio::null());
    let session = wait_for(Duration::from_secs(15), || {
        let list = server.cli(&setup.dave, &["sessions", "--json"]).json();
        list.as_array().unwrap().first().cloned()
    })
    .expect("session started");
    let rel = session["recording"].as_str().unwrap().to_string();
    let path = setup.path().join("recordings").join(&rel);
    let config = setup.path().join("jitgate.toml");
    // Older than the retention, but its session is open: kept.
    let run = prune_with_a_second_of_retention(&config);
    assert!(
        run.stdout
            .contains(&format!("kept {rel}: its session is still open"))
            && run.stdout.contains("0 recording(s)"),
        "{run:#?}"
    );
    assert!(path.exists());
    let _ = child.kill();
    let _ = child.wait();
    wait_for(Duration::from_secs(10), || {
        let list = server.cli(&setup.dave, &["sessions", "--json"]).json();
        list.as_array().unwrap()[0]["ended_at"].as_i64()
    })
    .expect("the session ended");
    drop(server);
    let verify = || jitgate(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert_eq!(verify().code, 0, "{:#?}", verify());

    // Someone deletes the fresh recording and appends a removal that names a retention it
    // is far too young for: verify does not take it as an explanation.
    let sha = jitgate::recorder::sha256_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let cfg = jitgate::config::Config::load(&config).unwrap();
    let jitgate::config::StoreUrl::Sqlite(db) = &cfg.store;
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use jitgate::store::Store;
        let store = jitgate::store::SqliteStore::open(db).unwrap();
        let event =
            jitgate::model::NewAuditEvent::new(jitgate::model::now(), "recording.pruned", "system")
                .with("recording", &rel)
                .with("sha256", &sha)
                .with("retention", "365d");
        store.append_audit(event).await.unwrap();
    });
    let run = verify();
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout.contains(&format!("recording {rel}"))
            && run
                .stdout
                .contains("younger than the retention the event names (365d)"),
        "{run:#?}"
    );
}

#[test]
fn blocked_commands_are_indexed_audited_and_never_run() {
    let (setup, server, _sshd) = lab();
    let command = approved_command(&setup, &server, "INC-6");
    // Harmless if it ever ran: no repository here. The guardrails stop it before the target.
    let run = run_printed(&command, "git push --force origin main; echo ran-anyway");
    assert_eq!(run.code, 126, "{run:#?}");
    assert!(
        run.stderr
            .contains("jitgate: blocked by guardrail \"destructive/git-push-force\""),
        "{run:#?}"
    );
    assert!(!run.stdout.contains("ran-anyway"), "{run:#?}");
    run_printed(&command, "echo fine").ok();
    // A command that would redraw an auditor's terminal is listed escaped.
    run_printed(&command, "echo disguised\r\x1b[2Kls").ok();

    // What ran where, and what was stopped.
    let list = server.cli(&setup.dave, &["commands", "--json"]).ok().json();
    let list = list.as_array().unwrap();
    let blocked = list
        .iter()
        .find(|c| c["verdict"] == "blocked")
        .expect("the block is indexed");
    assert_eq!(blocked["rule"], "destructive/git-push-force");
    assert_eq!(
        (blocked["user"].as_str(), blocked["host"].as_str()),
        (Some("alice"), Some("db1"))
    );
    assert!(
        list.iter()
            .any(|c| c["verdict"] == "allowed" && c["text"] == "echo fine"),
        "{list:?}"
    );
    let table = server.cli(&setup.dave, &["commands"]).ok();
    assert!(
        !table.stdout.contains(['\r', '\x1b']) && table.stdout.contains(r"disguised\r\u{1b}[2Kls"),
        "{table:#?}"
    );
    let grep = server
        .cli(
            &setup.dave,
            &["commands", "--grep", "push", "--host", "db1"],
        )
        .ok();
    assert!(
        grep.stdout.contains("destructive/git-push-force") && !grep.stdout.contains("echo fine"),
        "{grep:#?}"
    );
    let events = server.audit_events(&setup.dave);
    assert!(
        events.iter().any(|e| e["kind"] == "guardrail.block"),
        "{events:?}"
    );
}
