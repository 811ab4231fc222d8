//! A real OpenSSH `sshd` target in a temp dir on a free loopback port: its own host key
//! (optionally with a host certificate), trusting the target CA with `TrustedUserCAKeys`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::util::require_tool;

/// A running sshd, killed on drop.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    /// The host key, one OpenSSH public key line.
    pub host_key: String,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Sshd {
    /// Starts sshd in `dir`, trusting `target_ca` (a public key line) for user certificates.
    /// With `host_cert`, the host key is certified by that function (it gets the public key
    /// line and returns a certificate line).
    pub fn start(dir: &Path, target_ca: &str, host_cert: Option<&dyn Fn(&str) -> String>) -> Sshd {
        let sshd = require_tool("sshd");
        require_tool("ssh-keygen");
        std::fs::create_dir_all(dir).unwrap();
        // Privilege separation needs this directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let key = dir.join("ssh_host_ed25519_key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "ssh-keygen host key");
        let host_key = std::fs::read_to_string(key.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string();
        let ca_path = dir.join("target_ca.pub");
        std::fs::write(&ca_path, format!("{target_ca}\n")).unwrap();
        let mut cert_line = String::new();
        if let Some(sign) = host_cert {
            let cert_path = dir.join("ssh_host_ed25519_key-cert.pub");
            std::fs::write(&cert_path, format!("{}\n", sign(&host_key))).unwrap();
            cert_line = format!("HostCertificate {}\n", cert_path.display());
        }
        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\n{cert_line}\
                     TrustedUserCAKeys {ca}\nAuthorizedKeysFile none\nPidFile {pid}\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PubkeyAuthentication yes\nPermitRootLogin yes\nUsePAM no\nStrictModes no\n\
                     AcceptEnv LANG LC_* JITGATE_*\nSubsystem sftp internal-sftp\n\
                     AllowTcpForwarding yes\nLogLevel VERBOSE\nMaxSessions 100\nMaxStartups 200\n\
                     X11Forwarding yes\nSetEnv XAUTHORITY={xauthority}\n",
                    key = key.display(),
                    ca = ca_path.display(),
                    pid = dir.join("sshd.pid").display(),
                    xauthority = dir.join("Xauthority").display(),
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
            let mut child = Command::new(&sshd)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("sshd starts");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd {
                        child,
                        port,
                        dir: dir.to_path_buf(),
                        host_key,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "sshd did not start; its log:\n{}",
            std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
