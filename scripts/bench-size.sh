#!/usr/bin/env bash
# Database size benchmark: sync ROWS rows against `kapsync simulate --full-tickets` (answers as
# large as Kapture's documented success example, about 2 KB of ticket) and report the database's
# bytes per row, with the default confirmation-only responses and with --keep-responses.
#
#   scripts/bench-size.sh [ROWS]   (default 20000; needs sqlite3 and python3)
#
# Goal (issue 10): <= 500 bytes per row by default. Honours CARGO_TARGET_DIR; KAPSYNC_BIN=PATH
# uses that binary instead of a release build.
set -euo pipefail
rows=${1:-20000}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
sim_pid=
cleanup() { [[ -n "$sim_pid" ]] && kill "$sim_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
if [[ -n "${KAPSYNC_BIN:-}" ]]; then
  cp "$KAPSYNC_BIN" "$work/kapsync"
else
  cargo build --release --quiet
  cp "${CARGO_TARGET_DIR:-target}/release/kapsync" "$work/kapsync"
fi
bin=$work/kapsync
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" simulate --port "$port" --full-tickets >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do
  grep -q "$port" "$work/sim.log" 2>/dev/null && break
  sleep 0.1
done

python3 - "$rows" "$work/export.csv" <<'PY'
import random, sys
n, path = int(sys.argv[1]), sys.argv[2]
random.seed(1)
subs = ["P", "CL", "OP", "IN", "RS", "PE", "CRS", "CO"]
words = "customer called back refund shipped waiting agent resolved billing address order".split()
with open(path, "w") as f:
    f.write("ticket_id,sub_status,comment,callback_time,queue,disposition\n")
    for i in range(n):
        comment = " ".join(random.choice(words) for _ in range(6))
        cb = f"2026-{random.randint(1,12):02d}-{random.randint(1,28):02d} {random.randint(0,23):02d}:{random.randint(0,59):02d}:00"
        f.write(f'{100000000000 + i},{random.choice(subs)},"{comment}",{cb},Queue {i % 7},Disposition {i % 5}\n')
PY

measure() { # measure NAME FLAGS...: sync into a fresh database, print bytes per row
  local db=$work/$1.db
  shift
  KAPTURE_TOKEN=bench "$bin" --db "$db" --no-progress -q sync "$work/export.csv" --run size \
    --base-url "http://127.0.0.1:$port" --rate 0 --concurrency 16 "$@" >/dev/null
  sqlite3 "$db" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
  local bytes
  bytes=$(stat -c %s "$db")
  local ok
  ok=$(sqlite3 "$db" "SELECT count(*) FROM jobs WHERE state = 'succeeded';")
  printf '%d succeeded, %d bytes, %.0f bytes/row\n' "$ok" "$bytes" "$(echo "$bytes / $rows" | bc -l)"
  echo "  bytes per row by table and index (pages, free space included):"
  sqlite3 "$db" "SELECT '    ' || name || ': ' || (sum(pgsize) / $rows) FROM dbstat GROUP BY name
                 HAVING sum(pgsize) > 16384 ORDER BY sum(pgsize) DESC;"
  echo "  of which tables and indexes of one page (fixed, whatever the rows): $(sqlite3 "$db" \
    "SELECT sum(pgsize) / $rows FROM (SELECT sum(pgsize) AS pgsize FROM dbstat GROUP BY name
     HAVING count(*) = 1)") bytes/row"
  echo "  kept per success (bytes): payload $(sqlite3 "$db" "SELECT CAST(avg(length(payload)) AS INT) FROM jobs"), response $(sqlite3 "$db" "SELECT CAST(avg(length(response)) AS INT) FROM jobs")"
}
echo "rows: $rows, simulator answering full tickets on port $port"
echo "default (confirmation only), goal <= 500 bytes/row:"
measure confirm
echo "--keep-responses (whole snapshots):"
measure full --keep-responses
