-- `jobs_settled` without the rows no query reads through it. A shipped migration is never
-- edited: changes go in a new file.
--
-- Its entries for in-flight rows were written at every claim and removed at every result, and
-- those for succeeded rows (nearly every row of a history) were read by nothing: counts take
-- succeeded rows as what the other states leave, and in-flight rows come from
-- `jobs_open_by_run`. Left out, a drain writes one index entry less per claim and per result,
-- and a row of history keeps about 21 bytes less.
DROP INDEX jobs_settled;
-- Failed, invalid and skipped rows by run and state. A query reaches it by naming all three
-- terms of the WHERE clause beside its own `state = ...` (SQLite matches a partial index's
-- terms one by one).
CREATE INDEX jobs_settled ON jobs(run_id, state)
    WHERE state <> 'pending' AND state <> 'in_flight' AND state <> 'succeeded';
