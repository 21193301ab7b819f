#!/usr/bin/env python3
"""Make the format fixtures and their reference decodes, into OUTDIR (not the repository).

Inputs come from beside the project: the AVIF conformance files in ../shared/formats/ and
photos from ../shared/corpus/ (re-encoded here, so nothing of the corpus is copied into the
repository). Reference decodes come from other decoders: libavif (Debian's avifdec) for AVIF,
Pillow's own TIFF reader for TIFF, libheif (the build inside pillow-heif, with libde265)
for HEIC, libjxl's djxl for JPEG XL. core/tests/decoders.rs compares the core's pixels
with them.

    python3 scripts/format-fixtures.py OUTDIR
    python3 scripts/format-fixtures.py --sample-heic testkit/data/iphone-like.heic
    python3 scripts/format-fixtures.py --fuzz-seeds fuzz/seeds
    python3 scripts/format-fixtures.py --bench-set DIR   (the decoder timings' inputs)

Needs Pillow and pillow-heif (scripts/test installs them in a venv of their own),
avifdec (Debian's libavif-bin) and cjxl/djxl (Debian's libjxl-tools). Idempotent: a finished OUTDIR holds `done` with this
script's digest, and is left alone while the script is unchanged.
"""

import ctypes
import glob
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
    # An image sequence of two frames (avifenc writes the first as the still image too):
    # shown is the first, and both are counted.
    with Image.open(SHARED / "corpus" / PHOTO) as photo:
        photo.thumbnail((SIDE, SIDE))
        photo = photo.convert("RGB")
    frames = [out / "avis-frame0.png", out / "avis-frame1.png"]
    photo.save(frames[0])
    photo.transpose(Image.Transpose.ROTATE_180).save(frames[1])
    avifenc = shutil.which("avifenc") or sys.exit("error: avifenc not found (libavif-bin)")
    subprocess.run([avifenc, "-s", "8", *map(str, frames), str(out / "sequence.avif")],
                   check=True, stdout=subprocess.DEVNULL, timeout=300)
    for frame in frames:
        frame.unlink()
    subprocess.run([avifdec, "-u", "best", "-d", "16", str(out / "sequence.avif"),
                    str(out / "sequence.reference16.png")],
                   check=True, stdout=subprocess.DEVNULL, timeout=120)
    entries.append({"input": "sequence.avif", "reference": "sequence.reference16.png",
                    "format": "avif", "exact": False, "frames": 2})
    # Display P3 in both the container's nclx and the AV1 sequence header, for the test of
    # which one counts (core/tests/decoders.rs edits the container's copy); no reference.
    photo.save(out / "p3.png")
    subprocess.run([avifenc, "-s", "8", "--cicp", "12/13/6", str(out / "p3.png"),
                    str(out / "colour-p3.avif")], check=True, stdout=subprocess.DEVNULL,
                   timeout=300)
    (out / "p3.png").unlink()
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


# --- HEIC ---------------------------------------------------------------------------------

def libheif():
    """libheif as pillow-heif bundles it, through ctypes: pillow-heif itself always upsamples
    chroma by nearest neighbour, and the reference must use bilinear upsampling (the core's,
    and what libheif does when asked)."""
    import pillow_heif
    libs = Path(pillow_heif.__file__).parent.parent / "pillow_heif.libs"
    lib = ctypes.CDLL(glob.glob(str(libs / "libheif-*.so*"))[0])

    class Error(ctypes.Structure):
        _fields_ = [("code", ctypes.c_int), ("subcode", ctypes.c_int),
                    ("message", ctypes.c_char_p)]
    for name in ("heif_context_read_from_memory_without_copy",
                 "heif_context_get_primary_image_handle", "heif_decode_image"):
        getattr(lib, name).restype = Error
    lib.heif_context_alloc.restype = ctypes.c_void_p
    lib.heif_decoding_options_alloc.restype = ctypes.c_void_p
    lib.heif_image_get_plane_readonly.restype = ctypes.POINTER(ctypes.c_uint8)
    lib.heif_image_get_plane_readonly.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                                  ctypes.POINTER(ctypes.c_int)]
    lib.heif_image_get_width.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.heif_image_get_height.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.heif_image_handle_has_alpha_channel.argtypes = [ctypes.c_void_p]
    return lib


