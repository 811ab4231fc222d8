//! HTTPS for the API with rustls, when `[server] tls_cert` and `tls_key` are set: the
//! acceptor `listen::serve` hands each connection to.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::config::Tls;

pub fn acceptor(tls: &Tls) -> std::io::Result<TlsAcceptor> {
    let bad = |what: &str, e: &dyn std::fmt::Display| std::io::Error::other(format!("{what}: {e}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| bad(&tls.cert.display().to_string(), &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&tls.cert.display().to_string(), &e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| bad(&tls.key.display().to_string(), &e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad("tls", &e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| bad("tls certificate", &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Loads the certificate and key as `serve` will: `jitgate serve` checks them before it
/// listens, so a bad file stops the start instead of leaving a server without its API.
pub fn check(tls: &Tls) -> std::io::Result<()> {
    acceptor(tls).map(|_| ())
}
