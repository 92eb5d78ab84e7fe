#!/usr/bin/env bash
# History benchmark: a database holding ROWS rows of history in RUNS runs (one succeeded row
# per ticket per night, a few failed ones, an attempt per row), then the commands a nightly
# job runs against it. Goal (issue 10): `status`, `runs`, and the time from launching
# `kapsync run --run new` to its first request, each within 100 ms.
#
#   scripts/bench-history.sh [ROWS] [RUNS] [REPEATS]   (defaults 10000000 100 5)
#
# The history is written with the sqlite3 shell straight into a database kapsync created (so
# the schema is the migrated one), a few minutes for 10M rows; the new 1,000-row run is
# ingested by kapsync. The first request is timed by a small HTTP server in this script that
# notes the wall-clock time of the first POST and answers success. Each figure is the median
# of REPEATS (fresh copies are not needed: every measured command only reads, and each drain
# gets a new run). Needs sqlite3 and python3. Honours CARGO_TARGET_DIR; KAPSYNC_BIN=PATH uses
# that binary instead of a release build.
#
# HISTORY_DB=PATH keeps the history database at PATH: built there when PATH does not exist,
# reused as it is when it does (a 10M-row history takes minutes to write). Each measurement
# adds its new runs under fresh names, so a kept database can be measured again and again;
# `status` is timed on the latest run and on the last night (`--run night-RUNS`, RUNS/ROWS
# rows), the run the goal was first measured on.
set -euo pipefail
rows=${1:-10000000}
runs=${2:-100}
repeats=${3:-5}
per=$((rows / runs))
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -n "${KAPSYNC_BIN:-}" ]]; then
  cp "$KAPSYNC_BIN" "$work/kapsync"
else
  cargo build --release --quiet
  cp "${CARGO_TARGET_DIR:-target}/release/kapsync" "$work/kapsync"
fi
bin=$work/kapsync
db=${HISTORY_DB:-$work/history.db}
echo "machine: $(nproc) cores, load average at start:$(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/ /')"
if [[ -e "$db" ]]; then
  printf 'history: reusing %s (%d rows in %d runs, %s)\n' "$db" \
    "$(sqlite3 "$db" 'SELECT sum(n) FROM run_counts')" "$(sqlite3 "$db" 'SELECT count(*) FROM runs')" \
    "$(du -h "$db" | cut -f1)"
else

# The schema, made by kapsync: a one-row run.
printf 'ticket_id,sub_status,comment\n399999999999,CL,schema\n' >"$work/seed.csv"
"$bin" --db "$db" --no-progress -q ingest "$work/seed.csv" --run seed >/dev/null

start=$(date +%s.%N)
sqlite3 "$db" >/dev/null <<SQL
PRAGMA cache_size = -262144;
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < $runs)
INSERT INTO runs (name, created_at)
    SELECT printf('night-%03d', i), printf('2026-01-01T00:%02d:00Z', i % 60) FROM r;
INSERT INTO source_files (run_id, path, content_hash, settings_hash, format, rows_read,
                          rows_valid, rows_invalid, last_line, complete, ingested_at)
    SELECT id, 'export.csv', 'h' || id, 's', 'csv', $per, $per, 0, $per + 1, 1, created_at
    FROM runs WHERE name LIKE 'night-%';
WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < $per - 1)
INSERT INTO jobs (run_id, source_id, line, ticket_id, payload, state, attempts, error_class,
                  error_message, http_status, response, updated_at)
    SELECT s.run_id, s.id, c.i + 2, printf('%012d', 300000000000 + c.i),
           printf('{"comment":"night %d","sub_status":"CL","ticket_id":"%012d"}',
                  s.run_id, 300000000000 + c.i),
           iif(c.i % 997 = 0, 'failed', 'succeeded'), 1,
           iif(c.i % 997 = 0, 'rejected', NULL), iif(c.i % 997 = 0, 'Invalid Format', NULL),
           200, iif(c.i % 997 = 0, NULL, '{"status":"Complete"}'),
           1767225600000 + s.run_id * 86400000
    FROM source_files s, c
    WHERE s.path = 'export.csv'
    ORDER BY s.id, c.i;
INSERT INTO attempts (job_id, attempt, started_at, duration_ms, http_status, class)
    SELECT id, 1, updated_at, 40, 200, iif(state = 'failed', 'rejected', 'success')
    FROM jobs WHERE run_id IN (SELECT id FROM runs WHERE name LIKE 'night-%');
