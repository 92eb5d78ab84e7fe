-- The rate limit in force during each drain, for `kapsync report`: the adaptive limit lowers the
-- configured rate when Kapture answers 429s and climbs back after. A drain starts at its
-- configured rate (run_settings.rate); each row here is the limit from `at` on, recorded when
-- it changed (at most one row a second per drain: changes within a second keep the last).
-- A shipped migration is never edited: changes go in a new file.
CREATE TABLE rate_limits (
    drain_id INTEGER NOT NULL REFERENCES run_settings(id) ON DELETE CASCADE,
    -- Unix milliseconds: when the limit took this value.
    at       INTEGER NOT NULL,
    -- Requests per second; NULL means no limit.
    rate     REAL,
    PRIMARY KEY (drain_id, at)
) WITHOUT ROWID;
