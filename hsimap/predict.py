"""Map a scene: cube -> tiles (+ halo) -> model -> crop -> class map GeoTIFF, streamed.

Memory is bounded by the tile: one tile's input, features and logits exist at a time (plus
one tile being read ahead), never a full-scene array of probabilities or features. The map
is written window by window under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hsimap.checkpoint import DEFAULT_MODEL_PATH, Checkpoint, load_checkpoint
from hsimap.cube import Cube, open_cube
from hsimap.device import resolve_device
from hsimap.errors import SceneMismatchError
from hsimap.geotiff import (
    MAP_NODATA,
    atomic_raster,
    check_output,
    class_map_profile,
    tag_class_map,
    write_sidecars,
    write_window,
)
from hsimap.models.base import ProgressCallback, ProgressEvent, no_progress
from hsimap.tiling import Tile, TileGrid

log = logging.getLogger(__name__)

DEFAULT_TILE = 256
WAVELENGTH_TOLERANCE_NM = 2.0


@dataclass(frozen=True)
class PredictResult:
    """What ``predict_scene`` wrote and how long it took."""

    map_path: Path
    n_tiles: int
    halo: int
    seconds: float
    n_valid: int
    class_counts: dict[str, int]


def check_scene(cube: Cube, ckpt: Checkpoint) -> None:
    """Refuse a scene whose bands differ from the training scene's, saying what differs."""
    if cube.count != ckpt.n_bands:
        raise SceneMismatchError(
            f"has {cube.count} bands but the model was trained on {ckpt.n_bands}",
            path=cube.path, fix="give a scene from the same sensor and band set, or retrain")
    trained = ckpt.wavelengths
    if trained is None or cube.wavelengths is None:
        if trained is not None:
            log.warning("%s has no wavelength metadata; assuming its bands match the model's",
                        cube.path)
        return
    diff = np.abs(np.asarray(cube.wavelengths) - np.asarray(trained))
    worst = int(diff.argmax())
    if diff[worst] > WAVELENGTH_TOLERANCE_NM:
        raise SceneMismatchError(
            f"band {worst + 1} is at {cube.wavelengths[worst]:.2f} nm but the model's band "
            f"{worst + 1} is at {trained[worst]:.2f} nm ({int((diff > WAVELENGTH_TOLERANCE_NM).sum())}"
            f" bands differ by more than {WAVELENGTH_TOLERANCE_NM} nm)",
            path=cube.path, fix="resample the scene to the model's wavelengths or retrain")


def tile_logits(ckpt: Checkpoint, values: np.ndarray, valid: np.ndarray, *,
                origin: tuple[int, int], device: torch.device) -> torch.Tensor:
    """``(K, h, w)`` logits for one read window of raw ``(C, h, w)`` values."""
    x = ckpt.norm.apply(values, valid)
    with torch.inference_mode(), _autocast(device):
        logits = ckpt.model.forward_tile(torch.from_numpy(x)[None].to(device), origin=origin)
    return logits[0].float()


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def predict_scene(scene: str | Path, *, out: str | Path,
                  model: str | Path = DEFAULT_MODEL_PATH, tile: int = DEFAULT_TILE,
                  device: str = "auto", overwrite: bool = False,
                  progress: ProgressCallback = no_progress) -> PredictResult:
    """Classify every valid pixel of ``scene`` and write a class-map GeoTIFF to ``out``.

    Parameters
    ----------
    scene
        Hyperspectral raster with the same bands as the training scene.
    out
        Output GeoTIFF path (plus ``.aux.xml`` and ``.qml`` sidecars).
    model
        Checkpoint written by :func:`hsimap.training.train_model`.
    tile
        Tile side in pixels (the halo comes on top and is read, computed and cropped).
    device
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    overwrite
        Replace an existing ``out``.
    progress
        Called with a :class:`ProgressEvent` after each tile.
    """
    start = time.perf_counter()
    torch_device = resolve_device(device)
    ckpt = load_checkpoint(model, device=torch_device)
    out = check_output(out, inputs=(scene, model), overwrite=overwrite)
    cube = open_cube(scene)
    check_scene(cube, ckpt)
    cube = cube.with_bad_bands(tuple(sorted(set(range(ckpt.n_bands)) - set(ckpt.band_indices))))
    grid = TileGrid(cube.grid.height, cube.grid.width, tile, ckpt.model.halo(),
                    ckpt.model.stride())
    log.info("predicting %s: %d tiles of %d px, halo %d px, on %s", cube.path.name, len(grid),
             grid.tile, grid.halo, torch_device)
    values_lut = np.asarray(ckpt.classes.values, dtype=ckpt.classes.map_dtype)
    counts = np.zeros(len(ckpt.classes), dtype=np.int64)
    profile = class_map_profile(cube.grid, ckpt.classes)
    with atomic_raster(out, profile) as dst, ThreadPoolExecutor(1) as reader:
        tag_class_map(dst, ckpt.classes)
        tiles = list(grid)
        pending = reader.submit(_read, cube, tiles[0])
        for i, t in enumerate(tiles):
            values, valid = pending.result()
            if i + 1 < len(tiles):
                pending = reader.submit(_read, cube, tiles[i + 1])
            index = _classify(ckpt, values, valid, t, torch_device)
            keep = valid[t.crop]
            counts += np.bincount(index[keep], minlength=len(counts))
            write_window(dst, np.where(keep, values_lut[index], MAP_NODATA).astype(
                values_lut.dtype), t.write)
            progress(ProgressEvent("predict", i + 1, len(tiles)))
    write_sidecars(out, ckpt.classes)
    return PredictResult(out, len(grid), grid.halo, time.perf_counter() - start,
                         int(counts.sum()),
                         {c.name: int(n) for c, n in zip(ckpt.classes, counts, strict=True)})


def _read(cube: Cube, t: Tile) -> tuple[np.ndarray, np.ndarray]:
    return cube.read(t.read.rows, t.read.cols)


def _classify(ckpt: Checkpoint, values: np.ndarray, valid: np.ndarray, t: Tile,
              device: torch.device) -> np.ndarray:
    """Class index ``(h, w)`` over the write window of tile ``t``."""
    if not valid[t.crop].any():
        return np.zeros((t.write.height, t.write.width), dtype=np.int64)
    logits = tile_logits(ckpt, values, valid, origin=(t.read.row0, t.read.col0), device=device)
    return np.asarray(logits.argmax(0).cpu().numpy()[t.crop])


def classify_array(ckpt: Checkpoint, values: np.ndarray, valid: np.ndarray, *,
                   tile: int = DEFAULT_TILE, device: torch.device | None = None) -> np.ndarray:
    """Class index map ``(H, W)`` (-1 where invalid) of an in-memory raw ``(C, H, W)`` cube."""
    device = device or torch.device("cpu")
    _, height, width = values.shape
    grid = TileGrid(height, width, tile, ckpt.model.halo(), ckpt.model.stride())
    result = np.full((height, width), -1, dtype=np.int64)
    for t in grid:
        window = (slice(None), slice(*t.read.rows), slice(*t.read.cols))
        v = np.array(values[window], dtype=np.float32)
        ok = valid[window[1:]]
        index = _classify(ckpt, v, ok, t, device)
        rs, cs = slice(*t.write.rows), slice(*t.write.cols)
        result[rs, cs] = np.where(ok[t.crop], index, -1)
    return result
