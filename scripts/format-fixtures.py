#!/usr/bin/env python3
"""Make the format fixtures and their reference decodes, into OUTDIR (not the repository).

Inputs come from beside the project: the AVIF conformance files in ../shared/formats/ and
photos from ../shared/corpus/ (re-encoded here, so nothing of the corpus is copied into the
repository). Reference decodes come from other decoders: libavif (Debian's avifdec) for AVIF,
Pillow's own TIFF reader for TIFF. core/tests/decoders.rs compares the core's pixels
with them.

    python3 scripts/format-fixtures.py OUTDIR

Needs Pillow (scripts/test installs it in a venv of its own) and avifdec (Debian's
libavif-bin). Idempotent: a finished OUTDIR holds `done` with this script's
digest, and is left alone while the script is unchanged.
"""

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

# One CC-BY-4.0 photo from the corpus, small enough to keep the fixtures quick.
PHOTO = "lomiri16_Picture_1A.jpg"
SIDE = 640


def reference(img: Image.Image, path: Path) -> None:
    """Store a reference decode as 8-bit RGB or RGBA PNG."""
    mode = "RGBA" if "A" in img.getbands() else "RGB"
    img.convert(mode).save(path)


def boxes(buf: bytes, base: int = 0):
    """(type, body, body offset in the file) of the boxes directly inside `buf`."""
    i = 0
    while i + 8 <= len(buf):
        size, kind = struct.unpack(">I4s", buf[i:i + 8])
        yield kind, buf[i + 8:i + size], base + i + 8
        i += size


def primary_properties(data: bytes) -> list:
    """The primary item's properties in association order, as (type, body, offset of the
    association's essential bit in the file, its mask): a second, independent reading of the
    boxes the core reads."""
    _, meta, meta_at = next(b for b in boxes(data) if b[0] == b"meta")
    inner = {k: (body, at) for k, body, at in boxes(meta[4:], meta_at + 4)}
    pitm = inner[b"pitm"][0]
    primary = struct.unpack(">H", pitm[4:6])[0]
    iprp = {k: (body, at) for k, body, at in boxes(*inner[b"iprp"])}
    props = [(k, body) for k, body, _ in boxes(*iprp[b"ipco"])]
    ipma, ipma_at = iprp[b"ipma"]
    version, flags = ipma[0], ipma[3]
    count = struct.unpack(">I", ipma[4:8])[0]
    i = 8
    for _ in range(count):
        width = 2 if version < 1 else 4
        item = int.from_bytes(ipma[i:i + width], "big")
        i += width
        n = ipma[i]
        i += 1
        found = []
        for _ in range(n):
            if flags & 1:
                index, mask = struct.unpack(">H", ipma[i:i + 2])[0] & 0x7FFF, 0x80
                found.append((index, ipma_at + i, mask))
                i += 2
            else:
                index, mask = ipma[i] & 0x7F, 0x80
                found.append((index, ipma_at + i, mask))
                i += 1
        if item == primary:
            return [props[k - 1] + (at, mask) for k, at, mask in found if k]
    return []


def heif_transforms(data: bytes) -> list:
    """The primary item's transformative properties (clap, irot, imir) in order."""
    return [(k, body) for k, body, _, _ in primary_properties(data)
            if k in (b"clap", b"irot", b"imir")]


def without_clap(data: bytes) -> bytes:
    """The file with its primary item's clean aperture no longer essential and renamed
    'free' (so a decoder that refuses it decodes the stored image)."""
    out = bytearray(data)
    for kind, body, at, mask in primary_properties(data):
        if kind == b"clap":
            out[at] &= ~mask & 0xFF
            start = data.find(body)
            out[start - 4:start] = b"free"
    return bytes(out)


def as_steps(transforms: list) -> list:
    """The transforms as steps the test applies to the reference: ["crop", left, top, w, h]
    (the clean aperture, libavif's formula), ["rotate", quarter turns anti-clockwise],
    ["mirror", 0 (left-right) or 1 (top-bottom)]. The crop needs the size, so it is given
    relative to the stored image: the test resolves it (see `stored_size`)."""
    steps = []
    for kind, body in transforms:
        if kind == b"clap":
            wn, wd, hn, hd, ho_n, ho_d, vo_n, vo_d = struct.unpack(">IIIIiIiI", body[:32])
            steps.append(["clap", wn, wd, hn, hd, ho_n, ho_d, vo_n, vo_d])
        elif kind == b"irot":
            steps.append(["rotate", body[0] & 3])
        elif kind == b"imir":
            steps.append(["mirror", body[0] & 1])
    return steps


def resolve_crop(steps: list, width: int, height: int) -> list:
    out = []
    for step in steps:
        if step[0] == "clap":
            _, wn, wd, hn, hd, ho_n, ho_d, vo_n, vo_d = step
            w, h = wn // wd, hn // hd
            left = (width - w) / 2 + ho_n / ho_d
            top = (height - h) / 2 + vo_n / vo_d
            out.append(["crop", int(left), int(top), w, h])
        else:
            out.append(step)
    return out


