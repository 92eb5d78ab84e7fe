-- The source record of an invalid row, as read (at most --max-record-bytes of it), so an
-- export of invalid rows can be fixed without the source file. NULL for valid rows.
ALTER TABLE jobs ADD COLUMN raw_record TEXT;

-- The mapping a source file was ingested with: its file name and the digest of its text
-- ('' for none). NULL for files ingested before this column existed. An ingest into a run
-- with another mapping is refused unless asked for (--mapping-changed).
ALTER TABLE source_files ADD COLUMN mapping_name TEXT;
ALTER TABLE source_files ADD COLUMN mapping_fingerprint TEXT;
