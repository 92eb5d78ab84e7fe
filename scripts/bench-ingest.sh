#!/usr/bin/env bash
# Ingest benchmark: kapsync ingest vs the sqlite3 shell's .import of the same CSV into a table
# with an index on ticket_id, side by side in one run, plus kapsync's peak memory at two sizes.
#
#   scripts/bench-ingest.sh [ROWS] [RUNS]   (defaults 1000000 and 3; needs sqlite3, GNU time, bc)
#
# The two sides alternate (sqlite3, kapsync, sqlite3, ...) so a busy machine slows both alike;
# the medians are compared. Honours CARGO_TARGET_DIR.
set -euo pipefail
rows=${1:-1000000}
runs=${2:-3}
small=$((rows / 5))
cd "$(dirname "$0")/.."
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A private copy: a build in a shared target directory must not swap the binary mid-run.
cp "${CARGO_TARGET_DIR:-target}/release/kapsync" "$work/kapsync"
bin=$work/kapsync
echo "machine: $(nproc) cores, $(sqlite3 --version | cut -d' ' -f1-2 | sed 's/^/sqlite3 /'), load average at start:$(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/ /')"

gen() { # gen N FILE: a six-column export with realistic field sizes
  python3 - "$1" "$2" <<'PY'
import random, sys
n, path = int(sys.argv[1]), sys.argv[2]
random.seed(1)
subs = ["P", "CL", "OP", "IN", "RS", "PE", "CRS", "CO"]
words = "customer called back refund shipped waiting agent resolved billing address order".split()
with open(path, "w") as f:
    f.write("ticket_id,sub_status,comment,callback_time,queue,disposition\n")
    for i in range(n):
        tid = 100000000000 + random.randrange(10**11)
        comment = " ".join(random.choice(words) for _ in range(6))
        cb = f"2026-{random.randint(1,12):02d}-{random.randint(1,28):02d} {random.randint(0,23):02d}:{random.randint(0,59):02d}:00"
        f.write(f'{tid},{random.choice(subs)},"{comment}",{cb},Queue {i % 7},Disposition {i % 5}\n')
PY
}

gen "$rows" "$work/big.csv"
gen "$small" "$work/small.csv"
size=$(du -m "$work/big.csv" | cut -f1)
echo "input: $rows rows, ${size} MB"

sqlite_import() {
  rm -f "$work/ref.db"
  sqlite3 "$work/ref.db" <<SQL
CREATE TABLE t (ticket_id TEXT, sub_status TEXT, comment TEXT, callback_time TEXT, queue TEXT, disposition TEXT);
CREATE INDEX t_ticket ON t(ticket_id);
.mode csv
.import --skip 1 $work/big.csv t
SQL
}

kapsync_ingest() { # kapsync_ingest FILE DB
  rm -f "$2" "$2-wal" "$2-shm"
  "$bin" --db "$2" --no-progress -q ingest "$1" --run bench >/dev/null
}

seconds() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "$e - $s" | bc -l; }

ref=() ; ours=()
for ((i = 0; i < runs; i++)); do
  ref+=("$(seconds sqlite_import)")
  ours+=("$(seconds kapsync_ingest "$work/big.csv" "$work/k.db")")
done
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
r=$(median "${ref[@]}"); o=$(median "${ours[@]}")
printf 'sqlite3 .import (indexed):  %.2f s  (runs: %s)\n' "$r" "${ref[*]}"
printf 'kapsync ingest:             %.2f s  (runs: %s)\n' "$o" "${ours[*]}"
printf 'ratio kapsync/sqlite3:      %.2f  (goal: <= 1.00)\n' "$(echo "$o / $r" | bc -l)"
printf 'kapsync rows/s:             %.0f\n' "$(echo "$rows / $o" | bc -l)"

peak() { # peak FILE: max RSS in MiB of an ingest
  rm -f "$work/m.db"*
  /usr/bin/time -f '%M' "$bin" --db "$work/m.db" --no-progress -q ingest "$1" --run bench 2>&1 >/dev/null | tail -1 | awk '{printf "%.1f", $1/1024}'
}
printf 'peak memory, %d rows:   %s MiB\n' "$small" "$(peak "$work/small.csv")"
printf 'peak memory, %d rows:  %s MiB  (goal: < 64, flat)\n' "$rows" "$(peak "$work/big.csv")"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
