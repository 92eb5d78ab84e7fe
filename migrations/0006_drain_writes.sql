-- A drain that writes no randomly placed index pages. A shipped migration is never edited:
-- changes go in a new file.
--
-- SQLite rewrites a row's entry in every index whose columns, or whose WHERE clause, name a
-- column the UPDATE sets. `jobs_open_by_ticket` (WHERE state IN ...) and
-- `jobs_succeeded_by_ticket` (WHERE state = ...) are keyed by ticket, so every claim and every
-- result dirtied pages all over them, and each commit wrote those whole 16 KiB pages to the
-- WAL again: about 40 KB of WAL per row drained, most of the drain's SQLite time
-- (`examples/store_drain.rs` measures this alone).

-- The rows that were ever to be sent (an unchanged row keeps no payload, an invalid row has
-- none), by ticket in id order. Neither the key nor the WHERE clause is a column a drain sets,
-- so draining never touches it (SQLite appends the id to each entry). What it answers, with the row's state read from the table:
-- - "the row before this one" (the claim): the latest earlier row of the ticket that is not
--   skipped; the row is held while that one is pending or in flight. Rows of a ticket are sent
--   in id order, so once that row succeeded or failed the rows before it are done too (the one
--   exception is `kapsync retry --include-superseded`, which sends an older row on purpose).
-- - "the row after this one" (the release below): the next row of the ticket that is not
--   skipped.
-- - "a later row of this ticket is open" (retry).
CREATE INDEX jobs_by_ticket_sent ON jobs(ticket_id) WHERE payload IS NOT NULL;

DROP INDEX jobs_open_by_ticket;
-- Report and status tell resolved failures by sync key (`jobs_by_sync_key`).
DROP INDEX jobs_succeeded_by_ticket;

-- Release on finish: when a row stops being open (succeeded, failed, skipped), the next row of
-- its ticket, in any run, becomes due at once if it was parked. The claim checks it again, so
-- releasing early is harmless.
DROP TRIGGER jobs_release_next;
CREATE TRIGGER jobs_release_next AFTER UPDATE OF state ON jobs
WHEN old.state IN ('pending', 'in_flight') AND new.state NOT IN ('pending', 'in_flight')
BEGIN
    UPDATE jobs SET next_attempt_at = 0
    WHERE id = (SELECT n.id FROM jobs n INDEXED BY jobs_by_ticket_sent
                WHERE n.ticket_id = new.ticket_id AND n.payload IS NOT NULL
                  AND n.id > new.id AND n.state <> 'skipped'
                ORDER BY n.id LIMIT 1)
      AND state = 'pending' AND next_attempt_at IS NULL;
END;
