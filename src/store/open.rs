//! Opening the database one way everywhere: owner-only file, WAL, pragmas, migrations.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions as _;
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

/// The page cache of the pool's connection, in KiB when negative: 8 MiB. The claims and the
/// release trigger read `jobs_by_ticket_sent` at a random ticket per row; since that index
/// carries the sync key (migration 0012) its entries are twice as wide, and with SQLite's
/// default of 2 MB a drain of 100,000 rows read its pages from the file again and again
/// (6-10% slower than before the migration; 8 MiB: as fast or faster). The ingest writer
/// sets its own, larger cache.
const CACHE_SIZE: &str = "-8192";

/// SQLite's page cache while a drain runs, in KiB (see [`Store::tune_for_drain`]): the pages
/// of a 100,000-row run whole; 8 and 64 MiB measured no better on a grouped drain.
const DRAIN_CACHE_KIB: i64 = 32 * 1024;

/// A statement slower than this is logged at debug level (sqlx's default: a warning).
const SLOW_STATEMENT: Duration = Duration::from_secs(1);

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
            .foreign_keys(true)
            .pragma("cache_size", CACHE_SIZE)
            // sqlx warns of a statement over a second with its whole text: on the first open
            // after an upgrade, a migration of a long history printed a page of SQL to the
            // operator's terminal or cron log. Statement timings are for debugging.
            .log_slow_statements(log::LevelFilter::Debug, SLOW_STATEMENT);
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
        if !fresh {
            let steps = pending_migrations(&pool).await;
            if steps > 0 {
                tracing::info!(
                    "updating {} for this version of kapsync ({steps} schema {}); \
                     with a long history this can take a minute",
                    path.display(),
                    if steps == 1 { "change" } else { "changes" }
                );
            }
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
    /// a drain of a history sorted by ticket read each page again from the OS about twice a row
    /// (the pool's [`CACHE_SIZE`] otherwise).
    pub async fn tune_for_drain(&self, on: bool) -> Result<(), StoreError> {
        let sql = if on {
            format!("PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{DRAIN_CACHE_KIB}")
        } else {
            format!("PRAGMA temp_store = DEFAULT; PRAGMA cache_size = {CACHE_SIZE}")
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

/// The migrations embedded in the binary (`migrations/`).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How many embedded migrations a database made by an earlier kapsync has not applied yet
/// (0 when that cannot be read: the migration itself then reports the problem). Some rebuild
/// indexes over the whole history: seconds for 10M rows, with nothing else to show for it.
async fn pending_migrations(pool: &SqlitePool) -> usize {
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(applied) if !applied.is_empty() => applied,
            _ => return 0,
        };
    MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .count()
}

/// Runs the embedded migrations. sqlx takes no lock on SQLite, so two processes opening a new
/// database at once both find migration 1 unapplied and the slower one fails ("table runs
/// already exists"); running again then finds what the other applied.
async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut tries = 1;
    loop {
        match MIGRATOR.run(pool).await {
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

    /// A database file made at `path` by something other than `Store::open` (another tool, an
    /// earlier kapsync), in WAL mode, with `page_size` when given.
    async fn made_elsewhere(path: &Path, page_size: Option<u32>) -> SqlitePool {
        let mut options = SqliteConnectOptions::from_str("sqlite:")
            .unwrap()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        if let Some(size) = page_size {
            options = options.page_size(size);
        }
        SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .unwrap()
    }

    /// Made under the umask: kapsync refuses a database others can read.
    fn owner_only(path: &Path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = path;
    }

    #[tokio::test]
    async fn an_existing_file_keeps_its_page_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let pool = made_elsewhere(&path, Some(4096)).await;
        sqlx::query("CREATE TABLE t (x)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        owner_only(&path);
        let store = Store::open(&path).await.unwrap();
        let (page_size,): (i64,) = sqlx::query_as("PRAGMA page_size")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(page_size, 4096);
        assert_eq!(store.integrity_check().await.unwrap(), "ok");
        store.close().await;
    }

    /// A database from before migration 0012 (two indexes, `jobs_by_sync_key` among them)
    /// keeps what its rows answer: an unchanged row is still found, a failure still resolves,
    /// and a row without a sync key (from before 0003) still holds its ticket's later rows.
    /// Its rows count as event rows (their kind is not known), so an event export finds them
    /// through `jobs_by_event_key` too.
    #[tokio::test]
    async fn a_database_with_two_random_indexes_migrates_to_one_that_finds_its_history() {
        use crate::store::fixtures::key_of;
        use crate::store::{DeltaOptions, NewJob, fixtures::add_jobs};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let pool = made_elsewhere(&path, None).await;
        MIGRATOR.run_to(10, &pool).await.unwrap();
        sqlx::query(
            "INSERT INTO runs (id, name, created_at) VALUES (1, 'n1', '2026-01-01');
             INSERT INTO source_files (id, run_id, path, content_hash, settings_hash, format,
                                       complete, ingested_at)
                 VALUES (1, 1, 'a.csv', 'h', 's', 'csv', 1, '2026-01-01');
             INSERT INTO jobs (id, run_id, source_id, line, ticket_id, payload, payload_hash,
                               sync_key, state, updated_at) VALUES
                 (1, 1, 1, 2, 't1', '{}', zeroblob(16), ?1, 'succeeded', 1),
                 (2, 1, 1, 3, 't2', '{}', zeroblob(16), ?2, 'failed', 1),
                 (3, 1, 1, 4, 't3', '{}', zeroblob(16), NULL, 'pending', NULL);",
        )
        .bind(key_of("t1").to_vec())
        .bind(key_of("t2").to_vec())
        .execute(&pool)
        .await
        .unwrap();
        // Opening it announces the migrations still to run (they rebuild indexes).
        let newer = MIGRATOR.iter().filter(|m| m.version > 10).count();
        assert!(newer >= 2);
        assert_eq!(pending_migrations(&pool).await, newer);
        pool.close().await;
        owner_only(&path);

        let store = Store::open(&path).await.unwrap();
        assert_eq!(pending_migrations(&store.pool).await, 0);
        let indexes: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'jobs'
               AND name LIKE 'jobs_by_%' ORDER BY name",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        let names: Vec<&str> = indexes.iter().map(|(n,)| n.as_str()).collect();
        assert_eq!(
            names,
            ["jobs_by_event_key", "jobs_by_run", "jobs_by_ticket_sent"]
        );
        let jobs = ["t1", "t2", "t3"]
            .iter()
            .enumerate()
            .map(|(i, t)| NewJob {
                line: i as i64 + 2,
                ticket_id: Some((*t).to_owned()),
                payload: Some("{}".to_owned()),
                payload_hash: Some([0; 16]),
                invalid_reason: None,
                sync_key: Some(key_of(t)),
                raw_record: None,
            })
            .collect();
        let n2 = add_jobs(&store, "n2", jobs, Some(DeltaOptions::default())).await;
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT ticket_id, state, error_message FROM jobs WHERE run_id = ? ORDER BY id",
        )
        .bind(n2)
        .fetch_all(&store.pool)
        .await
        .unwrap();
        assert_eq!(
            rows,
            [
                (
                    "t1".into(),
                    "skipped".into(),
                    Some("unchanged since run n1, line 2".into())
                ),
                ("t2".into(), "pending".into(), None),
                ("t3".into(), "pending".into(), None),
            ]
        );
        assert_eq!(store.resolved_failures(1).await.unwrap(), 0);
        let event = NewJob {
            line: 2,
            ticket_id: Some("t1".to_owned()),
            payload: Some("{}".to_owned()),
            payload_hash: Some([0; 16]),
            invalid_reason: None,
            sync_key: Some(key_of("t1")),
            raw_record: None,
        };
        let events = DeltaOptions {
            event_keys: true,
            ..DeltaOptions::default()
        };
        let n3 = add_jobs(&store, "n3", vec![event], Some(events)).await;
        let (state, why): (String, Option<String>) =
            sqlx::query_as("SELECT state, error_message FROM jobs WHERE run_id = ?")
                .bind(n3)
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(
            (state.as_str(), why.as_deref()),
            ("skipped", Some("unchanged since run n1, line 2"))
        );
        sqlx::query("UPDATE jobs SET state = 'succeeded' WHERE run_id = ? AND ticket_id = 't2'")
            .bind(n2)
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(store.resolved_failures(1).await.unwrap(), 1);
        // t3's row from before sync keys is still the row before the new one of its ticket.
        let (before,): (Option<i64>,) = sqlx::query_as(
            "SELECT (SELECT e.id FROM jobs e INDEXED BY jobs_by_ticket_sent
                     WHERE e.ticket_id = j.ticket_id AND e.payload IS NOT NULL AND e.id < j.id
                       AND e.state <> 'skipped' ORDER BY e.id DESC LIMIT 1)
             FROM jobs j WHERE j.run_id = ? AND j.ticket_id = 't3'",
        )
        .bind(n2)
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(before, Some(3));
        assert_eq!(store.integrity_check().await.unwrap(), "ok");
        store.close().await;
    }
}
