//! The writer of one source file's rows (see the parent module): decided, bound and inserted
//! in a pipeline of chunks.
//!
//! The writer's SQLite thread is the ingest's critical path. A nightly re-export is mostly
//! rows that equal what was sent, and probing their sync keys took that thread as long as
//! inserting them: so the probe of a chunk runs on a reader's connection (its own SQLite
//! thread, see `delta::Reader`) while the writer's inserts the chunks before it, and the chunk
//! in between is decided and bound on the runtime meanwhile. The reader sees only committed
//! rows; keys of rows the open transaction holds are probed on the writer's connection.

use std::borrow::Cow;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use sqlx::Sqlite;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions};

use super::super::delta::{self, DeltaCounts, DeltaOptions, Kind};
use super::super::{Counts, JobState, StoreError};
use super::{NewJob, ROWS_PER_STATEMENT, SourceProgress};

/// WAL pages after which a commit of the ingest connection checkpoints (256 MiB with 16 KiB
/// pages). With SQLite's default of 1,000 every commit of a bulk load was followed by a
/// checkpoint and its two fsyncs, the commit's own pages copied into the database although
/// the next commit rewrites most index pages again; on a busy disk a single one of those
/// commits took several seconds. The WAL now grows across commits (it is checkpointed when
/// this limit is reached and when the store closes); durability is unchanged, since with
/// `synchronous=NORMAL` a commit in WAL mode never waited for a sync anyway.
const INGEST_AUTOCHECKPOINT_PAGES: u32 = 16_384;

impl IngestWriter {
    /// Sets up `conn` to write the rows of one source file; `options` say how the pool
    /// connects, for the reader.
    pub(super) async fn open(
        mut conn: PoolConnection<Sqlite>,
        options: Arc<SqliteConnectOptions>,
        run_id: i64,
        source_id: i64,
    ) -> Result<Self, StoreError> {
        // A bigger page cache for the bulk load (the connection is closed afterwards, so the
        // pool's other connections keep the default). Foreign keys are not checked here: the
        // ids come from rows this module just created, and an immediate check would make
        // SQLite keep a statement journal, copying every page each INSERT touches. Nor is the
        // `state IN (...)` CHECK: SQLite compiles it into an ephemeral table built and probed
        // for every row (about a sixth of this connection's time), and the only states this
        // writer stores are the two constants in its own statement.
        sqlx::query("PRAGMA cache_size = -32768")
            .execute(&mut *conn)
            .await?;
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut *conn)
            .await?;
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(&mut *conn)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA wal_autocheckpoint = {INGEST_AUTOCHECKPOINT_PAGES}"
        )))
        .execute(&mut *conn)
        .await?;
        Ok(IngestWriter {
            conn,
            run_id,
            source_id,
            in_transaction: false,
            event_keys: false,
            full_sql: insert_sql(run_id, source_id, false, ROWS_PER_STATEMENT).into(),
            delta: None,
            options,
            reader: None,
            queued: None,
            counts: DeltaCounts::default(),
            added: Counts::default(),
            ready: None,
        })
    }
}

fn insert_sql(run_id: i64, source_id: i64, event_keys: bool, rows: usize) -> String {
    // The kind (see `delta::Kind`) is bound twice: for the state and for the class.
    let event_key = i64::from(event_keys);
    let row = format!(
        "({run_id},{source_id},?,?,?,?,?,\
         CASE ? WHEN 0 THEN 'pending' WHEN 1 THEN 'invalid' ELSE 'skipped' END,\
         CASE ? WHEN 0 THEN NULL WHEN 1 THEN 'invalid' WHEN 2 THEN 'unchanged' \
         ELSE 'superseded' END,?,?,{event_key})"
    );
    let mut sql = String::with_capacity(200 + rows * (row.len() + 1));
    sql.push_str(
        "INSERT OR ROLLBACK INTO jobs (run_id, source_id, line, ticket_id, payload, payload_hash, \
         sync_key, state, error_class, error_message, raw_record, event_key) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&row);
    }
    sql
}

/// Inserts the rows of one source file in large transactions.
#[derive(Debug)]
pub struct IngestWriter {
    conn: PoolConnection<Sqlite>,
    run_id: i64,
    source_id: i64,
    in_transaction: bool,
    /// Rows are stored with `event_key = 1` (see [`DeltaOptions::event_keys`]).
    event_keys: bool,
    full_sql: Arc<str>,
    /// Rows written in the open transaction per stored state, added to `run_counts` when it
    /// commits (cheaper than a trigger per inserted row). Must follow the state the INSERT
    /// stores for each row.
    added: Counts,
    delta: Option<delta::Context>,
    /// How the pool connects, for the reader.
    options: Arc<SqliteConnectOptions>,
    /// A second connection, reading only, that probes sync keys while the writer's inserts
    /// (see [`IngestWriter::write`]); opened when the table held rows to compare with.
    reader: Option<delta::Reader>,
    counts: DeltaCounts,
    /// The last chunk written, its keys asked, to decide (see [`IngestWriter::write`]).
    queued: Option<Queued>,
    /// The chunk before it, decided and bound, to insert.
    ready: Option<Ready>,
}

