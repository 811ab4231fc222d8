//! Test support: temp dirs, keys made by ssh-keygen, the real `jitgate serve` on port 0,
//! and the real CLI run against it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn jitgate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_jitgate")
}

/// Fails loudly when a tool the tests need is missing: tests never skip.
pub fn require_tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not installed; run scripts/test.sh, which installs what the tests need");
}

/// An engineer's key pair, made by ssh-keygen.
pub struct Key {
    pub path: PathBuf,
    pub public: String,
}

pub fn keygen(dir: &Path, name: &str) -> Key {
    require_tool("ssh-keygen");
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string();
    Key { path, public }
}

/// What a test writes into the config besides `[server]`.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub alice: Key,
    pub bob: Key,
    pub carol: Key,
    pub dave: Key,
}

impl Setup {
    /// alice: engineer; bob: engineer + sre-lead; carol: sre-lead + incident-commander;
    /// dave: auditor.
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        Setup {
            alice: keygen(&keys, "alice"),
            bob: keygen(&keys, "bob"),
            carol: keygen(&keys, "carol"),
            dave: keygen(&keys, "dave"),
            dir,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The users block for the four people.
    pub fn users(&self) -> String {
        format!(
            r#"
[[users]]
name = "alice"
roles = ["engineer"]
keys = ["{}"]

[[users]]
name = "bob"
roles = ["engineer", "sre-lead"]
keys = ["{}"]

[[users]]
name = "carol"
roles = ["sre-lead", "incident-commander"]
keys = ["{}"]

[[users]]
name = "dave"
roles = ["auditor"]
keys = ["{}"]
"#,
            self.alice.public, self.bob.public, self.carol.public, self.dave.public
        )
    }

    /// A full config: server on port 0, the four users, and `policy` (hosts, roles, …).
    pub fn config(&self, policy: &str) -> PathBuf {
        self.config_with("", policy)
    }

    /// `config`, with `server_extra` lines added to `[server]`.
    pub fn config_with(&self, server_extra: &str, policy: &str) -> PathBuf {
        let text = format!(
            r#"
[server]
data_dir = "data"
recordings_dir = "recordings"
api_listen = "127.0.0.1:0"
ssh_listen = "127.0.0.1:0"
hostname = "127.0.0.1"
shutdown_grace = "1s"
{server_extra}
{users}
[[roles]]
name = "sre-lead"
[[roles]]
name = "incident-commander"
[[roles]]
name = "auditor"
audit = true
{policy}
"#,
            users = self.users(),
        );
        let path = self.path().join("jitgate.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The standard policy of these tests: staging auto-approved, prod one approval, and
    /// break-glass two.
    pub fn standard_policy() -> &'static str {
        r#"
[[hosts]]
name = "web1"
address = "127.0.0.1:1"
labels = { env = "staging" }

[[hosts]]
name = "db1"
address = "127.0.0.1:1"
labels = { env = "prod" }

[[roles]]
name = "engineer"

[[roles.access]]
hosts = { env = "staging" }
logins = ["deploy", "root"]
max_ttl = "1h"
approvals = 0

[[roles.access]]
hosts = { env = "prod" }
logins = ["postgres"]
max_ttl = "15m"
approvals = 1
approvers = ["sre-lead"]

[[roles.access]]
hosts = ["db1"]
logins = ["root"]
max_ttl = "1h"
approvals = 2
approvers = ["sre-lead", "incident-commander"]
"#
    }
}

/// A running `jitgate serve`. Dropped, it is stopped with SIGTERM and every recording it
/// wrote must be valid asciicast v2.
pub struct Server {
    pub child: Child,
    recordings: PathBuf,
    pub url: String,
    pub ssh_port: u16,
    pub home: PathBuf,
}

impl Server {
    pub fn start(config: &Path) -> Server {
        Server::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(jitgate_bin());
        command.envs(env.iter().copied());
        Server::launch(config, command)
    }

    /// A server that may write no file larger than `bytes` (`ulimit -f`): a write past it
    /// fails, as on a full disk.
    pub fn start_with_file_limit(config: &Path, bytes: u64) -> Server {
        Server::start_with_limit(config, libc::RLIMIT_FSIZE, bytes, bytes)
    }

    /// A server started under the limit `resource` (`setrlimit`) at `soft` and `hard`.
    pub fn start_with_limit(
        config: &Path,
        resource: libc::__rlimit_resource_t,
        soft: u64,
        hard: u64,
    ) -> Server {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(jitgate_bin());
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: only setrlimit, async-signal-safe, runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(resource, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Server::launch(config, command)
    }

    /// Starts `command` (the jitgate binary) as `serve --config CONFIG`.
    fn launch(config: &Path, mut command: Command) -> Server {
        let home = config.parent().unwrap().join("home");
        std::fs::create_dir_all(&home).unwrap();
        // The server's log stays beside its config, for a failing test to read.
        let log = std::fs::File::create(config.parent().unwrap().join("server.log")).unwrap();
        let mut child = command
            .args(["serve", "--config"])
            .arg(config)
            .env("JITGATE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("jitgate serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (url, ssh_port) = loop {
            assert!(Instant::now() < deadline, "jitgate serve did not start");
            let line = lines.next().expect("serve printed its address").unwrap();
            if let Some(rest) = line.strip_prefix("jitgate serving: api ") {
                let (api, ssh) = rest.split_once(" ssh ").unwrap();
                let port = ssh.rsplit(':').next().unwrap().parse().unwrap();
                break (api.to_string(), port);
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            recordings: config.parent().unwrap().join("recordings"),
            url,
            ssh_port,
            home,
        }
    }

    /// `jitgate request --host … --login … --ttl … --reason …` as the owner of `key`.
    pub fn request(&self, key: &Key, host: &str, login: &str, ttl: &str, reason: &str) -> Run {
        self.cli(
            key,
            &[
                "request", "--host", host, "--login", login, "--ttl", ttl, "--reason", reason,
            ],
        )
    }

    /// The audit log as the owner of `key` (an auditor) reads it: `jitgate audit --json`.
    pub fn audit_events(&self, key: &Key) -> Vec<serde_json::Value> {
        match self.cli(key, &["audit", "--json"]).ok().json() {
            serde_json::Value::Array(events) => events,
            other => panic!("audit --json printed {other}"),
        }
    }

    /// Runs the CLI as the owner of `key` against this server.
    pub fn cli(&self, key: &Key, args: &[&str]) -> Run {
        let out = Command::new(jitgate_bin())
            .args(args)
            .env("JITGATE_URL", &self.url)
            .env("JITGATE_IDENTITY", &key.path)
            .env("HOME", &self.home)
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .expect("jitgate runs");
        Run::from(out)
    }
}

impl Server {
    /// Kills the server without warning, as a crash would; nothing is validated on drop.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let stopped = wait_for(Duration::from_secs(15), || {
            self.child.try_wait().ok().flatten()
        });
        if stopped.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            return;
        }
        assert!(stopped.is_some(), "jitgate serve did not stop on SIGTERM");
        if let Err(e) = jitgate::recorder::validate_all(&self.recordings) {
            panic!("a recording is not valid asciicast v2: {e}");
        }
    }
}

/// The outcome of one CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success:\n{self:#?}");
        self
    }

    #[track_caller]
    pub fn refused(self, needle: &str) -> Run {
        assert_eq!(self.code, 1, "expected refusal (exit 1):\n{self:#?}");
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} in stderr:\n{self:#?}"
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs the CLI with no server (offline commands).
pub fn jitgate(args: &[&str]) -> Run {
    Run::from(
        Command::new(jitgate_bin())
            .args(args)
            .output()
            .expect("jitgate runs"),
    )
}

/// Polls `f` until it returns Some, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs one SQL statement on a store with the `sqlite3` CLI (tampering, in tests).
pub fn sqlite(db: &Path, sql: &str) {
    let out = Command::new(require_tool("sqlite3"))
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
