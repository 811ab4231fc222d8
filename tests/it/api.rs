//! The API's edges: signatures that do not verify, replays, clock skew, TLS, webhooks to a
//! real local receiver, and hours.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use jitgate::api::auth;
use jitgate::api::client::Signer;

use crate::util::*;

/// One hand-made signed call.
struct Call<'a> {
    method: &'a str,
    path: &'a str,
    body: &'a str,
    timestamp: i64,
    nonce: &'a str,
}

/// Sends `call` signed by `key`; `tamper_body` replaces the body after signing.
fn raw_call(url: &str, key: &Key, call: &Call, tamper_body: Option<&str>) -> (u16, String) {
    let Call {
        method,
        path,
        body,
        timestamp,
        nonce,
    } = *call;
    let signer = Signer::from_identity(&key.path).unwrap();
    let msg = auth::signed_message(method, path, body.as_bytes(), timestamp, nonce);
    let sig = auth::encode_signature(&signer.sign(&msg).unwrap());
    let sent = tamper_body.unwrap_or(body).to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{url}{path}"))
            .header(auth::HEADER_SIGNATURE, sig)
            .header(auth::HEADER_TIMESTAMP, timestamp.to_string())
            .header(auth::HEADER_NONCE, nonce)
            .header("content-type", "application/json")
            .body(sent)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

fn refused_calls(server: &Server, setup: &Setup) -> Vec<String> {
    server
        .audit_events(&setup.dave)
        .iter()
        .filter(|e| e["kind"] == "api.refused")
        .map(|e| e["data"]["reason"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn bad_signatures_replays_and_skew_are_refused_and_audited() {
    let setup = Setup::new();
    let server = Server::start(&setup.config(Setup::standard_policy()));
    let body = r#"{"host":"web1","login":"deploy","ttl":"5m","reason":"x"}"#;
    let now = jitgate::model::now();
    let nonce = auth::new_nonce();

    // The body changed after signing: refused, nothing created.
    let tampered = body.replace("web1", "db1");
    let (status, text) = raw_call(
        &server.url,
        &setup.alice,
        &Call {
            method: "POST",
            path: "/v1/requests",
            body,
            timestamp: now,
            nonce: &nonce,
        },
        Some(&tampered),
    );
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("bad signature"), "{text}");

    // A good call works once; the same signed call again is a replay.
    let nonce = auth::new_nonce();
    let call = Call {
        method: "POST",
        path: "/v1/requests",
        body,
        timestamp: now,
        nonce: &nonce,
    };
    let (status, text) = raw_call(&server.url, &setup.alice, &call, None);
    assert_eq!(status, 201, "{text}");
    let (status, text) = raw_call(&server.url, &setup.alice, &call, None);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("nonce was already used"), "{text}");

    // Outside ±120 s, to the ends of the clock.
    for timestamp in [now - 300, now + 300, i64::MIN, i64::MAX] {
        let (status, text) = raw_call(
            &server.url,
            &setup.alice,
            &Call {
                method: "POST",
                path: "/v1/requests",
                body,
                timestamp,
                nonce: &auth::new_nonce(),
            },
            None,
        );
        assert_eq!(status, 401, "{text}");
        assert!(text.contains("check your clock"), "{text}");
    }

    // Unsigned.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        reqwest::get(format!("{}/v1/requests", server.url))
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status.as_u16(), 401);

    // Exactly one request exists: the good one.
    let list = server
        .cli(&setup.alice, &["requests", "--json"])
        .ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let reasons = refused_calls(&server, &setup);
    assert_eq!(reasons.len(), 7, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("bad signature")));
    assert!(reasons.iter().any(|r| r.contains("replayed")));
    // Who is named: the signer when the signature verified; when it did not, nobody, and
    // the key's owner only as a claim (anyone can put alice's public key in a header).
    let events = server.audit_events(&setup.dave);
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "api.refused")
        .collect();
    for e in &refused {
        let reason = e["data"]["reason"].as_str().unwrap();
        if reason.contains("bad signature") {
            assert_eq!(e["actor"], "unknown", "{e}");
            assert_eq!(e["data"]["claimed_user"], "alice", "{e}");
        } else if reason.contains("replayed") || reason.contains("check your clock") {
            assert_eq!(e["actor"], "alice", "{e}");
            assert!(e["data"].get("claimed_user").is_none(), "{e}");
        }
    }
}

