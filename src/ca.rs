//! The three certificate authorities: keys on disk and certificate minting with `ssh-key`.
//!
//! - user CA: engineers' certificates after approval; only the bastion trusts it;
//! - host CA: the bastion's host certificates (its own name and each inventory host it
//!   stands in for); engineers' `known_hosts` trust it with `@cert-authority`;
//! - target CA: the short certificates the bastion mints for itself towards a target;
//!   targets trust it with `TrustedUserCAKeys`.
//!
//! Pure apart from reading and creating the key files: times are passed in. Private keys
//! never reach a log or a `Debug`; files are created mode 0600 and never overwritten.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ssh_key::certificate::{Builder, CertType, Certificate};
use ssh_key::rand_core::UnwrapErr;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};

use crate::config::AccessRule;

/// The certificate extension that names the request a user certificate was issued for.
pub const REQUEST_EXTENSION: &str = "jitgate-request@jitgate";

/// Extensions a user certificate may carry, as the access rule allows.
pub const EXT_PTY: &str = "permit-pty";
pub const EXT_PORT_FORWARDING: &str = "permit-port-forwarding";
pub const EXT_AGENT_FORWARDING: &str = "permit-agent-forwarding";
pub const EXT_X11_FORWARDING: &str = "permit-X11-forwarding";

const NAMES: [&str; 3] = ["user_ca", "host_ca", "target_ca"];

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an OpenSSH private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")]
    LoosePermissions { path: PathBuf, mode: u32 },
    #[error("{path} is missing; run jitgate init --config FILE")]
    Missing { path: PathBuf },
    #[error("certificate: {0}")]
    Sign(String),
}

fn sign_err(e: ssh_key::Error) -> CaError {
    CaError::Sign(e.to_string())
}

/// The three CA private keys.
pub struct CaKeys {
    user: PrivateKey,
    host: PrivateKey,
    target: PrivateKey,
}

impl fmt::Debug for CaKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaKeys")
            .field(
                "user",
                &self
                    .user
                    .public_key()
                    .fingerprint(HashAlg::Sha256)
                    .to_string(),
            )
            .field(
                "host",
                &self
                    .host
                    .public_key()
                    .fingerprint(HashAlg::Sha256)
                    .to_string(),
            )
            .field(
                "target",
                &self.target.public_key().fingerprint(HashAlg::Sha256),
            )
            .finish()
    }
}

/// What a user certificate says.
#[derive(Debug, Clone)]
pub struct UserCertSpec<'a> {
    pub key: &'a PublicKey,
    pub serial: u64,
    pub request_id: i64,
    pub user: &'a str,
    pub valid_after: u64,
    pub valid_before: u64,
    /// Extensions such as `permit-pty`; the request extension is always added.
    pub extensions: &'a [&'a str],
}

/// A fresh ed25519 key from the operating system's generator.
pub fn generate_ed25519() -> PrivateKey {
    PrivateKey::random(
        &mut UnwrapErr(ssh_key::getrandom::SysRng),
        Algorithm::Ed25519,
    )
    .expect("ed25519 key generation does not fail")
}

