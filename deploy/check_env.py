#!/usr/bin/env python3
"""Every environment variable the `imgsvc` binary reads is set by the template, or listed
here as intentionally unset with the reason.

The names come from the binary's sources (host-lambda/src, core/src): clap's
`env = "NAME"`, `std::env::var("NAME")` / `var_os("NAME")`, and the migration flags'
`lookup("NAME")`. Test-only names (IMGSVC_TEST_*) are ignored. Also fails when the
template sets a name the binary doesn't read (a typo is a silently missing setting), when
an UNSET entry is stale, and when a function lacks what `serve` needs to start in Lambda.

    python3 deploy/check_env.py [--template deploy/template.yaml]

Needs PyYAML (scripts/test-deploy runs it with cfn-lint's venv, which has it).
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "host-lambda" / "src", ROOT / "core" / "src"]

PATTERNS = [
    re.compile(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"'),
    re.compile(r'\benv::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"\s*\)'),
    re.compile(r'\blookup\(\s*"([A-Z][A-Z0-9_]*)"\s*\)'),
]
TEST_ONLY = re.compile(r"^IMGSVC_TEST_")

# Read by the binary, deliberately not set by the template.
UNSET = {
    "AWS_LAMBDA_RUNTIME_API": "set by Lambda itself (reserved); it is what makes `serve` run under the runtime",
    "IMGSVC_BIND": "no socket in Lambda: requests come through the runtime API",
    "IMGSVC_PUBLIC_URL": "base of local /files URLs only; on S3 the URLs are IMGSVC_CDN_URL's",
    "IMGSVC_S3_FORCE_PATH_STYLE": "for local emulators (moto); real S3 takes virtual-hosted URLs",
    "IMGSVC_JWKS_FILE": "the zip holds no JWKS file; IMGSVC_JWKS (inline) is the template's knob",
    "IMGSVC_MAX_JSON_BODY_BYTES": "the default (64 KiB) fits every valid JSON body many times over",
    "IMGSVC_MAX_FORM_PARTS": "the default (128 parts) fits every valid upload form",
    "IMGSVC_MAX_FORM_TEXT_BYTES": "the default (64 KiB) fits every valid upload form's text",
    "IMGSVC_JWKS_SERVICE_SCOPE": "off (the default): the identity provider's tokens and the "
    "authorizer's claims never make a service caller; nothing in the deployment acts for "
    "other users over HTTP (the migration commands use the stores directly)",
    "GLIBC_TUNABLES": "glibc's own; unset, `imgsvc` makes its malloc settings itself at start "
    "(host-lambda/src/allocator.rs: one arena, 32 MiB mmap and 256 MiB trim thresholds); set "
    "it, or MALLOC_ARENA_MAX / MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_, only to override",
    "IMGSVC_FLAGS_FILE": "a function's files are read-only; the flags are environment variables there "
    "(runbooks flip them with deploy/set-flags.sh)",
    "IMGSVC_PREVIEW_DIR": "the browser preview page (host-wasm/dist) is not in the Lambda zip",
    "IMGSVC_SANDBOX": "opt-in wasmtime decoding; the Lambda zip holds no guest module (a "
    "function is already one process per request, with its own memory cap and timeout)",
    "IMGSVC_SANDBOX_MODULE": "only with IMGSVC_SANDBOX=wasm",
    "IMGSVC_SANDBOX_TIMEOUT_MS": "only with IMGSVC_SANDBOX=wasm",
    "IMGSVC_SANDBOX_MEMORY_MB": "only with IMGSVC_SANDBOX=wasm",
    "CIRCUIT_BREAKER_FAILURES": "migration flag with a fitting default (5); tune it with deploy/set-flags.sh",
    "CIRCUIT_BREAKER_COOLDOWN_MS": "migration flag with a fitting default (30 s); tune it with deploy/set-flags.sh",
    # The local server's connection edge and sweeps (settings/limits.rs): in Lambda, API Gateway
    # holds the connections and bodies, and a function has no background time.
    "IMGSVC_HEADER_TIMEOUT_MS": "local server's connections only (API Gateway's in Lambda)",
    "IMGSVC_BODY_IDLE_TIMEOUT_MS": "local server's connections only (API Gateway's in Lambda)",
    "IMGSVC_BODY_TIMEOUT_MS": "local server's connections only (API Gateway's in Lambda)",
    "IMGSVC_MAX_CONNECTIONS": "local server's connections only (API Gateway's in Lambda)",
    "IMGSVC_SWEEP_INTERVAL_SECONDS": "the local server's background sweep; Lambda has none",
    "IMGSVC_ORPHAN_GRACE_SECONDS": "the sweep's (serve on embedded storage, imgsvc sweep); default 1 h",
    "IMGSVC_PG_STATEMENT_TIMEOUT_MS": "default 30 s applies (gallery function)",
    # Limits whose defaults suit a function (one request per instance at a time).
    "IMGSVC_MAX_INFLIGHT_UPLOADS": "default applies (a function takes one request at a time)",
    "IMGSVC_PROCESSING_QUEUE_TIMEOUT_MS": "default applies (a function takes one request at a time)",
    "IMGSVC_AWS_CONNECT_TIMEOUT_MS": "default 3 s applies",
    "IMGSVC_AWS_ATTEMPT_TIMEOUT_MS": "default 10 s applies",
    "IMGSVC_AWS_OPERATION_TIMEOUT_MS": "default 30 s applies",
    "IMGSVC_HEALTH_TIMEOUT_MS": "default 2 s applies",
    "IMGSVC_IDEMPOTENCY_LEASE_SECONDS": "default 300 s applies",
    "IMGSVC_UPLOAD_GRACE_SECONDS": "default 15 min applies",
    "IMGSVC_MAX_OPEN_UPLOADS": "default 20 applies",
}

# Set by the template although no `env::var` names them: read through a library.
READ_ELSEWHERE = {
    "RUST_LOG": "tracing-subscriber's EnvFilter::try_from_default_env",
}

# What `serve` refuses to start without in Lambda (cli/serve.rs, serve_lambda).
LAMBDA_REQUIRED = ["IMGSVC_S3_BUCKET", "IMGSVC_DYNAMODB_TABLE", "IMGSVC_JWT_SECRET"]

# Read only by some functions: the legacy gallery and its flags live in the gallery function.
GALLERY_ONLY = {
    "IMGSVC_LEGACY_DATABASE_URL",
    "ENABLE_DYNAMODB_DUAL_WRITE",
    "USE_IMAGE_SERVICE",
    "ROLLOUT_PERCENTAGE",
    "SHADOW_READS",
    "IMAGE_SERVICE_TIMEOUT_MS",
}


def read_names() -> dict[str, set[str]]:
    """name -> the source files that read it."""
    found: dict[str, set[str]] = {}
    for base in SOURCES:
        for path in sorted(base.rglob("*.rs")):
            text = path.read_text(encoding="utf-8")
            for pattern in PATTERNS:
                for name in pattern.findall(text):
                    if not TEST_ONLY.match(name):
                        found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, …) kept as plain values."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}


CfnLoader.add_multi_constructor("!", _any_tag)


def functions(template: dict) -> dict[str, set[str]]:
    """function logical id -> the environment variable names it sets."""
    global_vars = (
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    out = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            continue
        variables = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
        out[logical_id] = set(global_vars) | set(variables)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", default=str(ROOT / "deploy" / "template.yaml"))
    args = parser.parse_args()

    read = read_names()
    template = yaml.load(pathlib.Path(args.template).read_text(encoding="utf-8"), Loader=CfnLoader)
    funcs = functions(template)
    set_anywhere = set().union(*funcs.values()) if funcs else set()
    problems = []

    if "IMGSVC_S3_BUCKET" not in read or "ENABLE_DYNAMODB_DUAL_WRITE" not in read:
        problems.append("the extraction found neither IMGSVC_S3_BUCKET nor the flags: patterns out of date?")
    if not funcs:
        problems.append(f"{args.template}: no Lambda functions")

    for name in sorted(read):
        if name in UNSET:
            if name in set_anywhere:
                problems.append(f"{name}: set by the template but listed as intentionally unset")
        elif name not in set_anywhere:
            problems.append(
                f"{name} (read in {', '.join(sorted(read[name]))}) is not set by any function "
                "in the template; set it or add it to UNSET in deploy/check_env.py with the reason"
            )
    for name in sorted(UNSET):
        if name not in read:
            problems.append(f"{name}: listed in UNSET but the binary no longer reads it")
    for function, names in sorted(funcs.items()):
        for name in sorted(names - set(read) - set(READ_ELSEWHERE)):
            problems.append(f"{function} sets {name}, which the binary never reads")
        for name in LAMBDA_REQUIRED:
            if name not in names:
                problems.append(f"{function} lacks {name}: `imgsvc serve` refuses to start in Lambda without it")
        for name in sorted((set(read) - set(UNSET) - GALLERY_ONLY) - names):
            problems.append(f"{function} lacks {name} (every function runs the same `serve`)")

    for problem in problems:
        print(f"check_env: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"check_env: {len(read)} variables read by the binary; "
        f"{len(read) - len(UNSET)} set by {', '.join(sorted(funcs))}, "
        f"{len(UNSET)} intentionally unset"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
