-- The release trigger looks at the next id first. A shipped migration is never edited:
-- changes go in a new file.
--
-- A history sorted by ticket stores a ticket's rows under consecutive ids, and a chain (a
-- ticket's consecutive rows sent by one worker) is folded into `jobs` row by row: each of
-- those rows fired the release below, and each release probed `jobs_by_ticket_sent` for the
-- next row of the ticket, a descent by ticket text and a table read for every row drained.
-- When the next id is a row of the same ticket that is not skipped, it is that next row (no
-- id lies between), so one read by id answers; otherwise the probe runs as before. What is
-- released is unchanged (migration 0006).
DROP TRIGGER jobs_release_next;
CREATE TRIGGER jobs_release_next AFTER UPDATE OF state ON jobs
WHEN old.state IN ('pending', 'in_flight') AND new.state NOT IN ('pending', 'in_flight')
BEGIN
    UPDATE jobs SET next_attempt_at = 0
    WHERE id = coalesce(
            (SELECT x.id FROM jobs x
             WHERE x.id = new.id + 1 AND x.ticket_id = new.ticket_id
               AND x.payload IS NOT NULL AND x.state <> 'skipped'),
            (SELECT n.id FROM jobs n INDEXED BY jobs_by_ticket_sent
             WHERE n.ticket_id = new.ticket_id AND n.payload IS NOT NULL
               AND n.id > new.id AND n.state <> 'skipped'
             ORDER BY n.id LIMIT 1))
      AND state = 'pending' AND next_attempt_at IS NULL;
END;
