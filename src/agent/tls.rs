//! The agent's optional HTTPS: the certificate and key named by `tls_cert` and `tls_key`,
//! read once at start-up so a bad file stops the agent with a message naming the key.

use anyhow::{Context, anyhow};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// The rustls server configuration for `cert` (PEM, leaf first, then any intermediates) and
/// `key` (PEM: PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert: &str, key: &str) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("`tls_cert`: cannot read a PEM certificate from {cert}"))?;
    if chain.is_empty() {
        return Err(anyhow!("`tls_cert`: {cert} holds no PEM certificate"));
    }
    let private_key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("`tls_key`: cannot read a PEM private key from {key}"))?;
    // The provider is named rather than taken from the process default, which is ambiguous
    // when more than one is compiled in.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS set-up")?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .context("`tls_key` does not belong to the certificate in `tls_cert`")?;
    // HTTP/1.1 only: the agent serves nothing else (see `crate::http_server`).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