def libheif_decode(lib, data: bytes, threads=None, seconds=None) -> Image.Image:
    """libheif's decode to 8-bit RGB(A), transforms applied, colour as stored, chroma
    upsampled bilinearly (libheif 1.23's `heif_decoding_options`, version 7 layout).
    `threads`: libheif's tile-decoding threads (0: the calling thread); None: its default.
    `seconds`: a list to append the time from reading the file to the decoded image to."""
    import time
    started = time.perf_counter()
    def check(error):
        if error.code:
            raise RuntimeError(error.message.decode())
    ctx = ctypes.c_void_p(lib.heif_context_alloc())
    if threads is not None:
        lib.heif_context_set_max_decoding_threads(ctx, threads)
    check(lib.heif_context_read_from_memory_without_copy(ctx, data, ctypes.c_size_t(len(data)),
                                                         None))
    handle = ctypes.c_void_p()
    check(lib.heif_context_get_primary_image_handle(ctx, ctypes.byref(handle)))
    alpha = lib.heif_image_handle_has_alpha_channel(handle)
    options = lib.heif_decoding_options_alloc()
    fields = (ctypes.c_uint8 * 72).from_address(options)
    if fields[0] < 5:
        sys.exit("error: libheif's decoding options are older than version 5")
    fields[40] = 1  # convert_hdr_to_8bit
    ctypes.c_int32.from_address(options + 64).value = 2  # heif_chroma_upsampling_bilinear
    fields[68] = 1  # only_use_preferred_chroma_algorithm
    image = ctypes.c_void_p()
    # heif_colorspace_RGB, heif_chroma_interleaved_RGB(A)
    check(lib.heif_decode_image(handle, ctypes.byref(image), 1, 11 if alpha else 10,
                                ctypes.c_void_p(options)))
    if seconds is not None:
        seconds.append(time.perf_counter() - started)
    stride = ctypes.c_int()
    plane = lib.heif_image_get_plane_readonly(image, 10, ctypes.byref(stride))
    w, h = lib.heif_image_get_width(image, 10), lib.heif_image_get_height(image, 10)
    channels = 4 if alpha else 3
    raw = ctypes.string_at(plane, stride.value * h)
    lib.heif_image_release(image)
    lib.heif_image_handle_release(handle)
    lib.heif_decoding_options_free(ctypes.c_void_p(options))
    lib.heif_context_free(ctx)
    rows = b"".join(raw[y * stride.value:y * stride.value + w * channels] for y in range(h))
    return Image.frombytes("RGBA" if alpha else "RGB", (w, h), rows)


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, body: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags) + body)


def display_p3_icc() -> bytes:
    """A Display P3 ICC profile (v4, matrix and sRGB curves), written out here: the
    colorants are Display P3's primaries adapted to D50, as in Apple's profile."""
    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x, y, z) -> bytes:
        return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)
    # The sRGB curve: parametric function type 3.
    curve = b"para\0\0\0\0" + struct.pack(">H2x", 3) + b"".join(
        s15(v) for v in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
    text = "Display P3 (imgsvc test)".encode("utf-16-be")
    desc = b"mluc\0\0\0\0" + struct.pack(">II", 1, 12) + b"enUS" + struct.pack(
        ">II", len(text), 28) + text
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz(0.515121, 0.241196, -0.001053)),
            (b"gXYZ", xyz(0.291977, 0.692245, 0.041885)),
            (b"bXYZ", xyz(0.157104, 0.066574, 0.784073)),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
            (b"cprt", b"mluc\0\0\0\0" + struct.pack(">II", 1, 12) + b"enUS" +
             struct.pack(">II", 2, 28) + "-".encode("utf-16-be"))]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table, blobs = b"", b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(blobs), len(data))
        blobs += data
    size = 128 + table_size + len(blobs)
    header = struct.pack(">I4sI4s4s4s12s4s4sI4s4sQI", size, b"none", 0x04300000, b"mntr",
                         b"RGB ", b"XYZ ", b"\0" * 12, b"acsp", b"APPL", 0, b"none", b"none",
                         0, 0)
    header += s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * (128 - len(header) - 12)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + blobs