impl CaKeys {
    /// Loads the keys in `dir`, creating any that are absent. Returns the files created.
    pub fn ensure(dir: &Path) -> Result<(CaKeys, Vec<PathBuf>), CaError> {
        // The data folder too, on a first start.
        crate::private::create_folder(dir).map_err(|source| CaError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut created = Vec::new();
        for name in NAMES {
            let path = dir.join(name);
            if !path.exists() {
                write_new_key(&path, &generate_ed25519(), name)?;
                created.push(path);
            }
        }
        Ok((CaKeys::load(dir)?, created))
    }

    /// Loads the keys in `dir`; a missing key, or one its group or others have any access to, is
    /// an error.
    pub fn load(dir: &Path) -> Result<CaKeys, CaError> {
        Ok(CaKeys {
            user: read_key(&dir.join(NAMES[0]))?,
            host: read_key(&dir.join(NAMES[1]))?,
            target: read_key(&dir.join(NAMES[2]))?,
        })
    }

    pub fn user_ca(&self) -> PublicKey {
        self.user.public_key().clone()
    }

    pub fn host_ca(&self) -> PublicKey {
        self.host.public_key().clone()
    }

    pub fn target_ca(&self) -> PublicKey {
        self.target.public_key().clone()
    }

    /// The line engineers add to `known_hosts` to trust the bastion and the hosts it fronts.
    pub fn known_hosts_line(&self) -> String {
        format!(
            "@cert-authority * {}",
            openssh_line(&self.host_ca(), "jitgate-host-ca")
        )
    }

    /// The public key line targets reference with `TrustedUserCAKeys`.
    pub fn trusted_user_ca_line(&self) -> String {
        openssh_line(&self.target_ca(), "jitgate-target-ca")
    }

    /// An engineer's certificate: principal = user name, key id `jitgate:<request>:<user>`.
    pub fn sign_user(&self, spec: &UserCertSpec) -> Result<Certificate, CaError> {
        let mut b = builder(spec.key, spec.valid_after, spec.valid_before)?;
        b.serial(spec.serial).map_err(sign_err)?;
        b.cert_type(CertType::User).map_err(sign_err)?;
        b.key_id(format!("jitgate:{}:{}", spec.request_id, spec.user))
            .map_err(sign_err)?;
        b.valid_principal(spec.user).map_err(sign_err)?;
        let mut extensions: Vec<&str> = spec.extensions.to_vec();
        extensions.sort_unstable();
        extensions.dedup();
        for ext in extensions {
            b.extension(ext, "").map_err(sign_err)?;
        }
        b.extension(REQUEST_EXTENSION, spec.request_id.to_string())
            .map_err(sign_err)?;
        b.sign(&self.user).map_err(sign_err)
    }

    /// A host certificate for `principals` (host names and addresses), by the host CA.
    pub fn sign_host(
        &self,
        host_key: &PublicKey,
        principals: &[String],
        serial: u64,
        valid_after: u64,
        valid_before: u64,
    ) -> Result<Certificate, CaError> {
        let mut b = builder(host_key, valid_after, valid_before)?;
        b.serial(serial).map_err(sign_err)?;
        b.cert_type(CertType::Host).map_err(sign_err)?;
        b.key_id(format!("jitgate-host:{}", principals.join(",")))
            .map_err(sign_err)?;
        for p in principals {
            b.valid_principal(p.as_str()).map_err(sign_err)?;
        }
        b.sign(&self.host).map_err(sign_err)
    }

    /// The bastion's own certificate towards a target, for `login`, by the target CA, with
    /// only `extensions` (what the access rule allows; see `target_extensions`).
    #[allow(clippy::too_many_arguments)]
    pub fn sign_target(
        &self,
        key: &PublicKey,
        login: &str,
        key_id: &str,
        extensions: &[&str],
        serial: u64,
        valid_after: u64,
        valid_before: u64,
    ) -> Result<Certificate, CaError> {
        let mut b = builder(key, valid_after, valid_before)?;
        b.serial(serial).map_err(sign_err)?;
        b.cert_type(CertType::User).map_err(sign_err)?;
        b.key_id(key_id).map_err(sign_err)?;
        b.valid_principal(login).map_err(sign_err)?;
        let mut extensions = extensions.to_vec();
        extensions.sort_unstable();
        extensions.dedup();
        for ext in extensions {
            b.extension(ext, "").map_err(sign_err)?;
        }
        b.sign(&self.target).map_err(sign_err)
    }

    /// Whether `cert` carries a good signature by the user CA, whatever its window: only then
    /// does what it says (its request, its principals) mean anything.
    pub fn signed_by_user_ca(&self, cert: &Certificate) -> bool {
        let ca = self.user.public_key().fingerprint(HashAlg::Sha256);
        // `validate_at` checks the signature and the CA; asked at the certificate's own
        // start, the window always holds unless the certificate has none.
        cert.valid_after() < cert.valid_before()
            && cert.validate_at(cert.valid_after(), [&ca]).is_ok()
    }

    /// The request a certificate names, when the user CA signed it; `None` for anyone
    /// else's, so a refusal never credits a forged certificate's claim to a request.
    pub fn request_of_user_cert(&self, cert: &Certificate) -> Option<i64> {
        request_id_of(cert).filter(|_| self.signed_by_user_ca(cert))
    }

    /// Checks an engineer's certificate: signed by the user CA, inside its window at `now`, a
    /// user certificate, no critical options (jitgate issues none, so any is unknown). Each
    /// failure has its own reason.
    pub fn validate_user_cert(&self, cert: &Certificate, now: u64) -> Result<(), String> {
        if !self.signed_by_user_ca(cert) {
            return Err("certificate not signed by this bastion's user CA".into());
        }
        let time = |t: u64| crate::model::format_time(i64::try_from(t).unwrap_or(i64::MAX));
        if now < cert.valid_after() {
            return Err(format!(
                "certificate not valid before {}",
                time(cert.valid_after())
            ));
        }
        if now >= cert.valid_before() {
            return Err(format!(
                "certificate expired at {}",
                time(cert.valid_before())
            ));
        }
        if cert.cert_type() != CertType::User {
            return Err("not a user certificate".into());
        }
        if let Some((name, _)) = cert.critical_options().iter().next() {
            return Err(format!("unknown critical option {name:?}"));
        }
        Ok(())
    }

    /// Checks a target's host certificate: signed by the host CA, a host certificate for
    /// `host`, inside its window at `now`.
    pub fn validate_host_cert(
        &self,
        cert: &Certificate,
        host: &str,
        now: u64,
    ) -> Result<(), String> {
        let ca = self.host.public_key().fingerprint(HashAlg::Sha256);
        cert.validate_at(now, [&ca])
            .map_err(|e| format!("host certificate not valid: {e}"))?;
        if cert.cert_type() != CertType::Host {
            return Err("not a host certificate".into());
        }
        if !cert.valid_principals().iter().any(|p| p == host) {
            return Err(format!("host certificate is not for {host:?}"));
        }
        Ok(())
    }
}

/// OpenSSH's extension that lets the login's own `~/.ssh/rc` run.
pub const EXT_USER_RC: &str = "permit-user-rc";

/// The extensions of the bastion's certificate towards a target: what `rule` allows
/// (a pty, port, agent and X11 forwarding), so the target refuses what the bastion should
/// never have asked for. `permit-user-rc` is always there, as in OpenSSH's default
/// certificates: `~/.ssh/rc` is the target login's own file, it reaches nothing that login
/// could not, and setups that link an agent socket or run `xauth` from it keep working.
pub fn target_extensions(rule: &AccessRule) -> Vec<&'static str> {
    [
        (rule.allow_pty, EXT_PTY),
        (rule.allow_port_forwarding, EXT_PORT_FORWARDING),
        (rule.allow_agent_forwarding, EXT_AGENT_FORWARDING),
        (rule.allow_x11, EXT_X11_FORWARDING),
        (true, EXT_USER_RC),
    ]
    .into_iter()
    .filter_map(|(allowed, ext)| allowed.then_some(ext))
    .collect()
}