/// A chunk written and the probe of its keys, under way.
#[derive(Debug)]
struct Queued {
    chunk: Vec<NewJob>,
    asked: Option<delta::Asked>,
}

/// A chunk's insert statement and the earlier rows it supersedes.
struct Ready {
    insert: Query<'static, Sqlite, SqliteArguments>,
    supersede: Vec<delta::Supersede>,
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready")
            .field("supersede", &self.supersede.len())
            .finish_non_exhaustive()
    }
}

impl IngestWriter {
    /// Compares every row written from now on with the earlier rows of its sync key (see
    /// [`DeltaOptions`]). Without this call every valid row is stored `pending`.
    pub async fn compare_with_earlier(&mut self, options: DeltaOptions) -> Result<(), StoreError> {
        // Also without comparing: a later ingest looks these rows up by their kind of key.
        self.event_keys = options.event_keys;
        self.full_sql = insert_sql(
            self.run_id,
            self.source_id,
            self.event_keys,
            ROWS_PER_STATEMENT,
        )
        .into();
        if !options.skip_unchanged && !options.supersede {
            self.delta = None;
            return Ok(());
        }
        let (run_name,): (String,) = sqlx::query_as("SELECT name FROM runs WHERE id = ?")
            .bind(self.run_id)
            .fetch_one(&mut *self.conn)
            .await?;
        let since_ms = super::super::target::since_ms(&mut self.conn).await?;
        let empty = delta::table_empty(&mut self.conn).await?;
        self.delta = Some(delta::Context::new(options, run_name, since_ms, empty));
        if !empty {
            self.reader = Some(delta::Reader::open(&self.options).await?);
        }
        Ok(())
    }

    /// Rows this writer stored `skipped` (or turned `skipped`) so far: up to the last chunk
    /// written, once [`IngestWriter::flush`] or a commit has inserted it.
    pub fn delta_counts(&self) -> DeltaCounts {
        self.counts
    }

