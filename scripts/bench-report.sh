#!/usr/bin/env bash
# Report benchmark: builds a database shaped like a month of nightly migrations (ROWS rows over
# NIGHTS runs, one attempt per finished row plus retries and 429s, a few failed and invalid
# rows, the last night still draining) and times `kapsync report` on it, with peak memory.
#
#   scripts/bench-report.sh [ROWS] [NIGHTS]   (defaults 10000000 and 30; needs sqlite3, GNU time)
#
# Target (issue 14): at 10M rows and a month of attempts, each report < 5 s and < 200 MiB.
# A smoke run: scripts/bench-report.sh 30000 5. Honours CARGO_TARGET_DIR; KEEP=1 keeps the
# database (its path is printed) for EXPLAIN QUERY PLAN checks; KAPSYNC_BIN=PATH uses that
# binary instead of building a release one (a smoke run with a debug build).
set -euo pipefail
rows=${1:-10000000}
nights=${2:-30}
per=$((rows / nights))
cd "$(dirname "$0")/.."
work=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
if [ -z "${KAPSYNC_BIN:-}" ]; then
  cargo build --release --quiet
  KAPSYNC_BIN=${CARGO_TARGET_DIR:-target}/release/kapsync
fi
# A private copy: a build in a shared target directory must not swap the binary mid-run.
cp "$KAPSYNC_BIN" "$work/kapsync"
bin=$work/kapsync
db=$work/bench.db
echo "machine: $(nproc) cores, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "building $db: $rows rows over $nights nights ($per a night)"

# The schema comes from kapsync itself (its migrations), through a one-row ingest.
printf 'ticket_id,sub_status,comment\n100000000001,P,seed\n' >"$work/seed.csv"
"$bin" --db "$db" --no-progress -q ingest "$work/seed.csv" --run seed >/dev/null

start=$(date +%s)
# Night n starts at 22:00 UTC, n-1 days after a day a month before now, and drains for 8 hours.
t0=$(( ( $(date +%s) / 86400 - nights - 1 ) * 86400000 + 22 * 3600000 ))
sqlite3 "$db" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -1000000;
BEGIN;
CREATE TEMP TABLE nights AS
  WITH RECURSIVE n(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM n WHERE n < $nights)
  SELECT n, 100 + n AS run_id, $t0 + (n - 1) * 86400000 AS start FROM n;
INSERT INTO runs (id, name, created_at)
  SELECT run_id, printf('night-%02d', n), strftime('%Y-%m-%dT%H:%M:%SZ', start / 1000, 'unixepoch')
  FROM nights;
INSERT INTO source_files (id, run_id, path, content_hash, settings_hash, format, rows_read,
                          rows_valid, rows_invalid, last_line, complete, ingested_at)
  SELECT run_id, run_id, printf('export-%02d.csv', n), 'h' || n, 'csv:1048576:', 'csv', $per,
         $per, 0, $per + 1, 1, strftime('%Y-%m-%dT%H:%M:%SZ', start / 1000, 'unixepoch')
  FROM nights;
UPDATE source_files SET mapping_name = 'zendesk_mapping.toml',
                        mapping_fingerprint = '0123456789abcdef0123456789abcdef'
  WHERE run_id > 100;
INSERT INTO run_settings (run_id, started_at, finished_at, target, rate, burst, concurrency,
                          max_attempts, timeout_secs, version)
  SELECT run_id, start, CASE WHEN n = $nights THEN NULL ELSE start + 8 * 3600000 END,
         'https://bench.kapturecrm.com', 12, 1, 4, 8, 30, 'bench'
  FROM nights;
-- The adaptive limit: cut to 9/s once an hour, climbing back to 12 over the next 20 s.
INSERT INTO rate_limits (drain_id, at, rate)
  WITH RECURSIVE h(h) AS (SELECT 1 UNION ALL SELECT h + 1 FROM h WHERE h < 8),
                 k(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM k WHERE k < 4)
  SELECT s.id, s.started_at + h * 3600000 + k * 5000,
         CASE k WHEN 0 THEN 9 WHEN 1 THEN 9.9 WHEN 2 THEN 10.89 WHEN 3 THEN 11.979 ELSE 12 END
  FROM run_settings s, h, k WHERE s.run_id > 100;
