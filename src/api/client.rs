//! The signed HTTP client the CLI (and the benchmark) use: signs every call with the
//! engineer's SSH key, from the key file or through ssh-agent.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ssh_key::encoding::{Decode, Encode};
use ssh_key::{HashAlg, PrivateKey, PublicKey, Signature, SshSig};

use super::auth::{self, NAMESPACE};
use super::dto::ErrorBody;

pub const DEFAULT_URL: &str = "http://127.0.0.1:8722";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the jitgate server at {url}: {reason}; {}", hint(.reason)
    )]
    Unreachable { url: String, reason: String },
    /// The server answered with a refusal; `message` says why.
    #[error("{message}")]
    Refused { status: u16, message: String },
    /// Local setup is wrong: identity missing or unusable.
    #[error("{0}")]
    Usage(String),
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Exit codes of the command contract: 1 refused, 2 usage, 3 unreachable.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Unreachable { .. } => 3,
            ClientError::Usage(_) => 2,
            ClientError::Refused { status: 400, .. } => 2,
            ClientError::Refused { .. } | ClientError::Protocol(_) => 1,
        }
    }
}

/// Who signs: a key file, or ssh-agent holding the identity's key.
pub enum Signer {
    Key(Box<PrivateKey>),
    Agent { socket: PathBuf, key: PublicKey },
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Signer({})",
            self.public_key().fingerprint(HashAlg::Sha256)
        )
    }
}

impl Signer {
    /// Uses ssh-agent when `SSH_AUTH_SOCK` holds the identity's key, else the key file.
    pub fn from_identity(path: &Path) -> Result<Signer, ClientError> {
        let pub_path = PathBuf::from(format!("{}.pub", path.display()));
        let private = std::fs::read_to_string(path).ok();
        let public = match std::fs::read_to_string(&pub_path) {
            Ok(text) => Some(PublicKey::from_openssh(text.trim()).map_err(|e| {
                ClientError::Usage(format!("{}: not a public key: {e}", pub_path.display()))
            })?),
            Err(_) => None,
        };
        let parsed = match &private {
            Some(text) => Some(PrivateKey::from_openssh(text.as_bytes()).map_err(|e| {
                ClientError::Usage(format!(
                    "{}: not an OpenSSH private key: {e}",
                    path.display()
                ))
            })?),
            None => None,
        };
        let public = public.or_else(|| parsed.as_ref().map(|k| k.public_key().clone())).ok_or_else(|| {
            ClientError::Usage(format!(
                "no identity at {}; create one with ssh-keygen -t ed25519, or pass --identity KEY",
                path.display()
            ))
        })?;
        if let Some(socket) = std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from)
            && agent_has(&socket, &public).unwrap_or(false)
        {
            return Ok(Signer::Agent {
                socket,
                key: public,
            });
        }
        match parsed {
            Some(k) if !k.is_encrypted() => Ok(Signer::Key(Box::new(k))),
            Some(_) => Err(ClientError::Usage(format!(
                "{} is passphrase-protected; add it to ssh-agent (ssh-add {}) and try again",
                path.display(),
                path.display()
            ))),
            None => Err(ClientError::Usage(format!(
                "the private key {} is missing and ssh-agent does not hold {}",
                path.display(),
                public.fingerprint(HashAlg::Sha256)
            ))),
        }
    }

    pub fn public_key(&self) -> &PublicKey {
        match self {
            Signer::Key(k) => k.public_key(),
            Signer::Agent { key, .. } => key,
        }
    }

    pub fn sign(&self, msg: &[u8]) -> Result<SshSig, ClientError> {
        match self {
            Signer::Key(k) => k
                .sign(NAMESPACE, HashAlg::Sha512, msg)
                .map_err(|e| ClientError::Usage(format!("signing failed: {e}"))),
            Signer::Agent { socket, key } => {
                let data = SshSig::signed_data(NAMESPACE, HashAlg::Sha512, msg)
                    .map_err(|e| ClientError::Usage(e.to_string()))?;
                let signature = agent_sign(socket, key, &data)
                    .map_err(|e| ClientError::Usage(format!("ssh-agent could not sign: {e}")))?;
                SshSig::new(
                    key.key_data().clone(),
                    NAMESPACE,
                    HashAlg::Sha512,
                    signature,
                )
                .map_err(|e| ClientError::Usage(e.to_string()))
            }
        }
    }
}

