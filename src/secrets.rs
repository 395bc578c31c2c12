//! Secrets at rest. Agent tokens and TOTP secrets are sealed with AES-256-GCM before they
//! reach SQLite, under a key that lives outside the database: a key file (default
//! `<data_dir>/secret.key`, mode 0600, made on first run) or the `secret_key` setting
//! (`GATEHOUSE_SECRET_KEY`).
//!
//! A sealed value reads `v1:<key id>:<base64 of nonce ‖ ciphertext ‖ tag>`: a fresh random
//! 96-bit nonce per value, and the field and row it belongs to (with the format and key id)
//! as associated data, so a value copied to another row or column no longer opens. The key
//! id is a short hash of the key: it tells which key sealed a value without revealing it.
//!
//! This module is the key and the sealer only; the database sees the key through the SQL
//! functions of `db::sealed`.

use crate::domain::Secret;
use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The format tag every sealed value starts with.
const VERSION: &str = "v1";
/// Bytes of the AES-GCM nonce (96 bits).
const NONCE_LEN: usize = 12;
/// Bytes of the AES-GCM tag.
const TAG_LEN: usize = 16;

/// Where a sealed value belongs. Its name is part of the associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    /// `agents.token`, for the agent with that id.
    AgentToken,
    /// `users.totp_secret`, for the user with that id.
    TotpSecret,
    /// A TOTP secret offered during enrolment, kept in the user's session until confirmed.
    TotpEnrolment,
}

impl Field {
    pub(crate) const ALL: [Field; 3] = [Field::AgentToken, Field::TotpSecret, Field::TotpEnrolment];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::AgentToken => "agents.token",
            Field::TotpSecret => "users.totp_secret",
            Field::TotpEnrolment => "session.totp_enrolment",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A 256-bit key. Debug shows only its id; the bytes are zeroed on drop.
#[derive(Clone)]
pub struct SecretKey {
    key: Key<Aes256Gcm>,
    id: String,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self.key.as_mut_slice());
    }
}

impl SecretKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        Self::from_key(Key::<Aes256Gcm>::generate())
    }

    fn from_key(key: Key<Aes256Gcm>) -> Self {
        let digest = Sha256::new()
            .chain_update(b"gatehouse secret key id\0")
            .chain_update(key.as_slice())
            .finalize();
        let id = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Self { key, id }
    }

    /// Reads a key written as base64 (with or without padding) or as 64 hex digits.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes = crate::domain::secret::key_bytes(text)?;
        Ok(Self::from_key(Key::<Aes256Gcm>::from(bytes)))
    }

    /// The key as base64, as the key file holds it.
    pub fn encode(&self) -> String {
        BASE64.encode(self.key.as_slice())
    }

    /// A short name for the key (hash-derived, reveals nothing about it).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Why a stored value does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("is not sealed (plaintext where a sealed value belongs)")]
    NotSealed,
    #[error("is sealed in an unknown format {0:?}")]
    UnknownFormat(String),
    #[error("is sealed under key {found}, not under the configured key {expected}")]
    WrongKey { found: String, expected: String },
    #[error("is damaged (not a well-formed sealed value)")]
    Malformed,
    #[error("fails authentication: it was altered, or moved from another row or column")]
    Tampered,
}

/// Seals and opens values with one key.
pub struct Sealer {
    cipher: Aes256Gcm,
    key_id: String,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealer({})", self.key_id)
    }
}

/// The key id of a value in sealed form, if it is one.
pub(crate) fn sealed_key_id(stored: &str) -> Option<&str> {
    let rest = stored.strip_prefix(VERSION)?.strip_prefix(':')?;
    let (id, _) = rest.split_once(':')?;
    Some(id)
}

impl Sealer {
    pub fn new(key: &SecretKey) -> Self {
        Self {
            cipher: Aes256Gcm::new(&key.key),
            key_id: key.id.clone(),
        }
    }

    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    fn aad(&self, field: Field, row: i64) -> Vec<u8> {
        format!("gatehouse {VERSION} {} {} {row}", self.key_id, field.name()).into_bytes()
    }