def avif_references(out: Path) -> list:
    """libavif's exact decode of each conformance file: Debian's avifdec with its
    floating-point conversion to 16 bits (`-u best -d 16`; its 8-bit output takes a
    lower-precision path that is off by up to 11 levels), as stored. avifdec 0.11 refuses the
    clean-aperture boxes of these files, so it decodes a copy with 'clap' renamed 'free'; the
    manifest carries the transforms, read here from the boxes, for the test to apply."""
    avifdec = shutil.which("avifdec")
    if avifdec is None:
        sys.exit("error: avifdec not found (Debian package libavif-bin)")
    entries = []
    for src in sorted((SHARED / "formats").glob("*.avif")):
        data = src.read_bytes()
        plain = out / (src.stem + ".noclap.avif")
        plain.write_bytes(without_clap(data))
        ref = src.stem + ".reference16.png"
        subprocess.run([avifdec, "-u", "best", "-d", "16", str(plain), str(out / ref)],
                       check=True, stdout=subprocess.DEVNULL, timeout=120)
        plain.unlink()
        with Image.open(out / ref) as img:
            size = img.size
        steps = resolve_crop(as_steps(heif_transforms(data)), *size)
        entries.append({"input": str(src), "reference": ref, "format": "avif", "exact": False,
                        "steps": steps})
    return entries


def tiff_u16_rgb(path: Path, img: Image.Image) -> None:
    """A 16-bit RGB TIFF (Pillow writes 16 bits only for gray): each 8-bit sample v is
    stored as v * 257, so its exact 8-bit value is v again."""
    rgb = img.convert("RGB")
    w, h = rgb.size
    data = bytearray()
    for v in rgb.tobytes():
        data += struct.pack("<H", v * 257)
    tags = [  # (tag, type, count, value) — type 3 SHORT, 4 LONG
        (256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, None), (259, 3, 1, 1), (262, 3, 1, 2),
        (273, 4, 1, None), (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, len(data)),
    ]
    ifd_offset = 8
    ifd_size = 2 + 12 * len(tags) + 4
    bits_offset = ifd_offset + ifd_size
    strip_offset = bits_offset + 6
    out = bytearray(b"II*\0" + struct.pack("<I", ifd_offset))
    out += struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        if tag == 258:
            value = bits_offset
        if tag == 273:
            value = strip_offset
        if kind == 3 and count == 1:
            out += struct.pack("<HHIHH", tag, kind, count, value, 0)
        else:
            out += struct.pack("<HHII", tag, kind, count, value)
    out += struct.pack("<I", 0)
    out += struct.pack("<3H", 16, 16, 16)
    out += data
    path.write_bytes(bytes(out))


def tiff_fixtures(out: Path) -> list:
    with Image.open(SHARED / "corpus" / PHOTO) as photo:
        photo.thumbnail((SIDE, SIDE))
        photo = photo.convert("RGB")
    alpha = photo.copy()
    alpha.putalpha(Image.linear_gradient("L").resize(photo.size))
    cases = [
        ("rgb-lzw", photo, {"compression": "tiff_lzw"}, True),
        ("rgb-deflate", photo, {"compression": "tiff_adobe_deflate"}, True),
        ("rgb-packbits", photo, {"compression": "packbits"}, True),
        ("rgb-jpeg", photo, {"compression": "jpeg", "quality": 90}, False),
        ("rgba-lzw", alpha, {"compression": "tiff_lzw"}, True),
        ("gray-lzw", photo.convert("L"), {"compression": "tiff_lzw"}, True),
        ("cmyk-lzw", photo.convert("CMYK"), {"compression": "tiff_lzw"}, False),
    ]
    entries = []
    for name, img, options, exact in cases:
        path = out / f"{name}.tiff"
        img.save(path, **options)
        with Image.open(path) as decoded:
            decoded.load()
            reference(decoded, out / f"{name}.reference.png")
        entries.append({"input": path.name, "reference": f"{name}.reference.png",
                        "format": "tiff", "exact": exact})
    # 16-bit RGB, written by hand; its reference is the 8-bit source.
    tiff_u16_rgb(out / "rgb16.tiff", photo)
    reference(photo, out / "rgb16.reference.png")
    entries.append({"input": "rgb16.tiff", "reference": "rgb16.reference.png",
                    "format": "tiff", "exact": True})
    # Two pages: the first is shown.
    path = out / "two-pages.tiff"
    photo.save(path, compression="tiff_lzw", save_all=True,
               append_images=[photo.transpose(Image.Transpose.ROTATE_90)])
    reference(photo, out / "two-pages.reference.png")
    entries.append({"input": path.name, "reference": "two-pages.reference.png",
                    "format": "tiff", "exact": True, "frames": 2})
    # Orientation 6 in the TIFF tag: shown turned 90° clockwise.
    path = out / "orientation6.tiff"
    photo.save(path, compression="tiff_lzw", tiffinfo={274: 6})
    reference(photo.transpose(Image.Transpose.ROTATE_270), out / "orientation6.reference.png")
    entries.append({"input": path.name, "reference": "orientation6.reference.png",
                    "format": "tiff", "exact": True})
    return entries


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    done = out / "done"
    if done.is_file() and done.read_text() == digest:
        return
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    entries = avif_references(out) + tiff_fixtures(out)
    (out / "manifest.json").write_text(json.dumps(entries, indent=1))
    done.write_text(digest)
    print(f"format fixtures: {len(entries)} in {out}", file=sys.stderr)


if __name__ == "__main__":
    os.umask(0o022)
    main()