pub struct Client {
    base: String,
    http: reqwest::Client,
    signer: Signer,
}

impl Client {
    /// `ca_cert`: a PEM file of extra roots to trust for an `https://` server.
    pub fn new(base: &str, signer: Signer, ca_cert: Option<&Path>) -> Result<Client, ClientError> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Usage(e.to_string()))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            http,
            signer,
        })
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let bytes = self.send(Method::GET, path, Vec::new()).await?;
        decode(&bytes)
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let bytes = self.send(Method::POST, path, body).await?;
        decode(&bytes)
    }

    /// The raw body of a signed GET (e.g. a recording).
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        self.send(Method::GET, path, Vec::new()).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, ClientError> {
        let timestamp = crate::model::now();
        let nonce = auth::new_nonce();
        let msg = auth::signed_message(method.as_str(), path, &body, timestamp, &nonce);
        let sig = self.signer.sign(&msg)?;
        let url = format!("{}{}", self.base, path);
        let resp = self
            .http
            .request(method, &url)
            .header(auth::HEADER_SIGNATURE, auth::encode_signature(&sig))
            .header(auth::HEADER_TIMESTAMP, timestamp.to_string())
            .header(auth::HEADER_NONCE, nonce)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: root_cause(&e),
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: root_cause(&e),
        })?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("{status}: {}", String::from_utf8_lossy(&bytes).trim()));
        Err(ClientError::Refused {
            status: status.as_u16(),
            message,
        })
    }
}

fn hint(reason: &str) -> &'static str {
    if reason.contains("certificate") {
        "trust the server's CA with --ca-cert FILE (JITGATE_CA_CERT)"
    } else {
        "is `jitgate serve` running? (set --server or JITGATE_URL)"
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::Protocol(e.to_string()))
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

// --- ssh-agent: just the two messages we need (draft-miller-ssh-agent). ---

const AGENTC_REQUEST_IDENTITIES: u8 = 11;
const AGENT_IDENTITIES_ANSWER: u8 = 12;
const AGENTC_SIGN_REQUEST: u8 = 13;
const AGENT_SIGN_RESPONSE: u8 = 14;

fn agent_call(socket: &Path, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(&(payload.len() as u32).to_be_bytes())?;
    stream.write_all(payload)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 256 * 1024 {
        return Err(std::io::Error::other("agent answer too large"));
    }
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer)?;
    Ok(answer)
}

fn agent_has(socket: &Path, key: &PublicKey) -> std::io::Result<bool> {
    let answer = agent_call(socket, &[AGENTC_REQUEST_IDENTITIES])?;
    let mut r = answer.as_slice();
    if u8::decode(&mut r).ok() != Some(AGENT_IDENTITIES_ANSWER) {
        return Ok(false);
    }
    let count = u32::decode(&mut r).map_err(std::io::Error::other)?;
    let want = key.key_data().encode_vec().map_err(std::io::Error::other)?;
    for _ in 0..count.min(1024) {
        let blob = Vec::<u8>::decode(&mut r).map_err(std::io::Error::other)?;
        let _comment = String::decode(&mut r).map_err(std::io::Error::other)?;
        if blob == want {
            return Ok(true);
        }
    }
    Ok(false)
}

fn agent_sign(socket: &Path, key: &PublicKey, data: &[u8]) -> std::io::Result<Signature> {
    let mut payload = vec![AGENTC_SIGN_REQUEST];
    let blob = key.key_data().encode_vec().map_err(std::io::Error::other)?;
    blob.encode(&mut payload).map_err(std::io::Error::other)?;
    data.encode(&mut payload).map_err(std::io::Error::other)?;
    0u32.encode(&mut payload).map_err(std::io::Error::other)?;
    let answer = agent_call(socket, &payload)?;
    let mut r = answer.as_slice();
    if u8::decode(&mut r).ok() != Some(AGENT_SIGN_RESPONSE) {
        return Err(std::io::Error::other("the agent refused to sign"));
    }
    let sig_blob = Vec::<u8>::decode(&mut r).map_err(std::io::Error::other)?;
    Signature::decode(&mut sig_blob.as_slice()).map_err(std::io::Error::other)
}
