#!/usr/bin/env bash
# Builds the npm package into host-wasm/dist/ (README "Browser package"):
#   the core for wasm32-unknown-unknown (+simd128, libwebp's C via clang + wasi-libc,
#   see .cargo/config.toml) → wasm-bindgen --target web → wasm-opt (when installed) →
#   the JavaScript wrappers, types, preview page and package.json beside it.
# Needs: the wasm32-unknown-unknown target, wasm-bindgen-cli at Cargo.lock's version;
# wasm-opt (Debian's binaryen) is used when present. scripts/test-wasm installs all three.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$here/dist"

cargo build --locked --release -p imgsvc-wasm --target wasm32-unknown-unknown
module="$target_dir/wasm32-unknown-unknown/release/imgsvc_wasm.wasm"

# wasm-opt runs on rustc's module, before wasm-bindgen: Debian's binaryen (108) mistypes the
# externref table that wasm-bindgen adds, so after it the module fails to instantiate.
# Measured: 7 % smaller raw (names dropped, -3 % code), no speed change (README).
rm -rf "$out"
mkdir -p "$out"
if [ "${IMGSVC_WASM_OPT:-1}" != 0 ] && command -v wasm-opt >/dev/null; then
  mkdir -p "$target_dir/wasm-opt"
  # The features rustc enables for wasm32, plus simd128 from .cargo/config.toml.
  wasm-opt -O3 --strip-debug --strip-producers \
    --enable-simd --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
    "$module" -o "$target_dir/wasm-opt/imgsvc_wasm.wasm"
  module="$target_dir/wasm-opt/imgsvc_wasm.wasm"
fi
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

cp "$here"/js/*.js "$here"/js/index.d.ts "$here"/js/package.json "$out/"
cp "$here"/page/index.html "$here"/page/preview.js "$here"/page/preview.css "$out/"
cp "$here/README.md" "$out/README.md"

raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "built $out: imgsvc_wasm_bg.wasm $raw bytes ($gz gzipped)"