    /// Inserts rows inside the open transaction (opening one when needed). Call
    /// [`IngestWriter::commit`] to make them durable. Rows given by value are moved into the
    /// statement; borrowed ones (`&rows`) are copied first.
    ///
    /// The statements are pipelined, so that the writer's SQLite thread (the ingest's critical
    /// path) always has work: a chunk's keys go to the reader's connection as it arrives;
    /// the chunk before it is decided and bound while the reader probes this one and the
    /// writer inserts the one before that. So the last two chunks are inserted by later calls
    /// or by [`IngestWriter::flush`] (which [`IngestWriter::commit`] calls).
    pub async fn write<'j>(
        &mut self,
        jobs: impl Into<Cow<'j, [NewJob]>>,
    ) -> Result<(), StoreError> {
        let jobs = jobs.into().into_owned();
        if !self.in_transaction {
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *self.conn)
                .await?;
            self.in_transaction = true;
            if let Some(context) = &mut self.delta {
                context.refresh(&mut self.conn).await?;
            }
        }
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let chunk: Vec<NewJob> = jobs.by_ref().take(ROWS_PER_STATEMENT).collect();
            let asked = match &mut self.delta {
                Some(context) => Some(delta::ask(&chunk, context, self.reader.as_ref())),
                None => None,
            };
            if let Some(queued) = self.queued.replace(Queued { chunk, asked }) {
                self.decide(queued).await?;
            }
        }
        Ok(())
    }

    /// Decides a queued chunk and binds its insert, while SQLite inserts the chunk before it.
    async fn decide(&mut self, queued: Queued) -> Result<(), StoreError> {
        let Queued { chunk, asked } = queued;
        let mut probed = delta::Probed::default();
        // Before the insert: the writer's probe must not see the chunk before (see
        // `delta::Context::recent`).
        if let (Some(context), Some(asked)) = (&mut self.delta, &asked) {
            delta::answer_writer(&mut self.conn, &chunk, asked, context, &mut probed).await?;
        }
        let ready = self.ready.take();
        let upto = self.delta.as_ref().map_or(0, delta::Context::last_id);
        let (inserted, next) = {
            let conn = &mut self.conn;
            let mut inserting = pin!(async move {
                match ready {
                    Some(ready) => insert(conn, ready).await.map(Some),
                    None => Ok(None),
                }
            });
            // sqlx hands a statement to its connection's thread when first polled.
            let early = poll_fn(|cx| Poll::Ready(inserting.as_mut().poll(cx))).await;
            let answered = match (&mut self.delta, asked) {
                (Some(context), Some(asked)) => {
                    delta::answer_reader(&chunk, asked, self.reader.as_ref(), context, &mut probed)
                        .await
                }
                _ => Ok(()),
            };
            let next = answered.map(|()| {
                let decisions = match &mut self.delta {
                    Some(context) => delta::decide(&chunk, probed, context),
                    None => delta::Decisions {
                        rows: chunk
                            .iter()
                            .map(|j| match j.invalid_reason {
                                Some(_) => (Kind::Invalid, None),
                                None => (Kind::Pending, None),
                            })
                            .collect(),
                        supersede: Vec::new(),
                        keyless: Vec::new(),
                    },
                };
                let sql = if chunk.len() == ROWS_PER_STATEMENT {
                    self.full_sql.clone()
                } else {
                    insert_sql(self.run_id, self.source_id, self.event_keys, chunk.len()).into()
                };
                bind(chunk, decisions, sql, &mut self.added, &mut self.counts)
            });
            // The insert under way finishes before any error of the probe is returned.
            let inserted = match early {
                Poll::Ready(inserted) => inserted,
                Poll::Pending => inserting.await,
            }?;
            (inserted, next?)
        };
        if let Some(inserted) = inserted {
            self.inserted(inserted, upto).await?;
        }
        self.ready = Some(next);
        Ok(())
    }

    /// After a chunk's insert (given what [`insert`] answered, and the last id before it):
    /// notes the id and skips the superseded rows.
    async fn inserted(
        &mut self,
        (last_id, supersede): (i64, Vec<delta::Supersede>),
        upto: i64,
    ) -> Result<(), StoreError> {
        if let Some(context) = &mut self.delta {
            context.inserted_up_to(last_id);
        }
        if !supersede.is_empty() {
            self.counts.superseded +=
                delta::supersede(&mut self.conn, &supersede, upto).await? as i64;
        }
        Ok(())
    }

    /// Inserts the chunks still waiting (see [`IngestWriter::write`]), inside the open
    /// transaction; [`IngestWriter::delta_counts`] then counts every row written.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        if let Some(queued) = self.queued.take() {
            self.decide(queued).await?;
        }
        let Some(ready) = self.ready.take() else {
            return Ok(());
        };
        let upto = self.delta.as_ref().map_or(0, delta::Context::last_id);
        let inserted = insert(&mut self.conn, ready).await?;
        self.inserted(inserted, upto).await
    }

    /// Records the source's progress and commits the open transaction.
    pub async fn commit(&mut self, progress: SourceProgress) -> Result<(), StoreError> {
        if !self.in_transaction {
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *self.conn)
                .await?;
            self.in_transaction = true;
        }
        self.flush().await?;
        sqlx::query(
            "UPDATE source_files SET last_line = ?, rows_read = ?, rows_valid = ?,
             rows_invalid = ? WHERE id = ?",
        )
        .bind(progress.last_line)
        .bind(progress.rows_read)
        .bind(progress.rows_valid)
        .bind(progress.rows_invalid)
        .bind(self.source_id)
        .execute(&mut *self.conn)
        .await?;
        for state in JobState::ALL {
            let n = self.added.get(state);
            if n != 0 {
                sqlx::query(
                    "INSERT INTO run_counts (run_id, state, n) VALUES (?1, ?2, ?3)
                     ON CONFLICT (run_id, state) DO UPDATE SET n = n + ?3",
                )
                .bind(self.run_id)
                .bind(state.as_str())
                .bind(n)
                .execute(&mut *self.conn)
                .await?;
            }
        }
        sqlx::query("COMMIT").execute(&mut *self.conn).await?;
        self.in_transaction = false;
        self.added = Counts::default();
        Ok(())
    }

    /// Commits the last rows and marks the source complete under its content hash.
    ///
    /// When the run already holds another complete source with the same hash (possible only
    /// for standard input, whose hash is known at the end), this source's rows are removed
    /// instead and `false` is returned.
    pub async fn finish(
        mut self,
        progress: SourceProgress,
        content_hash: &str,
    ) -> Result<bool, StoreError> {
        self.commit(progress).await?;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *self.conn)
            .await?;
        let duplicate: Option<(i64,)> = sqlx::query_as(
            "SELECT id FROM source_files
             WHERE run_id = ? AND content_hash = ? AND complete = 1 AND id != ?
               AND settings_hash = (SELECT settings_hash FROM source_files WHERE id = ?)",
        )
        .bind(self.run_id)
        .bind(content_hash)
        .bind(self.source_id)
        .bind(self.source_id)
        .fetch_optional(&mut *self.conn)
        .await?;
        if duplicate.is_some() {
            sqlx::query("DELETE FROM jobs WHERE run_id = ? AND source_id = ?")
                .bind(self.run_id)
                .bind(self.source_id)
                .execute(&mut *self.conn)
                .await?;
            sqlx::query("DELETE FROM source_files WHERE id = ?")
                .bind(self.source_id)
                .execute(&mut *self.conn)
                .await?;
        } else {
            sqlx::query("UPDATE source_files SET complete = 1, content_hash = ? WHERE id = ?")
                .bind(content_hash)
                .bind(self.source_id)
                .execute(&mut *self.conn)
                .await?;
        }
        sqlx::query("COMMIT").execute(&mut *self.conn).await?;
        self.close_reader().await;
        // The connection's large page cache is not handed back to the pool.
        Ok(duplicate.is_none())
    }
}

