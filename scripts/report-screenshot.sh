#!/usr/bin/env bash
# Renders kapsync reports to PNG with headless Chromium, at a desktop width (1280) and a phone
# width (390), to look at them. Not part of CI; installs Debian's chromium when missing.
#
#   scripts/report-screenshot.sh [REPORT.html ...]
#
# Without a file it builds a small month of history (scripts/bench-report.sh 60000 14) and
# renders its `--all` report and its last night's. PNGs go to $OUT (default ./screenshots).
# KAPSYNC_BIN=PATH uses that binary instead of a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-screenshots}
mkdir -p "$out"
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  apt-get update && apt-get install -y chromium
  browser=$(command -v chromium)
fi

reports=("$@")
if [ ${#reports[@]} -eq 0 ]; then
  if [ -z "${KAPSYNC_BIN:-}" ]; then
    cargo build --release --quiet
    KAPSYNC_BIN=${CARGO_TARGET_DIR:-target}/release/kapsync
  fi
  export KAPSYNC_BIN
  db=$(KEEP=1 scripts/bench-report.sh 60000 14 | sed -n 's/^kept: //p')
  "$KAPSYNC_BIN" --db "$db" -q report --all -o "$out/report-all.html"
  "$KAPSYNC_BIN" --db "$db" -q report --run night-14 -o "$out/report-night.html"
  reports=("$out/report-all.html" "$out/report-night.html")
fi

for report in "${reports[@]}"; do
  name=$(basename "$report" .html)
  for size in desktop:1280,2400 phone:390,1600; do
    png="$out/$name-${size%%:*}.png"
    # No network: the page must render from itself alone.
    "$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
      --hide-scrollbars --force-device-scale-factor=1 --window-size="${size#*:}" \
      --screenshot="$(realpath "$png")" "file://$(realpath "$report")" 2>/dev/null
    echo "$png"
  done
done
