//! How the hub trusts an agent reached over https, and the reqwest client that enforces it:
//! the public web PKI (the system's roots), only the CA certificate stored for that agent, or
//! only a certificate whose SHA-256 matches the stored pin, whoever signed it. TLS failures
//! are explained in words a person can act on, never as a bare "cannot connect".

use crate::db::agents::Agent;
use crate::domain::tls::{CaCertificates, CertFingerprint, is_https};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;

/// How the hub decides whether an agent's certificate is the agent's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Plain http, or https checked against the system's CA roots.
    PublicPki,
    /// https checked against this CA (PEM) alone, host name included.
    CustomCa(String),
    /// https accepted only from a certificate with this SHA-256, whoever signed it.
    Pinned(CertFingerprint),
}

impl Trust {
    /// What the agent's record asks for. A stored value that no longer parses is kept as
    /// it is, so the client build fails and says so rather than silently trusting the
    /// public PKI instead.
    pub fn of(agent: &Agent) -> Result<Self, String> {
        if !is_https(&agent.url) {
            return Ok(Trust::PublicPki);
        }
        if let Some(pin) = agent.tls_pin.as_deref().filter(|p| !p.is_empty()) {
            return CertFingerprint::parse(pin)
                .map(Trust::Pinned)
                .map_err(|_| "the pinned fingerprint stored for this agent is not valid".into());
        }
        match agent.tls_ca.as_deref().filter(|p| !p.is_empty()) {
            Some(ca) => Ok(Trust::CustomCa(ca.to_string())),
            None => Ok(Trust::PublicPki),
        }
    }

    /// A short name for the agents page.
    pub fn label(&self) -> &'static str {
        match self {
            Trust::PublicPki => "public CA",
            Trust::CustomCa(_) => "custom CA",
            Trust::Pinned(_) => "pinned",
        }
    }

    /// A client that trusts what this says and nothing else.
    pub fn client(&self) -> Result<reqwest::Client, String> {
        let builder = base_client();
        let builder = match self {
            Trust::PublicPki => builder,
            Trust::CustomCa(pem) => {
                let ca = CaCertificates::parse(pem).map_err(|_| {
                    "the CA certificate stored for this agent is not valid".to_string()
                })?;
                let certs = ca
                    .certs()
                    .iter()
                    .map(|c| reqwest::Certificate::from_der(c.as_ref()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| "the CA certificate stored for this agent is not usable")?;
                builder.tls_certs_only(certs)
            }
            Trust::Pinned(pin) => builder.tls_backend_preconfigured(pinned_config(*pin)?),
        };
        builder
            .build()
            .map_err(|_| "cannot set up TLS for this agent".into())
    }
}

/// What every agent client shares, whatever it trusts.
pub fn base_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        // Below the agent's default `header_read_timeout_secs` (10), which also closes idle
        // kept-alive connections: the hub lets go of one before the agent does, so a request
        // never meets a connection the agent is just closing.
        .pool_idle_timeout(Duration::from_secs(5))
        // An agent's answer is the agent's: a redirect would send its bearer token's requests
        // (and Caddyfiles) wherever the redirect points. It is reported as a failure instead.
        .redirect(reqwest::redirect::Policy::none())
}

/// The crypto reqwest itself uses: the process default if one was installed, else aws-lc-rs.
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

fn pinned_config(pin: CertFingerprint) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let verifier = PinVerifier {
        pin,
        provider: provider.clone(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| "cannot set up TLS for this agent".to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// Accepts exactly one certificate, by its SHA-256, whatever its names, signer or dates: the
/// pin is the whole of the trust. The handshake signature is still checked against that
/// certificate's key, so presenting the certificate without its key gets nowhere.
#[derive(Debug)]
struct PinVerifier {
    pin: CertFingerprint,
    provider: Arc<CryptoProvider>,
}

/// The certificate an agent presented when it was not the pinned one.
#[derive(Debug)]
pub struct PinMismatch {
    pub presented: CertFingerprint,
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the agent's certificate does not match the pinned fingerprint (it presents SHA-256 {})",
            self.presented
        )
    }
}

impl std::error::Error for PinMismatch {}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = CertFingerprint::of(end_entity.as_ref());
        if presented == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch { presented })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why TLS with the agent failed, if that is what `error` is, in words for the agents page.
pub fn explain(error: &reqwest::Error, trust: &Trust) -> Option<String> {
    let tls = find_rustls_error(error)?;
    let unknown_issuer = match trust {
        Trust::CustomCa(_) => {
            "the agent's certificate is not signed by the CA certificate set for this agent \
             (unknown issuer)"
        }
        _ => {
            "the agent's certificate is not signed by a publicly trusted CA (unknown issuer): \
             paste its CA certificate or pin its fingerprint on the agent's form"
        }
    };
    Some(match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::Other(OtherError(inner)) => match inner.downcast_ref::<PinMismatch>()
            {
                Some(mismatch) => mismatch.to_string(),
                // webpki's own error, known only by name here (its Display is its Debug):
                // what `openssl req -x509` makes by default, CA:TRUE, cannot be a leaf.
                None if inner.to_string() == "CaUsedAsEndEntity" => {
                    "the agent's certificate is marked as a CA (basicConstraints CA:TRUE), so it \
                     cannot be the agent's own: make it with CA:FALSE, or pin its fingerprint"
                        .into()
                }
                None => format!("the agent's certificate was refused: {inner}"),
            },
            CertificateError::UnknownIssuer => unknown_issuer.into(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the agent's certificate is not valid for the host name in its URL".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the agent's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the agent's certificate is not valid yet (check the clocks)".into()
            }
            other => format!("the agent's certificate was refused: {other}"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "the agent does not speak TLS on this port (is its URL meant to be http://?)".into()
        }
        other => format!("TLS with the agent failed: {other}"),
    })
}

/// Walks the error's causes. `io::Error` hides the error it wraps from `source()` (it returns
/// that error's own source), and reqwest's TLS errors come as an io error inside another, so
/// each io error is opened by hand.
fn find_rustls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(url: &str, ca: Option<&str>, pin: Option<&str>) -> Agent {
        Agent {
            url: url.into(),
            tls_ca: ca.map(str::to_string),
            tls_pin: pin.map(str::to_string),
            ..Agent::test(1)
        }
    }

    #[test]
    fn trust_settings_only_apply_to_https_and_a_pin_wins() {
        let pin = "ab".repeat(32);
        assert_eq!(
            Trust::of(&agent("http://a:1", None, Some(&pin))),
            Ok(Trust::PublicPki)
        );
        assert_eq!(
            Trust::of(&agent("https://a:1", None, None)),
            Ok(Trust::PublicPki)
        );
        assert_eq!(
            Trust::of(&agent("https://a:1", Some("pem"), None)),
            Ok(Trust::CustomCa("pem".into()))
        );
        assert!(matches!(
            Trust::of(&agent("https://a:1", Some("pem"), Some(&pin))),
            Ok(Trust::Pinned(_))
        ));
        assert!(Trust::of(&agent("https://a:1", None, Some("nonsense"))).is_err());
    }

    #[test]
    fn a_stored_ca_that_does_not_parse_fails_the_client_instead_of_trusting_anyone() {
        let err = Trust::CustomCa("not a certificate".into())
            .client()
            .unwrap_err();
        assert!(err.contains("CA certificate"), "{err}");
    }

    #[test]
    fn the_rustls_error_is_found_inside_nested_io_errors() {
        // The shape reqwest 0.13 gives: Other(InvalidData(rustls::Error)).
        let io = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        ));
        assert_eq!(
            find_rustls_error(&io),
            Some(&rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        );
    }
}