/// Runs a chunk's insert; its last id and the earlier rows it supersedes.
async fn insert(
    conn: &mut PoolConnection<Sqlite>,
    ready: Ready,
) -> Result<(i64, Vec<delta::Supersede>), StoreError> {
    let done = ready.insert.execute(&mut **conn).await?;
    Ok((done.last_insert_rowid(), ready.supersede))
}

/// The insert statement of a decided chunk, its rows counted.
fn bind(
    chunk: Vec<NewJob>,
    decisions: delta::Decisions,
    sql: Arc<str>,
    added: &mut Counts,
    counts: &mut DeltaCounts,
) -> Ready {
    // The text is built here from integers only: nothing user-given reaches it.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    let mut keyless = decisions.keyless.iter().copied().peekable();
    for (index, (job, (kind, reason))) in chunk.into_iter().zip(decisions.rows).enumerate() {
        let sync_key = if keyless.next_if_eq(&index).is_some() {
            None
        } else {
            job.sync_key.map(Vec::from)
        };
        // Owned values move into the arguments; borrowed ones would be copied. An
        // unchanged row keeps neither payload nor its digest (only the probe reads a digest,
        // and only of rows that can still be sent): its reason names the row that has them.
        let hash = || job.payload_hash.map(Vec::from);
        let (payload, hash, message) = match kind {
            Kind::Pending => {
                added.pending += 1;
                (job.payload, hash(), None)
            }
            Kind::Invalid => {
                added.invalid += 1;
                (None, hash(), job.invalid_reason)
            }
            Kind::Unchanged => {
                added.skipped += 1;
                counts.unchanged += 1;
                (None, None, reason)
            }
            Kind::Superseded => {
                added.skipped += 1;
                counts.superseded += 1;
                (job.payload, hash(), reason)
            }
        };
        query = query
            .bind(job.line)
            .bind(job.ticket_id)
            .bind(payload)
            .bind(hash)
            .bind(sync_key)
            .bind(kind as i64)
            .bind(kind as i64)
            .bind(message)
            .bind(job.raw_record);
    }
    Ready {
        insert: query,
        supersede: decisions.supersede,
    }
}

impl IngestWriter {
    /// Gives up on a source that failed: rolls back what is not committed and, when nothing
    /// of it was ever committed, removes its record, so a file refused as a whole (not UTF-8,
    /// a bad header) leaves nothing behind. A source with committed rows keeps its resume
    /// point.
    pub async fn abandon(mut self) -> Result<(), StoreError> {
        if self.in_transaction {
            // SQLite may have rolled back already (a full disk does): that is fine too.
            let _ = sqlx::query("ROLLBACK").execute(&mut *self.conn).await;
            self.in_transaction = false;
            self.added = Counts::default();
        }
        self.queued = None;
        self.ready = None;
        self.close_reader().await;
        sqlx::query(
            "DELETE FROM source_files WHERE id = ?1 AND complete = 0 AND last_line = 0
               AND NOT EXISTS (SELECT 1 FROM jobs WHERE run_id = ?2 AND source_id = ?1)",
        )
        .bind(self.source_id)
        .bind(self.run_id)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }
}

impl IngestWriter {
    /// Closes the reader's connection, if any, before the store checkpoints at its close.
    async fn close_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.close().await;
        }
    }
}

impl Drop for IngestWriter {
    fn drop(&mut self) {
        // The connection never goes back to the pool: it may hold an open transaction (an
        // ingest that stopped midway; closing rolls it back), and it has foreign keys off.
        self.conn.close_on_drop();
    }
}
