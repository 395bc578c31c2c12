//! `gatehouse rotate-key`: a new secret key for a stopped portal. Every agent token and TOTP
//! secret is re-sealed under it in one transaction; the new key file replaces the old one
//! with an atomic rename, and the old key stays beside it as `<key file>.old-<key id>`.
//!
//! The portal must be stopped: a running one holds the old key in memory and could not read
//! what it stored a moment later. An interruption leaves a state start-up recognises: before
//! the commit nothing changed; after it, start-up names the `.new` file that holds the key.

use crate::config::Config;
use crate::secrets::{self, KeySource, Sealer, SecretKey};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rotate even if a portal answers on the configured address (it must not use this
    /// data directory).
    #[arg(long)]
    force: bool,
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    if !config.secret_key.is_empty() {
        bail!(
            "the key comes from the secret_key setting (GATEHOUSE_SECRET_KEY), which this command \
             cannot change. Rotate a key file instead: unset secret_key, write the current key to \
             the key file ({}), and run rotate-key again",
            config.key_file_path().display()
        );
    }
    let key_file = config.key_file_path();
    if !key_file.is_file() {
        bail!(
            "there is no key file at {}: nothing to rotate (the portal makes one on first start)",
            key_file.display()
        );
    }
    if !config.db_path().is_file() {
        bail!("there is no database at {}", config.db_path().display());
    }
    if !args.force && super::backup::portal_answers(&config).await {
        bail!(
            "a portal answers on {}: stop it before rotating the key (or use --force if it is \
             another instance)",
            config.listen
        );
    }
    let outcome = crate::blocking::run(move || rotate(&config, &key_file)).await??;
    println!(
        "rotated the secret key {} -> {}: re-sealed {} agent token(s) and {} TOTP secret(s)",
        outcome.old_id, outcome.new_id, outcome.tokens, outcome.totp
    );
    println!(
        "the new key is in {}; the old one is kept as {}",
        outcome.key_file.display(),
        outcome.kept.display()
    );
    println!(
        "backups taken before now need the old key: keep it as long as them, then delete it. \
         Back up the new key file now (a backup of the database does not contain it)"
    );
    Ok(())
}

struct Outcome {
    old_id: String,
    new_id: String,
    tokens: usize,
    totp: usize,
    key_file: PathBuf,
    kept: PathBuf,
}

fn rotate(config: &Config, key_file: &Path) -> anyhow::Result<Outcome> {
    let old_key = secrets::read_key_file(key_file)?;
    let old = Arc::new(Sealer::new(&old_key));
    // Open as the portal would: migrated, legacy plaintext sealed, every value checked.
    let db = crate::db::Db::open_with(&config.db_path(), Some(old.clone()))?;
    db.migrate()?;
    let source = KeySource::File(key_file.to_path_buf());
    db.with_conn(|c| Ok(crate::db::sealed::prepare(c, &old, &source)))?
        .map_err(anyhow::Error::new)?;

    let new_key = SecretKey::generate();
    let new = Sealer::new(&new_key);
    let staged = sibling(key_file, "new");
    if staged.exists() {
        // Left by an interrupted rotation whose commit never happened (prepare just checked
        // that everything opens with the current key), so it seals nothing.
        std::fs::remove_file(&staged)
            .with_context(|| format!("removing the stale {}", staged.display()))?;
    }
    secrets::write_key_file(&staged, &new_key)
        .with_context(|| format!("writing {}", staged.display()))?;
    let counts = db
        .with_conn(|c| Ok(crate::db::sealed::reseal_all(c, &old, &new)))
        .map_err(anyhow::Error::new)
        .and_then(|r| r)
        .inspect_err(|_| {
            // Nothing was committed: the new key seals nothing.
            let _ = std::fs::remove_file(&staged);
        })?;
    drop(db);

    // The old key stays reachable under a second name before the new one takes its place,
    // so there is never a moment without a key file.
    let kept = sibling(key_file, &format!("old-{}", old_key.id()));
    if !kept.exists() {
        std::fs::hard_link(key_file, &kept)
            .or_else(|_| std::fs::copy(key_file, &kept).map(|_| ()))
            .with_context(|| format!("keeping the old key as {}", kept.display()))?;
    }
    std::fs::rename(&staged, key_file)
        .with_context(|| format!("moving {} to {}", staged.display(), key_file.display()))?;
    secrets::sync_dir(key_file);
    Ok(Outcome {
        old_id: old_key.id().to_string(),
        new_id: new_key.id().to_string(),
        tokens: counts.get("agents.token").copied().unwrap_or(0),
        totp: counts.get("users.totp_secret").copied().unwrap_or(0),
        key_file: key_file.to_path_buf(),
        kept,
    })
}

/// `secret.key` → `secret.key.<suffix>`, in the same directory.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}
