"""Content fingerprints of a scene and a model file, so ``--resume`` never mixes two inputs.

A path, a size and a modification time do not identify a file: ``cp -p`` or ``rsync -t`` of
a new delivery keeps all three. The model file is hashed whole (it is small). A scene can be
hundreds of gigabytes, so its fingerprint hashes

* its band metadata (size, band count, data types, per-band nodata and tags, transform, CRS),
* the bytes of every local file it is made of (the raster, an ENVI header, a VRT and its
  sources): whole up to :data:`FULL_HASH_BYTES`, else the head, the tail and evenly spaced
  blocks, and
* the pixel values of a grid of sample windows read through GDAL (which also covers GDAL
  virtual paths such as ``/vsis3/...``, whose bytes are not read directly).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window as RioWindow

from hsimap._files import sha256_file
from hsimap.cube import RasterPath, gdal_message, is_virtual

FULL_HASH_BYTES = 64 * 2**20  # local files up to this size are hashed whole
SAMPLE_BLOCK_BYTES = 2**20  # else head, tail and this many bytes at evenly spaced offsets
SAMPLE_BLOCKS = 62
PIXEL_SAMPLE_GRID = 4  # windows per side sampled through GDAL
PIXEL_SAMPLE_SIDE = 32  # pixels per window side


file_sha256 = sha256_file  # SHA-256 of a whole file (the name predict's callers know)


def sampled_bytes_sha256(path: str | Path) -> tuple[int, str]:
    """``(size, hex digest)`` of a file: whole when small, else head, tail and sampled blocks."""
    size = os.stat(path).st_size
    if size <= FULL_HASH_BYTES:
        return size, file_sha256(path)
    digest = hashlib.sha256(str(size).encode())
    last = size - SAMPLE_BLOCK_BYTES
    offsets = [round(i * last / (SAMPLE_BLOCKS + 1)) for i in range(SAMPLE_BLOCKS + 2)]
    with open(path, "rb") as fh:
        for offset in offsets:
            fh.seek(offset)
            digest.update(fh.read(SAMPLE_BLOCK_BYTES))
    return size, digest.hexdigest()


def scene_fingerprint(path: RasterPath) -> dict[str, Any]:
    """``{"scene_bytes": ..., "scene_sha256": ...}`` of a scene's content (see module doc).

    ``scene_bytes`` is the total size of its local files (``None`` for a virtual path).
    Windows that cannot be read (damaged blocks) enter the hash as GDAL's message: the
    damage is reported by the tile reader, with the tile's position, not here.
    """
    digest = hashlib.sha256()
    with rasterio.open(path) as src:
        digest.update(json.dumps(_header(src), sort_keys=True, default=str).encode())
        files = [f for f in src.files if not is_virtual(f) and Path(f).is_file()]
        for window in _sample_windows(src.height, src.width):
            try:
                digest.update(np.ascontiguousarray(src.read(window=window)).tobytes())
            except RasterioIOError as exc:
                digest.update(f"unreadable {window}: {gdal_message(exc)}".encode())
    total: int | None = None
    for name in sorted(files):
        size, sha = sampled_bytes_sha256(name)
        total = (total or 0) + size
        digest.update(f"{Path(name).name}:{size}:{sha}".encode())
    return {"scene_bytes": total, "scene_sha256": digest.hexdigest()}


def _header(src: Any) -> dict[str, Any]:
    return {
        "shape": [src.count, src.height, src.width],
        "dtypes": list(src.dtypes),
        "nodata": [None if v is None else float(v) for v in src.nodatavals],
        "transform": list(src.transform)[:6],
        "crs": None if src.crs is None else src.crs.to_wkt(),
        "tags": [src.tags(i + 1) for i in range(src.count)],
    }


def _sample_windows(height: int, width: int) -> list[RioWindow]:
    """A grid of small windows spread evenly over the scene (corners included)."""
    side_h, side_w = min(PIXEL_SAMPLE_SIDE, height), min(PIXEL_SAMPLE_SIDE, width)
    n = PIXEL_SAMPLE_GRID
    rows = sorted({round(i * (height - side_h) / max(n - 1, 1)) for i in range(n)})
    cols = sorted({round(i * (width - side_w) / max(n - 1, 1)) for i in range(n)})
    return [RioWindow(c, r, side_w, side_h) for r in rows for c in cols]
