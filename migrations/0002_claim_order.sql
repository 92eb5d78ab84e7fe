-- Ticket order across runs, claims that cost O(log n) per row, and commands that read only
-- the run they concern. A shipped migration is never edited: changes go in a new file.
--
-- Pending rows and what finds them (see src/store/claim.rs):
-- - next_attempt_at NULL: not yet claimable. Either fresh (never looked at) or parked behind
--   an earlier pending or in-flight row of its ticket, in any run. The dispatcher's cursor
--   walks these once per drain through `jobs_open_by_run`.
-- - next_attempt_at set: due at that time (a retry, a row put back, a row released when the
--   row it waited on finished), found through `jobs_waiting` in time order.
-- A row is released by `jobs_release_next` below when the row before it ends, so a waiting row
-- is never rescanned by the claims.

-- The run's rows in id order: export pages, "is this run empty", retry's scan of one run.
-- Appended at the end by ingest, unlike the (run_id, ticket_id) index it replaces, whose
-- random-order inserts were a third of the ingest's SQLite time.
DROP INDEX jobs_by_ticket;
CREATE INDEX jobs_by_run ON jobs(run_id);

-- "An earlier row of this ticket is pending or in flight", in any run: one probe. Holds only
-- the open rows, so finished history does not slow it.
CREATE INDEX jobs_open_by_ticket ON jobs(ticket_id) WHERE state IN ('pending', 'in_flight');

-- A run's open rows by state, in id order: the cursor's walk, orphaned claims, the oldest
-- open row of a run.
CREATE INDEX jobs_open_by_run ON jobs(run_id, state) WHERE state IN ('pending', 'in_flight');

-- Rows per run and state, kept as rows change, so `status` and `runs` read a few rows
-- instead of counting the history. Ingest adds the rows it inserts when it commits (an
-- INSERT trigger cost a fifth of the ingest's SQLite time); the triggers keep the rest.
CREATE TABLE run_counts (
    run_id  INTEGER NOT NULL,
    state   TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (run_id, state)
) WITHOUT ROWID;
INSERT INTO run_counts (run_id, state, n)
    SELECT run_id, state, count(*) FROM jobs GROUP BY run_id, state;

CREATE TRIGGER jobs_count_state AFTER UPDATE OF state ON jobs
WHEN old.state IS NOT new.state
BEGIN
    UPDATE run_counts SET n = n - 1 WHERE run_id = old.run_id AND state = old.state;
    INSERT INTO run_counts (run_id, state, n) VALUES (new.run_id, new.state, 1)
        ON CONFLICT (run_id, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
BEGIN
    UPDATE run_counts SET n = n - 1 WHERE run_id = old.run_id AND state = old.state;
END;

-- Release on finish: when a row stops being open (succeeded, failed, skipped), the next open
-- row of its ticket, in any run, becomes due at once if it was parked. The claim checks it
-- again (an even earlier row may have been put back by `kapsync retry`), so releasing early
-- is harmless; the last earlier row to finish always releases it.
CREATE TRIGGER jobs_release_next AFTER UPDATE OF state ON jobs
WHEN old.state IN ('pending', 'in_flight') AND new.state NOT IN ('pending', 'in_flight')
BEGIN
    UPDATE jobs SET next_attempt_at = 0
    WHERE id = (SELECT n.id FROM jobs n INDEXED BY jobs_open_by_ticket
                WHERE n.ticket_id = new.ticket_id AND n.state IN ('pending', 'in_flight')
                  AND n.id > new.id
                ORDER BY n.id LIMIT 1)
      AND state = 'pending' AND next_attempt_at IS NULL;
END;
