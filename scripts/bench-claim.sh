#!/usr/bin/env bash
# Claim benchmark: ROWS rows as ROWS/100 tickets x 100 consecutive rows (a history export
# sorted by ticket) against ROWS distinct tickets, each drained by `kapsync run --rate 0
# --concurrency 64` into a fresh `kapsync simulate`, alternating for ROUNDS rounds in the same
# script run. Goal (issue 10): the grouped drain reaches >= 0.8x the distinct drain's rate,
# at 100,000 rows and at 1,000,000 (`scripts/bench-claim.sh 1000000`).
#
#   scripts/bench-claim.sh [ROWS] [ROUNDS]   (defaults 100000 and 3; needs python3, bc, curl)
#
# Every row's comment differs, so nothing is skipped as unchanged. Each drain gets a fresh
# copy of its ingested database and a fresh simulator (whose ledger grows with every
# request). Honours CARGO_TARGET_DIR; KAPSYNC_BIN=PATH uses that binary instead of a release build.
set -euo pipefail
rows="${1:-100000}"
rounds="${2:-3}"
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
if [[ -n "${KAPSYNC_BIN:-}" ]]; then
  cp "$KAPSYNC_BIN" "$work/kapsync"
else
  cargo build --release --quiet
  cp "${CARGO_TARGET_DIR:-target}/release/kapsync" "$work/kapsync"
fi
bin="$work/kapsync"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
echo "machine: $(nproc) cores, load average at start:$(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/ /')"

start_sim() { # start_sim NAME: starts a simulator and sets $url
  rm -f "$work/$1.out" # an earlier round's address would send this drain to a closed port
  "$bin" -q simulate --port 0 >"$work/$1.out" 2>"$work/$1.err" &
  pids+=($!)
  for _ in $(seq 200); do [[ -s "$work/$1.out" ]] && break; sleep 0.05; done
  url=$(head -n1 "$work/$1.out" | sed -n 's/^listening on //p')
  [[ -n "$url" ]] || { echo "the simulator did not start" >&2; exit 1; }
}
stop_sim() { kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=(); }

python3 - "$rows" "$work" <<'PY'
import sys
n, work = int(sys.argv[1]), sys.argv[2]
with open(f"{work}/distinct.csv", "w") as f:
    f.write("ticket_id,sub_status,comment,queue\n")
    for i in range(n):
        f.write(f"{200000000000 + i},CL,row {i},L1\n")
with open(f"{work}/grouped.csv", "w") as f:
    f.write("ticket_id,sub_status,comment,queue\n")
    for i in range(n):
        f.write(f"{200000000000 + i // 100},CL,row {i},L1\n")
PY
for kind in distinct grouped; do
  "$bin" --db "$work/$kind.db" --no-progress -q ingest "$work/$kind.csv" --run bench >/dev/null
done

drain() { # drain KIND: prints rows/s of a drain of a fresh copy of KIND's database
  rm -f "$work"/k.db*
  cp "$work/$1.db" "$work/k.db"
  start_sim "$1"
  local start end ok
  start=$(date +%s.%N)
  KAPTURE_TOKEN=bench "$bin" --db "$work/k.db" --no-progress -q run --run bench \
    --base-url "$url" --rate 0 --concurrency 64 --json >"$work/run.json"
  end=$(date +%s.%N)
  stop_sim
  ok=$(python3 -c "import json; print(json.load(open('$work/run.json'))['runs'][0]['counts']['succeeded'])")
  [[ "$ok" == "$rows" ]] || { echo "$1: only $ok of $rows rows succeeded" >&2; exit 1; }
  echo "$ok / ($end - $start)" | bc -l
}

ratios=()
for round in $(seq "$rounds"); do
  d=$(drain distinct)
  g=$(drain grouped)
  ratio=$(echo "$g / $d" | bc -l)
  ratios+=("$ratio")
  printf 'round %d: %d distinct tickets %.0f rows/s | %d tickets x 100 rows %.0f rows/s | ratio %.2f\n' \
    "$round" "$rows" "$d" "$((rows / 100))" "$g" "$ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
printf 'median ratio grouped/distinct over %d rounds at %d rows: %.2f  (goal: >= 0.80)\n' "$rounds" "$rows" "$median"
echo "load average at end:$(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/ /')"