/// The request id a user certificate was issued for.
pub fn request_id_of(cert: &Certificate) -> Option<i64> {
    cert.extensions().get(REQUEST_EXTENSION)?.parse().ok()
}

/// `ssh-ed25519 AAAA... comment`.
pub fn openssh_line(key: &PublicKey, comment: &str) -> String {
    let mut key = key.clone();
    key.set_comment(comment);
    key.to_openssh().unwrap_or_default()
}

fn builder(key: &PublicKey, valid_after: u64, valid_before: u64) -> Result<Builder, CaError> {
    Builder::new_with_random_nonce(
        &mut UnwrapErr(ssh_key::getrandom::SysRng),
        key.key_data().clone(),
        valid_after,
        valid_before,
    )
    .map_err(sign_err)
}

fn write_new_key(path: &Path, key: &PrivateKey, comment: &str) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut key = key.clone();
    key.set_comment(comment);
    let pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| CaError::Sign(e.to_string()))?;
    // create_new: an existing key is never replaced, even if two processes race here.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(pem.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    let pub_path = path.with_extension("pub");
    let line = openssh_line(key.public_key(), comment) + "\n";
    std::fs::write(&pub_path, line).map_err(|source| CaError::Io {
        path: pub_path,
        source,
    })
}

fn read_key(path: &Path) -> Result<PrivateKey, CaError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CaError::Missing {
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(CaError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CaError::LoosePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| CaError::Io {
            path: path.to_path_buf(),
            source,
        })?);
    let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|e| CaError::BadKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if key.is_encrypted() {
        return Err(CaError::BadKey {
            path: path.to_path_buf(),
            reason: "encrypted keys are not supported".into(),
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests;
