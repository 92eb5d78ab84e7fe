#!/usr/bin/env bash
# Ingest benchmark: kapsync ingest vs the sqlite3 shell's .import of the same CSV into a table
# with an index on ticket_id, side by side in one run, plus kapsync's peak memory at two sizes.
# Then the same rows as a European Excel export (Windows-1252, ';', dd/mm/yyyy HH:MM, with a
# mapping naming [formats] and a time zone) against the canonical UTF-8 file (goal: <= 1.25x
# the time, peak memory < 64 MiB), and `mapping init` on it (goal: < 2 s).
#
#   scripts/bench-ingest.sh [ROWS] [RUNS]   (defaults 1000000 and 3; needs sqlite3, GNU time, bc)
#
# The two sides alternate (sqlite3, kapsync, sqlite3, ...) so a busy machine slows both alike;
# the medians are compared. Honours CARGO_TARGET_DIR; KAPSYNC_BIN=path skips the release
# build and uses that binary (for a quick smoke run: KAPSYNC_BIN=target/debug/kapsync
# scripts/bench-ingest.sh 2000 1).
set -euo pipefail
rows=${1:-1000000}
runs=${2:-3}
small=$((rows / 5))
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -n "${KAPSYNC_BIN:-}" ]]; then
  cp "$KAPSYNC_BIN" "$work/kapsync"
else
  cargo build --release --quiet
  # A private copy: a build in a shared target directory must not swap the binary mid-run.
  cp "${CARGO_TARGET_DIR:-target}/release/kapsync" "$work/kapsync"
fi
bin=$work/kapsync
echo "machine: $(nproc) cores, $(sqlite3 --version | cut -d' ' -f1-2 | sed 's/^/sqlite3 /'), load average at start:$(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/ /')"

gen() { # gen N FILE [european]: a six-column export with realistic field sizes; "european"
       # writes the same rows as Excel does in much of Europe (Windows-1252, ';', dd/mm/yyyy)
  python3 - "$1" "$2" "${3:-canonical}" <<'PY'
import random, sys
n, path, style = int(sys.argv[1]), sys.argv[2], sys.argv[3]
random.seed(1)
subs = ["P", "CL", "OP", "IN", "RS", "PE", "CRS", "CO"]
words = "customer called back refund shipped waiting agent resolved billing address order réglé reçu".split()
eu = style == "european"
sep = ";" if eu else ","
with open(path, "w", encoding="cp1252" if eu else "utf-8", newline="") as f:
    f.write(sep.join(["ticket_id", "sub_status", "comment", "callback_time", "queue", "disposition"]) + "\n")
    for i in range(n):
        tid = 100000000000 + random.randrange(10**11)
        comment = " ".join(random.choice(words) for _ in range(6))
        mo, d, h, mi = random.randint(1,12), random.randint(1,28), random.randint(0,23), random.randint(0,59)
        cb = f"{d:02d}/{mo:02d}/2026 {h:02d}:{mi:02d}" if eu else f"2026-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:00"
        f.write(sep.join([str(tid), random.choice(subs), f'"{comment}"', cb, f"Queue {i % 7}", f"Disposition {i % 5}"]) + "\n")
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

# The European Excel shape against the canonical file: same rows, alternating runs.
gen "$rows" "$work/eu.csv" european
cat > "$work/eu.toml" <<'TOML'
[source]
encoding = "windows-1252"
[formats]
callback_time = ["%d/%m/%Y %H:%M"]
timezone = "Asia/Kolkata"
TOML
eu_ingest() {
  rm -f "$work/e.db" "$work/e.db-wal" "$work/e.db-shm"
  "$bin" --db "$work/e.db" --no-progress -q ingest --mapping "$work/eu.toml" "$work/eu.csv" --run bench >/dev/null
}
canon=() ; euro=()
for ((i = 0; i < runs; i++)); do
  canon+=("$(seconds kapsync_ingest "$work/big.csv" "$work/k.db")")
  euro+=("$(seconds eu_ingest)")
done
c=$(median "${canon[@]}"); e=$(median "${euro[@]}")
printf 'canonical UTF-8 , ISO dates:      %.2f s  (runs: %s)\n' "$c" "${canon[*]}"
printf 'Windows-1252 ; dd/mm/yyyy + zone: %.2f s  (runs: %s)\n' "$e" "${euro[*]}"
printf 'ratio european/canonical:         %.2f  (goal: <= 1.25)\n' "$(echo "$e / $c" | bc -l)"
rm -f "$work/m.db"*
eu_peak=$(/usr/bin/time -f '%M' "$bin" --db "$work/m.db" --no-progress -q ingest --mapping "$work/eu.toml" "$work/eu.csv" --run bench 2>&1 >/dev/null | tail -1 | awk '{printf "%.1f", $1/1024}')
printf 'peak memory, european %d rows: %s MiB  (goal: < 64)\n' "$rows" "$eu_peak"
init() { rm -f "$work/init.toml"; "$bin" mapping init "$work/eu.csv" -o "$work/init.toml" >/dev/null; }
printf 'mapping init on it:               %.2f s  (goal: < 2)\n' "$(seconds init)"
# Every row of the European file is valid: the bench compares like with like.
"$bin" --db "$work/m.db" --no-progress status --run bench | grep -E '^  (pending|invalid)' 
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
