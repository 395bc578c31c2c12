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
//! The database sees the key only through two SQL functions registered on each of the hub's
//! connections (`gh_seal`, `gh_open`), so the table modules seal and open in their queries.

use crate::config::Config;
use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The format tag every sealed value starts with.
const VERSION: &str = "v1";
/// Bytes of the AES-GCM nonce (96 bits).
const NONCE_LEN: usize = 12;
/// Bytes of the AES-GCM tag.
const TAG_LEN: usize = 16;
/// The name of the key file in the data directory unless `secret_key_file` says otherwise.
pub const DEFAULT_KEY_FILE: &str = "secret.key";

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
    pub const ALL: [Field; 3] = [Field::AgentToken, Field::TotpSecret, Field::TotpEnrolment];

    pub fn name(self) -> &'static str {
        match self {
            Field::AgentToken => "agents.token",
            Field::TotpSecret => "users.totp_secret",
            Field::TotpEnrolment => "session.totp_enrolment",
        }
    }

    fn parse(name: &str) -> Option<Field> {
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
pub enum OpenError {
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
pub fn sealed_key_id(stored: &str) -> Option<&str> {
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

    pub fn key_id(&self) -> &str {
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
    pub fn open(&self, field: Field, row: i64, stored: &str) -> Result<String, OpenError> {
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

/// Registers `gh_seal(field, row, plaintext)` and `gh_open(field, row, stored)` on `conn`.
/// NULL stays NULL. Without a key both fail with a message saying so. DIRECTONLY keeps them
/// out of triggers and views, where a crafted schema could call them.
pub(crate) fn register_functions(
    conn: &Connection,
    sealer: Option<Arc<Sealer>>,
) -> rusqlite::Result<()> {
    fn args(
        ctx: &rusqlite::functions::Context<'_>,
    ) -> rusqlite::Result<Option<(Field, i64, String)>> {
        let field: String = ctx.get(0)?;
        let field =
            Field::parse(&field).ok_or_else(|| user_error(format!("unknown field {field}")))?;
        let row: i64 = ctx.get(1)?;
        let value: Option<String> = ctx.get(2)?;
        Ok(value.map(|v| (field, row, v)))
    }
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    let seal_with = sealer.clone();
    conn.create_scalar_function("gh_seal", 3, flags, move |ctx| {
        let Some((field, row, value)) = args(ctx)? else {
            return Ok(None);
        };
        let sealer = seal_with.as_ref().ok_or_else(no_key)?;
        Ok(Some(sealer.seal(field, row, &value)))
    })?;
    conn.create_scalar_function("gh_open", 3, flags, move |ctx| {
        let Some((field, row, value)) = args(ctx)? else {
            return Ok(None);
        };
        let sealer = sealer.as_ref().ok_or_else(no_key)?;
        sealer
            .open(field, row, &value)
            .map(Some)
            .map_err(|e| user_error(format!("{} of row {row} {e}", field.name())))
    })?;
    Ok(())
}

fn user_error(message: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(message.into())
}

fn no_key() -> rusqlite::Error {
    user_error("this connection has no secret key: stored secrets cannot be read or written".into())
}

// ----- the key: where it lives, loading, creating ------------------------------------------

/// Where the key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
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

/// The key file's path: `secret_key_file`, or `secret.key` in the data directory.
pub fn key_file_path(config: &Config) -> PathBuf {
    if config.secret_key_file.is_empty() {
        config.data_dir.join(DEFAULT_KEY_FILE)
    } else {
        PathBuf::from(&config.secret_key_file)
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

/// The configured key, if there is one (without creating it).
pub fn configured_key(config: &Config) -> anyhow::Result<Option<(SecretKey, KeySource)>> {
    if !config.secret_key.is_empty() {
        let key = SecretKey::parse(config.secret_key.expose())
            .map_err(|e| anyhow::anyhow!("config key `secret_key`: {e}"))?;
        return Ok(Some((key, KeySource::Setting)));
    }
    let path = key_file_path(config);
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some((read_key_file(&path)?, KeySource::File(path))))
}

// ----- the database: start-up pass, verification, rotation --------------------------------

/// One stored secret, as it is in the database.
#[derive(Debug, Clone)]
struct Stored {
    field: Field,
    row: i64,
    /// How to name the row to a person (agent name, user email).
    label: String,
    value: String,
}

impl Stored {
    /// How a person clears this value when it no longer opens.
    fn remedy(&self) -> String {
        match self.field {
            Field::AgentToken => format!(
                "sqlite3 <database> \"DELETE FROM agents WHERE id = {}\", then add the agent again \
                 (agents declared in the config file come back by themselves)",
                self.row
            ),
            Field::TotpSecret | Field::TotpEnrolment => format!(
                "gatehouse user reset-2fa {} (they enrol again)",
                self.label.trim_start_matches("user ")
            ),
        }
    }
}

fn stored_secrets(conn: &Connection) -> rusqlite::Result<Vec<Stored>> {
    let mut out = Vec::new();
    let mut stmt = conn.prepare("SELECT id, name, token FROM agents ORDER BY id")?;
    for row in stmt.query_map([], |r| {
        Ok(Stored {
            field: Field::AgentToken,
            row: r.get(0)?,
            label: format!("agent {:?}", r.get::<_, String>(1)?),
            value: r.get(2)?,
        })
    })? {
        out.push(row?);
    }
    let mut stmt = conn.prepare(
        "SELECT id, email, totp_secret FROM users WHERE totp_secret IS NOT NULL ORDER BY id",
    )?;
    for row in stmt.query_map([], |r| {
        Ok(Stored {
            field: Field::TotpSecret,
            row: r.get(0)?,
            label: format!("user {}", r.get::<_, String>(1)?),
            value: r.get(2)?,
        })
    })? {
        out.push(row?);
    }
    Ok(out)
}

fn update_stored(conn: &Connection, s: &Stored, value: &str) -> rusqlite::Result<()> {
    match s.field {
        Field::AgentToken => conn.execute(
            "UPDATE agents SET token = ?2 WHERE id = ?1",
            params![s.row, value],
        )?,
        Field::TotpSecret => conn.execute(
            "UPDATE users SET totp_secret = ?2 WHERE id = ?1",
            params![s.row, value],
        )?,
        Field::TotpEnrolment => 0,
    };
    Ok(())
}

/// Rows still in plaintext from before secrets were sealed (listed by migration 6).
fn pending(conn: &Connection) -> rusqlite::Result<BTreeSet<(String, i64)>> {
    let mut stmt = conn.prepare("SELECT field, row_id FROM secrets_pending")?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// The ids of the keys the database's sealed values name.
pub fn key_ids_in(conn: &Connection) -> rusqlite::Result<BTreeSet<String>> {
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('agents', 'users')",
        [],
        |r| r.get(0),
    )?;
    if tables < 2 {
        return Ok(BTreeSet::new());
    }
    // Plaintext an older version left (listed since schema 6) names no key, whatever it reads.
    let listed: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'secrets_pending'",
        [],
        |r| r.get(0),
    )?;
    let pending = if listed > 0 {
        pending(conn)?
    } else {
        BTreeSet::new()
    };
    Ok(stored_secrets(conn)?
        .iter()
        .filter(|s| !pending.contains(&(s.field.name().to_string(), s.row)))
        .filter_map(|s| sealed_key_id(&s.value).map(str::to_string))
        .collect())
}

/// Why the stored secrets and the key do not go together. Start-up stops on it.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(
        "the database holds secrets sealed under key {found}, but {source_desc} is key {configured}. \
         Refusing to start rather than lose the agent tokens and two-factor secrets. \
         Put back the key file that goes with this database (a backup needs the key file \
         of the server it came from){hint}"
    )]
    WrongKey {
        found: String,
        configured: String,
        source_desc: String,
        hint: String,
    },
    #[error(
        "stored secrets do not open with the configured key, so the database was altered or \
         damaged. Refusing to start; restore it from a backup, or clear each value:\n{0}"
    )]
    Unreadable(String),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

/// What the start-up pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    /// Plaintext values from an older version, now sealed.
    pub sealed_legacy: usize,
    /// Sealed values checked.
    pub verified: usize,
}

