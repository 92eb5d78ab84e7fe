-- `status` bounded by what it shows, not by the run's rows, and an attempt that keeps fewer
-- index entries. A shipped migration is never edited: changes go in a new file.
--
-- `status` read a run's last activity and its rows finished in the minute before it with
-- `max(updated_at)` over every row of the run, and its most frequent errors by joining every
-- row of the run to its attempts: three walks of the run (100,000 rows a night: about 100 ms
-- in a database of 10M rows).

-- A run's pace: rows finished per second, written by the drain's writer with each batch of
-- results (one upsert per run and batch). Only the last minute of each run is kept: a new
-- second deletes the run's seconds older than a minute, so a run holds at most 61 rows here.
CREATE TABLE run_pace (
    run_id         INTEGER NOT NULL,
    -- Unix seconds.
    second         INTEGER NOT NULL,
    -- Rows that succeeded or failed in that second.
    finished       INTEGER NOT NULL,
    -- Unix milliseconds: the first row finished in that second (NULL: none finished), and the
    -- last result of any kind (a retry scheduled, a row put back).
    first_finished INTEGER,
    last_change    INTEGER NOT NULL,
    PRIMARY KEY (run_id, second)
) WITHOUT ROWID;

CREATE TRIGGER run_pace_keeps_a_minute AFTER INSERT ON run_pace
BEGIN
    DELETE FROM run_pace WHERE run_id = new.run_id AND second < new.second - 60;
END;

-- The runs drained before this migration: the last minute of each, from the rows.
INSERT INTO run_pace (run_id, second, finished, first_finished, last_change)
    SELECT j.run_id, j.updated_at / 1000,
           sum(j.state IN ('succeeded', 'failed')),
           min(iif(j.state IN ('succeeded', 'failed'), j.updated_at, NULL)),
           max(j.updated_at)
    FROM jobs j
    JOIN (SELECT run_id, max(updated_at) AS last FROM jobs
          WHERE updated_at IS NOT NULL GROUP BY run_id) m ON m.run_id = j.run_id
    WHERE j.updated_at >= m.last - 60000
    GROUP BY j.run_id, j.updated_at / 1000;

-- Attempts that were not a success, with what `status` groups them by: a run's most frequent
-- errors read these entries for the run's rows (few), never the successes (nearly all).
CREATE INDEX attempts_failed ON attempts(job_id, class, http_status, excerpt)
    WHERE class <> 'success';

-- A job's attempts were found through `attempts_by_job` only by the query above (now through
-- `attempts_failed`) and by tests. Foreign keys do not need it either: jobs rows are deleted only
-- by ingest (a duplicate file's rows, never sent), with foreign keys off. Every attempt wrote an
-- entry there, about 12 bytes a row of history.
DROP INDEX attempts_by_job;
