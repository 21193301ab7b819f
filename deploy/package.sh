#!/usr/bin/env bash
# Build the Lambda artifact: a zip for the `provided.al2023` runtime holding the `imgsvc`
# binary, statically linked against musl, and the `bootstrap` Lambda executes.
#
#   deploy/package.sh [--arch x86_64|arm64] [--out DIR]
#
# → DIR/imgsvc-lambda-<arch>.zip (DIR defaults to target/lambda/dist), the path printed last.
# README "Deploying to AWS" has the why; in short:
# - musl, static: the binary then needs nothing from the runtime's glibc (AL2023 has 2.34,
#   this Debian 12 box 2.36; a glibc build from here can pick up newer symbol versions).
#   libwebp's and SQLite's C (and aws-lc's) are compiled by musl-gcc (apt: musl-tools).
# - arm64 (Graviton) uses the same recipe with an aarch64 musl C compiler; Debian 12 has
#   none in apt (gcc-aarch64-linux-gnu targets glibc only), so --arch arm64 stops and says
#   so (README "Deploying to AWS": why, and what would make it work).
# - `bootstrap` is a two-line sh script running `imgsvc serve`: Lambda starts `bootstrap`
#   with no arguments, `imgsvc` needs its subcommand, and `serve` switches to the Lambda
#   runtime when AWS_LAMBDA_RUNTIME_API is set.
# - Its own target dir (target/lambda, override with CARGO_TARGET_DIR) so a ~10 min release
#   build never holds the lock of the target dir everyone else builds in.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=x86_64
out=target/lambda/dist
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "usage: deploy/package.sh [--arch x86_64|arm64] [--out DIR]" >&2; exit 2 ;;
  esac
done

say() { printf '\n==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

case "$arch" in
  x86_64|amd64)
    arch=x86_64
    target=x86_64-unknown-linux-musl
    if ! have_pkg musl-tools; then
      say "apt-get install musl-tools"
      as_root apt-get update -qq
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null
    fi
    export CC_x86_64_unknown_linux_musl=musl-gcc
    export AR_x86_64_unknown_linux_musl=ar
    ;;
  arm64|aarch64)
    cat >&2 <<'EOF'
error: no arm64 build from this machine: Rust's aarch64-unknown-linux-musl target needs an
aarch64 musl C compiler for libwebp, SQLite and aws-lc, and Debian 12's apt has none
(gcc-aarch64-linux-gnu links against Debian's glibc 2.36, newer than AL2023's 2.34; musl-tools
is native only). See README "Deploying to AWS" for what would make it work.
EOF
    exit 1
    ;;
  *) echo "error: --arch must be x86_64 or arm64" >&2; exit 2 ;;
esac

rustup target list --installed | grep -qx "$target" || rustup target add "$target"
command -v zip >/dev/null || { say "apt-get install zip"; as_root apt-get install -y -qq zip >/dev/null; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/lambda}
say "cargo build --release -p imgsvc-lambda --target $target (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release --locked -p imgsvc-lambda --bin imgsvc --target "$target"

binary="$CARGO_TARGET_DIR/$target/release/imgsvc"
# Static, or it would look for a loader the runtime may not have.
if file "$binary" | grep -q 'dynamically linked'; then
  echo "error: $binary is dynamically linked" >&2
  exit 1
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$binary" "$stage/imgsvc"
strip "$stage/imgsvc"
cat >"$stage/bootstrap" <<'EOF'
#!/bin/sh
exec "${LAMBDA_TASK_ROOT:-$(dirname "$0")}/imgsvc" serve
EOF
chmod 0755 "$stage/imgsvc" "$stage/bootstrap"

mkdir -p "$out"
zip_path="$(cd "$out" && pwd)/imgsvc-lambda-$arch.zip"
rm -f "$zip_path"
(cd "$stage" && zip -q -9 -X "$zip_path" bootstrap imgsvc)
say "$(stat -c %s "$stage/imgsvc") bytes unzipped, $(stat -c %s "$zip_path") bytes zipped"
echo "$zip_path"
