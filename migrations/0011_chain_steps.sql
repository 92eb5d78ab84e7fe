-- A journal of chain steps: a drain writes what it must make durable between a ticket's
-- consecutive rows at one place, appended, instead of at each row's place in `jobs`. A shipped
-- migration is never edited: changes go in a new file.
--
-- A chain (src/store/claim.rs) is a ticket's next rows, claimed together and sent one after
-- another, each only once the success of the one before it is committed. Committing that
-- success by updating the row in `jobs` dirtied, per commit, one `jobs` page and index pages
-- for every ticket with a chain going, hundreds of 16 KiB pages at a time (57 KB of WAL per row
-- drained against 3 KB for distinct tickets). Now a success with more rows of its chain behind
-- it is appended here (the rows stay `in_flight` in `jobs`), and when the chain ends its rows
-- are brought into `jobs` together: a chain's rows are a ticket's consecutive rows, a page or
-- two, once per chain.
--
-- What is here is a success as durable as the row's own update: the drain that wrote it folds
-- the entries of each chain when the chain ends and drops the oldest entries once folded; a
-- runner that starts after one died folds every entry first (`requeue_orphans`), so the rows
-- it replays start at the first row of a chain whose success was not recorded. Until a chain
-- ends, `status` and the counts show its recorded rows in flight.
CREATE TABLE chain_steps (
    -- Appended in the drain's order: the writer numbers them, a prefix is dropped at once.
    seq         INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL,
    -- The claim's attempt number: an entry applies only to the claim that wrote it.
    attempt     INTEGER NOT NULL,
    http_status INTEGER,
    -- What the success keeps on the row (`jobs.response`).
    response    TEXT
);
