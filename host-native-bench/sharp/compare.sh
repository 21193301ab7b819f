#!/usr/bin/env bash
# imgsvc beside sharp on the corpus, in one run: installs sharp (npm; its prebuilt libvips
# comes inside the npm packages), builds `compare` and runs it. Arguments go to `compare`:
#
#   host-native-bench/sharp/compare.sh [--runs 5] [--limit N] [--json report.json] [--out DIR]
#
# PROFILE=dev uses the test profile (CI's smoke: no release build); default release.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

if [ ! -d "$here/node_modules/sharp" ]; then
  npm ci --prefix "$here" --no-audit --no-fund --loglevel=error
fi
profile=${PROFILE:-release}
cargo build --locked --profile "$profile" -p imgsvc-native-bench --bin compare
dir=$profile
[ "$profile" = dev ] && dir=debug
exec "${CARGO_TARGET_DIR:-$root/target}/$dir/compare" "$@"