#[test]
fn a_call_signed_before_a_restart_cannot_be_replayed_after_it() {
    let setup = Setup::new();
    let config = setup.config(Setup::standard_policy());
    let body = r#"{"host":"web1","login":"deploy","ttl":"5m","reason":"x"}"#;
    let nonce = auth::new_nonce();
    let server = Server::start(&config);
    let call = Call {
        method: "POST",
        path: "/v1/requests",
        body,
        timestamp: jitgate::model::now(),
        nonce: &nonce,
    };
    let (status, text) = raw_call(&server.url, &setup.alice, &call, None);
    assert_eq!(status, 201, "{text}");
    drop(server);
    // Restarted in a later second, well inside the clock-skew window of the call.
    std::thread::sleep(Duration::from_millis(1100));
    // The new server never saw the nonce, but refuses the call all the same.
    let server = Server::start(&config);
    let (status, text) = raw_call(&server.url, &setup.alice, &call, None);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("before this server started"), "{text}");
    let list = server
        .cli(&setup.alice, &["requests", "--json"])
        .ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1, "no second request");
}

/// Sends `n` unsigned calls to `server`, one after another; each is refused.
fn refuse_unsigned(server: &Server, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        for _ in 0..n {
            let status = client
                .get(format!("{}/v1/requests", server.url))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status.as_u16(), 401);
        }
    })
}

/// The refused calls the audit log accounts for: each `api.refused` event stands for itself
/// and the `suppressed` before it.
fn refusals_accounted(server: &Server, setup: &Setup) -> usize {
    server
        .audit_events(&setup.dave)
        .iter()
        .filter(|e| e["kind"] == "api.refused")
        .map(|e| {
            let suppressed = e["data"]["suppressed"].as_str().unwrap_or("0");
            1 + suppressed.parse::<usize>().unwrap()
        })
        .sum()
}

#[test]
fn a_flood_of_refused_calls_is_counted_not_audited_one_by_one() {
    let setup = Setup::new();
    let server = Server::start(&setup.config(Setup::standard_policy()));
    let started = std::time::Instant::now();
    refuse_unsigned(&server, 300);
    let took = started.elapsed().as_secs() as usize;
    std::thread::sleep(Duration::from_millis(1100));
    refuse_unsigned(&server, 1);
    let events = server.audit_events(&setup.dave);
    let refused: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["kind"] == "api.refused")
        .collect();
    // A burst of ten, about one a second after it, and the last one after the pause.
    assert!(refused.len() <= 10 + took + 2, "{}", refused.len());
    // Every refusal is accounted for: written, or counted on a later written one.
    assert_eq!(refusals_accounted(&server, &setup), 301, "{refused:?}");
}

#[test]
fn refusals_counted_while_throttled_reach_the_log_when_the_flood_stops() {
    let setup = Setup::new();
    let config = setup.config(Setup::standard_policy());
    let server = Server::start(&config);
    // Ten written, five counted, and no refusal after them to carry the count.
    refuse_unsigned(&server, 15);
    let deadline = Instant::now() + jitgate::throttle::FLUSH_EVERY + Duration::from_secs(10);
    let mut accounted = refusals_accounted(&server, &setup);
    while accounted < 15 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        accounted = refusals_accounted(&server, &setup);
    }
    assert_eq!(accounted, 15);
    let events = server.audit_events(&setup.dave);
    assert!(
        events
            .iter()
            .any(|e| e["data"]["reason"] == jitgate::throttle::COUNTED_REASON),
        "{events:?}"
    );
    // A flood the server stops in the middle of: counted as the server stops.
    refuse_unsigned(&server, 15);
    drop(server);
    let server = Server::start(&config);
    assert_eq!(refusals_accounted(&server, &setup), 30);
}

/// A tiny HTTP receiver: answers `fail_first` calls with 500, then 200; sends bodies.
fn receiver(fail_first: usize) -> (String, mpsc::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            seen += 1;
            let status = if seen <= fail_first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            if seen > fail_first {
                let _ = tx.send(serde_json::from_slice(&body).unwrap());
            }
        }
    });
    (url, rx)
}

