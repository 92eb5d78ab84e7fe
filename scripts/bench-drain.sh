#!/usr/bin/env bash
# Drain benchmark: `kapsync run --rate 0 --concurrency 64` draining 100,000 rows into
# `kapsync simulate` (no faults), side by side with `wrk -c64` against the same simulator
# build in the same script run. Usage: scripts/bench-drain.sh [ROWS] [WRK_DURATION]
# Needs wrk (apt-get install -y wrk). Honours CARGO_TARGET_DIR.
set -euo pipefail
rows="${1:-100000}"
duration="${2:-10s}"
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

# 1. The reference: wrk -c64 against a fresh simulator.
start_sim wrk
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.path = "/update-ticket-from-other-source.html/v.2.0"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic YmVuY2g6YmVuY2g="
wrk.body = '[{"ticket_id":"123456789012","sub_status":"CL","comment":"benchmark","queue":"L1"}]'
LUA
wrk_rps=$(wrk -t2 -c64 -d"$duration" -s "$work/post.lua" "$url" | awk '/^Requests\/sec:/ {print $2}')
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()

# 2. kapsync: ingest ROWS rows (distinct tickets), then drain them into a fresh simulator.
python3 - "$rows" "$work/rows.csv" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("ticket_id,sub_status,comment,queue\n")
    for i in range(n):
        f.write(f"{200000000000 + i},CL,benchmark row {i},L1\n")
PY
"$bin" --db "$work/k.db" --no-progress -q ingest "$work/rows.csv" --run bench >/dev/null
start_sim drain
start=$(date +%s.%N)
KAPTURE_TOKEN=bench "$bin" --db "$work/k.db" --no-progress -q run --run bench \
  --base-url "$url" --rate 0 --concurrency 64 --json >"$work/run.json"
end=$(date +%s.%N)
secs=$(echo "$end - $start" | bc -l)
ok=$(python3 -c "import json,sys; print(json.load(open('$work/run.json'))['runs'][0]['counts']['succeeded'])")
drain_rps=$(echo "$ok / $secs" | bc -l)
stats=$(curl -s "$url/_sim/stats" || true)
printf 'wrk -t2 -c64 -d%s:                     %.0f requests/s\n' "$duration" "$wrk_rps"
printf 'kapsync run --rate 0 --concurrency 64: %d rows in %.2f s = %.0f rows/s\n' "$ok" "$secs" "$drain_rps"
printf 'ratio kapsync/wrk:                     %.2f  (goal: >= 0.30)\n' "$(echo "$drain_rps / $wrk_rps" | bc -l)"
echo "simulator stats: $stats"
