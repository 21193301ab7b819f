#!/usr/bin/env bash
# Build the Lambda artifact: a zip for the `provided.al2023` runtime holding the `imgsvc`
# binary, statically linked against musl, and the `bootstrap` Lambda executes.
#
#   deploy/package.sh [--arch x86_64|arm64] [--out DIR]
#   deploy/package.sh --binary PATH [--out DIR]
#
# → DIR/imgsvc-lambda-<arch>.zip (DIR defaults to target/lambda/dist), the path printed last,
# and a copy as DIR/imgsvc-lambda.zip, the one deploy/template.yaml's CodeUri names.
# docs/deploying.md has the why; in short:
# - musl, static: the binary then needs nothing from the runtime's glibc (AL2023 has 2.34,
#   this Debian 12 box 2.36; a glibc build from here can pick up newer symbol versions).
#   libwebp's and SQLite's C (and aws-lc's) are compiled by musl-gcc (apt: musl-tools).
# - arm64 (Graviton): Debian 12's apt has no aarch64 musl C compiler, only
#   gcc-aarch64-linux-gnu, so arm64 is a glibc build (aarch64-unknown-linux-gnu); the script
#   then refuses a binary that needs any glibc symbol newer than AL2023's 2.34.
# - `bootstrap` is a two-line sh script running `imgsvc serve`: Lambda starts `bootstrap`
#   with no arguments, `imgsvc` needs its subcommand, and `serve` switches to the Lambda
#   runtime when AWS_LAMBDA_RUNTIME_API is set.
# - `--binary PATH` packages an `imgsvc` already built for this machine (x86_64) instead of
#   building one, refusing it if it needs a glibc symbol newer than 2.34. CI packages its
#   test build this way and runs the zip with deploy/smoke.py: the packaging, the bootstrap
#   and the Lambda runtime path are checked on every run without a second, release build.
# - Its own target dir (target/lambda, override with CARGO_TARGET_DIR) so a ~10 min release
#   build never holds the lock of the target dir everyone else builds in.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=x86_64
out=target/lambda/dist
prebuilt=
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --binary) prebuilt=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "usage: deploy/package.sh [--arch x86_64|arm64 | --binary PATH] [--out DIR]" >&2; exit 2 ;;
  esac
done

say() { printf '\n==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# provided.al2023 has glibc 2.34: refuse a binary that needs a newer symbol version.
check_glibc() { # objdump binary
  local newest
  newest=$("$1" -T "$2" | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -n1)
  if [ "$(printf '%s\nGLIBC_2.34\n' "$newest" | sort -V | tail -n1)" != GLIBC_2.34 ]; then
    echo "error: $2 needs $newest; provided.al2023 has glibc 2.34" >&2
    exit 1
  fi
  say "newest glibc symbol version needed: $newest (AL2023: 2.34)"
}

if [ -n "$prebuilt" ]; then
  [ "$(uname -m)" = x86_64 ] || { echo "error: --binary packages x86_64 builds only" >&2; exit 1; }
  [ -x "$prebuilt" ] || { echo "error: $prebuilt is not an executable" >&2; exit 1; }
  command -v zip >/dev/null || { say "apt-get install zip"; as_root apt-get install -y -qq zip >/dev/null; }
  binary=$prebuilt
  if file -L "$binary" | grep -q 'dynamically linked'; then
    check_glibc objdump "$binary"
  fi
  strip_tool=strip
else
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
    arch=arm64
    target=aarch64-unknown-linux-gnu
    if ! have_pkg gcc-aarch64-linux-gnu; then
      say "apt-get install gcc-aarch64-linux-gnu"
      as_root apt-get update -qq
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu >/dev/null
    fi
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    ;;
  *) echo "error: --arch must be x86_64 or arm64" >&2; exit 2 ;;
esac

rustup target list --installed | grep -qx "$target" || rustup target add "$target"
command -v zip >/dev/null || { say "apt-get install zip"; as_root apt-get install -y -qq zip >/dev/null; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/lambda}
say "cargo build --release -p imgsvc-lambda --target $target (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release --locked -p imgsvc-lambda --bin imgsvc --target "$target"

binary="$CARGO_TARGET_DIR/$target/release/imgsvc"
case "$target" in
  *-musl)
    # Static, or it would look for a loader the runtime may not have.
    if file "$binary" | grep -q 'dynamically linked'; then
      echo "error: $binary is dynamically linked" >&2
      exit 1
    fi
    strip_tool=strip ;;
  *-gnu)
    # provided.al2023 has glibc 2.34: refuse anything that needs a newer symbol version.
    check_glibc aarch64-linux-gnu-objdump "$binary"
    strip_tool=aarch64-linux-gnu-strip ;;
esac

fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$binary" "$stage/imgsvc"
"$strip_tool" "$stage/imgsvc"
cat >"$stage/bootstrap" <<'EOF'
#!/bin/sh
exec "${LAMBDA_TASK_ROOT:-$(dirname "$0")}/imgsvc" serve
EOF
chmod 0755 "$stage/imgsvc" "$stage/bootstrap"

mkdir -p "$out"
zip_path="$(cd "$out" && pwd)/imgsvc-lambda-$arch.zip"
rm -f "$zip_path"
(cd "$stage" && zip -q -9 -X "$zip_path" bootstrap imgsvc)
cp "$zip_path" "$(dirname "$zip_path")/imgsvc-lambda.zip"
say "$(stat -c %s "$stage/imgsvc") bytes unzipped, $(stat -c %s "$zip_path") bytes zipped"
echo "$zip_path"
