#!/usr/bin/env bash
# Nightly re-ingest benchmark: a full export ingested once (night 1, then marked succeeded as its
# drain would leave it), then the next night's export with 1% of rows changed ingested into a new
# run. Reports both ingest times, their ratio, the rows left pending and the peak memory.
#
#   scripts/bench-nightly.sh [ROWS] [RUNS] [SHAPE]   (defaults 1000000, 3, snapshot; needs
#                                                   sqlite3, GNU time, bc)
#
# SHAPE `snapshot`: one row per ticket, the ticket is the sync key. SHAPE `events`: an event
# export, ROWS/1000 tickets x 1,000 events, `[delta] key = ["comment_id"]` (each probe must find
# its event among its ticket's 1,000).
#
# Goal (issue 10): night 2 <= 1.2x night 1, exactly ROWS/100 rows pending, peak < 64 MiB.
# Honours CARGO_TARGET_DIR; KAPSYNC_BIN=PATH uses that binary instead of a release build.
set -euo pipefail
rows=${1:-1000000}
runs=${2:-3}
shape=${3:-snapshot}
[[ "$shape" == snapshot || "$shape" == events ]] || { echo "SHAPE is snapshot or events" >&2; exit 2; }
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
echo "machine: $(nproc) cores, load average at start:$(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/ /')"

gen() { # gen N FILE CHANGED: a six-column snapshot export, one row per ticket (SHAPE events:
        # 1,000 rows per ticket and a comment_id column); with CHANGED=1 every 100th row has
        # another comment (1% changed)
  python3 - "$1" "$2" "$3" "$shape" <<'PY'
import random, sys
n, path, changed, events = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "events"
random.seed(1)
subs = ["P", "CL", "OP", "IN", "RS", "PE", "CRS", "CO"]
words = "customer called back refund shipped waiting agent resolved billing address order".split()
with open(path, "w") as f:
    f.write("ticket_id," + ("comment_id," if events else "") + "sub_status,comment,callback_time,queue,disposition\n")
    for i in range(n):
        tid = 100000000000 + (i // 1000 if events else i) * 7919 % (10**11)
        comment = " ".join(random.choice(words) for _ in range(6))
        if changed and i % 100 == 0:
            comment += " (updated)"
        cb = f"2026-{random.randint(1,12):02d}-{random.randint(1,28):02d} {random.randint(0,23):02d}:{random.randint(0,59):02d}:00"
        event = f"{i}," if events else ""
        f.write(f'{tid},{event}{random.choice(subs)},"{comment}",{cb},Queue {i % 7},Disposition {i % 5}\n')
PY
}
gen "$rows" "$work/night1.csv" 0
gen "$rows" "$work/night2.csv" 1
echo "input: $rows rows a night, $(du -m "$work/night1.csv" | cut -f1) MB, $((rows / 100)) changed on night 2"

seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
mapping=()
if [[ "$shape" == events ]]; then
  printf '[delta]\nkey = ["comment_id"]\n' >"$work/events.toml"
  mapping=(--mapping "$work/events.toml")
fi
ingest() { "$bin" --db "$work/k.db" --no-progress -q ingest "$1" "${mapping[@]}" --run "$2"; }

first=() ; second=() ; peaks=()
for ((i = 0; i < runs; i++)); do
  rm -f "$work/k.db"*
  first+=("$(seconds ingest "$work/night1.csv" night1)")
  # Night 1's drain, as it leaves the rows: succeeded (sending 1M rows is not what is measured).
  sqlite3 "$work/k.db" "UPDATE jobs SET state = 'succeeded', attempts = 1, updated_at = 1 WHERE state = 'pending';"
  s=$(date +%s.%N)
  peak=$(/usr/bin/time -f '%M' "$bin" --db "$work/k.db" --no-progress -q ingest "$work/night2.csv" "${mapping[@]}" --run night2 2>&1 >/dev/null | tail -1)
  e=$(date +%s.%N)
  second+=("$(echo "$e - $s" | bc -l)")
  peaks+=("$(echo "$peak / 1024" | bc -l)")
  pending=$(sqlite3 "$work/k.db" "SELECT count(*) FROM jobs WHERE state = 'pending';")
  skipped=$(sqlite3 "$work/k.db" "SELECT count(*) FROM jobs WHERE state = 'skipped';")
  echo "run $((i + 1)): night 1 ${first[-1]} s, night 2 ${second[-1]} s, pending $pending, skipped $skipped, peak ${peaks[-1]} MiB"
  if [[ "$pending" != "$((rows / 100))" ]]; then
    echo "FAIL: $pending rows pending after night 2, expected $((rows / 100))" >&2
    exit 1
  fi
done
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
a=$(median "${first[@]}"); b=$(median "${second[@]}"); p=$(median "${peaks[@]}")
printf 'night 1 ingest (median):   %.2f s\n' "$a"
printf 'night 2 ingest (median):   %.2f s\n' "$b"
printf 'ratio night 2 / night 1:   %.2f  (goal: <= 1.20)\n' "$(echo "$b / $a" | bc -l)"
printf 'peak memory night 2:       %.1f MiB  (goal: < 64)\n' "$p"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
