//! Schema migrations, embedded in the binary and tracked with `PRAGMA user_version`.
//! Each runs in its own transaction; a migration is never edited once released.

use super::DbError;
use rusqlite::Connection;

pub struct Migration {
    pub version: i64,
    pub(crate) name: &'static str,
    pub sql: &'static str,
}

/// In order; versions are 1, 2, 3, … without gaps.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "accounts",
        sql: include_str!("migrations/0001_accounts.sql"),
    },
    Migration {
        version: 2,
        name: "auth_sessions",
        sql: include_str!("migrations/0002_auth_sessions.sql"),
    },
    Migration {
        version: 3,
        name: "vhosts",
        sql: include_str!("migrations/0003_vhosts.sql"),
    },
    Migration {
        version: 4,
        name: "agents",
        sql: include_str!("migrations/0004_agents.sql"),
    },
    Migration {
        version: 5,
        name: "agent_tls",
        sql: include_str!("migrations/0005_agent_tls.sql"),
    },
    Migration {
        version: 6,
        name: "sealed_secrets",
        sql: include_str!("migrations/0006_sealed_secrets.sql"),
    },
    Migration {
        version: 7,
        name: "api_tokens",
        sql: include_str!("migrations/0007_api_tokens.sql"),
    },
    Migration {
        version: 8,
        name: "name_grants",
        sql: include_str!("migrations/0008_name_grants.sql"),
    },
    Migration {
        version: 9,
        name: "agent_changed_outside",
        sql: include_str!("migrations/0009_agent_changed_outside.sql"),
    },
    Migration {
        version: 10,
        name: "login_devices",
        sql: include_str!("migrations/0010_login_devices.sql"),
    },
    Migration {
        version: 11,
        name: "one_time_passwords",
        sql: include_str!("migrations/0011_one_time_passwords.sql"),
    },
    Migration {
        version: 12,
        name: "quarantine",
        sql: include_str!("migrations/0012_quarantine.sql"),
    },
    Migration {
        version: 13,
        name: "deploy_history",
        sql: include_str!("migrations/0013_deploy_history.sql"),
    },
    Migration {
        version: 14,
        name: "agent_labels",
        sql: include_str!("migrations/0014_agent_labels.sql"),
    },
];

pub(super) fn apply(conn: &mut Connection) -> Result<usize, DbError> {
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > known {
        return Err(DbError::TooNew {
            found: current,
            known,
        });
    }
    let mut applied = 0;
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration.sql)?;
        tx.pragma_update(None, "user_version", migration.version)?;
        tx.commit()?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        applied += 1;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_run_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration {}", m.name);
        }
    }
}
