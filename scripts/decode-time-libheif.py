#!/usr/bin/env python3
"""libheif's decode time per HEIC file, on one thread, to set beside the core's
(`cargo run --release -p imgsvc-native-bench --bin decode_time -- FILE...`): libheif 1.23
with libde265 as pillow-heif bundles it, through ctypes, decoding to interleaved 8-bit RGB
with bilinear chroma (what the core does), transforms applied.

    python3 scripts/decode-time-libheif.py [--runs N] FILE...

Needs pillow-heif (scripts/test installs it in the Pillow venv). One line per file: median
and min of N decodes after one warm-up (from reading the file to the decoded image; the
copy out to Python is not counted); then the median of the medians.
"""

import ctypes
import importlib.util
import statistics
import sys
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "format_fixtures", Path(__file__).with_name("format-fixtures.py"))
fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixtures)


def main() -> None:
    args = sys.argv[1:]
    runs = 5
    if args[:1] == ["--runs"]:
        runs, args = int(args[1]), args[2:]
    if not args:
        sys.exit(__doc__)
    lib = fixtures.libheif()
    # 0: tiles decoded on the calling thread (libheif's own pool off).
    lib.heif_context_set_max_decoding_threads.argtypes = [ctypes.c_void_p, ctypes.c_int]
    medians = []
    for name in args:
        data = Path(name).read_bytes()
        seconds = []
        for _ in range(runs + 1):
            image = fixtures.libheif_decode(lib, data, threads=0, seconds=seconds)
        times = [s * 1e3 for s in seconds[1:]]
        medians.append(statistics.median(times))
        print(f"{Path(name).name:<32} {image.size[0]:>5}x{image.size[1]:<5} "
              f"median {medians[-1]:>8.1f} ms  min {min(times):>8.1f} ms")
    print(f"median of medians: {statistics.median(medians):.1f} ms")


if __name__ == "__main__":
    main()