    /// `plaintext` sealed for `field` of row `row`, with a fresh random nonce.
    pub fn seal(&self, field: Field, row: i64, plaintext: &str) -> String {
        let nonce = Nonce::generate();
        let aad = self.aad(field, row);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encrypts any value shorter than 64 GiB");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{VERSION}:{}:{}", self.key_id, BASE64.encode(bytes))
    }

    /// The plaintext of a value sealed for `field` of row `row`.
    pub(crate) fn open(&self, field: Field, row: i64, stored: &str) -> Result<String, OpenError> {
        let Some((version, rest)) = stored.split_once(':') else {
            return Err(OpenError::NotSealed);
        };
        if version != VERSION {
            // Any other `word:` prefix: an old plaintext, or a format from a newer binary.
            return Err(
                if version.len() <= 4 && version.starts_with('v') && rest.contains(':') {
                    OpenError::UnknownFormat(version.to_string())
                } else {
                    OpenError::NotSealed
                },
            );
        }
        let (id, payload) = rest.split_once(':').ok_or(OpenError::Malformed)?;
        if id != self.key_id {
            return Err(OpenError::WrongKey {
                found: id.to_string(),
                expected: self.key_id.clone(),
            });
        }
        let bytes = BASE64.decode(payload).map_err(|_| OpenError::Malformed)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| OpenError::Malformed)?;
        let aad = self.aad(field, row);
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Tampered)?;
        String::from_utf8(plain).map_err(|_| OpenError::Malformed)
    }
}

// ----- the key: where it lives, loading, creating ------------------------------------------

/// Where the key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// The `secret_key` setting (usually `GATEHOUSE_SECRET_KEY`).
    Setting,
    File(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Setting => f.write_str("the secret_key setting (GATEHOUSE_SECRET_KEY)"),
            KeySource::File(path) => write!(f, "the key file {}", path.display()),
        }
    }
}

/// Reads a key file.
pub fn read_key_file(path: &Path) -> anyhow::Result<SecretKey> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the key file can be read by other users: chmod 600 it"
            );
        }
    }
    SecretKey::parse(&text).map_err(|e| anyhow::anyhow!("the key file {}: {e}", path.display()))
}

/// Writes `key` to a new file at `path` (never over an existing one), readable by its owner
/// only, and flushed to disk with its directory.
pub fn write_key_file(path: &Path, key: &SecretKey) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(file, "{}", key.encode())?;
    file.sync_all()?;
    sync_dir(path);
    Ok(())
}

/// Makes a rename or a new file in `path`'s directory durable (best effort).
pub(crate) fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
}

/// The configured key, if there is one (without creating it): the `secret_key` setting when
/// it is set, else the key file at `key_file` when it exists.
pub(crate) fn configured_key(
    setting: &Secret,
    key_file: &Path,
) -> anyhow::Result<Option<(SecretKey, KeySource)>> {
    if !setting.is_empty() {
        let key = SecretKey::parse(setting.expose())
            .map_err(|e| anyhow::anyhow!("config key `secret_key`: {e}"))?;
        return Ok(Some((key, KeySource::Setting)));
    }
    let path = key_file.to_path_buf();
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some((read_key_file(&path)?, KeySource::File(path))))
}

