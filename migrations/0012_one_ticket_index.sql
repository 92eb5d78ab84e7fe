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
DROP INDEX jobs_by_sync_key;
DROP INDEX jobs_by_ticket_sent;
CREATE INDEX jobs_by_ticket_sent ON jobs(ticket_id, id, sync_key)
    WHERE payload IS NOT NULL OR sync_key IS NOT NULL;
