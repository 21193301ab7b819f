#!/usr/bin/env python3
"""The wasmtime sandbox's overhead per photo: `imgsvc process` over a directory of photos,
native and with `--sandbox wasm`, RUNS times each (alternating), the median of each photo's
`ms` per mode (the core's time; with the sandbox that includes the fresh instance each call
gets, not the module's one-off compilation at start), then the median ratio over photos.

    cargo build --release -p imgsvc-lambda
    cargo build --release -p imgsvc-sandbox-guest --target wasm32-wasip1
    python3 scripts/sandbox-overhead.py [--runs 3] [--bin target/release/imgsvc] \
        [--module target/wasm32-wasip1/release/imgsvc-sandbox-guest.wasm] [--corpus ../shared/corpus]

Prints one row per photo and the summary (Markdown). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = pathlib.Path(
    os.environ.get("CARGO_TARGET_DIR", pathlib.Path.home() / ".cache/imgsvc/target")
)


def run(binary: str, photos: list[str], extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMGSVC_SANDBOX")}
        done = subprocess.run(
            [binary, "process", "--out", out, *extra, *photos],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode not in (0, 1):
            sys.exit(f"{binary} {' '.join(extra)} failed ({done.returncode}): {done.stderr}")
        times = {}
        for line in done.stdout.splitlines():
            result = json.loads(line)
            if result.get("ok"):
                times[pathlib.Path(result["input"]).name] = result["ms"]
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bin", default=str(TARGET / "release/imgsvc"))
    parser.add_argument(
        "--module", default=str(TARGET / "wasm32-wasip1/release/imgsvc-sandbox-guest.wasm")
    )
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared/corpus"))
    args = parser.parse_args()

    photos = sorted(
        str(p)
        for p in pathlib.Path(args.corpus).iterdir()
        if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".gif", ".webp"}
    )
    sandbox = ["--sandbox", "wasm", "--sandbox-module", args.module]
    native_runs, wasm_runs = [], []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs}", file=sys.stderr)
        native_runs.append(run(args.bin, photos, []))
        wasm_runs.append(run(args.bin, photos, sandbox))

    rows = []
    for name in sorted(native_runs[0]):
        native = statistics.median(r[name] for r in native_runs)
        wasm = statistics.median(r[name] for r in wasm_runs)
        rows.append((name, native, wasm, wasm / native))
    print("| photo | native ms | sandbox ms | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, native, wasm, ratio in rows:
        print(f"| {name} | {native:.0f} | {wasm:.0f} | {ratio:.2f} |")
    natives = [r[1] for r in rows]
    wasms = [r[2] for r in rows]
    ratios = [r[3] for r in rows]
    print()
    print(f"{len(rows)} photos, median of {args.runs} runs each:")
    print(f"- median per photo: native {statistics.median(natives):.0f} ms, "
          f"sandbox {statistics.median(wasms):.0f} ms")
    print(f"- median ratio sandbox/native: {statistics.median(ratios):.2f} "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
    print(f"- total: native {sum(natives) / 1000:.1f} s, sandbox {sum(wasms) / 1000:.1f} s")


if __name__ == "__main__":
    main()
