//! The bastion's host identity: one ephemeral ed25519 key per process, and host certificates
//! from the host CA for the bastion's own name and for each inventory host it stands in for.
//!
//! Certificates are minted on demand and cached until an hour before they end; each cached
//! entry is a ready `russh::server::Config`, so a new connection costs one `Arc` clone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::MethodKind;
use russh::MethodSet;
use russh::server;
use russh::{Preferred, cipher};
use ssh_key::PrivateKey;

use crate::ca::{CaError, CaKeys, generate_ed25519};

/// The ciphers the bastion offers to engineers' clients: AES-GCM only.
///
/// The bastion decrypts and re-encrypts every byte on three hops where a jump host encrypts
/// once, so the cheapest AEAD matters. AES-GCM runs on the CPU's AES and carry-less multiply
/// instructions; ring's ChaCha20-Poly1305 spends most of its time in a portable Poly1305.
/// An OpenSSH client lists `chacha20-poly1305` first, so offering it at all means using it.
/// Every OpenSSH since 6.2 speaks AES-GCM.
pub const SERVER_CIPHERS: &[cipher::Name] = &[cipher::AES_128_GCM, cipher::AES_256_GCM];

/// The ciphers the bastion asks a target for, in order; the bastion is the client there, so
/// its order decides. ChaCha20-Poly1305 and AES-CTR stay as fallbacks for targets without
/// AES-GCM.
pub const CLIENT_CIPHERS: &[cipher::Name] = &[
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_128_CTR,
];

/// How long a minted host certificate is valid.
const HOST_CERT_LIFETIME: u64 = 24 * 3600;
/// A cached certificate is replaced once it has less than this left.
const RENEW_BEFORE: u64 = 3600;

struct Cached {
    valid_before: u64,
    config: Arc<server::Config>,
}

pub struct HostKeys {
    key: PrivateKey,
    clock_skew: u64,
    cache: Mutex<HashMap<Vec<String>, Cached>>,
}

impl HostKeys {
    pub fn new(clock_skew: Duration) -> HostKeys {
        HostKeys {
            key: generate_ed25519(),
            clock_skew: clock_skew.as_secs(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A server configuration presenting a host certificate for `principals`, valid at `now`.
    pub fn server_config(
        &self,
        ca: &CaKeys,
        principals: &[String],
        now: u64,
        keepalive: bool,
    ) -> Result<Arc<server::Config>, CaError> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut cache_key = principals.to_vec();
        cache_key.push(keepalive.to_string());
        if let Some(c) = cache.get(&cache_key)
            && c.valid_before > now + RENEW_BEFORE
        {
            return Ok(Arc::clone(&c.config));
        }
        let valid_before = now + HOST_CERT_LIFETIME;
        let cert = ca.sign_host(
            self.key.public_key(),
            principals,
            random_serial(),
            now.saturating_sub(self.clock_skew),
            valid_before,
        )?;
        let config = Arc::new(server::Config {
            server_id: russh::SshId::Standard("SSH-2.0-jitgate".into()),
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            // OpenSSH probes with "none" first; a delay there costs a second per hop.
            auth_rejection_time_initial: Some(Duration::ZERO),
            auth_rejection_time: Duration::from_millis(300),
            keys: vec![self.key.clone()],
            certificates: vec![cert],
            inactivity_timeout: None,
            // The outer connection watches for dead clients; the inner one rides inside it.
            keepalive_interval: keepalive.then_some(Duration::from_secs(30)),
            keepalive_max: 3,
            // (`nodelay` is russh's only for sockets it accepts; `hand_over` sets ours.)
            max_auth_attempts: 6,
            preferred: Preferred {
                cipher: SERVER_CIPHERS.into(),
                ..Preferred::DEFAULT
            },
            ..Default::default()
        });
        cache.insert(
            cache_key,
            Cached {
                valid_before,
                config: Arc::clone(&config),
            },
        );
        Ok(config)
    }
}

/// A random certificate serial (host and target certificates are not tracked in the store).
pub fn random_serial() -> u64 {
    let mut b = [0u8; 8];
    // The OS generator failing leaves zeros: a serial of 0 is still a valid certificate.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// A random id for sessions and connections: 16 hex digits.
pub fn random_id() -> String {
    format!("{:016x}", random_serial())
}