/// Seals the plaintext rows an upgrade left (in one transaction) and checks that every
/// stored secret opens with `sealer`. Refuses, changing nothing, when values are sealed
/// under another key or fail authentication.
pub fn prepare(
    conn: &mut Connection,
    sealer: &Sealer,
    source: &KeySource,
) -> Result<Prepared, CheckError> {
    let tx = conn.transaction()?;
    let pending = pending(&tx)?;
    let mut wrong_keys = BTreeSet::new();
    let mut unreadable = Vec::new();
    let mut legacy = Vec::new();
    let mut verified = 0;
    for s in stored_secrets(&tx)? {
        if pending.contains(&(s.field.name().to_string(), s.row)) {
            legacy.push(s);
            continue;
        }
        match sealer.open(s.field, s.row, &s.value) {
            Ok(_) => verified += 1,
            Err(OpenError::WrongKey { found, .. }) => {
                wrong_keys.insert(found);
            }
            Err(e) => unreadable.push(format!(
                "  {label} ({field} of row {row}) {e}\n    to clear it: {fix}",
                label = s.label,
                field = s.field.name(),
                row = s.row,
                fix = s.remedy(),
            )),
        }
    }
    if let Some(found) = wrong_keys.into_iter().next() {
        let hint = find_key_file_beside(source, &found)
            .map(|p| format!("; {} holds key {found}", p.display()))
            .unwrap_or_default();
        return Err(CheckError::WrongKey {
            found,
            configured: sealer.key_id().to_string(),
            source_desc: source.to_string(),
            hint,
        });
    }
    if !unreadable.is_empty() {
        return Err(CheckError::Unreadable(unreadable.join("\n")));
    }
    for s in &legacy {
        update_stored(&tx, s, &sealer.seal(s.field, s.row, &s.value))?;
    }
    tx.execute("DELETE FROM secrets_pending", [])?;
    tx.commit()?;
    if !legacy.is_empty() {
        // The plaintext is gone from the table; make it gone from the WAL file too.
        checkpoint(conn)?;
    }
    Ok(Prepared {
        sealed_legacy: legacy.len(),
        verified,
    })
}

