#!/usr/bin/env bash
# CI smoke of every fuzz target (scripts/test runs it): build the libFuzzer binaries
# (nightly, products kept in ~/.cache/imgsvc/fuzz-target), then run each target for
# SECONDS (default 8) from its seeds in a throwaway corpus, with the same limits as the long
# runs. Fails on any crash, timeout or memory-limit breach, printing the input to replay:
#   cargo +nightly fuzz run --fuzz-dir fuzz/libfuzzer -s none <target> <input>
#   (or commit it under fuzz/regressions/<target>/ and run the stable replay test)
#
# IMGSVC_FUZZ_SMOKE: 1 always (builds cold if need be), 0 never, auto (the default, what
# scripts/test uses) only when the fuzz build products exist: a cold nightly build of every
# target costs more than CI's budget has left (docs/fuzzing.md has the figures); the
# stable replay of seeds and regressions in `cargo nextest` runs either way.
set -euo pipefail
source "$(dirname "$0")/common.sh"
seconds=${1:-${IMGSVC_FUZZ_SMOKE_SECONDS:-8}}

case "${IMGSVC_FUZZ_SMOKE:-auto}" in
  0) echo "fuzz smoke skipped (IMGSVC_FUZZ_SMOKE=0)"; exit 0 ;;
  auto)
    for target in "${FUZZ_TARGETS[@]}"; do
      if [ ! -x "$(fuzz_binary "$target")" ]; then
        echo "fuzz smoke skipped: no fuzz build in $FUZZ_TARGET_DIR yet (cold, it is over CI's"
        echo "time budget); warm it once with IMGSVC_FUZZ_SMOKE=1 fuzz/smoke.sh"
        exit 0
      fi
    done ;;
esac

fuzz_ensure_tools
started=$(date +%s)
fuzz_build
built=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for target in "${FUZZ_TARGETS[@]}"; do
  mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
  log="$work/$target/log"
  # shellcheck disable=SC2046
  if "$(fuzz_binary "$target")" $(fuzz_flags "$target") -max_total_time="$seconds" \
    -print_final_stats=1 -artifact_prefix="$work/$target/artifacts/" \
    "$work/$target/corpus" $(fuzz_seed_dirs "$target") >"$log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1)
    printf '  %-10s ok, %s execs in %ss\n' "$target" "${execs:-?}" "$seconds"
  else
    failed+=("$target")
    echo "  $target FAILED:" >&2
    tail -n 40 "$log" >&2
    mkdir -p "$FUZZ_ARTIFACTS/$target"
    cp "$work/$target/artifacts/"* "$FUZZ_ARTIFACTS/$target/" 2>/dev/null || true
    echo "  inputs kept in $FUZZ_ARTIFACTS/$target/" >&2
  fi
done
echo "fuzz smoke: build $((built - started))s, runs $(($(date +%s) - built))s"
[ ${#failed[@]} -eq 0 ] || { echo "fuzz smoke failed: ${failed[*]}" >&2; exit 1; }
