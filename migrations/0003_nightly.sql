-- Nightly migrations: skip what did not change since it was sent, and bind the database to one
-- Kapture target. A shipped migration is never edited: changes go in a new file.

-- A digest (16 bytes) of the row's sync key: its ticket_id plus the values of the columns a
-- mapping names under `[delta] key`. NULL for invalid rows and for rows stored before this
-- migration (those are never compared: the first night after upgrading sends every row once).
ALTER TABLE jobs ADD COLUMN sync_key BLOB;
-- "the latest earlier row of this sync key": an index probe from the newest id down.
CREATE INDEX jobs_by_sync_key ON jobs(sync_key, id);

-- The Kapture target the database sends to, recorded before its first request. The newest row
-- is in force; every later row is a `--retarget`, kept as history.
CREATE TABLE targets (
    id           INTEGER PRIMARY KEY,
    -- As given: `subdomain` (NAME of NAME.kapturecrm.com) or `base_url`.
    kind         TEXT NOT NULL CHECK (kind IN ('subdomain', 'base_url')),
    value        TEXT NOT NULL,
    -- The resolved base URL, which is what two targets are compared by.
    base_url     TEXT NOT NULL,
    -- Unix milliseconds from which rows succeed against this target (0 for the first): rows
    -- that succeeded before went to an earlier target, and unchanged rows are not compared
    -- with them.
    since_ms     INTEGER NOT NULL DEFAULT 0,
    retarget     INTEGER NOT NULL DEFAULT 0,
    recorded_at  TEXT NOT NULL
);