#[test]
fn webhooks_are_delivered_and_retried() {
    let setup = Setup::new();
    // The receiver fails the first delivery: the sender must retry.
    let (url, rx) = receiver(1);
    let policy = format!(
        "{}\n[[webhooks]]\nurl = \"{url}\"\n",
        Setup::standard_policy()
    );
    let config = setup.config(&policy);
    let server = Server::start(&config);
    server
        .request(&setup.alice, "db1", "postgres", "5m", "INC-7")
        .ok();
    server.cli(&setup.bob, &["approve", "1"]).ok();
    server.cli(&setup.bob, &["revoke", "1"]).ok();
    server
        .request(&setup.alice, "db1", "postgres", "5m", "x")
        .ok();
    server
        .cli(&setup.carol, &["deny", "2", "--reason", "no"])
        .ok();
    let mut got = Vec::new();
    let mut heads = Vec::new();
    while got.len() < 6 {
        let event = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("webhook delivered");
        got.push((
            event["event"].as_str().unwrap().to_string(),
            event["request_id"].as_i64().unwrap(),
        ));
        // Every delivery carries the audit chain's head, a copy kept outside the server.
        let head = event["audit_head"]
            .as_str()
            .expect("audit_head")
            .to_string();
        let (seq, hash) = head.split_once(':').unwrap();
        assert_eq!(hash.len(), 64, "{head}");
        heads.push((seq.parse::<i64>().unwrap(), head.clone()));
        if event["event"] == "request.created" && event["request_id"] == 1 {
            assert_eq!(event["data"]["reason"], "INC-7");
            assert_eq!(event["data"]["requester"], "alice");
        }
        if event["event"] == "request.approval" {
            assert_eq!(event["data"]["approver"], "bob");
            assert_eq!(event["data"]["approvals"], "1 of 1");
        }
    }
    got.sort();
    let want: Vec<(String, i64)> = [
        ("request.approval", 1),
        ("request.approved", 1),
        ("request.created", 1),
        ("request.created", 2),
        ("request.denied", 2),
        ("request.revoked", 1),
    ]
    .iter()
    .map(|(k, i)| (k.to_string(), *i))
    .collect();
    assert_eq!(got, want);
    // The newest head a receiver holds checks the log.
    let (_, newest) = heads.iter().max().unwrap();
    let run = jitgate(&[
        "audit",
        "verify",
        "--config",
        config.to_str().unwrap(),
        "--head",
        newest,
    ]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("holds the kept head"), "{run:#?}");
}