INSERT INTO run_counts (run_id, state, n)
    SELECT run_id, state, count(*) FROM jobs
    WHERE run_id IN (SELECT id FROM runs WHERE name LIKE 'night-%')
    GROUP BY run_id, state;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
end=$(date +%s.%N)
printf 'history: %d rows in %d runs written in %.0f s; database %s\n' \
  "$(sqlite3 "$db" 'SELECT sum(n) FROM run_counts')" "$runs" "$(echo "$end - $start" | bc -l)" \
  "$(du -h "$db" | cut -f1)"
fi
# Once, untimed: applies any migration the binary brings (an index built over the history).
"$bin" --db "$db" --no-progress -q runs >/dev/null

python3 - "$bin" "$db" "$work" "$repeats" "$runs" <<'PY'
import http.server, json, os, statistics, subprocess, sys, threading, time

bin, db, work, repeats, nights = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
env = dict(os.environ, KAPTURE_TOKEN="bench")
env.pop("RUST_LOG", None)
base = [bin, "--db", db, "--no-progress", "-q"]

def timed(args):
    start = time.perf_counter()
    subprocess.run(base + args, check=True, stdout=subprocess.DEVNULL, env=env)
    return (time.perf_counter() - start) * 1000

first_post = []
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        if not first_post:
            first_post.append(time.time())
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))[0]
        out = json.dumps({"status": "success", "message": "Ticket updated",
                          "ticket": {"id": body.get("ticket_id")}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}"

# Run names and comments unique to this invocation, so a kept database can be measured again
# (the same comment again would be skipped as unchanged, and nothing would be sent).
tag = time.strftime("%Y%m%d%H%M%S")

def new_run_csv(n):
    path = os.path.join(work, f"new-{n}.csv")
    with open(path, "w") as f:
        f.write("ticket_id,sub_status,comment\n")
        for i in range(1000):
            # Tickets the history already holds, with a new comment.
            f.write(f"{300000000000 + i * 37},OP,new night {tag} {n} row {i}\n")
    return path

def first_request(args):
    first_post.clear()
    start = time.time()
    # --retarget: a kept database is bound to the port of the run that made it.
    subprocess.run(base + args + ["--base-url", url, "--retarget", "--rate", "0",
                                  "--concurrency", "16"],
                   check=True, stdout=subprocess.DEVNULL, env=env)
    total = (time.time() - start) * 1000
    return (first_post[0] - start) * 1000, total

last_night = f"night-{nights:03d}"
status = [timed(["status"]) for _ in range(repeats)]
status_night = [timed(["status", "--run", last_night]) for _ in range(repeats)]
runs = [timed(["runs"]) for _ in range(repeats)]
run_first, sync_first, ingest = [], [], []
for n in range(repeats):
    path = new_run_csv(n)
    ingest.append(timed(["ingest", path, "--run", f"new-{tag}-{n}"]))
    run_first.append(first_request(["run", "--run", f"new-{tag}-{n}"]))
    sync_first.append(first_request(["sync", new_run_csv(f"s{n}"), "--run", f"sync-{tag}-{n}"]))
med = statistics.median
print(f"kapsync status:                         {med(status):6.0f} ms  (runs: {' '.join(f'{x:.0f}' for x in status)})  goal <= 100")
print(f"kapsync status --run {last_night}:       {med(status_night):6.0f} ms  (runs: {' '.join(f'{x:.0f}' for x in status_night)})  goal <= 100")
print(f"kapsync runs:                           {med(runs):6.0f} ms  (runs: {' '.join(f'{x:.0f}' for x in runs)})  goal <= 100")
print(f"run --run new (1,000 rows), 1st request: {med([f for f, _ in run_first]):6.0f} ms  (runs: {' '.join(f'{f:.0f}' for f, _ in run_first)})  goal <= 100; whole drain {med([t for _, t in run_first]):.0f} ms")
print(f"ingest of the 1,000-row file:           {med(ingest):6.0f} ms")
print(f"sync new.csv (ingest + drain), 1st req: {med([f for f, _ in sync_first]):6.0f} ms  (runs: {' '.join(f'{f:.0f}' for f, _ in sync_first)})")
server.shutdown()
PY
echo "load average at end:$(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/ /')"
