//! `gatehouse migrate`: bring the database schema up to date and exit.

use crate::config::Config;
use crate::db::Db;
use anyhow::Context;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let path = config.db_path();
    let applied = crate::blocking::run(move || {
        let db = Db::open(&path)?;
        db.migrate()
    })
    .await?
    .with_context(|| format!("migrating {}", config.db_path().display()))?;
    println!(
        "{applied} migration(s) applied to {}",
        config.db_path().display()
    );
    Ok(())
}
