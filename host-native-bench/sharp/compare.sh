#!/usr/bin/env bash
# imgsvc beside sharp on the corpus, in one run: installs sharp (npm; its prebuilt libvips
# comes inside the npm packages), builds `compare` and runs it. Arguments go to `compare`:
#
#   host-native-bench/sharp/compare.sh [--runs 5] [--limit N] [--json report.json] [--out DIR]
#
# Release by default; IMGSVC_COMPARE_BIN=path runs a compare binary built already (CI's smoke
# runs the test build's, scripts/test-bench).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

if [ ! -d "$here/node_modules/sharp" ]; then
  npm ci --prefix "$here" --no-audit --no-fund --loglevel=error
fi
if [ -n "${IMGSVC_COMPARE_BIN:-}" ]; then
  exec "$IMGSVC_COMPARE_BIN" "$@"
fi
cargo build --locked --release -p imgsvc-native-bench --bin compare
exec "${CARGO_TARGET_DIR:-$root/target}/release/compare" "$@"
