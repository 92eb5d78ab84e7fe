//! Files kapsync keeps (database, WAL, lock, exports): never reached through a symbolic link,
//! never one another user owns or can read or write.
//!
//! In a shared directory another user could pre-create the database to read every row, or
//! put a link where a file goes to make kapsync write somewhere else. Each file is therefore
//! opened with `O_NOFOLLOW`, created with `O_EXCL` and mode 0600, and an existing one is
//! checked on the open descriptor (`fstat`), so what is checked is what is used.

use std::fs::{File, Metadata, OpenOptions};
use std::path::{Path, PathBuf};

use crate::quote::shell_word;

/// A file kapsync refuses to use, or could not open.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path is a symbolic link (possibly dangling).
    #[error(
        "refused {path}: it is a symbolic link, and kapsync does not follow links to its files \
         (another user could point one anywhere); remove the link or give the real path",
        path = path.display()
    )]
    Symlink { path: PathBuf },
    /// Another user owns the file.
    #[error(
        "refused {path}: it belongs to another user (uid {uid}), who can read or replace it; \
         move it away (or use another path) and run again",
        path = path.display()
    )]
    NotOwned { path: PathBuf, uid: u32 },
    /// Group or others may read or write the file.
    #[error(
        "refused {path}: other users can read or write it (mode {mode:03o}); if it is yours, \
         run `chmod 600 {quoted}` and run again",
        path = path.display(),
        quoted = shell_word(&path.display().to_string())
    )]
    Shared { path: PathBuf, mode: u32 },
    /// The path is a directory, a device or a pipe.
    #[error("refused {path}: it is not a regular file", path = path.display())]
    NotFile { path: PathBuf },
    /// The file changed between the check and SQLite opening it.
    #[error(
        "refused {path}: it was replaced while kapsync opened it; make sure no other user can \
         write to its directory and run again",
        path = path.display()
    )]
    Replaced { path: PathBuf },
    /// Opening or creating failed.
    #[error("failed to open {path}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FileError {
    /// Whether the user can fix this (exit code 2): every refusal is; a failed open is an
    /// internal error, as before.
    pub fn is_usage(&self) -> bool {
        !matches!(self, FileError::Io { .. })
    }
}

/// The `-wal` and `-shm` files SQLite keeps beside a database in WAL mode.
pub fn companions(db: &Path) -> [PathBuf; 2] {
    ["-wal", "-shm"].map(|suffix| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// Refuses a path that is a symbolic link, and an existing file that is not this user's
/// alone. Returns whether the file exists.
pub fn check(path: &Path) -> Result<bool, FileError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => check_metadata(path, &meta).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(FileError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Creates `path` (mode 0600, never through a link) when it does not exist; returns the new
/// file, or `None` when something is already there (check it with [`open_existing`]).
pub fn create_new(path: &Path) -> Result<Option<File>, FileError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(true);
    private_flags(&mut options);
    match options.open(path) {
        Ok(file) => {
            // The mode given to open(2) passes through the umask: set it exactly.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|source| FileError::Io {
                        path: path.to_owned(),
                        source,
                    })?;
            }
            Ok(Some(file))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(source) => Err(io_or_link(path, source)),
    }
}

/// Opens an existing file for reading and writing without following a link, and refuses it
/// unless it is a regular file this user alone may read and write.
pub fn open_existing(path: &Path) -> Result<File, FileError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    private_flags(&mut options);
    let file = options.open(path).map_err(|e| io_or_link(path, e))?;
    let meta = file.metadata().map_err(|source| FileError::Io {
        path: path.to_owned(),
        source,
    })?;
    check_metadata(path, &meta)?;
    Ok(file)
}

/// Opens `path`, creating it (0600) when missing; either way never through a link and never
/// another user's file.
pub fn open_or_create(path: &Path) -> Result<File, FileError> {
    match create_new(path)? {
        Some(file) => Ok(file),
        None => open_existing(path),
    }
}

/// Whether `path` still names the file `file` is open on (same device and inode), so a file
/// swapped between a check and a later open by path is noticed.
pub fn same_file(path: &Path, file: &File) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        match (std::fs::symlink_metadata(path), file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, file);
        true
    }
}

fn private_flags(options: &mut OpenOptions) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    #[cfg(not(unix))]
    let _ = options;
}

/// `O_NOFOLLOW` on a link fails with ELOOP: say that it is a link.
fn io_or_link(path: &Path, source: std::io::Error) -> FileError {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        FileError::Symlink {
            path: path.to_owned(),
        }
    } else {
        FileError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

fn check_metadata(path: &Path, meta: &Metadata) -> Result<(), FileError> {
    if meta.file_type().is_symlink() {
        return Err(FileError::Symlink {
            path: path.to_owned(),
        });
    }
    if !meta.is_file() {
        return Err(FileError::NotFile {
            path: path.to_owned(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let uid = meta.uid();
        if uid != rustix::process::geteuid().as_raw() {
            return Err(FileError::NotOwned {
                path: path.to_owned(),
                uid,
            });
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o066 != 0 {
            return Err(FileError::Shared {
                path: path.to_owned(),
                mode,
            });
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn new_files_are_owner_only_and_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert!(!check(&path).unwrap());
        let file = create_new(&path).unwrap().unwrap();
        assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert!(create_new(&path).unwrap().is_none());
        open_existing(&path).unwrap();
        assert!(same_file(&path, &file));

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(check(&link), Err(FileError::Symlink { .. })));
        assert!(matches!(
            open_or_create(&link),
            Err(FileError::Symlink { .. })
        ));
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(matches!(
            open_or_create(&dangling),
            Err(FileError::Symlink { .. })
        ));
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn a_file_others_can_read_is_refused_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my db");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = open_existing(&path).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("mode 644"), "{text}");
        assert!(
            text.contains(&format!("chmod 600 '{}'", path.display())),
            "{text}"
        );
    }
}
