//! How the hub may trust an agent it reaches over https: a CA certificate pasted for that
//! agent ([`CaCertificates`]) or the SHA-256 of the agent's own certificate
//! ([`CertFingerprint`]). Both are parsed here, once, so what is stored is always usable.

use super::FieldError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{PemObject, SectionKind};
use sha2::{Digest, Sha256};
use std::fmt;

/// Larger than any sensible CA bundle; keeps a pasted blob from growing the database.
const MAX_PEM_BYTES: usize = 64 * 1024;

/// The SHA-256 of a DER certificate: what `openssl x509 -noout -fingerprint -sha256` prints.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertFingerprint([u8; 32]);

impl CertFingerprint {
    /// 64 hex digits in either case; colons and whitespace are ignored, and so is openssl's
    /// `sha256 Fingerprint=` prefix, so its output can be pasted as it is.
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let text = input.trim();
        let text = text
            .split_once('=')
            .filter(|(label, _)| label.to_ascii_lowercase().contains("fingerprint"))
            .map_or(text, |(_, value)| value);
        let digits: String = text
            .chars()
            .filter(|c| *c != ':' && !c.is_whitespace())
            .collect();
        let refuse = || {
            FieldError(
                "Enter the SHA-256 fingerprint of the agent's certificate: 64 hex digits \
                 (colons allowed), as `openssl x509 -noout -fingerprint -sha256` prints it."
                    .into(),
            )
        };
        if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(refuse());
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| refuse())?;
        }
        Ok(Self(bytes))
    }

    /// The fingerprint of a certificate in DER form.
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// Lowercase hex without separators: the stored form.
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Uppercase pairs joined by colons, the way openssl shows it, so the two can be compared by eye.
impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

/// One or more CA certificates in PEM form, each of which parses as an X.509 certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaCertificates {
    pem: String,
    certs: Vec<CertificateDer<'static>>,
}

impl CaCertificates {
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let refuse = |why: &str| Err(FieldError(why.into()));
        let pem = input.trim();
        if pem.len() > MAX_PEM_BYTES {
            return refuse("That is too long for a CA certificate.");
        }
        let mut certs = Vec::new();
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem.as_bytes()) {
            let Ok((kind, der)) = section else {
                return refuse(
                    "This is not valid PEM: paste the whole certificate, from -----BEGIN \
                     CERTIFICATE----- to -----END CERTIFICATE-----.",
                );
            };
            match kind {
                SectionKind::Certificate => certs.push(CertificateDer::from(der)),
                // Never store a secret the hub has no use for.
                SectionKind::PrivateKey
                | SectionKind::RsaPrivateKey
                | SectionKind::EcPrivateKey => {
                    return refuse(
                        "This contains a private key. Paste only the certificate, and keep the \
                         key on the agent.",
                    );
                }
                _ => {}
            }
        }
        if certs.is_empty() {
            return refuse("Paste a CA certificate in PEM form (-----BEGIN CERTIFICATE----- …).");
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in &certs {
            if roots.add(cert.clone()).is_err() {
                return refuse("This PEM block does not hold a valid X.509 certificate.");
            }
        }
        Ok(Self {
            pem: pem.to_string(),
            certs,
        })
    }

    /// The text as pasted, trimmed: the stored form.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }
}

/// Whether `url` is https, the only scheme trust settings apply to (any case, as URLs allow).
pub fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// How the hub is to trust one agent over https: a CA, a pin, or neither (the public web
/// PKI). A pin makes the CA irrelevant, so the forms accept one or the other.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub ca: Option<CaCertificates>,
    pub pin: Option<CertFingerprint>,
}

