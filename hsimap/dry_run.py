"""What a prediction will do, from the scene's header and the model file's metadata, no torch.

``hsimap predict --dry-run`` must cost a small fraction of a real run, so it neither imports
torch nor runs the model nor reads the scene's pixels: the tile grid comes from the scene's
header and the model's halo, the memory estimate from the activation bytes per pixel and the
run-time estimate from the inference speed that ``train`` measured and stored in the model
file (``"inference"`` in its metadata). :func:`plan_from_metadata` returns ``None`` when
that is not enough (a model written before hsimap recorded its speed, a device the speed was
not measured on, or ``--device auto`` where only torch can tell whether a GPU is usable);
:func:`hsimap.predict.plan_prediction` then measures instead.

The pieces :mod:`hsimap.predict` shares with the plan (the scene's band check, buffer sizes,
the automatic tile size and the GDAL read cache) live here so both use the same numbers.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsimap.errors import SceneMismatchError

WAVELENGTH_TOLERANCE_NM = 2.0
# Working-set budget of ``tile="auto"`` (activations + tile buffers), capped at a quarter of
# the memory available; with the process's own ~0.6 GB and the GDAL read cache (<= 512 MiB)
# this keeps the default peak near 2 GB.
DEFAULT_MEMORY_BUDGET = 2**30
AUTO_TILE_RANGE = (32, 512)
PREFETCH = 2  # tiles read ahead of the one being computed
MAX_WRITES_IN_FLIGHT = 2
# GDAL block cache while reading the scene: the input blocks of READ_CACHE_TILES read windows
# (so a neighbouring tile's halo is not decoded again), within this range. GDAL's default
# (5 % of RAM) would otherwise fill up on a large scene.
GDAL_CACHE_RANGE = (64 * 2**20, 512 * 2**20)
READ_CACHE_TILES = 2
# Resident memory torch adds to a process once imported and used on the CPU (measured on
# Linux x86-64, torch 2.13 CPU build: 192 MiB); the plan adds it since it does not import torch.
TORCH_RUNTIME_BYTES = 192 * 2**20
INFERENCE_KEY = "inference"


@dataclass(frozen=True)
class PredictPlan:
    """What a prediction would do (``--dry-run``): sizes, memory and time estimates."""

    n_tiles: int
    tile: int
    halo: int
    stride: int
    height: int
    width: int
    device: str
    peak_memory_bytes: int
    activation_bytes_per_pixel: float
    seconds_per_tile: float | None = None
    estimated_seconds: float | None = None
    sample_tiles: int = 0
    threads: int = 1
    speed_source: str | None = None  # where a stored speed comes from (None: measured now)

    def describe(self) -> str:
        """Human-readable summary, one fact per line."""
        lines = [
            f"scene: {self.width} x {self.height} px (width x height)",
            f"tiles: {self.n_tiles} of {self.tile} px (+ halo {self.halo} px, stride "
            f"{self.stride})",
            f"device: {self.device} ({self.threads} torch threads)",
            f"peak memory (estimate): {self.peak_memory_bytes / 2**20:.0f} MiB "
            f"(activations ~{self.activation_bytes_per_pixel:.0f} B per tile pixel)",
        ]
        if self.estimated_seconds is not None and self.speed_source is not None:
            lines.append(f"run time (estimate from {self.speed_source}): "
                         f"{duration(self.estimated_seconds)}")
        elif self.estimated_seconds is not None and self.seconds_per_tile is not None:
            lines.append(f"run time (estimate from {self.sample_tiles} sample tile(s), "
                         f"{self.seconds_per_tile:.2f} s each): "
                         f"{duration(self.estimated_seconds)}")
        return "\n".join(lines)


def duration(seconds: float) -> str:
    """``12.3 s``, ``4.5 min`` or ``1.2 h``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def check_bands(path: str | Path, *, count: int, wavelengths: Sequence[float] | None,
                n_bands: int, trained: Sequence[float] | None) -> bool:
    """Refuse a scene whose bands differ from the training scene's, saying what differs.

    Returns ``False`` when the model declares wavelengths and the scene does not (the caller
    warns that the bands are assumed to match).
    """
    if count != n_bands:
        raise SceneMismatchError(
            f"has {count} bands but the model was trained on {n_bands}",
            path=path, fix="give a scene from the same sensor and band set, or retrain")
    if trained is None or wavelengths is None:
        return trained is None
    diff = np.abs(np.asarray(wavelengths) - np.asarray(trained))
    worst = int(diff.argmax())
    n_off = int((diff > WAVELENGTH_TOLERANCE_NM).sum())
    if diff[worst] > WAVELENGTH_TOLERANCE_NM:
        raise SceneMismatchError(
            f"band {worst + 1} is at {wavelengths[worst]:.2f} nm but the model's band "
            f"{worst + 1} is at {trained[worst]:.2f} nm ({n_off}"
            f" bands differ by more than {WAVELENGTH_TOLERANCE_NM} nm)",
            path=path, fix="resample the scene to the model's wavelengths or retrain")
    return True


def io_bytes_per_pixel(n_bands: int, n_classes: int, probabilities: bool = False) -> float:
    """Bytes per read-window pixel of the pipeline's own buffers (inputs read ahead, outputs)."""
    per_input = 4.0 * n_bands + 1  # float32 values + validity
    per_output = 8.0 + 8.0 * n_classes  # index + logits/softmax (float32)
    if probabilities:
        per_output += 2.0 * n_classes
    return per_input * (PREFETCH + 1) + per_output * (MAX_WRITES_IN_FLIGHT + 1)


