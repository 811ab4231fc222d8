//! Signed API calls: every call carries an SSHSIG (namespace `jitgate`) made with the
//! caller's enrolled SSH key over the method, path, body hash, timestamp and nonce.
//!
//! The server refuses a call whose key is not enrolled, whose signature does not verify,
//! whose timestamp is more than `MAX_SKEW_SECS` away from its clock, or whose nonce it has
//! seen before. Nonces are remembered for twice the window, after which the timestamp check
//! alone refuses a replay.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use ssh_key::encoding::{Decode, Encode};
use ssh_key::{HashAlg, PublicKey, SshSig};

use crate::config::Config;
use crate::model::UnixTime;

pub const NAMESPACE: &str = "jitgate";
pub const MAX_SKEW_SECS: i64 = 120;

pub const HEADER_SIGNATURE: &str = "x-jitgate-signature";
pub const HEADER_TIMESTAMP: &str = "x-jitgate-timestamp";
pub const HEADER_NONCE: &str = "x-jitgate-nonce";

/// The bytes a caller signs. Fields are newline-separated and none may contain a newline.
pub fn signed_message(
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: i64,
    nonce: &str,
) -> Vec<u8> {
    let body_hash = hex::encode(Sha256::digest(body));
    format!("jitgate-api-v1\n{method}\n{path_and_query}\n{body_hash}\n{timestamp}\n{nonce}")
        .into_bytes()
}

/// A fresh 128-bit nonce, hex.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random generator works");
    hex::encode(bytes)
}

/// Encodes a signature for the `x-jitgate-signature` header.
pub fn encode_signature(sig: &SshSig) -> String {
    hex::encode(sig.encode_vec().unwrap_or_default())
}

/// Why a call was refused. The message goes to the caller and the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing {0} header: sign the call with jitgate's client")]
    Missing(&'static str),
    #[error("malformed signature header")]
    Malformed,
    #[error(
        "timestamp {got} is more than {MAX_SKEW_SECS}s from the server's clock ({now}); check your clock"
    )]
    Skew { got: i64, now: i64 },
    #[error("key {0} is not enrolled for any user; ask an admin to add it to [[users]] keys")]
    NotEnrolled(String),
    #[error("bad signature")]
    BadSignature,
    #[error("nonce was already used (replayed call)")]
    Replayed,
    #[error(
        "the call was signed at {got}, before this server started ({since}), so it cannot be \
         told from a replay; sign it again (and check your clock if this repeats)"
    )]
    BeforeStart { got: i64, since: i64 },
}

/// One API call as its client signed it: the request and the three headers with the proof.
#[derive(Debug, Clone, Copy)]
pub struct SignedCall<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub body: &'a [u8],
    /// `HEADER_SIGNATURE`: the SSHSIG, hex.
    pub signature: &'a str,
    /// `HEADER_TIMESTAMP`: Unix seconds.
    pub timestamp: &'a str,
    /// `HEADER_NONCE`.
    pub nonce: &'a str,
}

/// Checks a call: returns its user and the key that signed it.
pub fn verify_call(
    cfg: &Config,
    nonces: &NonceCache,
    call: &SignedCall<'_>,
    now: UnixTime,
) -> Result<super::Caller, AuthError> {
    let timestamp: i64 = call.timestamp.parse().map_err(|_| AuthError::Malformed)?;
    let nonce = call.nonce;
    if nonce.len() < 16 || nonce.len() > 128 || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(AuthError::Malformed);
    }
    let bytes = hex::decode(call.signature).map_err(|_| AuthError::Malformed)?;
    let sig = SshSig::decode(&mut bytes.as_slice()).map_err(|_| AuthError::Malformed)?;
    let key = PublicKey::from(sig.public_key().clone());
    let user = cfg
        .user_by_key(&key)
        .ok_or_else(|| AuthError::NotEnrolled(key.fingerprint(HashAlg::Sha256).to_string()))?;
    let msg = signed_message(
        call.method,
        call.path_and_query,
        call.body,
        timestamp,
        nonce,
    );
    key.verify(NAMESPACE, &msg, &sig)
        .map_err(|_| AuthError::BadSignature)?;
    // The signature first: every refusal below names a caller who really signed the call.
    if timestamp.abs_diff(now) > MAX_SKEW_SECS.unsigned_abs() {
        return Err(AuthError::Skew {
            got: timestamp,
            now,
        });
    }
    if timestamp < nonces.since {
        return Err(AuthError::BeforeStart {
            got: timestamp,
            since: nonces.since,
        });
    }
    // Only a verified call spends a nonce, so nobody can burn another's nonces.
    if !nonces.insert(nonce, now) {
        return Err(AuthError::Replayed);
    }
    Ok(super::Caller {
        user: user.name.clone(),
        key,
    })
}

/// The public key inside a signature header, for `login` (which certifies the signing key).
pub fn signing_key(sig_hex: &str) -> Option<PublicKey> {
    let bytes = hex::decode(sig_hex).ok()?;
    let sig = SshSig::decode(&mut bytes.as_slice()).ok()?;
    Some(PublicKey::from(sig.public_key().clone()))
}

/// Nonces seen within the last `2 × MAX_SKEW_SECS`, purged once a minute, and since when.
/// A restart forgets them, so a call signed before the cache began (which an earlier run
/// may have seen) is refused rather than taken as new.
pub struct NonceCache {
    inner: Mutex<Nonces>,
    since: UnixTime,
}

#[derive(Default)]
struct Nonces {
    seen: HashMap<String, UnixTime>,
    last_purge: UnixTime,
}

impl NonceCache {
    /// A cache that has seen nothing before `since`.
    pub fn new(since: UnixTime) -> NonceCache {
        NonceCache {
            inner: Mutex::default(),
            since,
        }
    }

    /// Records `nonce`; false if it was seen already.
    pub fn insert(&self, nonce: &str, now: UnixTime) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if now - inner.last_purge >= 60 {
            inner.seen.retain(|_, at| now - *at <= 2 * MAX_SKEW_SECS);
            inner.last_purge = now;
        }
        match inner.seen.get(nonce) {
            Some(at) if now - *at <= 2 * MAX_SKEW_SECS => false,
            _ => {
                inner.seen.insert(nonce.to_string(), now);
                true
            }
        }
    }
}