#[test]
fn webhooks_never_block_the_api() {
    let setup = Setup::new();
    // A receiver that accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let _hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let policy = format!(
        "{}\n[[webhooks]]\nurl = \"{url}\"\n",
        Setup::standard_policy()
    );
    let server = Server::start(&setup.config(&policy));
    for _ in 0..3 {
        server
            .request(&setup.alice, "web1", "deploy", "5m", "x")
            .ok();
    }
    assert_eq!(
        server
            .cli(&setup.alice, &["requests", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

/// A policy: engineers may reach db1 as postgres for up to 15 minutes within `hours`.
fn db1_within(hours: &str) -> String {
    format!(
        r#"
[[hosts]]
name = "db1"
address = "127.0.0.1:1"
[[roles]]
name = "engineer"
[[roles.access]]
hosts = ["db1"]
logins = ["postgres"]
max_ttl = "15m"
hours = "{hours}"
"#
    )
}

#[test]
fn outside_allowed_hours_is_refused() {
    let setup = Setup::new();
    // A one-hour window starting two hours from now, every day: now is outside it.
    let now = jitgate::model::now();
    let start = ((now / 3600 + 2) % 24) as u32;
    let hours = format!("* {:02}:00-{:02}:00 UTC", start, (start + 1) % 24);
    let server = Server::start(&setup.config(&db1_within(&hours)));
    server
        .request(&setup.alice, "db1", "postgres", "5m", "x")
        .refused(&format!("allowed only {hours}"));
}

#[test]
fn inside_allowed_hours_the_certificate_ends_with_them() {
    let setup = Setup::new();
    // Every day from ten minutes ago to five minutes from now (wrapping past midnight when
    // it must): a 15-minute request is granted, its certificate only until the window ends.
    let minute = jitgate::model::now() / 60;
    let hhmm = |m: i64| format!("{:02}:{:02}", m.rem_euclid(1440) / 60, m.rem_euclid(60));
    let hours = format!("* {}-{} UTC", hhmm(minute - 10), hhmm(minute + 5));
    let server = Server::start(&setup.config(&db1_within(&hours)));
    let run = server
        .request(&setup.alice, "db1", "postgres", "15m", "x")
        .ok();
    assert!(
        run.stdout.contains(&format!(
            "note: access is allowed only {hours}; certificates and sessions end at"
        )),
        "{}",
        run.stdout
    );
    let cert = server
        .cli(&setup.alice, &["login", "1", "--json"])
        .ok()
        .json();
    let req = server
        .cli(&setup.alice, &["show", "1", "--json"])
        .ok()
        .json();
    assert_eq!(cert["valid_before"].as_i64(), Some((minute + 5) * 60));
    assert!(req["expires_at"].as_i64().unwrap() > (minute + 5) * 60);
    assert_eq!(req["hours"].as_str(), Some(hours.as_str()));
    assert_eq!(req["hours_end"].as_i64(), Some((minute + 5) * 60));
    let shown = server.cli(&setup.alice, &["show", "1"]).ok().stdout;
    assert!(
        shown.contains(&format!("hours      {hours} (access ends at ")),
        "{shown}"
    );
}

/// The `[server]` lines for `api.crt` and `api.key`, as `tls_files` writes them.
const TLS_FILES: &str = "tls_cert = \"api.crt\"\ntls_key = \"api.key\"";

/// A CA, and a certificate for 127.0.0.1 signed by it, in `dir` (`api.crt`, `api.key`);
/// returns the CA's certificate, for clients to trust.
fn tls_files(dir: &Path) -> PathBuf {
    require_tool("openssl");
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A CA, and a server certificate for 127.0.0.1 signed by it.
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=jitgate test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "api.key",
                "-out",
                "api.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "api.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "api.crt",
    ]);
    dir.join("ca.crt")
}

#[test]
fn api_over_tls() {
    let setup = Setup::new();
    let cert = tls_files(setup.path());
    let config = setup.config_with(TLS_FILES, Setup::standard_policy());
    let server = Server::start(&config);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    // Without trusting the certificate: refused by the client (unreachable).
    let run = server.cli(&setup.alice, &["requests"]);
    assert_eq!(run.code, 3, "{run:#?}");
    // Trusting it: works.
    let run = Run::from(
        std::process::Command::new(jitgate_bin())
            .args(["requests", "--json", "--ca-cert"])
            .arg(&cert)
            .env("JITGATE_URL", &server.url)
            .env("JITGATE_IDENTITY", &setup.alice.path)
            .env("HOME", &server.home)
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{run:#?}");
}

/// A connection to the API at `url`, as a client that then sends nothing.
fn connect(url: &str) -> TcpStream {
    let addr = url.split_once("://").map_or(url, |(_, a)| a);
    TcpStream::connect(addr).unwrap()
}

/// Whether the server closes `socket` before `deadline` (whatever it sends first is read
/// and dropped).
fn closed_by(socket: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn idle_connections_are_closed_by_the_deadline_and_the_api_still_answers() {
    // Plain and TLS side by side, so that the test waits for the deadline once.
    let plain_setup = Setup::new();
    let plain = Server::start(&plain_setup.config(Setup::standard_policy()));
    let tls_setup = Setup::new();
    let ca = tls_files(tls_setup.path());
    let tls = Server::start(&tls_setup.config_with(TLS_FILES, Setup::standard_policy()));
    let opened = Instant::now();
    // Plain: no request headers. TLS: no handshake.
    let mut idle: Vec<TcpStream> = (0..50).map(|_| connect(&plain.url)).collect();
    idle.extend((0..50).map(|_| connect(&tls.url)));
    // A handshake begun and stalled: a record header, then a part of its ClientHello.
    let mut stalled = connect(&tls.url);
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00])
        .unwrap();
    idle.push(stalled);
    // Headers of a signed call whose body never comes.
    let mut no_body = connect(&plain.url);
    no_body
        .write_all(b"POST /v1/requests HTTP/1.1\r\nhost: jitgate\r\ncontent-length: 100\r\n\r\n{")
        .unwrap();
    idle.push(no_body);
    let limits = jitgate::api::listen::Limits::API;
    let longest = [
        limits.handshake,
        limits.headers,
        limits.writes,
        jitgate::api::listen::BODY,
    ]
    .into_iter()
    .max()
    .unwrap();
    // Requests pipelined without end, their answers never read: the server's writes stall.
    let unread = {
        let mut socket = connect(&plain.url);
        socket
            .set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let give_up = opened + longest + Duration::from_secs(10);
        std::thread::spawn(move || {
            let call = b"GET /metrics HTTP/1.1\r\nhost: jitgate\r\n\r\n";
            let mut at = 0;
            loop {
                match socket.write(&call[at..]) {
                    Ok(0) => return true,
                    Ok(n) => at = (at + n) % call.len(),
                    // Still open, not reading: the calls wait in the buffers.
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        if Instant::now() > give_up {
                            return false;
                        }
                    }
                    // Reset: the server closed it with our calls unread.
                    Err(_) => return true,
                }
            }
        })
    };

    plain.cli(&plain_setup.alice, &["requests"]).ok();
    let ca = ca.to_str().unwrap();
    tls.cli(&tls_setup.alice, &["requests", "--ca-cert", ca])
        .ok();

    let deadline = opened + longest + Duration::from_secs(5);
    for (i, socket) in idle.iter_mut().enumerate() {
        assert!(closed_by(socket, deadline), "connection {i} is still open");
    }
    assert!(
        unread.join().unwrap(),
        "a connection that reads nothing is still open"
    );
}

#[test]
fn a_tls_file_that_cannot_be_read_stops_serve_at_start() {
    let setup = Setup::new();
    let config = setup.config_with(
        "tls_cert = \"missing.crt\"\ntls_key = \"missing.key\"",
        Setup::standard_policy(),
    );
    let mut child = std::process::Command::new(jitgate_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_for(Duration::from_secs(30), || child.try_wait().unwrap());
    if exited.is_none() {
        let _ = child.kill();
        panic!("serve kept running without its API");
    }
    let run = Run::from(child.wait_with_output().unwrap());
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.stderr.contains("tls") && run.stderr.contains("missing.crt"),
        "{run:#?}"
    );
}

#[test]
fn expiry_reaches_webhooks() {
    let setup = Setup::new();
    let (url, rx) = receiver(0);
    let policy = format!(
        "{}\n[[webhooks]]\nurl = \"{url}\"\nevents = [\"request.expired\"]\n",
        Setup::standard_policy()
    );
    let config = setup.config_with("pending_ttl = \"1s\"", &policy);
    let server = Server::start(&config);
    server
        .request(&setup.alice, "db1", "postgres", "5m", "x")
        .ok();
    let event = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("request.expired delivered");
    assert_eq!(event["event"], "request.expired");
    assert_eq!(event["request_id"], 1);
    // Only the subscribed event was sent.
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
}

#[test]
fn requests_lists_the_callers_own_behind_many_others() {
    let setup = Setup::new();
    let config = setup.config(Setup::standard_policy());
    {
        let server = Server::start(&config);
        server
            .request(&setup.alice, "web1", "deploy", "5m", "mine")
            .ok();
    }
    // 600 newer requests by someone else, straight into the store.
    let cfg = jitgate::config::Config::load(&config).unwrap();
    let jitgate::config::StoreUrl::Sqlite(db) = &cfg.store;
    let rule = cfg.rule_ref("engineer", 0).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use jitgate::store::Store;
        let store = jitgate::store::SqliteStore::open(db).unwrap();
        let t = jitgate::model::now();
        for _ in 0..600 {
            store
                .create_request(jitgate::model::NewRequest {
                    requester: "bob".into(),
                    host: "web1".into(),
                    login: "deploy".into(),
                    ttl_secs: 300,
                    reason: "theirs".into(),
                    rule: rule.clone(),
                    approvals_needed: 0,
                    created_at: t,
                    pending_until: t + 3600,
                })
                .await
                .unwrap();
        }
    });
    let server = Server::start(&config);
    let list = server
        .cli(&setup.alice, &["requests", "--json"])
        .ok()
        .json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["reason"], "mine");
    // Bob sees his newest 500.
    let list = server.cli(&setup.bob, &["requests", "--json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 500);
}
