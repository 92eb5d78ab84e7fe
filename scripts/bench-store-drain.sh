#!/usr/bin/env bash
# The drain's SQLite work alone: `examples/store_drain.rs` claims and stores outcomes for
# ROWS ingested rows (distinct random 12-digit tickets, the drain benchmark's file) on one
# thread, with no HTTP, so what the schema costs per row drained shows without the client,
# the server and the scheduler. Prints rows/s, CPU seconds.
# Usage: scripts/bench-store-drain.sh [ROWS] [ROUNDS]   (honours CARGO_TARGET_DIR)
set -euo pipefail
rows="${1:-100000}"
rounds="${2:-3}"
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet --example store_drain
cargo build --release --quiet
bin="$target_dir/release/kapsync"
example="$target_dir/release/examples/store_drain"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
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
for round in $(seq "$rounds"); do
  rm -f "$work"/s.db*
  cp "$work/base.db" "$work/s.db"
  out=$( { /usr/bin/time -f '%U %S' "$example" "$work/s.db" 1 512 256; } 2>&1 )
  echo "round $round: $(echo "$out" | head -n1), CPU user+sys $(echo "$out" | tail -n1 | awk '{print $1 + $2}') s"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
