//! A bastion lab: CA keys, a SQLite store, real sshd targets, the bastion running in-process
//! on a loopback port, and an engineer (alice) whose OpenSSH config points at it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use jitgate::bastion::{self, BastionContext};
use jitgate::ca::{CaKeys, EXT_PTY, UserCertSpec};
use jitgate::config::{Config, StoreUrl};
use jitgate::hub::Hub;
use jitgate::model::{IssuedCert, NewRequest, now};
use jitgate::store::{SqliteStore, Store};
use tokio::sync::oneshot;

use crate::sshd::{Sshd, free_port};
use crate::util::{keygen, require_tool};

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub ca: Arc<CaKeys>,
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub config: Arc<Config>,
    pub port: u16,
    pub key: PathBuf,
    pub ssh_config: PathBuf,
    pub targets: Vec<Sshd>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// Policy: rule 0 allows everything jitgate relays but port forwarding; rule 1 no sftp and
/// no pty (both check commands against the `destructive` guardrails); rule 2 allows port
/// and agent forwarding.
const POLICY: &str = r#"
[[guardrails]]
name = "destructive"

[[guardrails.rules]]
name = "rm-rf-root"
pattern = 'rm\s+-rf\s+/'
action = "block"
message = "no recursive deletes from /"

[[guardrails.rules]]
name = "drop-table"
pattern = '(?i)\bdrop\s+table\b'
action = "block"
message = "no DROP TABLE"

[[guardrails.rules]]
name = "reboot"
pattern = '^reboot\b'
action = "warn"
message = "rebooting"

[[roles]]
name = "engineer"

[[roles.access]]
hosts = ["db1", "db2", "gone", "mitm"]
logins = ["root"]
max_ttl = "2h"
require_reason = false
allow_sftp = true
guardrails = ["destructive"]

[[roles.access]]
hosts = ["db1"]
logins = ["root"]
max_ttl = "2h"
require_reason = false
allow_pty = false
guardrails = ["destructive"]

[[roles.access]]
hosts = ["db1"]
logins = ["root"]
max_ttl = "2h"
require_reason = false
allow_port_forwarding = true
allow_agent_forwarding = true
allow_x11 = true
"#;

impl Lab {
    /// Two targets: db1 with a pinned host key, db2 with a host-CA certificate; `gone` is a
    /// port nobody listens on; `mitm` is db2 with db1's key pinned.
    pub async fn start() -> Lab {
        Lab::start_named("bastion.test").await
    }

