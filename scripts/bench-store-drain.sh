#!/usr/bin/env bash
# The drain's SQLite work alone: `examples/store_drain.rs` claims and stores outcomes for
# ROWS ingested rows on one thread, with no HTTP, so what the schema costs per row drained
# shows without the client, the server and the scheduler. Prints rows/s, KB written per row
# (bytes the process handed to write/pwrite: WAL frames and checkpoints), CPU seconds.
#
#   scripts/bench-store-drain.sh [ROWS] [ROUNDS]           distinct random 12-digit tickets (the
#                                                          drain benchmark's file)
#   scripts/bench-store-drain.sh [ROWS] [ROUNDS] grouped   ROWS/100 tickets x 100 consecutive
#       rows (bench-claim.sh's grouped file), 512 chains of 32 going, one row of each chain per
#       commit as the engine sends them: `steps` stores each success on its row, `journal`
#       appends it to the journal of chain steps (migration 0011, what the engine does),
#       alternating in the same round.
# Honours CARGO_TARGET_DIR.
set -euo pipefail
rows="${1:-100000}"
rounds="${2:-3}"
shape="${3:-distinct}"
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet --example store_drain
cargo build --release --quiet
bin="$target_dir/release/kapsync"
example="$target_dir/release/examples/store_drain"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$rows" "$work/rows.csv" "$shape" <<'PY'
import random, sys
n, path, shape = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if shape == "grouped":
    ids = [200000000000 + i // 100 for i in range(n)]
else:
    ids = random.Random(20261201).sample(range(100000000000, 1000000000000), n)
with open(path, "w") as f:
    f.write("ticket_id,sub_status,comment,queue\n")
    for i, ticket in enumerate(ids):
        f.write(f"{ticket},CL,benchmark row {i},L1\n")
PY
"$bin" --db "$work/base.db" --no-progress -q ingest "$work/rows.csv" --run bench >/dev/null
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ "$shape" == "grouped" ]]; then modes=(steps journal); args=(512 512 32); else modes=(batch); args=(512 256 32); fi
for round in $(seq "$rounds"); do
  for mode in "${modes[@]}"; do
    rm -f "$work"/s.db*
    cp "$work/base.db" "$work/s.db"
    out=$( { /usr/bin/time -f '%U %S' "$example" "$work/s.db" 1 "${args[@]}" "$mode"; } 2>&1 )
    echo "round $round $mode: $(echo "$out" | head -n1), CPU user+sys $(echo "$out" | tail -n1 | awk '{print $1 + $2}') s"
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
