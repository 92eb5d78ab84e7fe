-- One randomly keyed index on `jobs` instead of two: ingest writes one random entry per row,
-- not two. A shipped migration is never edited: changes go in a new file.
--
-- `jobs_by_sync_key` (sync_key, id) and `jobs_by_ticket_sent` (ticket_id) each took an entry
-- at a random place for every row an ingest stored. Together they outgrew the ingest's page
-- cache long before either alone did, and a 1M-row first ingest spent most of its time
-- reading and spilling their pages (13 s against 7 s with either one dropped).
--
-- A sync key digests its ticket id first, so rows of one sync key are rows of one ticket: the
-- ticket's rows in id order, each entry carrying its sync key, answer both questions.
-- - By ticket, as before (claims, release, retry): the ticket's rows in id order. The rows
--   kept are those with a payload (as before) plus the few unchanged rows that keep their sync
--   key to resolve a failure (they have no payload). A query that names `payload IS NOT NULL`
--   reads only the entries it did before, and that term implies this WHERE clause.
-- - By sync key (ingest's probe, supersede, resolved failures): the ticket's entries from the
--   newest down, the key compared in the entry, so only a row of the key is read from the
--   table. A snapshot export (one key per ticket) finds its row in the first entry; an event
--   export (many keys per ticket) passes over the newer entries of other keys of its ticket.
--
-- Neither the columns nor the WHERE clause name a column a drain sets (migration 0006). `id`
-- is named so the entries follow id order within a ticket ahead of the key.
--
-- Except for event keys. An event export (`[delta] key`) has many keys per ticket, and walking
-- a ticket's entries for each of its events costs the events of the ticket per row: 1,000
-- events a ticket made a re-ingest five times slower. Rows whose key names an event are also
-- in `jobs_by_event_key`, so their probe is one descent. `event_key` says which rows those are:
-- 1 for an ingest whose mapping names a `[delta] key`, 0 for a snapshot (ticket only). Rows
-- stored before this migration read 1 (the column's default; their kind is not known), so
-- they are all in the event index, as they were in `jobs_by_sync_key`: a probe of either kind
-- finds them. Adding a column with a constant default rewrites no row.
ALTER TABLE jobs ADD COLUMN event_key INTEGER NOT NULL DEFAULT 1;
DROP INDEX jobs_by_sync_key;
DROP INDEX jobs_by_ticket_sent;
CREATE INDEX jobs_by_ticket_sent ON jobs(ticket_id, id, sync_key)
    WHERE payload IS NOT NULL OR sync_key IS NOT NULL;
CREATE INDEX jobs_by_event_key ON jobs(sync_key, id)
    WHERE event_key = 1 AND sync_key IS NOT NULL;
