#!/usr/bin/env bash
# Long fuzzing, resumable: one libFuzzer at a time (fork mode with one job, so a known crash
# is recorded in fuzz-artifacts and fuzzing goes on) under `nice -n 19`, rotating
# through the targets in slots of SLOT seconds, with persistent corpora in
# ~/.cache/imgsvc/fuzz-corpus/<target>, logs in ~/.cache/imgsvc/fuzz-logs, crash inputs in
# ~/.cache/imgsvc/fuzz-artifacts/<target>. Each slot appends a line to
# fuzz-logs/slots.tsv (CPU seconds from /usr/bin/time, execs from libFuzzer).
#
#   fuzz/run-long.sh [--slot SECONDS] [--until HH:MM (UTC)] [--targets "probe process"]
#   fuzz/run-long.sh --summary        # CPU seconds and execs per target so far
#   --make-seeds: first write the shrunk corpus photos (examples/seeds.rs) to
#   ~/.cache/imgsvc/fuzz-seeds, used as extra seeds by probe and process from then on.
#
# Stops after the slot that would pass --until (each slot is shortened to end by then), or
# on Ctrl-C / SIGTERM (the running libFuzzer is stopped and its slot still recorded).
set -euo pipefail
source "$(dirname "$0")/common.sh"

slot=600
until_epoch=""
targets=("${FUZZ_TARGETS[@]}")
summary=false
make_seeds=false
while [ $# -gt 0 ]; do
  case "$1" in
    --slot) slot=$2; shift 2 ;;
    --until) until_epoch=$(date -u -d "$2" +%s); shift 2 ;;
    --targets) read -r -a targets <<<"$2"; shift 2 ;;
    --summary) summary=true; shift ;;
    --make-seeds) make_seeds=true; shift ;;
    *) echo "usage: $0 [--slot SECONDS] [--until HH:MM] [--targets \"t1 t2\"] [--make-seeds] | --summary" >&2; exit 2 ;;
  esac
done

mkdir -p "$FUZZ_LOGS"
slots="$FUZZ_LOGS/slots.tsv"
[ -f "$slots" ] || printf 'target\tstart_utc\twall_s\tuser_s\tsys_s\texecs\tcorpus_files\toom/timeout/crash\texit\n' >"$slots"

if $summary; then
  awk -F'\t' 'NR > 1 { cpu[$1] += $4 + $5; wall[$1] += $3; execs[$1] += $6; n[$1]++; files[$1] = $7 }
    END { printf "%-10s %6s %10s %10s %14s %8s\n", "target", "slots", "wall_s", "cpu_s", "execs", "corpus";
          for (t in cpu) printf "%-10s %6d %10d %10.0f %14d %8d\n", t, n[t], wall[t], cpu[t], execs[t], files[t] }' "$slots"
  exit 0
fi

fuzz_ensure_tools
fuzz_build
if $make_seeds; then
  # Shrunk corpus photos as extra seeds for the image targets (a stable build, in the
  # cache scripts/test uses).
  (cd "$REPO_ROOT" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}" nice -n 19 \
    cargo run -q -p imgsvc-fuzz --example seeds -- "$CACHE/fuzz-seeds" "$SHARED_CORPUS")
fi

child=""
# Stop libFuzzer itself (time's child) with SIGTERM: GNU time ignores SIGINT while its child
# runs, and libFuzzer, started in the background of a non-interactive shell, inherits SIGINT
# ignored; on SIGTERM it ends the run and prints its stats, so the slot is still recorded.
trap 'stopping=true; [ -n "$child" ] && pkill -TERM -P "$child" 2>/dev/null || true' INT TERM
stopping=false
while ! $stopping; do
  for target in "${targets[@]}"; do
    $stopping && break
    seconds=$slot
    if [ -n "$until_epoch" ]; then
      left=$((until_epoch - $(date -u +%s)))
      [ "$left" -lt 30 ] && { stopping=true; break; }
      [ "$left" -lt "$seconds" ] && seconds=$left
    fi
    corpus="$FUZZ_CORPUS/$target"
    artifacts="$FUZZ_ARTIFACTS/$target"
    mkdir -p "$corpus" "$artifacts"
    start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    log="$FUZZ_LOGS/$target-$start.log"
    timing="$FUZZ_LOGS/.time-$target"
    # In a session of its own whose scheduler autogroup is lowered too: with autogroups on
    # (the kernel default), `nice` ranks processes only inside one session's group, so a
    # fuzzer under `nice -n 19` still took a full share of the CPU beside a build started
    # from another session. (The script is not interactive, so `&` makes no process group
    # leader and setsid does not fork: $! stays time's PID.)
    # shellcheck disable=SC2046
    setsid sh -c 'echo 19 >/proc/self/autogroup 2>/dev/null; exec "$@"' lowered \
      nice -n 19 /usr/bin/time -f '%e %U %S' -o "$timing" \
      "$(fuzz_binary "$target")" $(fuzz_flags "$target") -max_total_time="$seconds" \
      -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
      -print_final_stats=1 -artifact_prefix="$artifacts/" \
      "$corpus" $(fuzz_seed_dirs "$target") >"$log" 2>&1 &
    child=$!
    status=0
    wait "$child" || status=$?
    # A signal interrupts `wait` before the child is gone: wait again for its stats.
    while kill -0 "$child" 2>/dev/null; do wait "$child" || status=$?; done
    child=""
    read -r wall user sys < <(tail -n1 "$timing" | awk '{print $(NF-2), $(NF-1), $NF}')
    # Fork mode: the last "#N: cov: … oom/timeout/crash: a/b/c" line has the totals.
    execs=$(grep -o '^#[0-9]*: cov' "$log" | tail -n1 | tr -dc '0-9')
    problems=$(grep -o 'oom/timeout/crash: [0-9/]*' "$log" | tail -n1 | cut -d' ' -f2)
    files=$(find "$corpus" -type f | wc -l)
    printf '%s\t%s\t%.0f\t%.1f\t%.1f\t%s\t%s\t%s\t%s\n' "$target" "$start" "$wall" "$user" "$sys" \
      "${execs:-0}" "$files" "${problems:-0/0/0}" "$status" >>"$slots"
    if [ "$status" -ne 0 ] && ! $stopping; then
      echo "$target: libFuzzer exited $status (see $log; inputs in $artifacts)" >&2
    fi
  done
  [ -z "$until_epoch" ] && [ "${IMGSVC_FUZZ_ONCE:-}" = 1 ] && break
done
"$0" --summary
