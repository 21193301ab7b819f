#!/usr/bin/env bash
# Builds the npm package into host-wasm/dist/ (docs/browser-package.md):
#   the base module: the core for wasm32-unknown-unknown (+simd128, libwebp's C via clang +
#   wasi-libc, see .cargo/config.toml) → wasm-bindgen --target web;
#   the codecs module (AVIF, HEIC, JPEG XL, TIFF, loaded on first use): the sandbox's
#   wasm32-wasip1 guest, the core with every decoder, stripped of its names;
#   the JavaScript wrappers, types, preview page and package.json beside them.
# Needs: the wasm32-unknown-unknown target and wasm-bindgen-cli at Cargo.lock's version
# (scripts/test-wasm installs both).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="${IMGSVC_WASM_DIST:-$here/dist}"  # elsewhere for experiments

cargo build --locked --release -p imgsvc-wasm --target wasm32-unknown-unknown
module="$target_dir/wasm32-unknown-unknown/release/imgsvc_wasm.wasm"

# No wasm-opt: Debian's binaryen (108) gains 2 % raw and 0.3 % gzipped over this, with no
# speed change, and breaks the externref table if run after wasm-bindgen
# (docs/measurements/2026-11-23-browser-package.md).
rm -rf "$out"
mkdir -p "$out"
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section \
  --out-dir "$out" "$module"

# libwebp's C links wasi-libc, whose stdio imports three WASI calls that never run; the glue
# would import them from a bare "wasi_snapshot_preview1", so point it at a stub beside it.
sed -i 's|from "wasi_snapshot_preview1"|from "./wasi_stub.js"|' "$out/imgsvc_wasm.js"
if grep -q '^import .* from "[^.]' "$out/imgsvc_wasm.js"; then
  echo "error: the glue imports a bare module:" >&2
  grep '^import ' "$out/imgsvc_wasm.js" >&2
  exit 1
fi
wasm="$out/imgsvc_wasm_bg.wasm"

# The codecs module is the service sandbox's guest, built in release (the sandbox's tests use
# a debug build; its outputs are the same bytes, host-wasm/test checks them against native).
cargo build --locked --release -p imgsvc-sandbox-guest --target wasm32-wasip1
llvm-strip --strip-all -o "$out/imgsvc_codecs.wasm" "$target_dir/wasm32-wasip1/release/imgsvc-sandbox-guest.wasm"

cp "$here"/js/*.js "$here"/js/index.d.ts "$here"/js/package.json "$out/"
cp "$here"/page/index.html "$here"/page/preview.js "$here"/page/preview.css "$out/"
cp "$here/README.md" "$out/README.md"

for module in "$wasm" "$out/imgsvc_codecs.wasm"; do
  echo "built $(basename "$module"): $(stat -c %s "$module") bytes ($(gzip -9 -c "$module" | wc -c) gzipped)"
done