impl TlsSettings {
    /// The stored form of the CA.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(CaCertificates::pem)
    }

    /// The stored form of the pin.
    pub fn pin_hex(&self) -> Option<String> {
        self.pin.map(|p| p.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway self-signed certificate made with openssl, only ever parsed here.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBnzCCAUWgAwIBAgIUSKwpxRlhzqnsxCiaAz2gdJMdFH4wCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOZ2F0ZWhvdXNlLXRlc3QwIBcNMjYxMTIyMDQzMDI4WhgPMjEy
NjEwMjkwNDMwMjhaMBkxFzAVBgNVBAMMDmdhdGVob3VzZS10ZXN0MFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEsNJ9tiO8ufcvNqNxm/TQqxexQAHUnVvCwBNmr5ZS
elsS3mH/xNDVDbyNep4slitYCx2UfG3hhXHYSLBux6845KNpMGcwHQYDVR0OBBYE
FHg5sDUKAVIIkwwQMrZn4qSekMNeMB8GA1UdIwQYMBaAFHg5sDUKAVIIkwwQMrZn
4qSekMNeMA8GA1UdEwEB/wQFMAMBAf8wFAYDVR0RBA0wC4IJbG9jYWxob3N0MAoG
CCqGSM49BAMCA0gAMEUCIQDo61Vt/fhROVH7FF+vUI2fa4Rf1BTlOd61IZSJ4hMe
MAIgTxn0grxi5hhcFDPPnhCmmx2iCIVQbVLIIOHWB+SCqBU=
-----END CERTIFICATE-----";
    /// What `openssl x509 -noout -fingerprint -sha256` printed for it.
    const OPENSSL_FINGERPRINT: &str = "sha256 Fingerprint=F6:2A:D3:56:38:D4:F7:91:09:6A:DB:C9:09:5C:16:1A:AB:94:AD:71:64:91:B5:9B:E0:AC:17:36:E0:57:D8:46";

    #[test]
    fn a_fingerprint_reads_with_or_without_colons_and_openssls_prefix() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        let a = CertFingerprint::parse(&hex).unwrap();
        assert_eq!(CertFingerprint::parse(&colons).unwrap(), a);
        assert_eq!(
            CertFingerprint::parse(&format!("sha256 Fingerprint={colons}\n")).unwrap(),
            a
        );
        assert_eq!(
            CertFingerprint::parse(&format!(" {} {} ", &hex[..32], &hex[32..])).unwrap(),
            a
        );
        assert_eq!(a.to_hex(), hex);
        assert_eq!(a.to_string(), colons);
    }

    #[test]
    fn a_fingerprint_of_the_wrong_length_or_with_other_characters_is_refused() {
        for bad in [
            "",
            "ab",
            &"ab".repeat(31),
            &"ab".repeat(33),
            &"zz".repeat(32),
            &"é".repeat(64),
        ] {
            assert!(CertFingerprint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_certificate_has_the_fingerprint_openssl_prints_for_it() {
        let ca = CaCertificates::parse(CERT).unwrap();
        let fp = CertFingerprint::of(ca.certs()[0].as_ref());
        assert_eq!(fp, CertFingerprint::parse(OPENSSL_FINGERPRINT).unwrap());
        assert_eq!(format!("sha256 Fingerprint={fp}"), OPENSSL_FINGERPRINT);
    }

    #[test]
    fn only_https_urls_take_trust_settings() {
        assert!(is_https("https://10.0.0.5:7070"));
        assert!(is_https("HTTPS://edge.example"));
        assert!(!is_https("http://10.0.0.5:7070"));
        assert!(!is_https("https"));
    }

    #[test]
    fn a_pem_certificate_is_accepted_and_kept_as_pasted() {
        let ca = CaCertificates::parse(&format!("\n{CERT}\n\n")).unwrap();
        assert_eq!(ca.pem(), CERT);
        assert_eq!(ca.certs().len(), 1);
        let two = CaCertificates::parse(&format!("{CERT}\n{CERT}")).unwrap();
        assert_eq!(two.certs().len(), 2);
    }

    #[test]
    fn text_that_is_not_a_pem_certificate_is_refused_with_a_reason() {
        let broken = CERT.replace("MIIBnzCC", "MIIB!!!!");
        let not_x509 = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----";
        let key = "-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----";
        for (input, why) in [
            ("", "PEM form"),
            ("just some text", "PEM form"),
            (broken.as_str(), "not valid PEM"),
            (not_x509, "valid X.509"),
            (&format!("{CERT}\n{key}"), "private key"),
        ] {
            let err = CaCertificates::parse(input).unwrap_err().0;
            assert!(err.contains(why), "{input:?}: {err}");
        }
    }
}
