"""The per-tile engine of a prediction: read a tile window, run the model, crop the halo.

:class:`SceneReader` reads tile windows by path (one rasterio dataset per thread, so reader
threads and Dask workers never share one); :func:`compute_tile` turns one tile's values into
the finished write window (class values, and probabilities/confidence when asked), splitting
the tile into sub-tiles on a CUDA out-of-memory error; :func:`classify_array` is the same
step on an in-memory cube. Everything here is a pure function of its inputs, so a local run,
a resumed run and a Dask run give the same map.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window as RioWindow

from hsimap.checkpoint import Checkpoint
from hsimap.cube import Nodata, band_validity, unreadable_pixels, validity
from hsimap.device import autocast
from hsimap.dry_run import GDAL_CACHE_RANGE
from hsimap.errors import DeviceError
from hsimap.geotiff import MAP_NODATA
from hsimap.predict.outputs import PROB_SCALE, ConfidenceKind, ProbDtype, TileResult
from hsimap.tiling import Tile, TileGrid, Window, split_window

if TYPE_CHECKING:
    from hsimap.aoi import AreaMask

log = logging.getLogger(__name__)

DEFAULT_TILE = 256
MAX_OOM_SPLITS = 6



class SceneReader:
    """Reads tile windows of a scene's good bands, one rasterio dataset per thread.

    Rasterio datasets must not be shared between threads, so each reader thread (or Dask
    worker thread) opens the scene by path once and keeps it.
    """

    def __init__(self, path: str | Path, *, bands: list[int], nodata: Nodata,
                 cache_bytes: int = GDAL_CACHE_RANGE[0]) -> None:
        self.path = str(path)
        self.indexes = [b + 1 for b in bands]
        self.nodata = nodata
        self.cache_bytes = cache_bytes
        self._local = threading.local()

    def env(self) -> rasterio.Env:
        """GDAL settings for reading: a block cache sized to a few tile windows, not the
        default 5 % of RAM (which a large scene would fill)."""
        return rasterio.Env(GDAL_CACHEMAX=self.cache_bytes)

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(C, h, w)`` float32 values of ``window`` and the ``(h, w)`` validity mask.

        GDAL read errors (damaged blocks, a VRT source gone missing) become a
        :class:`~hsimap.errors.CubeError` naming the scene and the window.
        """
        try:
            src = getattr(self._local, "src", None)
            if src is None:
                src = self._local.src = rasterio.open(self.path)
                weakref.finalize(self, src.close)
            values = src.read(self.indexes, window=RioWindow(window.col0, window.row0,
                                                             window.width, window.height),
                              out_dtype="float32")
        except rasterio.errors.RasterioIOError as exc:
            raise unreadable_pixels(self.path, window.rows, window.cols, exc) from exc
        return values, validity(values, self.nodata)

    def empty_bands(self) -> list[int]:
        """1-based numbers of the read bands that hold no valid value anywhere in the scene."""
        seen = np.zeros(len(self.indexes), dtype=bool)
        with rasterio.open(self.path) as src:
            for _, win in src.block_windows(1):
                values = src.read(self.indexes, window=win, out_dtype="float32")
                seen |= band_validity(values, self.nodata).any(axis=(1, 2))
                if seen.all():
                    break
        return [b for b, ok in zip(self.indexes, seen, strict=True) if not ok]

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "indexes": self.indexes, "nodata": self.nodata,
                "cache_bytes": self.cache_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()


# --------------------------------------------------------------------------- computing


@dataclass(frozen=True)
class TileWork:
    """What to compute for each tile besides the class map (picklable, for Dask workers)."""

    values_lut: np.ndarray  # (K,) map value of each class index
    map_dtype: str
    halo: int
    stride: int
    probabilities: bool = False
    confidence: bool = False
    prob_dtype: ProbDtype = "uint8"
    confidence_kind: ConfidenceKind = "max"


def compute_tile(ckpt: Checkpoint, values: np.ndarray, valid: np.ndarray, tile: Tile,
                 work: TileWork, device: torch.device) -> TileResult:
    """Class values (and probabilities, confidence) over the write window of ``tile``."""
    keep = valid[tile.crop]
    h, w = tile.write.height, tile.write.width
    k = len(work.values_lut)
    scale, nodata = PROB_SCALE[work.prob_dtype]
    if not keep.any():
        probs = np.full((k, h, w), nodata, work.prob_dtype) if work.probabilities else None
        conf = np.full((h, w), nodata, work.prob_dtype) if work.confidence else None
        return TileResult(tile.index, tile.write, np.full((h, w), MAP_NODATA, work.map_dtype),
                          np.zeros(k, np.int64), probs, conf)
    x = torch.from_numpy(ckpt.norm.apply(values, valid))  # (C, h_read, w_read), CPU
    logits = _logits_split(ckpt, x, tile.read, tile.write, work, device, 0)  # (K, h, w)
    index_t = logits.argmax(0)
    probs_t = conf_t = None
    if work.probabilities or work.confidence:
        p = torch.softmax(logits, 0)
        if work.probabilities:
            probs_t = (p * scale).round_().to(torch.int32)
        if work.confidence:
            if work.confidence_kind == "margin" and k > 1:
                top2 = p.topk(2, dim=0).values
                c = top2[0] - top2[1]
            else:
                c = p.max(0).values
            conf_t = (c * scale).round_().to(torch.int32)
    index = index_t.cpu().numpy()
    counts = np.bincount(index[keep], minlength=k).astype(np.int64)
    map_values = np.where(keep, work.values_lut[index], MAP_NODATA).astype(work.map_dtype)
    probs = conf = None
    if probs_t is not None:
        probs = np.where(keep, probs_t.cpu().numpy(), nodata).astype(work.prob_dtype)
    if conf_t is not None:
        conf = np.where(keep, conf_t.cpu().numpy(), nodata).astype(work.prob_dtype)
    return TileResult(tile.index, tile.write, map_values, counts, probs, conf)


