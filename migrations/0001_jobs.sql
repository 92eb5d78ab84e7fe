-- The job table and its history. A shipped migration is never edited: changes go in a new file.

-- One batch of work: the rows of one or more ingested files, drained together.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

-- One ingested input file (or standard input) of a run.
CREATE TABLE source_files (
    id            INTEGER PRIMARY KEY,
    run_id        INTEGER NOT NULL REFERENCES runs(id),
    path          TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    -- Digest of what shapes the rows besides the content: format, mapping, record limit.
    settings_hash TEXT NOT NULL,
    format        TEXT NOT NULL CHECK (format IN ('csv', 'jsonl')),
    rows_read     INTEGER NOT NULL DEFAULT 0,
    rows_valid    INTEGER NOT NULL DEFAULT 0,
    rows_invalid  INTEGER NOT NULL DEFAULT 0,
    -- The last input line stored; an interrupted ingest resumes after it.
    last_line     INTEGER NOT NULL DEFAULT 0,
    -- 0 while the ingest is under way.
    complete      INTEGER NOT NULL DEFAULT 0,
    ingested_at   TEXT NOT NULL
);
CREATE INDEX source_files_by_hash ON source_files(run_id, content_hash, settings_hash);

-- One input record and its outcome.
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    run_id           INTEGER NOT NULL REFERENCES runs(id),
    source_id        INTEGER NOT NULL REFERENCES source_files(id),
    line             INTEGER NOT NULL,
    ticket_id        TEXT,
    -- The JSON object sent as the single element of the request array.
    payload          TEXT,
    payload_hash     BLOB,
    state            TEXT NOT NULL CHECK (state IN
                         ('pending', 'in_flight', 'succeeded', 'failed', 'invalid', 'skipped')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- Unix milliseconds before which the row is not claimed again.
    next_attempt_at  INTEGER,
    error_class      TEXT,
    error_message    TEXT,
    http_status      INTEGER,
    -- The ticket snapshot Kapture returned on success.
    response         TEXT,
    replayed         INTEGER NOT NULL DEFAULT 0,
    updated_at       INTEGER
);
-- Fresh rows (never claimed, next_attempt_at NULL) are claimed by walking the primary key
-- from the dispatcher's cursor, so ingest maintains no index for them. Every pending row
-- behind the cursor (a retry, a row waiting for an earlier row of its ticket, a row put back
-- after a crash or by `kapsync retry`) has next_attempt_at set and is found through this
-- small partial index.
CREATE INDEX jobs_waiting ON jobs(run_id, next_attempt_at)
    WHERE state = 'pending' AND next_attempt_at IS NOT NULL;
-- "earlier rows of the same ticket" (SQLite appends the id to every index entry)
CREATE INDEX jobs_by_ticket ON jobs(run_id, ticket_id);

-- One request sent for a job.
CREATE TABLE attempts (
    id           INTEGER PRIMARY KEY,
    job_id       INTEGER NOT NULL REFERENCES jobs(id),
    attempt      INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL,
    http_status  INTEGER,
    class        TEXT NOT NULL,
    in_doubt     INTEGER NOT NULL DEFAULT 0,
    excerpt      TEXT
);
CREATE INDEX attempts_by_job ON attempts(job_id);
