# Shared by fuzz/smoke.sh and fuzz/run-long.sh (sourced): where things live, how the
# targets are built, and each target's libFuzzer limits. docs/fuzzing.md explains them.

FUZZ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "$FUZZ_ROOT")"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/imgsvc"
# Nightly + sanitizer-coverage products: never shared with the stable build cache, so kept
# apart (and warm between runs) here.
FUZZ_TARGET_DIR="${IMGSVC_FUZZ_TARGET_DIR:-$CACHE/fuzz-target}"
FUZZ_CORPUS="${IMGSVC_FUZZ_CORPUS:-$CACHE/fuzz-corpus}"
FUZZ_LOGS="${IMGSVC_FUZZ_LOGS:-$CACHE/fuzz-logs}"
FUZZ_ARTIFACTS="${IMGSVC_FUZZ_ARTIFACTS:-$CACHE/fuzz-artifacts}"
SHARED_CORPUS="${IMGSVC_SHARED_CORPUS:-$REPO_ROOT/../shared/corpus}"
# No AddressSanitizer by default: the code under test is Rust (bounds-checked; debug
# assertions and overflow checks are on), ASan would halve the exec rate and rebuild every
# dependency. FUZZ_SANITIZER=address for an ASan campaign (its own build products).
FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}"
FUZZ_TARGETS=(probe process multipart cursor auth patch flags avif heic jxl tiff)

fuzz_ensure_tools() {
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
}

fuzz_build() {
  # The fuzz package is a workspace of its own: start from the root's lock file so it
  # builds the same versions (cargo adds only libfuzzer-sys and what it needs).
  cp "$REPO_ROOT/Cargo.lock" "$FUZZ_ROOT/libfuzzer/Cargo.lock"
  (cd "$REPO_ROOT" && cargo +nightly fuzz build --fuzz-dir fuzz/libfuzzer -s "$FUZZ_SANITIZER" \
    --target-dir "$FUZZ_TARGET_DIR" "$@")
}

fuzz_binary() {
  echo "$FUZZ_TARGET_DIR/x86_64-unknown-linux-gnu/release/$1"
}

# libFuzzer limits per target: every run is bounded in time per input (-timeout, seconds)
# and in memory (-rss_limit_mb for the process, -malloc_limit_mb for any one allocation).
fuzz_flags() {
  case "$1" in
    # Headers only: no allocation near 64 MiB may happen (no pixel buffer before limits).
    probe) echo "-dict=$FUZZ_ROOT/dict/images.dict -timeout=5 -rss_limit_mb=512 -malloc_limit_mb=64 -max_len=131072" ;;
    # Policy: 256 KiB, 1 Mpx, any number of frames, 64 MiB allocation cap (fuzz/src/process.rs).
    # The per-format targets run the same check from their format's seeds.
    process|avif|heic|jxl|tiff) echo "-dict=$FUZZ_ROOT/dict/images.dict -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256 -max_len=131072" ;;
    # Room to cross the 16 KiB file limit of the fuzzed form.
    multipart) echo "-dict=$FUZZ_ROOT/dict/multipart.dict -timeout=5 -rss_limit_mb=512 -max_len=20000" ;;
    *) echo "-dict=$FUZZ_ROOT/dict/$1.dict -timeout=5 -rss_limit_mb=512 -max_len=4096" ;;
  esac
}

# Read-only seed directories for a target: the committed seeds, and for the image targets
# the small photos of the shared corpus (never copied into the repository) and, when
# present, the shrunk corpus images `fuzz/examples/seeds.rs` writes to $CACHE/fuzz-seeds.
fuzz_seed_dirs() {
  [ -d "$FUZZ_ROOT/seeds/$1" ] && echo "$FUZZ_ROOT/seeds/$1"
  case "$1" in
    probe | process)
      local small="$CACHE/fuzz-seeds/small-photos"
      if [ -d "$SHARED_CORPUS" ] && [ ! -d "$small" ]; then
        mkdir -p "$small"
        find "$SHARED_CORPUS" -maxdepth 1 -type f \( -name '*.jpg' -o -name '*.png' -o -name '*.gif' -o -name '*.webp' \) \
          -size -129k -exec ln -sf {} "$small/" \;
      fi
      [ -d "$small" ] && echo "$small"
      [ -d "$CACHE/fuzz-seeds/$1" ] && echo "$CACHE/fuzz-seeds/$1"
      ;;
  esac
  return 0
}