-- Rows: 2M tickets updated again night after night; 1 in 997 rejected, 1 in 1009 invalid,
-- the last fifth of the last night still pending.
INSERT INTO jobs (id, run_id, source_id, line, ticket_id, payload, payload_hash, state,
                  attempts, error_class, error_message, http_status, updated_at)
  WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < $rows - 1)
  SELECT 1000 + i, 101 + i / $per, 101 + i / $per, i % $per + 2,
         printf('5%011d', (i * 7919) % 2000000),
         json_object('ticket_id', printf('5%011d', (i * 7919) % 2000000), 'sub_status', 'CL',
                     'comment', 'Customer confirmed the refund arrived; closing. Ref ' || i),
         randomblob(16),
         CASE WHEN i / $per = $nights - 1 AND i % $per > $per * 4 / 5 THEN 'pending'
              WHEN i % 997 = 0 THEN 'failed'
              WHEN i % 1009 = 0 THEN 'invalid'
              ELSE 'succeeded' END,
         1,
         CASE WHEN i % 997 = 0 THEN 'rejected' END,
         CASE WHEN i % 1009 = 0 AND i % 997 <> 0 THEN 'callback_time "tomorrow" is not yyyy-MM-dd HH:mm:ss'
              WHEN i % 997 = 0 THEN 'Invalid sub_status ' || (i % 3) END,
         CASE WHEN i % 997 = 0 THEN 200 END,
         $t0 + (i / $per) * 86400000 + (i % $per) * (8 * 3600000 / $per)
  FROM c WHERE i < $nights * $per;
-- One attempt per finished row, in time order, then retries (1 in 50) and 429s (1 in 200).
INSERT INTO attempts (job_id, attempt, started_at, duration_ms, http_status, class)
  SELECT id, 1, updated_at - 400,
         40 + abs(random()) % 250 + CASE WHEN id % 100 = 0 THEN 1500 ELSE 0 END,
         200, CASE state WHEN 'succeeded' THEN 'success' ELSE 'rejected' END
  FROM jobs WHERE run_id > 100 AND state IN ('succeeded', 'failed') ORDER BY updated_at;
INSERT INTO attempts (job_id, attempt, started_at, duration_ms, http_status, class)
  SELECT id, 1, updated_at - 2000, 30000, NULL, 'transient_in_doubt'
  FROM jobs WHERE run_id > 100 AND id % 50 = 0 AND state <> 'invalid';
INSERT INTO attempts (job_id, attempt, started_at, duration_ms, http_status, class)
  SELECT id, 1, updated_at - 3000, 20, 429, 'throttled'
  FROM jobs WHERE run_id > 100 AND id % 200 = 0 AND state <> 'invalid';
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
echo "built in $(( $(date +%s) - start )) s: $(du -h "$db" | cut -f1), \
$(sqlite3 "$db" 'SELECT count(*) FROM jobs') rows, $(sqlite3 "$db" 'SELECT count(*) FROM attempts') attempts"

measure() { # measure NAME ARGS...: wall time and peak RSS of one report
  local name=$1
  shift
  /usr/bin/time -v "$bin" --db "$db" --no-progress -q report "$@" >/dev/null 2>"$work/time.txt"
  printf '%-28s %8s s  %6d MiB\n' "$name" \
    "$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')" \
    $(( $(grep 'Maximum resident' "$work/time.txt" | awk '{print $NF}') / 1024 ))
}
last=$(printf 'night-%02d' "$nights")
for pass in 1 2; do
  echo "pass $pass:"
  measure "report --all -o" --all -o "$work/all.html"
  measure "report --all --json" --all --json
  measure "report --run $last -o" --run "$last" -o "$work/run.html"
done
[ -z "${KEEP:-}" ] || echo "kept: $db"
