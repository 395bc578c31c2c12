//! The data directory and the database files are the server user's alone: the directory
//! 0700, `gatehouse.db` and its `-wal`, `-shm` and `-journal` 0600. A session id read from a
//! world-readable database opens the portal without a password or second factor.
//!
//! New ones are made that way; existing ones are tightened when the hub starts, and each
//! change is logged. Only group and other bits are ever taken away: nothing is loosened.

use std::io;
use std::path::{Path, PathBuf};

/// The files SQLite keeps beside a database.
const COMPANIONS: &[&str] = &["-wal", "-shm", "-journal"];

/// Makes `dir` (and any missing parents) readable by the owner alone.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates an empty database file readable by the owner alone, unless it exists. SQLite
/// gives the `-wal` and `-shm` files it makes later the database file's own permissions, so
/// they are private too. (Left to SQLite, the file would be 0644 under the usual umask.)
pub fn create_private_file(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// One permission change made by [`tighten`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    pub path: PathBuf,
    pub from: u32,
    pub to: u32,
}

/// Takes group and other permissions off `data_dir` and off `db` and its companions, where
/// they exist; logs and returns each change. A change that fails (a directory owned by
/// someone else, say) is logged as a warning and does not stop start-up.
pub fn tighten(data_dir: &Path, db: &Path) -> Vec<Tightened> {
    let mut paths = vec![(data_dir.to_path_buf(), 0o700)];
    paths.push((db.to_path_buf(), 0o600));
    for suffix in COMPANIONS {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        paths.push((PathBuf::from(name), 0o600));
    }
    paths
        .into_iter()
        .filter_map(|(path, private)| tighten_one(path, private))
        .collect()
}

#[cfg(unix)]
fn tighten_one(path: PathBuf, private: u32) -> Option<Tightened> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).ok()?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return None;
    }
    // Keep what the owner had (within the private mode); take away everyone else's.
    let to = mode & private;
    match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(to)) {
        Ok(()) => {
            tracing::warn!(
                path = %path.display(),
                from = format!("{mode:o}"),
                to = format!("{to:o}"),
                "tightened permissions: the data directory and the database are for this user alone"
            );
            Some(Tightened {
                path,
                from: mode,
                to,
            })
        }
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                error = %e,
                "others may read this; cannot tighten its permissions"
            );
            None
        }
    }
}

#[cfg(not(unix))]
fn tighten_one(_path: PathBuf, _private: u32) -> Option<Tightened> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_directories_and_files_are_private() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&base.path().join("a")), 0o700);
        let db = dir.join("gatehouse.db");
        create_private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        // An existing file is left alone (and its contents too).
        std::fs::write(&db, b"x").unwrap();
        create_private_file(&db).unwrap();
        assert_eq!(std::fs::read(&db).unwrap(), b"x");
    }

    #[test]
    fn loose_permissions_are_tightened_and_reported_and_tight_ones_are_left_alone() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = dir.join("gatehouse.db");
        let wal = dir.join("gatehouse.db-wal");
        let shm = dir.join("gatehouse.db-shm");
        for (path, m) in [(&db, 0o644), (&wal, 0o666), (&shm, 0o600)] {
            std::fs::write(path, b"").unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap();
        }
        let changed = tighten(&dir, &db);
        assert_eq!(
            changed,
            vec![
                Tightened {
                    path: dir.clone(),
                    from: 0o755,
                    to: 0o700
                },
                Tightened {
                    path: db.clone(),
                    from: 0o644,
                    to: 0o600
                },
                Tightened {
                    path: wal.clone(),
                    from: 0o666,
                    to: 0o600
                },
            ]
        );
        assert_eq!((mode(&dir), mode(&db), mode(&wal)), (0o700, 0o600, 0o600));
        assert!(tighten(&dir, &db).is_empty());
    }
}
