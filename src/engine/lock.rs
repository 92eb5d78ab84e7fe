//! One runner per database: an operating-system file lock that dies with its process.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another kapsync runner{holder} is draining {db}; wait for it to finish or stop it \
         (a runner that was killed releases the lock with its process)",
        holder = pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        db = db.display()
    )]
    Held { db: PathBuf, pid: Option<u32> },
    /// The lock file could not be opened.
    #[error("failed to open the runner lock {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The lock file is a link, or another user's, or others may write it: whoever controls
    /// it could hold the lock with a pid of their choosing, or point it at another file.
    #[error(transparent)]
    Refused(#[from] crate::store::files::FileError),
}

impl LockError {
    /// Whether the user can fix this (exit code 2): another runner holds the database, or
    /// the lock file is refused.
    pub fn is_usage(&self) -> bool {
        match self {
            LockError::Refused(e) => e.is_usage(),
            other => matches!(other, LockError::Held { .. }),
        }
    }
}

/// Held while a runner drains a database; released when dropped or when the process dies,
/// however it dies.
#[derive(Debug)]
pub struct RunnerLock {
    _file: File,
}

impl RunnerLock {
    /// Takes the lock beside the database (`<db>.lock`), writing this process's id into it.
    pub fn acquire(db: &Path) -> Result<Self, LockError> {
        let path = lock_path(db);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // Never through a link (it would truncate the file it points at), never another
        // user's file.
        let mut file = crate::store::files::open_or_create(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    db: db.to_owned(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Self { _file: file })
    }
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("k.db");
        let first = RunnerLock::acquire(&db).unwrap();
        let err = RunnerLock::acquire(&db).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        RunnerLock::acquire(&db).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_linked_lock_file_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let db = dir.path().join("k.db");
        std::os::unix::fs::symlink(&victim, lock_path(&db)).unwrap();
        let err = RunnerLock::acquire(&db).unwrap_err();
        assert!(matches!(err, LockError::Refused(_)), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    }
}