def item_data(data: bytes, item: int) -> bytes:
    """The bytes of `item` (iloc version 0 or 1, construction method 0)."""
    _, meta, _ = next(b for b in boxes(data) if b[0] == b"meta")
    inner = {k: body for k, body, _ in boxes(meta[4:])}
    iloc = inner[b"iloc"]
    version = iloc[0]
    sizes = iloc[4]
    offset_size, length_size = sizes >> 4, sizes & 15
    base_size, index_size = iloc[5] >> 4, (iloc[5] & 15 if version else 0)
    count = struct.unpack(">H", iloc[6:8])[0]
    i = 8

    def read(n):
        nonlocal i
        v = int.from_bytes(iloc[i:i + n], "big") if n else 0
        i += n
        return v
    for _ in range(count):
        item_id = read(2)
        if version:
            read(2)
        read(2)
        base = read(base_size)
        out = b""
        for _ in range(read(2)):
            read(index_size)
            off, length = read(offset_size), read(length_size)
            out += data[base + off:base + off + length]
        if item_id == item:
            return out
    raise KeyError(item)


def hevc_tile(img: Image.Image) -> tuple:
    """One image encoded by libheif/x265 as a HEIC: its hvcC property and its data."""
    import io

    import pillow_heif
    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    img.save(buf, format="HEIF", quality=90)
    data = buf.getvalue()
    hvcc = next(body for kind, body, _, _ in primary_properties(data) if kind == b"hvcC")
    _, meta, _ = next(b for b in boxes(data) if b[0] == b"meta")
    pitm = {k: body for k, body, _ in boxes(meta[4:])}[b"pitm"]
    return hvcc, item_data(data, struct.unpack(">H", pitm[4:6])[0])