def _logits_split(ckpt: Checkpoint, x: torch.Tensor, read: Window, write: Window,
                  work: TileWork, device: torch.device, depth: int) -> torch.Tensor:
    """``(K, h, w)`` float32 logits of ``write`` from the normalised read window ``x``.

    On a CUDA out-of-memory error the write window is split into four sub-tiles (each with
    its full halo, taken from ``x``; split points on multiples of the model stride) and
    each is computed on its own: the same result, less memory.
    """
    try:
        r0, c0 = write.row0 - read.row0, write.col0 - read.col0
        with torch.inference_mode(), autocast(device):
            logits = ckpt.model.forward_window(
                x[None].to(device, non_blocking=True), origin=(read.row0, read.col0),
                window=(slice(r0, r0 + write.height), slice(c0, c0 + write.width)))
        return logits[0].float()
    except torch.OutOfMemoryError as exc:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        subs = split_window(write, work.stride)
        if depth >= MAX_OOM_SPLITS or len(subs) == 1:
            raise DeviceError(
                f"out of memory on {device} even for a {write.height}x{write.width} px tile "
                f"(+ halo {work.halo} px)", fix="use --device cpu, or free the device") from exc
        log.warning("out of memory on %s for a %dx%d px tile; splitting it into %d sub-tiles",
                    device, write.height, write.width, len(subs))
    rows = []
    for row in subs:
        parts = []
        for sub in row:
            sub_read = Window(max(read.row0, sub.row0 - work.halo),
                              min(read.row1, sub.row1 + work.halo),
                              max(read.col0, sub.col0 - work.halo),
                              min(read.col1, sub.col1 + work.halo))
            xs = x[:, sub_read.row0 - read.row0:sub_read.row1 - read.row0,
                   sub_read.col0 - read.col0:sub_read.col1 - read.col0]
            parts.append(_logits_split(ckpt, xs, sub_read, sub, work, device, depth + 1))
        rows.append(torch.cat(parts, dim=2))
    return torch.cat(rows, dim=1)


def mask_tile(result: TileResult, *, aoi: AreaMask, work: TileWork) -> TileResult:
    """``result`` with every pixel outside ``aoi`` made nodata, and its counts redone."""
    w = result.write
    inside = aoi.window(RioWindow(w.col0, w.row0, w.width, w.height))
    if inside.all():
        return result
    values = np.where(inside, result.values, MAP_NODATA).astype(result.values.dtype)
    counts = np.array([int((values == v).sum()) for v in work.values_lut.tolist()],
                      dtype=np.int64)
    nodata = PROB_SCALE[work.prob_dtype][1]
    probs = None if result.probabilities is None else \
        np.where(inside[None], result.probabilities, nodata).astype(result.probabilities.dtype)
    conf = None if result.confidence is None else \
        np.where(inside, result.confidence, nodata).astype(result.confidence.dtype)
    return TileResult(result.index, result.write, values, counts, probs, conf)


def _array_tiles(ckpt: Checkpoint, values: np.ndarray, valid: np.ndarray, *, tile: int,
                 device: torch.device | None,
                 probabilities: bool = False) -> Iterator[tuple[Tile, TileResult]]:
    """Each tile of an in-memory raw ``(C, H, W)`` cube through the per-tile step of
    ``predict_scene`` (map value = class index + 1, 0 = invalid; uint16 probabilities)."""
    device = device or torch.device("cpu")
    _, height, width = values.shape
    grid = TileGrid(height, width, tile, ckpt.model.halo(), ckpt.model.stride())
    work = TileWork(np.arange(1, len(ckpt.classes) + 1), "int64", grid.halo, grid.stride,
                    probabilities=probabilities, prob_dtype="uint16")
    for t in grid:
        window = (slice(None), slice(*t.read.rows), slice(*t.read.cols))
        v = np.array(values[window], dtype=np.float32)  # normalised in place by compute_tile
        yield t, compute_tile(ckpt, v, valid[window[1:]], t, work, device)


def classify_array(ckpt: Checkpoint, values: np.ndarray, valid: np.ndarray, *,
                   tile: int = DEFAULT_TILE, device: torch.device | None = None) -> np.ndarray:
    """Class index map ``(H, W)`` (-1 where invalid) of an in-memory raw ``(C, H, W)`` cube."""
    result = np.full(values.shape[1:], -1, dtype=np.int64)
    for t, done in _array_tiles(ckpt, values, valid, tile=tile, device=device):
        result[slice(*t.write.rows), slice(*t.write.cols)] = done.values - 1
    return result


def class_probabilities(ckpt: Checkpoint, values: np.ndarray, valid: np.ndarray, *,
                        tile: int = DEFAULT_TILE,
                        device: torch.device | None = None) -> np.ndarray:
    """Class probabilities ``(K, H, W)`` float32 (0 where invalid) of an in-memory raw cube,
    as ``predict --probabilities`` writes them (uint16 scale, 1e-4 steps)."""
    scale, nodata = PROB_SCALE["uint16"]
    out = np.zeros((len(ckpt.classes), *values.shape[1:]), np.float32)
    for t, done in _array_tiles(ckpt, values, valid, tile=tile, device=device,
                                probabilities=True):
        assert done.probabilities is not None
        p = done.probabilities.astype(np.float32)
        p[done.probabilities == nodata] = 0
        out[:, slice(*t.write.rows), slice(*t.write.cols)] = p / scale
    return out