def memory_budget() -> int:
    """Working-set bytes ``tile="auto"`` aims for: the default, or less when memory is short."""
    import psutil

    budget = min(DEFAULT_MEMORY_BUDGET, psutil.virtual_memory().available // 4)
    return max(budget, 32 * 2**20)


def tile_for_side(side: float, *, halo: int, stride: int, input_block: int | None) -> int:
    """The tile of ``tile="auto"`` for a read window of ``side`` px: within AUTO_TILE_RANGE,
    rounded to 16/32/64 px, to whole input blocks when at least one, and to the stride."""
    lo, hi = AUTO_TILE_RANGE
    tile = int(side) - 2 * halo
    quantum = 64 if tile >= 256 else 32 if tile >= 128 else 16
    tile = max(lo, min(hi, tile // quantum * quantum))
    if input_block and tile >= input_block:
        tile = tile // input_block * input_block
    return -(-tile // stride) * stride


def tiled_block(block_h: int, block_w: int, width: int) -> int | None:
    """The input's block side when it is tiled (not stripped), else ``None``."""
    return block_w if block_h > 1 and block_w < width else None


def blocks_touched(rows: tuple[int, int], cols: tuple[int, int], block_h: int,
                   block_w: int) -> int:
    """Input blocks a read window (``rows``/``cols`` as half-open ranges) overlaps."""
    n_rows = (rows[1] - 1) // block_h - rows[0] // block_h + 1
    n_cols = (cols[1] - 1) // block_w - cols[0] // block_w + 1
    return n_rows * n_cols


def read_cache_bytes(blocks: int, block_h: int, block_w: int, itemsize: int,
                     count: int) -> int:
    """GDAL block cache for reading: ``READ_CACHE_TILES`` read windows' input blocks."""
    cache = READ_CACHE_TILES * blocks * block_h * block_w * itemsize * count
    return int(min(max(cache, GDAL_CACHE_RANGE[0]), GDAL_CACHE_RANGE[1]))


def cpu_only_without_torch(device: str) -> bool:
    """Whether ``device`` surely means the CPU, known without importing torch.

    ``cpu`` does; ``auto`` does on Linux when no NVIDIA driver is loaded (torch then has no
    CUDA device either). Anything else needs torch to resolve.
    """
    if device == "cpu":
        return True
    if device != "auto" or not sys.platform.startswith("linux"):
        return False
    return not Path("/proc/driver/nvidia/version").exists() and \
        not any(Path("/dev").glob("nvidia[0-9]*"))


def plan_from_metadata(scene: str | Path, *, model: str | Path, tile: int | str,
                       device: str, probabilities: bool = False) -> PredictPlan | None:
    """The dry-run plan without torch, or ``None`` when it needs a measurement (see above)."""
    import os

    import psutil
    import rasterio

    from hsimap.cube import read_cube_header
    from hsimap.model_file import read_metadata
    from hsimap.tiling import TileGrid

    meta = read_metadata(model)
    speed: Any = meta.get(INFERENCE_KEY)
    if not isinstance(speed, dict) or speed.get("device") != "cpu" or \
            not cpu_only_without_torch(device):
        return None
    try:
        act = float(speed["activation_bytes_per_pixel"])
        px_per_s = float(speed["read_px_per_second"])
        threads = int(speed["threads"])
        halo, stride = int(meta["halo"]), int(meta["stride"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (act > 0 and px_per_s > 0 and halo >= 0 and stride >= 1):
        return None
    cube = read_cube_header(scene)
    if not check_bands(cube.path, count=cube.count, wavelengths=cube.wavelengths,
                       n_bands=int(meta["n_bands"]), trained=meta.get("wavelengths")):
        import logging

        logging.getLogger("hsimap.predict").warning(
            "%s has no wavelength metadata; assuming its bands match the model's", cube.path)
    n_used, n_classes = len(meta["band_indices"]), len(meta["classes"])
    io = io_bytes_per_pixel(n_used, n_classes, probabilities)
    with rasterio.open(cube.path) as src:
        block_h, block_w = src.block_shapes[0]
        itemsize = np.dtype(src.dtypes[0]).itemsize
    if isinstance(tile, str):
        side = math.sqrt(memory_budget() / (act + io))
        size = tile_for_side(side, halo=halo, stride=stride,
                             input_block=tiled_block(block_h, block_w, cube.grid.width))
    else:
        size = int(tile)
    grid = TileGrid(cube.grid.height, cube.grid.width, size, halo, stride)
    tiles = list(grid)
    largest = max(tiles, key=lambda t: t.read.height * t.read.width)
    blocks = max(blocks_touched(t.read.rows, t.read.cols, block_h, block_w) for t in tiles)
    cache = read_cache_bytes(blocks, block_h, block_w, itemsize, cube.count)
    window = largest.read.height * largest.read.width
    peak = (psutil.Process().memory_info().rss + TORCH_RUNTIME_BYTES + os.path.getsize(model)
            + cache + int(window * (io + act)))
    read_px = sum(t.read.height * t.read.width for t in tiles)
    return PredictPlan(
        n_tiles=len(grid), tile=grid.tile, halo=grid.halo, stride=grid.stride,
        height=grid.height, width=grid.width, device="cpu", peak_memory_bytes=peak,
        activation_bytes_per_pixel=act, estimated_seconds=read_px / px_per_s,
        threads=psutil.cpu_count(logical=False) or 1,  # torch's default thread count
        speed_source=f"the model's speed measured when it was trained: "
                     f"{px_per_s:,.0f} px/s on the CPU with {threads} thread(s)")