/// Copies the WAL into the database and truncates it, so replaced values leave no trace.
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .optional()
        .map(|_| ())
}

/// A file beside the key file (an old or interrupted-rotation key) that holds key `id`.
fn find_key_file_beside(source: &KeySource, id: &str) -> Option<PathBuf> {
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

/// How many values of each field a rotation re-sealed.
pub type Resealed = BTreeMap<&'static str, usize>;

/// Re-seals every stored secret from `old` to `new` in one transaction, then checkpoints.
/// Nothing changes unless every value opens with `old`.
pub fn reseal_all(conn: &mut Connection, old: &Sealer, new: &Sealer) -> anyhow::Result<Resealed> {
    let tx = conn.transaction()?;
    let mut counts = Resealed::new();
    for s in stored_secrets(&tx)? {
        let plain = old.open(s.field, s.row, &s.value).map_err(|e| {
            anyhow::anyhow!(
                "{} ({} of row {}) {e}; nothing was changed",
                s.label,
                s.field.name(),
                s.row
            )
        })?;
        update_stored(&tx, &s, &new.seal(s.field, s.row, &plain))?;
        *counts.entry(s.field.name()).or_default() += 1;
    }
    tx.commit()?;
    checkpoint(conn)?;
    Ok(counts)
}

// ----- start-up ----------------------------------------------------------------------------

/// The key ids sealed values in the database at `path` name (empty for no database).
fn key_ids_at(path: &Path) -> anyhow::Result<BTreeSet<String>> {
    if !path.is_file() {
        return Ok(BTreeSet::new());
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(key_ids_in(&conn)?)
}

/// The configured key, or a new one written to the key file when there is none and the
/// database holds nothing sealed. A database with sealed values and no key is refused: a
/// new key could never open them.
pub fn load_or_create_key(config: &Config) -> anyhow::Result<(SecretKey, KeySource)> {
    use anyhow::Context;
    if let Some(found) = configured_key(config)? {
        return Ok(found);
    }
    let file = key_file_path(config);
    if let Some(id) = key_ids_at(&config.db_path())?.into_iter().next() {
        anyhow::bail!(
            "no secret key: {} does not exist and secret_key is not set, but the database holds \
             secrets sealed under key {id}. Put back the key file that goes with this database \
             (a restored backup needs the key file of the server it came from)",
            file.display()
        );
    }
    let key = SecretKey::generate();
    write_key_file(&file, &key)
        .with_context(|| format!("cannot create the key file {}", file.display()))?;
    tracing::info!(
        path = %file.display(),
        key_id = key.id(),
        "made a new secret key for agent tokens and TOTP secrets: back it up apart from the database"
    );
    Ok((key, KeySource::File(file)))
}

/// Refuses, before anything is written, a key that is not the one the database's sealed
/// values name.
fn check_key_ids(path: &Path, sealer: &Sealer, source: &KeySource) -> anyhow::Result<()> {
    if let Some(found) = key_ids_at(path)?
        .into_iter()
        .find(|id| id != sealer.key_id())
    {
        let hint = find_key_file_beside(source, &found)
            .map(|p| format!("; {} holds key {found}", p.display()))
            .unwrap_or_default();
        return Err(CheckError::WrongKey {
            found,
            configured: sealer.key_id().to_string(),
            source_desc: source.to_string(),
            hint,
        }
        .into());
    }
    Ok(())
}

/// The hub's database, ready to serve: the key loaded (made on first run), the schema
/// migrated, plaintext left by an older version sealed, and every stored secret checked
/// against the key. A key that does not fit is refused before the schema is touched. The
/// data directory and database files are made private, or tightened (see `db::files`).
/// Blocks; call it on the blocking pool.
pub fn open_database(config: &Config) -> anyhow::Result<crate::db::Db> {
    use anyhow::Context;
    let path = config.db_path();
    // Before the key file can be made in it with a looser directory around it; existing
    // ones (from an older version, a copy, a restore) are tightened, and each change logged.
    crate::db::files::create_private_dir(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    crate::db::files::tighten(&config.data_dir, &path);
    let (key, source) = load_or_create_key(config)?;
    let sealer = Arc::new(Sealer::new(&key));
    check_key_ids(&path, &sealer, &source)?;
    let db = crate::db::Db::open_with(&path, Some(sealer.clone()))
        .with_context(|| format!("opening database {}", path.display()))?;
    db.migrate()
        .with_context(|| format!("migrating database {}", path.display()))?;
    let prepared = db
        .with_conn(|c| Ok(prepare(c, &sealer, &source)))?
        .map_err(anyhow::Error::new)?;
    if prepared.sealed_legacy > 0 {
        tracing::info!(
            count = prepared.sealed_legacy,
            key_id = sealer.key_id(),
            "sealed secrets an older version stored in plaintext"
        );
    }
    tracing::debug!(key_id = sealer.key_id(), source = %source, verified = prepared.verified, "secret key loaded");
    Ok(db)
}

/// The hub's database for reading only (`gatehouse export`, `gatehouse import --dry-run`):
/// the configured key if there is one (never a new one), the schema as it is (never
/// migrated), nothing sealed. A database an older version left (schema behind, or plaintext
/// secrets not yet sealed) is refused: the hub upgrades it when it starts. Blocks.
pub fn open_database_read_only(config: &Config) -> anyhow::Result<crate::db::Db> {
    use anyhow::Context;
    const UPGRADE: &str = "start the hub once (gatehouse serve) to upgrade the database";
    let path = config.db_path();
    if !path.is_file() {
        anyhow::bail!(
            "there is no database at {}; start the hub once (gatehouse serve) to create it",
            path.display()
        );
    }
    let sealer = match configured_key(config)? {
        Some((key, source)) => {
            let sealer = Arc::new(Sealer::new(&key));
            check_key_ids(&path, &sealer, &source)?;
            Some(sealer)
        }
        None => {
            if let Some(id) = key_ids_at(&path)?.into_iter().next() {
                anyhow::bail!(
                    "no secret key: {} does not exist and secret_key is not set, but the \
                     database holds secrets sealed under key {id}. Put back the key file that \
                     goes with this database",
                    key_file_path(config).display()
                );
            }
            None
        }
    };
    let db = crate::db::Db::open_with(&path, sealer)
        .with_context(|| format!("opening database {}", path.display()))?;
    let known = crate::db::MIGRATIONS.last().map_or(0, |m| m.version);
    let (version, pending) = db.with_conn(|c| {
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let pending = if version >= 6 { pending(c)?.len() } else { 0 };
        Ok((version, pending))
    })?;
    if version > known {
        return Err(crate::db::DbError::TooNew {
            found: version,
            known,
        }
        .into());
    }
    if version < known {
        anyhow::bail!(
            "the database is at schema version {version}, older than this binary's {known}; \
             {UPGRADE}"
        );
    }
    if pending > 0 {
        anyhow::bail!(
            "the database holds {pending} secret(s) an older version stored in plaintext; \
             {UPGRADE}"
        );
    }
    Ok(db)
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

    #[tokio::test]
    async fn a_rotation_that_cannot_open_every_value_changes_nothing() {
        use crate::db::Db;
        use crate::domain::tls::TlsSettings;
        let dir = tempfile::tempdir().unwrap();
        let old = Arc::new(sealer());
        let db = Db::open_with(&dir.path().join("gh.db"), Some(old.clone())).unwrap();
        db.migrate().unwrap();
        let new = sealer();
        let (before, failed, after) = db
            .run(move |c| {
                let tls = TlsSettings::default();
                for name in ["a", "b"] {
                    let token = crate::config::Secret::new(format!("token-{name}-0123456789abc"));
                    crate::db::agents::insert(c, name, "http://127.0.0.1:1", &token, false, &tls)
                        .unwrap();
                }
                // Agent b's token replaced by agent a's: it no longer opens.
                c.execute_batch(
                    "UPDATE agents SET token = (SELECT token FROM agents WHERE name = 'a')
                     WHERE name = 'b'",
                )?;
                let tokens = |c: &Connection| -> Vec<String> {
                    c.prepare("SELECT token FROM agents ORDER BY id")
                        .unwrap()
                        .query_map([], |r| r.get(0))
                        .unwrap()
                        .map(Result::unwrap)
                        .collect()
                };
                let before = tokens(c);
                let failed = reseal_all(c, &old, &new).unwrap_err().to_string();
                Ok((before, failed, tokens(c)))
            })
            .await
            .unwrap();
        assert!(
            failed.contains("agent \"b\"") && failed.contains("nothing was changed"),
            "{failed}"
        );
        assert_eq!(before, after);
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