    /// Like `start`, with `server.hostname = hostname`.
    pub async fn start_named(hostname: &str) -> Lab {
        for tool in ["ssh", "ssh-keygen", "sshd"] {
            require_tool(tool);
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let (ca, _) = CaKeys::ensure(&root.join("data/ca")).unwrap();
        let ca = Arc::new(ca);
        let target_ca = ca.trusted_user_ca_line();
        let db1 = Sshd::start(&root.join("db1"), &target_ca, None);
        let signer = |line: &str| {
            let key = ssh_key::PublicKey::from_openssh(line).unwrap();
            let t = now() as u64;
            ca.sign_host(&key, &["db2".to_string()], 1, t - 60, t + 3600)
                .unwrap()
                .to_openssh()
                .unwrap()
        };
        let db2 = Sshd::start(&root.join("db2"), &target_ca, Some(&signer));
        let alice = keygen(&root, "alice");
        let text = format!(
            r#"
[server]
data_dir = "data"
hostname = "{hostname}"
api_listen = "127.0.0.1:0"
ssh_listen = "127.0.0.1:0"
shutdown_grace = "2s"

[[hosts]]
name = "db1"
address = "127.0.0.1:{p1}"
host_key = "{k1}"

[[hosts]]
name = "db2"
address = "127.0.0.1:{p2}"

[[hosts]]
name = "gone"
address = "127.0.0.1:{p3}"

# db2's address with db1's key pinned: the bastion must refuse to log in.
[[hosts]]
name = "mitm"
address = "127.0.0.1:{p2}"
host_key = "{k1}"

[[users]]
name = "alice"
roles = ["engineer"]
keys = ["{alice}"]
{POLICY}"#,
            p1 = db1.port,
            k1 = db1.host_key,
            p2 = db2.port,
            p3 = free_port(),
            alice = alice.public,
        );
        let config_path = root.join("jitgate.toml");
        std::fs::write(&config_path, &text).unwrap();
        let config = Arc::new(Config::from_str(&text, &config_path).unwrap());
        let StoreUrl::Sqlite(db) = &config.store;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db).unwrap());
        let hub = Hub::new();
        let known_hosts = root.join("known_hosts");
        std::fs::write(&known_hosts, format!("{}\n", ca.known_hosts_line())).unwrap();
        let ssh_config = root.join("ssh_config");
        // A config file, not -o options: ProxyJump passes -F on to the jump's ssh.
        std::fs::write(
            &ssh_config,
            format!(
                "Host *\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n\
                 StrictHostKeyChecking yes\n  IdentitiesOnly yes\n  IdentityFile {key}\n\
                 CertificateFile {key}-cert.pub\n  BatchMode yes\n  UpdateHostKeys no\n\
                 ControlMaster no\n  ConnectTimeout 20\n",
                kh = known_hosts.display(),
                key = alice.path.display(),
            ),
        )
        .unwrap();
        let mut lab = Lab {
            dir,
            ca,
            store,
            hub,
            config,
            port: 0,
            key: alice.path,
            ssh_config,
            targets: vec![db1, db2],
            stop: None,
            server: None,
        };
        lab.serve().await;
        lab
    }

    /// Starts the bastion on a fresh loopback port.
    pub async fn serve(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.port = listener.local_addr().unwrap().port();
        let ctx = Arc::new(BastionContext {
            config: Arc::clone(&self.config),
            ca: Arc::clone(&self.ca),
            store: Arc::clone(&self.store),
            hub: Arc::clone(&self.hub),
        });
        let (tx, rx) = oneshot::channel::<()>();
        self.stop = Some(tx);
        self.server = Some(tokio::spawn(bastion::run(listener, ctx, async {
            let _ = rx.await;
        })));
    }

    /// Triggers shutdown and waits for `run` to return.
    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .expect("run returns after shutdown")
                .unwrap();
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// An approved request for alice (rule `rule` of role engineer), and her certificate for
    /// it written beside her key. `age` moves the request's creation into the past.
    pub async fn grant(&self, host: &str, login: &str, rule: usize, ttl: u64, age: i64) -> i64 {
        self.request(host, login, rule, ttl, age, 0).await
    }

    /// A request needing `approvals` (0: approved at once), and alice's certificate for it.
    pub async fn request(
        &self,
        host: &str,
        login: &str,
        rule: usize,
        ttl: u64,
        age: i64,
        approvals: u32,
    ) -> i64 {
        let t = now();
        let req = self
            .store
            .create_request(NewRequest {
                requester: "alice".into(),
                host: host.into(),
                login: login.into(),
                ttl_secs: ttl,
                reason: "test".into(),
                rule: self.config.rule_ref("engineer", rule).unwrap(),
                approvals_needed: approvals,
                created_at: t - age,
                pending_until: t - age + 3600,
            })
            .await
            .unwrap();
        self.certify(req.id, t - 60, t + 3600).await;
        req.id
    }

    /// Signs and records alice's certificate for `request` with this window.
    pub async fn certify(&self, request: i64, valid_after: i64, valid_before: i64) {
        self.certify_as(request, valid_after, valid_before, true)
            .await
    }

    /// Like `certify`; with `record` false the store never hears of the certificate.
    pub async fn certify_as(
        &self,
        request: i64,
        valid_after: i64,
        valid_before: i64,
        record: bool,
    ) {
        let public = ssh_key::PublicKey::read_openssh_file(self.key.with_extension("pub")).unwrap();
        let serial = self.store.next_serial().await.unwrap();
        let cert = self
            .ca
            .sign_user(&UserCertSpec {
                key: &public,
                serial,
                request_id: request,
                user: "alice",
                valid_after: valid_after as u64,
                valid_before: valid_before as u64,
                extensions: &[EXT_PTY],
            })
            .unwrap();
        if record {
            self.store
                .record_cert(IssuedCert {
                    serial,
                    request_id: request,
                    user: "alice".into(),
                    key_fingerprint: public.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
                    valid_after,
                    valid_before,
                    issued_at: now(),
                })
                .await
                .unwrap();
        }
        let cert_path = PathBuf::from(format!("{}-cert.pub", self.key.display()));
        std::fs::write(cert_path, cert.to_openssh().unwrap() + "\n").unwrap();
    }

    /// `ssh -F lab-config -J alice@bastion <args>`.
    pub fn ssh(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ssh");
        c.arg("-F")
            .arg(&self.ssh_config)
            .arg("-J")
            .arg(format!("alice@127.0.0.1:{}", self.port))
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// Starts an OpenSSH multiplexing master to `target` through the bastion (`ssh -M -fN`,
    /// kept 60 s after its last client) and returns its control socket: `ssh -S SOCKET`
    /// then opens its sessions as channels of that one connection.
    pub async fn control_master(&self, target: &str) -> String {
        let sock = self.path().join("mux.sock");
        let sock = sock.to_str().unwrap().to_string();
        let args = ["-M", "-S", &sock, "-o", "ControlPersist=60", "-fN", target];
        let master = output(self.ssh(&args), 60).await;
        assert_eq!(master.status.code(), Some(0), "{}", text(&master.stderr));
        sock
    }

    /// `ssh` straight to target `index` (no bastion), logged in as root with a certificate
    /// from the target CA, its host key pinned: the reference for what the bastion relays.
    pub fn direct_ssh(&self, index: usize, args: &[&str]) -> tokio::process::Command {
        let target = &self.targets[index];
        let dir = self.path().join(format!("direct{index}"));
        if !dir.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            let key = keygen(&dir, "root");
            let public = ssh_key::PublicKey::from_openssh(&key.public).unwrap();
            let t = now() as u64;
            let all = [
                "permit-pty",
                "permit-port-forwarding",
                "permit-agent-forwarding",
                "permit-X11-forwarding",
                "permit-user-rc",
            ];
            let cert = self
                .ca
                .sign_target(&public, "root", "direct", &all, 1, t - 60, t + 3600)
                .unwrap();
            std::fs::write(dir.join("root-cert.pub"), cert.to_openssh().unwrap() + "\n").unwrap();
            std::fs::write(
                dir.join("known_hosts"),
                format!("[127.0.0.1]:{} {}\n", target.port, target.host_key),
            )
            .unwrap();
        }
        let mut c = tokio::process::Command::new("ssh");
        c.args(["-F", "/dev/null", "-p", &target.port.to_string()])
            .arg(format!(
                "-oUserKnownHostsFile={}",
                dir.join("known_hosts").display()
            ))
            .args([
                "-oGlobalKnownHostsFile=/dev/null",
                "-oStrictHostKeyChecking=yes",
            ])
            .args([
                "-oIdentitiesOnly=yes",
                "-oBatchMode=yes",
                "-oUpdateHostKeys=no",
            ])
            .arg("-i")
            .arg(dir.join("root"))
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// A `-J` value for tools that take `-o ProxyJump`.
    pub fn jump(&self) -> String {
        format!("ProxyJump=alice@127.0.0.1:{}", self.port)
    }

    /// The sessions of `request`, once every one of them has ended (waits up to 20 s).
    pub async fn ended_sessions(&self, request: i64) -> Vec<jitgate::model::Session> {
        for _ in 0..400 {
            let sessions = self
                .store
                .list_sessions(jitgate::store::SessionFilter {
                    request_id: Some(request),
                    ..Default::default()
                })
                .await
                .unwrap();
            if !sessions.is_empty() && sessions.iter().all(|s| s.ended_at.is_some()) {
                return sessions;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the sessions of request {request} never all ended");
    }

    /// The data of every audit event of `kind` so far, oldest first.
    async fn audited(&self, kind: &str) -> Vec<std::collections::BTreeMap<String, String>> {
        let events = self.store.audit_events(None).await.unwrap();
        events
            .into_iter()
            .filter(|e| e.event.kind == kind)
            .map(|e| e.event.data)
            .collect()
    }

    /// What `bastion.forwarding` events say was opened, as `kind what`.
    pub async fn forwardings(&self) -> Vec<String> {
        let field = |d: &std::collections::BTreeMap<String, String>, k: &str| {
            d.get(k).cloned().unwrap_or_default()
        };
        let events = self.audited("bastion.forwarding").await;
        events
            .iter()
            .map(|d| format!("{} {}", field(d, "kind"), field(d, "what")))
            .collect()
    }

    /// Audit reasons of `bastion.refused` events so far.
    pub async fn refusals(&self) -> Vec<String> {
        let events = self.audited("bastion.refused").await;
        events
            .into_iter()
            .map(|mut d| d.remove("reason").unwrap_or_default())
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs `cmd` to completion within `secs` seconds.
pub async fn output(mut cmd: tokio::process::Command, secs: u64) -> Output {
    tokio::time::timeout(Duration::from_secs(secs), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} did not finish within {secs}s"))
        .unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Fails (never skips) when a tool is missing.
pub fn require(tool: &str) {
    require_tool(tool);
}

impl Lab {
    /// Starts this lab's bastion in a child process (the test binary running
    /// `bastion_child_process`); returns it and its port.
    pub async fn spawn_child(&self) -> (tokio::process::Child, u16) {
        let port_file = self.path().join("child.port");
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "bastion::transfer::bastion_child_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("JITGATE_BASTION_CHILD", self.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        for _ in 0..600 {
            if let Ok(p) = std::fs::read_to_string(&port_file)
                && let Ok(port) = p.trim().parse()
            {
                return (child, port);
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the child bastion exited: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the child bastion never wrote its port");
    }
}

/// The child side of `spawn_child`: the bastion over the lab in `dir`, until stdin closes.
pub async fn run_child(dir: &Path) {
    let config_path = dir.join("jitgate.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let config = Arc::new(Config::from_str(&text, &config_path).unwrap());
    let ca = Arc::new(CaKeys::load(&config.ca_dir()).unwrap());
    let StoreUrl::Sqlite(db) = &config.store;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let ctx = Arc::new(BastionContext {
        config,
        ca,
        store,
        hub: Hub::new(),
    });
    let tmp = dir.join("child.port.tmp");
    std::fs::write(&tmp, port.to_string()).unwrap();
    std::fs::rename(&tmp, dir.join("child.port")).unwrap();
    bastion::run(listener, ctx, async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while tokio::io::AsyncReadExt::read(&mut stdin, &mut buf)
            .await
            .is_ok_and(|n| n > 0)
        {}
    })
    .await;
}

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}