/// A file beside the key file (an old or interrupted-rotation key) that holds key `id`.
pub(crate) fn find_key_file_beside(source: &KeySource, id: &str) -> Option<PathBuf> {
    let KeySource::File(path) = source else {
        return None;
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = path.file_name()?.to_str()?.to_string();
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&stem) && n != stem)
        })
        .collect();
    candidates.sort();
    candidates.into_iter().find(|p| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| SecretKey::parse(&t).ok())
            .is_some_and(|k| k.id() == id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(&SecretKey::generate())
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_own_field_and_row() {
        let s = sealer();
        let sealed = s.seal(Field::AgentToken, 7, "the-token-of-agent-seven");
        assert!(
            sealed.starts_with(&format!("v1:{}:", s.key_id())),
            "{sealed}"
        );
        assert!(!sealed.contains("the-token"));
        assert_eq!(
            s.open(Field::AgentToken, 7, &sealed).unwrap(),
            "the-token-of-agent-seven"
        );
        assert_eq!(
            s.open(Field::AgentToken, 8, &sealed),
            Err(OpenError::Tampered)
        );
        assert_eq!(
            s.open(Field::TotpSecret, 7, &sealed),
            Err(OpenError::Tampered)
        );
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let s = sealer();
        let a = s.seal(Field::TotpSecret, 1, "JBSWY3DPEHPK3PXP");
        let b = s.seal(Field::TotpSecret, 1, "JBSWY3DPEHPK3PXP");
        assert_ne!(a, b);
        let nonce = |v: &str| BASE64.decode(v.rsplit(':').next().unwrap()).unwrap()[..12].to_vec();
        assert_ne!(nonce(&a), nonce(&b));
    }

    #[test]
    fn a_flipped_bit_anywhere_is_detected() {
        let s = sealer();
        let sealed = s.seal(Field::AgentToken, 1, "0123456789abcdef0123");
        let payload = sealed.rsplit(':').next().unwrap();
        let bytes = BASE64.decode(payload).unwrap();
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            let stored = format!("v1:{}:{}", s.key_id(), BASE64.encode(&altered));
            assert_eq!(
                s.open(Field::AgentToken, 1, &stored),
                Err(OpenError::Tampered),
                "byte {i}"
            );
        }
        let truncated = format!("v1:{}:{}", s.key_id(), BASE64.encode(&bytes[..20]));
        assert_eq!(
            s.open(Field::AgentToken, 1, &truncated),
            Err(OpenError::Malformed)
        );
    }

    #[test]
    fn another_key_is_named_not_mistaken_for_tampering() {
        let (a, b) = (sealer(), sealer());
        let sealed = a.seal(Field::AgentToken, 1, "x".repeat(20).as_str());
        assert_eq!(
            b.open(Field::AgentToken, 1, &sealed),
            Err(OpenError::WrongKey {
                found: a.key_id().into(),
                expected: b.key_id().into()
            })
        );
        // A value that claims the right key id but was sealed with another key.
        let forged = sealed.replacen(a.key_id(), b.key_id(), 1);
        assert_eq!(
            b.open(Field::AgentToken, 1, &forged),
            Err(OpenError::Tampered)
        );
        assert_eq!(
            b.open(Field::AgentToken, 1, "plain-token-value"),
            Err(OpenError::NotSealed)
        );
        assert_eq!(
            b.open(Field::AgentToken, 1, "v2:abc:def"),
            Err(OpenError::UnknownFormat("v2".into()))
        );
    }

    #[test]
    fn keys_parse_from_base64_or_hex_and_must_be_32_bytes() {
        let key = SecretKey::generate();
        let again = SecretKey::parse(&format!("  {}\n", key.encode())).unwrap();
        assert_eq!(again.id(), key.id());
        let hex: String = key.key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(SecretKey::parse(&hex).unwrap().id(), key.id());
        assert_eq!(
            SecretKey::parse(&hex.to_uppercase()).unwrap().id(),
            key.id()
        );
        assert!(
            SecretKey::parse("c2hvcnQ=")
                .unwrap_err()
                .contains("32 bytes")
        );
        assert!(SecretKey::parse("not a key!").is_err());
        assert!(!format!("{key:?}").contains(&key.encode()));
    }

    #[test]
    fn a_key_file_is_new_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret.key");
        let key = SecretKey::generate();
        write_key_file(&path, &key).unwrap();
        assert_eq!(read_key_file(&path).unwrap().id(), key.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = write_key_file(&path, &SecretKey::generate()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(
            read_key_file(&path).unwrap().id(),
            key.id(),
            "never overwritten"
        );
    }
}
