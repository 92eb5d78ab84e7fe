//! Opening the database one way everywhere: owner-only file, WAL, pragmas, migrations.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::StoreError;
use super::files::{self, FileError};

/// Rows the SQLite thread may hand over before the caller takes them: more than a claim.
const ROW_BUFFER: usize = 1024;

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Times a connection or migration is tried before its error is believed (another process may
/// be creating the same database).
const MIGRATE_TRIES: u64 = 5;
/// Page size of a new database file. Ingest appends rows of a few hundred bytes and inserts
/// into the random-order ticket and sync-key indexes; 16 KiB pages make the B-trees shallower and
/// cut the per-page work (page cache lookups, WAL frames, splits) of a 1M-row ingest by about
/// a fifth against SQLite's 4 KiB default, while a single-row update still writes only one
/// small page. It can only be chosen before the first table exists, so an existing file
/// keeps its size.
const NEW_FILE_PAGE_SIZE: u32 = 16 * 1024;

/// SQLite's page cache while a drain runs, in KiB (see [`Store::tune_for_drain`]): the pages
/// of a 100,000-row run whole; 8 and 64 MiB measured no better on a grouped drain.
const DRAIN_CACHE_KIB: i64 = 32 * 1024;

/// The job database.
#[derive(Debug, Clone)]
pub struct Store {
    pub(super) pool: SqlitePool,
    path: PathBuf,
}

impl Store {
    /// Opens (creating when missing, readable by its owner only) and migrates the database.
    ///
    /// The database, its `-wal` and its `-shm` are never reached through a symbolic link and
    /// are refused when another user owns them or may read or write them (see
    /// [`super::files`]): they hold customer data, and the WAL holds recent rows whole.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let (file, fresh) = match files::create_new(path)? {
            Some(file) => (file, true),
            None => {
                let file = files::open_existing(path)?;
                // Empty: new, or created by an open that stopped before writing.
                let empty = file.metadata().is_ok_and(|m| m.len() == 0);
                (file, empty)
            }
        };
        // SQLite creates these by path, following links: made first, they are ours.
        for companion in files::companions(path) {
            files::open_or_create(&companion)?;
        }
        let mut options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            // A claim's rows come back in one go: with sqlx's default of 50, the SQLite thread
            // waited for the runtime thread to take each 50 rows, and workers ran dry meanwhile.
            .row_buffer_size(ROW_BUFFER)
            .foreign_keys(true);
        if fresh {
            options = options.page_size(NEW_FILE_PAGE_SIZE);
        }
        let pool = connect(options).await.map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        // SQLite opened the file by path: make sure it is still the one checked above.
        if !files::same_file(path, &file) {
            pool.close().await;
            return Err(FileError::Replaced {
                path: path.to_owned(),
            }
            .into());
        }
        migrate(&pool).await?;
        Ok(Self {
            pool,
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checkpoints the WAL, unless another process is writing, and closes every connection.
    ///
    /// The checkpoint must not wait: TRUNCATE invokes the busy handler until no other process
    /// writes, so with the 30 s busy timeout a `status` during an ingest or a run hung until
    /// that writer paused (an ingest never pauses). Busy, it is skipped: the writer's own close
    /// checkpoints later.
    pub async fn close(self) {
        if let Ok(mut conn) = self.pool.acquire().await {
            let _ = sqlx::query("PRAGMA busy_timeout = 0")
                .execute(&mut *conn)
                .await;
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut *conn)
                .await;
        }
        self.pool.close().await;
    }

    /// Writes a consistent copy of the whole database to `path` (a new file), for a dry run
    /// to work on without changing this one.
    pub async fn snapshot_into(&self, path: &Path) -> Result<(), StoreError> {
        // Made first, empty and private (VACUUM INTO fills an empty file): a copy of customer
        // data is readable by its owner only, as the database is.
        drop(files::create_new(path)?);
        sqlx::query("VACUUM INTO ?")
            .bind(path.to_string_lossy().into_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets the connection up for a drain (`on`) or back as it was. A drain's multi-row
    /// UPDATEs fire triggers, so SQLite keeps a statement journal of every page they change,
    /// and past 64 KiB it spilled it to a deleted file in /var/tmp: 40% of the bytes a drain
    /// wrote. In memory for the drain only, whose statements are bounded (a claim's or a
    /// batch's pages, a few MiB): a report's sorts of a whole history stay on disk. And a
    /// page cache that holds the pages of every chain going: with SQLite's default 2 MiB,
    /// a drain of a history sorted by ticket read each page again from the OS about twice a row.
    pub async fn tune_for_drain(&self, on: bool) -> Result<(), StoreError> {
        let sql = if on {
            format!("PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{DRAIN_CACHE_KIB}")
        } else {
            // SQLite's default cache (2,000 KiB).
            "PRAGMA temp_store = DEFAULT; PRAGMA cache_size = -2000".to_owned()
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Runs `PRAGMA integrity_check` and returns its first line (`ok` when sound).
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        let (result,): (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(&self.pool)
            .await?;
        Ok(result)
    }
}

/// Connects, trying again while another process holds the lock a new file's first pragmas
/// need (switching a new database to WAL is not covered by the busy timeout).
async fn connect(options: SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    let mut tries = 1;
    loop {
        // One connection: SQLite lets one writer in at a time anyway, and a runner's claims and
        // result batches queued on the pool wait far less than connections taking turns
        // through SQLite's sleeping busy handler (about a quarter of the drain rate).
        let result = SqlitePoolOptions::new()
            .max_connections(1)
            // A COMMIT that fails (a full disk) leaves sqlx counting an open transaction that
            // SQLite already rolled back, and every later `begin` on that connection fails with
            // "non-zero transaction depth", hiding the real cause. A connection released while
            // it counts a transaction (only ever after an error: every transaction here ends in
            // a commit otherwise) is closed, and the next caller gets a fresh one.
            .after_release(|conn, _| {
                let keep = !conn.is_in_transaction();
                Box::pin(async move { Ok(keep) })
            })
            .connect_with(options.clone())
            .await;
        match result {
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("5") && tries < MIGRATE_TRIES =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20 * tries)).await;
            }
            result => return result,
        }
    }
}

/// Runs the embedded migrations. sqlx takes no lock on SQLite, so two processes opening a new
/// database at once both find migration 1 unapplied and the slower one fails ("table runs
/// already exists"); running again then finds what the other applied.
async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut tries = 1;
    loop {
        match sqlx::migrate!("./migrations").run(pool).await {
            Err(
                sqlx::migrate::MigrateError::Execute(_)
                | sqlx::migrate::MigrateError::ExecuteMigration(..),
            ) if tries < MIGRATE_TRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20 * tries)).await;
            }
            result => return Ok(result?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_migrates_and_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let store = Store::open(&path).await.unwrap();
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let (fk,): (i64,) = sqlx::query_as("PRAGMA foreign_keys")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        assert_eq!(store.integrity_check().await.unwrap(), "ok");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (page_size,): (i64,) = sqlx::query_as("PRAGMA page_size")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(page_size, i64::from(NEW_FILE_PAGE_SIZE));
        store.close().await;
        // Opening again applies no migration twice.
        Store::open(&path).await.unwrap().close().await;
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_linked_or_shared_database_or_wal_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.db");
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = Store::open(&link).await.unwrap_err();
        assert!(
            matches!(err, StoreError::File(FileError::Symlink { .. })),
            "{err}"
        );
        assert!(!real.exists(), "nothing created through the link");

        let path = dir.path().join("k.db");
        Store::open(&path).await.unwrap().close().await;
        let [wal, _] = files::companions(&path);
        std::fs::write(&wal, "").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = Store::open(&path).await.unwrap_err().to_string();
        assert!(err.contains("-wal") && err.contains("chmod 600"), "{err}");
    }

    #[tokio::test]
    async fn an_existing_file_keeps_its_page_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let options = SqliteConnectOptions::from_str("sqlite:")
            .unwrap()
            .filename(&path)
            .create_if_missing(true)
            .page_size(4096)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        #[cfg(unix)]
        {
            // Made here under the umask; kapsync refuses a database others can read.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let store = Store::open(&path).await.unwrap();
        let (page_size,): (i64,) = sqlx::query_as("PRAGMA page_size")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(page_size, 4096);
        assert_eq!(store.integrity_check().await.unwrap(), "ok");
        store.close().await;
    }
}
