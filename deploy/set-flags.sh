#!/usr/bin/env bash
# Flip migration flags on a deployed function without touching its other variables.
#
#   deploy/set-flags.sh FUNCTION NAME=VALUE...
#   deploy/set-flags.sh imgsvc-production-gallery ROLLOUT_PERCENTAGE=0
#
# `aws lambda update-function-configuration --environment Variables={…}` (the seeds'
# command) REPLACES the whole environment: run as written it would drop the bucket, table,
# secret and database URL, and the function would stop starting. This reads the current
# variables, changes only the named flags, validates them as the binary does (a bad value
# makes `imgsvc serve` refuse to start), writes them back and waits for the update. New
# instances start with the new values within seconds; in-flight requests finish on the old.
#
# The stack's parameters still hold the old values: the next `sam deploy` puts them back
# unless it passes the same values (--parameter-overrides RolloutPercentage=… etc.).
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,15p' "$0" >&2
  exit 2
fi
function_name=$1
shift

umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT  # the environment holds secrets: never leave it on disk

aws lambda get-function-configuration --function-name "$function_name" \
  --query 'Environment' --output json >"$work/current.json"

python3 - "$work/current.json" "$work/new.json" "$@" <<'EOF'
import json, sys

current_path, new_path, *assignments = sys.argv[1:]
with open(current_path) as f:
    env = (json.load(f) or {}).get("Variables") or {}

def boolean(v):
    if v not in ("true", "false"):
        raise ValueError("true or false")
def percentage(v):
    if not v.isdigit() or int(v) > 100:
        raise ValueError("an integer 0-100")
def millis(v):
    if not v.isdigit() or int(v) == 0:
        raise ValueError("a positive integer (milliseconds)")

FLAGS = {
    "ENABLE_DYNAMODB_DUAL_WRITE": boolean,
    "USE_IMAGE_SERVICE": boolean,
    "SHADOW_READS": boolean,
    "ROLLOUT_PERCENTAGE": percentage,
    "IMAGE_SERVICE_TIMEOUT_MS": millis,
    "CIRCUIT_BREAKER_FAILURES": millis,
    "CIRCUIT_BREAKER_COOLDOWN_MS": millis,
}
if "IMGSVC_LEGACY_DATABASE_URL" not in env:
    sys.exit("error: this function has no IMGSVC_LEGACY_DATABASE_URL: the flags only act on the gallery function")
for assignment in assignments:
    name, sep, value = assignment.partition("=")
    if not sep or name not in FLAGS:
        sys.exit(f"error: {assignment!r}: expected NAME=VALUE with NAME one of {', '.join(FLAGS)}")
    try:
        FLAGS[name](value)
    except ValueError as e:
        sys.exit(f"error: {name} must be {e}")
    print(f"{name}: {env.get(name, '(unset)')} -> {value}", file=sys.stderr)
    env[name] = value
with open(new_path, "w") as f:
    json.dump({"Variables": env}, f)
EOF

aws lambda update-function-configuration --function-name "$function_name" \
  --environment "file://$work/new.json" --query 'LastUpdateStatus' --output text >/dev/null
aws lambda wait function-updated --function-name "$function_name"
echo "updated $function_name; remember the stack parameters (see the header of $0)" >&2
