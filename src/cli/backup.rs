//! `gatehouse backup FILE` copies the live database with SQLite's online backup API, safe
//! while the portal serves; `gatehouse restore FILE` puts such a copy back into a stopped
//! instance, keeping the database it replaces beside it.

use crate::config::Config;
use crate::db::Db;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the backup (must not exist yet).
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A file made by `gatehouse backup`.
    file: PathBuf,
    /// Restore even if a portal answers on the configured address (it must not use this
    /// data directory).
    #[arg(long)]
    force: bool,
}

pub async fn backup(config: Config, args: BackupArgs) -> anyhow::Result<()> {
    let source = config.db_path();
    if !source.is_file() {
        bail!("there is no database at {}", source.display());
    }
    if args.file.exists() {
        bail!("{} already exists; choose a new file", args.file.display());
    }
    let target = args.file.clone();
    let version = crate::blocking::run(move || -> anyhow::Result<i64> {
        crate::db::backup::copy_online(&source, &target)
    })
    .await??;
    let size = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
    println!(
        "backed up {} to {} ({size} bytes, schema {version})",
        config.db_path().display(),
        args.file.display()
    );
    println!(
        "the backup holds agent tokens and two-factor secrets sealed with the secret key, which \
         it does not contain: back up the key file ({}) separately, and keep both safe",
        config.key_file_path().display()
    );
    Ok(())
}

pub async fn restore(config: Config, args: RestoreArgs) -> anyhow::Result<()> {
    let version = crate::db::backup::check(&args.file)?;
    if !args.force && portal_answers(&config).await {
        bail!(
            "a portal answers on {}: stop it before restoring (or use --force if it is another instance)",
            config.listen
        );
    }
    let target = config.db_path();
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let staged = target.with_extension("db.restoring");
    std::fs::copy(&args.file, &staged)
        .with_context(|| format!("copying {}", args.file.display()))?;
    let kept = if target.exists() {
        let aside = target.with_extension(format!("db.before-restore-{}", crate::db::now()));
        std::fs::rename(&target, &aside)?;
        Some(aside)
    } else {
        None
    };
    for suffix in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(target.with_extension(suffix));
    }
    std::fs::rename(&staged, &target)?;
    let path = target.clone();
    let applied = crate::blocking::run(move || Db::open_and_migrate(&path).map(|_| ())).await?;
    applied.with_context(|| format!("migrating the restored {}", target.display()))?;
    println!(
        "restored {} (schema {version}) into {}",
        args.file.display(),
        target.display()
    );
    if let Some(aside) = kept {
        println!("the database it replaced is kept as {}", aside.display());
    }
    key_note(&config, &target);
    Ok(())
}

/// Says whether the configured key opens the restored secrets; without it, `serve` refuses.
fn key_note(config: &Config, db: &Path) {
    let sealed_with = crate::db::sealed::key_ids_at(db).unwrap_or_default();
    let Some(needed) = sealed_with.iter().next() else {
        return;
    };
    match crate::app::configured_key(config) {
        Ok(Some((key, _))) if key.id() == needed => {}
        Ok(Some((key, source))) => println!(
            "its secrets are sealed under key {needed}, but {source} is key {}: put the key file \
             of the server the backup came from in place before starting",
            key.id()
        ),
        Ok(None) => println!(
            "its secrets are sealed under key {needed}: copy the key file of the server the \
             backup came from to {} before starting",
            config.key_file_path().display()
        ),
        Err(e) => println!("its secrets are sealed under key {needed}; the configured key: {e:#}"),
    }
}

pub(super) async fn portal_answers(config: &Config) -> bool {
    let url = format!(
        "http://{}/healthz",
        super::healthcheck::reachable(config.listen)
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build();
    match client {
        Ok(c) => c.get(url).send().await.is_ok(),
        Err(_) => false,
    }
}