def iphone_like_heic(picture: Image.Image, tile: int, quarter_turns: int, icc: bytes) -> bytes:
    """A HEIC shaped like an iPhone's: a grid of `tile`-sized HEVC tiles (the last row and
    column only partly shown), `irot`, a Display P3 ICC profile in `colr`, and an EXIF item
    whose orientation repeats the rotation (iPhones write both; a viewer applies `irot`
    only). No encoder here writes grids, so the container is built here."""
    w, h = picture.size
    columns, rows = -(-w // tile), -(-h // tile)
    padded = Image.new("RGB", (columns * tile, rows * tile))
    padded.paste(picture)
    tiles = [hevc_tile(padded.crop((c * tile, r * tile, (c + 1) * tile, (r + 1) * tile)))
             for r in range(rows) for c in range(columns)]
    n = len(tiles)
    grid_id, exif_id = 1, 2 + n
    tile_ids = list(range(2, 2 + n))
    exif_tiff = (b"MM\0*" + struct.pack(">I", 8) + struct.pack(">H", 1) +
                 struct.pack(">HHIHH", 274, 3, 1, 6, 0) + struct.pack(">I", 0))
    exif = struct.pack(">I", 6) + b"Exif\0\0" + exif_tiff
    grid = struct.pack(">BBBBHH", 0, 0, rows - 1, columns - 1, w, h)

    def meta(mdat_start: int) -> bytes:
        infe = [full_box(b"infe", 2, 0, struct.pack(">HH", grid_id, 0) + b"grid\0")]
        infe += [full_box(b"infe", 2, 1, struct.pack(">HH", t, 0) + b"hvc1\0") for t in tile_ids]
        infe += [full_box(b"infe", 2, 1, struct.pack(">HH", exif_id, 0) + b"Exif\0")]
        iinf = full_box(b"iinf", 0, 0, struct.pack(">H", len(infe)) + b"".join(infe))
        # iloc v1: 4-byte offsets and lengths; the grid's descriptor lives in idat.
        entries = [struct.pack(">HHHHII", grid_id, 1, 0, 1, 0, len(grid))]
        at = mdat_start
        for t, (_, data) in zip(tile_ids, tiles):
            entries.append(struct.pack(">HHHHII", t, 0, 0, 1, at, len(data)))
            at += len(data)
        entries.append(struct.pack(">HHHHII", exif_id, 0, 0, 1, at, len(exif)))
        iloc = full_box(b"iloc", 1, 0, bytes([0x44, 0x00]) + struct.pack(">H", len(entries)) +
                        b"".join(entries))
        iref = full_box(b"iref", 0, 0,
                        box(b"dimg", struct.pack(">HH", grid_id, n) +
                            b"".join(struct.pack(">H", t) for t in tile_ids)) +
                        box(b"cdsc", struct.pack(">HHH", exif_id, 1, grid_id)))
        # Properties: 1..n the tiles' hvcC, then the tiles' ispe, the grid's ispe, irot, colr.
        ipco = b"".join(box(b"hvcC", hvcc) for hvcc, _ in tiles)
        ipco += full_box(b"ispe", 0, 0, struct.pack(">II", tile, tile))
        ipco += full_box(b"ispe", 0, 0, struct.pack(">II", w, h))
        ipco += box(b"irot", bytes([quarter_turns & 3]))
        ipco += box(b"colr", b"prof" + icc)
        tile_ispe, grid_ispe, irot, colr = n + 1, n + 2, n + 3, n + 4
        assoc = [struct.pack(">HB", grid_id, 3) + bytes([grid_ispe, 0x80 | irot, colr])]
        assoc += [struct.pack(">HB", t, 2) + bytes([0x80 | (i + 1), tile_ispe])
                  for i, t in enumerate(tile_ids)]
        ipma = full_box(b"ipma", 0, 0, struct.pack(">I", len(assoc)) + b"".join(assoc))
        hdlr = full_box(b"hdlr", 0, 0, b"\0\0\0\0pict" + b"\0" * 12 + b"\0")
        pitm = full_box(b"pitm", 0, 0, struct.pack(">H", grid_id))
        return full_box(b"meta", 0, 0, hdlr + pitm + iinf + iloc + iref +
                        box(b"iprp", box(b"ipco", ipco) + ipma) + box(b"idat", grid))
    ftyp = box(b"ftyp", b"heic" + struct.pack(">I", 0) + b"mif1heicmiaf")
    size = len(ftyp) + len(meta(0)) + 8
    body = b"".join(data for _, data in tiles) + exif
    return ftyp + meta(size) + box(b"mdat", body)


def heic_fixtures(out: Path) -> list:
    """HEICs made by libheif (x265) from a corpus photo, and one built here as iPhones
    write them; references decoded by libheif (transforms applied) and, for the Display P3
    one, converted to sRGB by LittleCMS (Pillow's ImageCms)."""
    import io

    import pillow_heif
    from PIL import ImageCms
    pillow_heif.register_heif_opener()
    lib = libheif()
    with Image.open(SHARED / "corpus" / PHOTO) as photo:
        photo.thumbnail((SIDE, SIDE))
        photo = photo.convert("RGB")
    alpha = photo.copy()
    alpha.putalpha(Image.linear_gradient("L").resize(photo.size))
    odd = photo.resize((333, 251))
    # 10 bits: each 8-bit sample v as the 16-bit v * 257, which libheif stores in 10 bits.
    wide = pillow_heif.from_bytes(mode="RGB;16", size=photo.size, data=b"".join(
        struct.pack("<H", v * 257) for v in photo.tobytes()))
    cases = [
        ("yuv420", photo, {"quality": 90}),
        ("yuv444", photo, {"quality": 90, "chroma": 444}),
        ("alpha", alpha, {"quality": 90}),
        ("monochrome", photo.convert("L"), {"quality": 90}),
        ("odd-size", odd, {"quality": 90}),
        ("10bit", wide, {"quality": 90}),
    ]
    entries = []
    for name, img, options in cases:
        path = out / f"heic-{name}.heic"
        if isinstance(img, Image.Image):
            img.save(path, format="HEIF", **options)
        else:
            img.save(str(path), **options)
        libheif_decode(lib, path.read_bytes()).save(out / f"heic-{name}.reference.png")
        entries.append({"input": path.name, "reference": f"heic-{name}.reference.png",
                        "format": "heic", "exact": False})
    icc = display_p3_icc()
    data = iphone_like_heic(photo.crop((0, 0, 600, 440)), 256, 1, icc)
    path = out / "heic-iphone-grid.heic"
    path.write_bytes(data)
    stored = libheif_decode(lib, data)
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    srgb = ImageCms.createProfile("sRGB")
    shown = ImageCms.profileToProfile(stored, p3, srgb, outputMode="RGB")
    shown.save(out / "heic-iphone-grid.reference.png")
    entries.append({"input": path.name, "reference": "heic-iphone-grid.reference.png",
                    "format": "heic", "exact": False})
    return entries


# --- JPEG XL ------------------------------------------------------------------------------

def jxl_fixtures(out: Path) -> list:
    """JPEG XLs made by libjxl's cjxl (Debian's libjxl-tools) from a corpus photo: lossy
    (XYB), lossless, alpha, gray, 16-bit, a recompressed JPEG and an animation; references
    decoded by djxl (the first frame for the animation)."""
    cjxl, djxl = shutil.which("cjxl"), shutil.which("djxl")
    if cjxl is None or djxl is None:
        sys.exit("error: cjxl/djxl not found (Debian package libjxl-tools)")
    with Image.open(SHARED / "corpus" / PHOTO) as photo:
        photo.thumbnail((SIDE, SIDE))
        photo = photo.convert("RGB")
    alpha = photo.copy()
    alpha.putalpha(Image.linear_gradient("L").resize(photo.size))
    sources = out / "jxl-sources"
    sources.mkdir()
    photo.save(sources / "rgb.png")
    alpha.save(sources / "rgba.png")
    photo.convert("L").save(sources / "gray.png")
    photo.save(sources / "photo.jpg", quality=90)
    # 16 bits: each 8-bit sample v as v * 257 (exact at 8 bits again).
    wide = Image.new("I;16", photo.size)
    wide.frombytes(b"".join(struct.pack("<H", v * 257)
                            for v in photo.convert("L").tobytes()), "raw", "I;16")
    wide.save(sources / "gray16.png")
    frames = [photo, photo.transpose(Image.Transpose.ROTATE_180)]
    frames[0].save(sources / "two-frames.gif", save_all=True, append_images=frames[1:],
                   duration=100, loop=0)
    cases = [  # name, source, cjxl options, exact, frames
        ("lossy", "rgb.png", ["-d", "1.0"], False, None),
        ("lossy-alpha", "rgba.png", ["-d", "1.0"], False, None),
        ("lossless", "rgb.png", ["-d", "0"], True, None),
        ("lossless-alpha", "rgba.png", ["-d", "0"], True, None),
        ("lossless-gray", "gray.png", ["-d", "0"], True, None),
        ("lossless-gray16", "gray16.png", ["-d", "0"], True, None),
        ("recompressed-jpeg", "photo.jpg", [], False, None),
        ("animation", "two-frames.gif", ["-d", "0"], True, 2),
    ]
    entries = []
    for name, source, options, exact, frame_count in cases:
        path = out / f"jxl-{name}.jxl"
        subprocess.run([cjxl, str(sources / source), str(path), *options], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        ref = f"jxl-{name}.reference.png"
        if frame_count:
            # djxl writes the frames of an animation as one APNG; its first frame is shown.
            with Image.open(sources / source) as first:
                reference(first.convert("RGB"), out / ref)
        else:
            subprocess.run([djxl, str(path), str(out / ref)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        entry = {"input": path.name, "reference": ref, "format": "jxl", "exact": exact}
        if frame_count:
            entry["frames"] = frame_count
        entries.append(entry)
    shutil.rmtree(sources)
    return entries


def sample_heic(path: Path) -> None:
    """The small iPhone-shaped HEIC committed as testkit/data/iphone-like.heic: a synthetic
    160x120 gradient (no corpus pixels), 64-pixel tiles, turned a quarter anti-clockwise."""
    gradient = Image.merge("RGB", (
        Image.linear_gradient("L").rotate(90).resize((160, 120)),
        Image.linear_gradient("L").resize((160, 120)),
        Image.new("L", (160, 120), 96)))
    path.write_bytes(iphone_like_heic(gradient, 64, 1, display_p3_icc()))


def fuzz_seeds(out: Path) -> None:
    """Small synthetic seeds for the per-format fuzz targets, committed in fuzz/seeds/<format>/
    (no corpus pixels; a 64x48 gradient): AVIF by avifenc (8- and 10-bit, alpha, a 2x2
    grid), HEIC by pillow-heif (plain, alpha, the iPhone-shaped grid), JPEG XL by cjxl (lossy,
    lossless, alpha), TIFF by Pillow (LZW, deflate, RGBA) and by hand (16-bit RGB)."""
    import pillow_heif
    pillow_heif.register_heif_opener()
    size = (64, 48)
    rgb = Image.merge("RGB", (Image.linear_gradient("L").rotate(90).resize(size),
                              Image.linear_gradient("L").resize(size), Image.new("L", size, 96)))
    rgba = rgb.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(size))
    tmp = out / ".sources"
    tmp.mkdir(parents=True, exist_ok=True)
    rgb.save(tmp / "rgb.png")
    rgba.save(tmp / "rgba.png")
    rgb.resize((128, 128)).save(tmp / "rgb128.png")  # libavif's grid cells are 64 px at least
    for kind in ("avif", "heic", "jxl", "tiff"):
        (out / kind).mkdir(parents=True, exist_ok=True)

    def run(*args):
        subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120)
    avifenc = shutil.which("avifenc") or sys.exit("error: avifenc not found (libavif-bin)")
    run(avifenc, "-s", "10", tmp / "rgb.png", out / "avif/gradient.avif")
    run(avifenc, "-s", "10", "-d", "10", tmp / "rgb.png", out / "avif/gradient-10bit.avif")
    run(avifenc, "-s", "10", tmp / "rgba.png", out / "avif/gradient-alpha.avif")
    run(avifenc, "-s", "10", "-g", "2x2", tmp / "rgb128.png", out / "avif/gradient-grid.avif")
    rgb.save(out / "heic/gradient.heic", format="HEIF", quality=50)
    rgba.save(out / "heic/gradient-alpha.heic", format="HEIF", quality=50)
    (out / "heic/iphone-like.heic").write_bytes(
        iphone_like_heic(rgb, 32, 1, display_p3_icc()))
    cjxl = shutil.which("cjxl") or sys.exit("error: cjxl not found (libjxl-tools)")
    run(cjxl, tmp / "rgb.png", out / "jxl/gradient.jxl", "-d", "2")
    run(cjxl, tmp / "rgb.png", out / "jxl/gradient-lossless.jxl", "-d", "0")
    run(cjxl, tmp / "rgba.png", out / "jxl/gradient-alpha.jxl", "-d", "2")
    rgb.save(out / "tiff/gradient-lzw.tiff", compression="tiff_lzw")
    rgb.save(out / "tiff/gradient-deflate.tiff", compression="tiff_adobe_deflate")
    rgba.save(out / "tiff/gradient-alpha.tiff", compression="packbits")
    tiff_u16_rgb(out / "tiff/gradient-16bit.tiff", rgb)
    shutil.rmtree(tmp)


BENCH_PHOTOS = ["mate_Storm.jpg", "lxqt_fog.jpg", "plasma_BytheWater.jpg",
                "lomiri16_Picture_0B.jpg", "lomiri16_aitzgorri.jpg", "lomiri16_Bridge.jpg"]


def bench_set(out: Path) -> None:
    """Six corpus photos (2.5 to 10.7 Mpx) as AVIF (avifenc, speed 6, its default quality),
    TIFF (LZW; scaled down to fit the 10 MiB upload limit where it would not), HEIC (libheif/x265, quality 85) and JPEG XL (cjxl, distance 1), for timing
    the decoders against sharp and libheif (never committed: the corpus's pixels)."""
    import pillow_heif
    pillow_heif.register_heif_opener()
    out.mkdir(parents=True, exist_ok=True)
    for name in BENCH_PHOTOS:
        stem = Path(name).stem
        with Image.open(SHARED / "corpus" / name) as photo:
            photo = photo.convert("RGB")
        png = out / f"{stem}.png"
        photo.save(png)
        subprocess.run(["avifenc", "-s", "6", str(png), str(out / f"{stem}.avif")], check=True,
                       stdout=subprocess.DEVNULL, timeout=600)
        subprocess.run(["cjxl", str(png), str(out / f"{stem}.jxl"), "-d", "1"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        png.unlink()
        # LZW barely shrinks a photo: one over the 10 MiB upload limit is scaled to fit.
        tiff = out / f"{stem}.tiff"
        photo.save(tiff, compression="tiff_lzw")
        limit = 10 * 1024 * 1024
        if tiff.stat().st_size > limit:
            scale = (limit * 0.9 / tiff.stat().st_size) ** 0.5
            smaller = photo.resize((int(photo.width * scale), int(photo.height * scale)),
                                   Image.Resampling.LANCZOS)
            smaller.save(tiff, compression="tiff_lzw")
        photo.save(out / f"{stem}.heic", format="HEIF", quality=85)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--bench-set":
        bench_set(Path(sys.argv[2]))
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--sample-heic":
        sample_heic(Path(sys.argv[2]))
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--fuzz-seeds":
        fuzz_seeds(Path(sys.argv[2]))
        return
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
    entries = (avif_references(out) + tiff_fixtures(out) + heic_fixtures(out) +
               jxl_fixtures(out))
    (out / "manifest.json").write_text(json.dumps(entries, indent=1))
    done.write_text(digest)
    print(f"format fixtures: {len(entries)} in {out}", file=sys.stderr)


if __name__ == "__main__":
    os.umask(0o022)
    main()
