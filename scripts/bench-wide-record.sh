#!/usr/bin/env bash
# Memory of a CSV record far over --max-record-bytes that is all delimiters (issue 13): the
# reader keeps nothing per field once a record is over the limit, so a line of commas costs
# no more memory than a line of letters of the same length.
#
#   scripts/bench-wide-record.sh [MIB]   (default 256; needs GNU time)
#
# Prints the peak RSS of ingesting a file whose second line is MIB MiB of commas, and of one
# whose second line is MIB MiB of letters. Goal: both < 64 MiB. Honours CARGO_TARGET_DIR;
# KAPSYNC_BIN=path skips the release build (smoke: KAPSYNC_BIN=target/debug/kapsync ... 8).
set -euo pipefail
mib=${1:-256}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -n "${KAPSYNC_BIN:-}" ]]; then
  cp "$KAPSYNC_BIN" "$work/kapsync"
else
  cargo build --release --quiet
  cp "${CARGO_TARGET_DIR:-target}/release/kapsync" "$work/kapsync"
fi
bin=$work/kapsync
make() { # make FILE CHAR: header, a good row, MIB MiB of CHAR, a good row
  { printf 'ticket_id,sub_status\n100000000001,CL\n'
    head -c $((mib * 1024 * 1024)) /dev/zero | tr '\0' "$2"
    printf '\n100000000002,CL\n'; } > "$1"
}
peak() { # peak FILE: max RSS in MiB of an ingest, and its exit code (1: the long row is invalid)
  rm -f "$work/m.db"*
  /usr/bin/time -f '%M %x' "$bin" --db "$work/m.db" --no-progress -q ingest "$1" --run bench 2>&1 >/dev/null \
    | tail -1 | awk '{printf "%.1f MiB (exit %s)", $1/1024, $2}'
}
make "$work/commas.csv" ','
printf 'line of %d MiB of commas:  %s  (goal: < 64 MiB)\n' "$mib" "$(peak "$work/commas.csv")"
rm -f "$work/commas.csv"
make "$work/letters.csv" 'x'
printf 'line of %d MiB of letters: %s\n' "$mib" "$(peak "$work/letters.csv")"
