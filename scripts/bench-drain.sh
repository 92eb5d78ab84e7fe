#!/usr/bin/env bash
# Drain benchmark: `kapsync run --rate 0 --concurrency 64` draining 100,000 rows (distinct
# random 12-digit ticket ids in random order) into
# `kapsync simulate` (no faults), side by side with `wrk -c64` against the same simulator
# build in the same script run. The two alternate for ROUNDS rounds (this machine's speed
# drifts by a fifth over minutes), each with fresh simulators and a fresh copy of the ingested
# database; the median ratio is the figure.
# Usage: scripts/bench-drain.sh [ROWS] [WRK_DURATION] [ROUNDS]
# Needs wrk (apt-get install -y wrk). Honours CARGO_TARGET_DIR.
set -euo pipefail
rows="${1:-100000}"
duration="${2:-10s}"
rounds="${3:-3}"
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 2; }
cargo build --release --quiet
bin="$target_dir/release/kapsync"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

start_sim() { # start_sim NAME: starts a simulator and sets $url
  "$bin" -q simulate --port 0 >"$work/$1.out" 2>"$work/$1.err" &
  pids+=($!)
  for _ in $(seq 200); do [[ -s "$work/$1.out" ]] && break; sleep 0.05; done
  url=$(head -n1 "$work/$1.out" | sed -n 's/^listening on //p')
}

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.path = "/update-ticket-from-other-source.html/v.2.0"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic YmVuY2g6YmVuY2g="
wrk.body = '[{"ticket_id":"123456789012","sub_status":"CL","comment":"benchmark","queue":"L1"}]'
LUA
# Distinct random 12-digit ticket ids in random order, as real exports have them: sequential
# ids flatter the drain by about a fifth. Seeded, so every run of the script drains the same file.
python3 - "$rows" "$work/rows.csv" <<'PY'
import random, sys
n, path = int(sys.argv[1]), sys.argv[2]
ids = random.Random(20261201).sample(range(100000000000, 1000000000000), n)
with open(path, "w") as f:
    f.write("ticket_id,sub_status,comment,queue\n")
    for i, ticket in enumerate(ids):
        f.write(f"{ticket},CL,benchmark row {i},L1\n")
PY
"$bin" --db "$work/base.db" --no-progress -q ingest "$work/rows.csv" --run bench >/dev/null

stop_sim() { kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=(); }
ratios=()
for round in $(seq "$rounds"); do
  # The reference: wrk -c64 against a fresh simulator.
  start_sim wrk
  wrk_rps=$(wrk -t2 -c64 -d"$duration" -s "$work/post.lua" "$url" | awk '/^Requests\/sec:/ {print $2}')
  stop_sim
  # kapsync: drain a fresh copy of the ingested rows into a fresh simulator.
  rm -f "$work"/k.db*
  cp "$work/base.db" "$work/k.db"
  start_sim drain
  start=$(date +%s.%N)
  KAPTURE_TOKEN=bench "$bin" --db "$work/k.db" --no-progress -q run --run bench \
    --base-url "$url" --rate 0 --concurrency 64 --json >"$work/run.json"
  end=$(date +%s.%N)
  stats=$(curl -s "$url/_sim/stats" || true)
  stop_sim
  secs=$(echo "$end - $start" | bc -l)
  ok=$(python3 -c "import json; print(json.load(open('$work/run.json'))['runs'][0]['counts']['succeeded'])")
  drain_rps=$(echo "$ok / $secs" | bc -l)
  ratio=$(echo "$drain_rps / $wrk_rps" | bc -l)
  ratios+=("$ratio")
  printf 'round %d: wrk -t2 -c64 -d%s %.0f requests/s | kapsync run --rate 0 --concurrency 64: %d rows in %.2f s = %.0f rows/s | ratio %.2f\n' \
    "$round" "$duration" "$wrk_rps" "$ok" "$secs" "$drain_rps" "$ratio"
  echo "  simulator stats after the drain: $stats"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
printf 'median ratio kapsync/wrk over %d rounds: %.2f  (goal: >= 0.30)\n' "$rounds" "$median"
