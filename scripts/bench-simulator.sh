#!/usr/bin/env bash
# Measures how many Update Ticket requests per second `kapsync simulate` answers with no
# faults, under wrk with 64 connections. Usage: scripts/bench-simulator.sh [DURATION] [THREADS]
# Needs wrk (apt-get install -y wrk). Honours CARGO_TARGET_DIR.
set -euo pipefail

duration="${1:-10s}"
threads="${2:-2}"
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 2; }
cargo build --release --quiet
binary="$target_dir/release/kapsync"

work="$(mktemp -d)"
sim_pid=""
cleanup() {
    if [[ -n "$sim_pid" ]]; then kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$binary" -q simulate --port 0 >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
for _ in $(seq 100); do
    [[ -s "$work/sim.out" ]] && break
    sleep 0.05
done
url="$(head -n1 "$work/sim.out" | sed -n 's/^listening on //p')"
[[ -n "$url" ]] || { echo "the simulator did not start:" >&2; cat "$work/sim.err" >&2; exit 1; }

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.path = "/update-ticket-from-other-source.html/v.2.0"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic YmVuY2g6YmVuY2g="
wrk.body = '[{"ticket_id":"123456789012","sub_status":"CL","comment":"benchmark","callback_time":"2024-05-01 09:30:00","queue":"L1"}]'
LUA

echo "simulator at $url; wrk -t$threads -c64 -d$duration"
wrk -t"$threads" -c64 -d"$duration" --latency -s "$work/post.lua" "$url" | tee "$work/wrk.out"
stats="$(curl -s "$url/_sim/stats" 2>/dev/null || true)"
echo "simulator stats: ${stats:-unavailable}"
echo "requests/s: $(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.out")"
