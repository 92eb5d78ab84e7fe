-- What `kapsync report` needs that the job table does not keep (each drain's settings), and the indexes that keep its
-- queries bounded. A shipped migration is never edited: changes go in a new file.

-- One drain of a run, written when it starts (finished_at when it ends; NULL if the runner
-- died). The settings it ran with, never the token.
CREATE TABLE run_settings (
    id            INTEGER PRIMARY KEY,
    run_id        INTEGER NOT NULL REFERENCES runs(id),
    -- Unix milliseconds.
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    -- The base URL requests went to (credentials are refused in it).
    target        TEXT NOT NULL,
    -- Requests per second; 0 means no limit.
    rate          REAL NOT NULL,
    burst         INTEGER NOT NULL,
    concurrency   INTEGER NOT NULL,
    max_attempts  INTEGER NOT NULL,
    timeout_secs  INTEGER NOT NULL,
    version       TEXT NOT NULL
);
CREATE INDEX run_settings_by_run ON run_settings(run_id, started_at);

-- The mapping each file was ingested with is in source_files (migration 0004).

-- Attempts by time, covering what the report's series read (class, duration, job), so a month
-- of attempts is read from this narrow index per time window, never per job.
CREATE INDEX attempts_by_time ON attempts(started_at, class, duration_ms, job_id);

-- Rows that have left `pending`, by run and state: counts without reading the rows, and the
-- failed and invalid rows of a run without walking the others. Pending rows (most rows at
-- ingest) are left out, so ingest maintains nothing here; a drain adds one entry per row.
CREATE INDEX jobs_settled ON jobs(run_id, state) WHERE state <> 'pending';
