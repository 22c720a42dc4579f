"""The memory plan of a prediction, the part that needs torch: activations, tile size, --dry-run.

:func:`prepare_run` opens the model and the scene, checks that their bands match
(:func:`check_scene`) and chooses the tile (``tile="auto"``: the largest whose working set
fits the memory budget, from the model's activation bytes per pixel measured on a probe
tile); :func:`plan_prediction` adds peak-memory and run-time estimates and writes nothing.
The torch-free arithmetic (budgets, block maths, the plan from a model file's metadata)
is :mod:`hsimap.dry_run`, which ``hsimap predict --dry-run`` uses without importing torch.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import torch

from hsimap import dry_run
from hsimap.checkpoint import DEFAULT_MODEL_PATH, Checkpoint, load_checkpoint
from hsimap.cube import Cube, open_cube
from hsimap.device import autocast, resolve_device
from hsimap.dry_run import PredictPlan, check_bands, io_bytes_per_pixel
from hsimap.errors import ConfigError
from hsimap.predict.engine import DEFAULT_TILE, SceneReader, TileWork, compute_tile
from hsimap.predict.outputs import OutputSpec
from hsimap.tiling import Tile, TileGrid

log = logging.getLogger(__name__)

TileSize = int | Literal["auto"]


def check_scene(cube: Cube, ckpt: Checkpoint) -> None:
    """Refuse a scene whose bands differ from the training scene's, saying what differs."""
    if not check_bands(cube.path, count=cube.count, wavelengths=cube.wavelengths,
                       n_bands=ckpt.n_bands, trained=ckpt.wavelengths):
        log.warning("%s has no wavelength metadata; assuming its bands match the model's",
                    cube.path)


# --------------------------------------------------------------------------- tile size


class _PeakTensorMemory:
    """Peak bytes of live tensor storages during a forward pass (CPU or CUDA, any model).

    Every tensor a torch function returns is counted from its creation until its storage is
    freed (a weakref finalizer). Scratch memory inside a single operator is not seen.
    """

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def __enter__(self) -> _PeakTensorMemory:
        from torch.overrides import TorchFunctionMode

        tracker = self

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func: Any, types: Any, args: Any = (),
                                   kwargs: Any = None) -> Any:
                out = func(*args, **(kwargs or {}))
                tracker._track(out)
                return out

        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(None, None, None)

    def _track(self, out: Any) -> None:
        from torch.utils._pytree import tree_flatten

        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = id(storage)
            if key in self._seen or storage.nbytes() == 0:
                continue
            self._seen.add(key)
            self.live += storage.nbytes()
            weakref.finalize(storage, self._free, key, storage.nbytes())
        self.peak = max(self.peak, self.live)

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes


def activation_bytes_per_pixel(ckpt: Checkpoint, device: torch.device, *,
                               probe: int = 32) -> float:
    """Peak tensor bytes of one forward pass per read-window pixel, from a small probe tile.

    A model can give its own figure as an ``activation_bytes_per_pixel()`` method.
    """
    hint = getattr(ckpt.model, "activation_bytes_per_pixel", None)
    if callable(hint):
        return float(hint())
    halo, stride = ckpt.model.halo(), ckpt.model.stride()
    side = -(-(probe + 2 * halo) // stride) * stride
    n_bands = len(ckpt.band_indices)
    x = torch.zeros((1, n_bands, side, side), device=device)
    x.normal_(generator=torch.Generator(device=device).manual_seed(0))
    with torch.inference_mode(), autocast(device), _PeakTensorMemory() as mem:
        ckpt.model.forward_tile(x, origin=(0, 0))
    return mem.peak / (side * side)


def memory_budget(device: torch.device) -> int:
    """Working-set bytes ``tile="auto"`` aims for (see :func:`hsimap.dry_run.memory_budget`)."""
    return dry_run.memory_budget()


def auto_tile_size(ckpt: Checkpoint, device: torch.device, *, budget: int | None = None,
                   work: TileWork | None = None, input_block: int | None = None,
                   ) -> tuple[int, float]:
    """Largest tile side whose working set fits ``budget``; also the activation B/px.

    When the tile is at least one block of the (tiled) input, it is rounded down to a whole
    number of input blocks so that reads decode as few blocks as possible.
    """
    act = activation_bytes_per_pixel(ckpt, device)
    halo, stride = ckpt.model.halo(), ckpt.model.stride()
    io = dry_run.io_bytes_per_pixel(len(ckpt.band_indices), len(ckpt.classes),
                                 work is not None and work.probabilities)
    budget = budget or memory_budget(device)
    if device.type == "cuda":  # activations live on the GPU, buffers in host memory
        free, _ = torch.cuda.mem_get_info(device)
        side_dev = math.sqrt(0.6 * free / max(act, 1.0))
        side_host = math.sqrt(budget / io)
        side = min(side_dev, side_host)
    else:
        side = math.sqrt(budget / (act + io))
    tile = dry_run.tile_for_side(side, halo=halo, stride=stride, input_block=input_block)
    return tile, act


def _resolve_tile(tile: TileSize, ckpt: Checkpoint, device: torch.device,
                  work: TileWork, record: dict[str, Any] | None,
                  input_block: int | None) -> tuple[int, float | None]:
    if isinstance(tile, str):
        if tile != "auto":
            raise ConfigError(f"tile size must be a number of pixels or 'auto', got {tile!r}")
        if record is not None:  # resuming: keep the tile size the run started with
            return int(record["tile"]), None
        size, act = auto_tile_size(ckpt, device, work=work, input_block=input_block)
        return size, act
    if tile < 1:
        raise ConfigError(f"tile size must be a positive number of pixels, got {tile}",
                          fix="pass --tile-size 256, or auto")
    return int(tile), None


@dataclass
class PreparedRun:
    """A scene and a model opened for prediction: the tile grid, tile work and reader."""

    ckpt: Checkpoint
    cube: Cube
    device: torch.device
    grid: TileGrid
    work: TileWork
    reader: SceneReader
    activation_bpp: float | None


def prepare_run(scene: str | Path, model_path: str | Path, tile: TileSize, device: str,
                spec: OutputSpec | None, record: dict[str, Any] | None,
                scheduler: str | None = None) -> PreparedRun:
    """Load the model, open and check the scene, choose the tile size, build the reader."""
    torch_device = torch.device("cpu") if scheduler else resolve_device(device)
    ckpt = load_checkpoint(model_path, device=torch_device)
    cube = open_cube(scene)
    check_scene(cube, ckpt)
    cube = cube.with_bad_bands(tuple(sorted(set(range(ckpt.n_bands)) - set(ckpt.band_indices))))
    halo, stride = ckpt.model.halo(), ckpt.model.stride()
    work = TileWork(
        values_lut=np.asarray(ckpt.classes.values, dtype=ckpt.classes.map_dtype),
        map_dtype=ckpt.classes.map_dtype, halo=-(-halo // stride) * stride, stride=stride,
        probabilities=spec is not None and spec.probabilities is not None,
        confidence=spec is not None and spec.confidence is not None,
        prob_dtype=spec.prob_dtype if spec else "uint8",
        confidence_kind=spec.confidence_kind if spec else "max")
    with rasterio.open(cube.path) as src:
        block_h, block_w = src.block_shapes[0]
        itemsize = np.dtype(src.dtypes[0]).itemsize
    size, act = _resolve_tile(tile, ckpt, torch_device, work, record,
                              dry_run.tiled_block(block_h, block_w, cube.grid.width))
    grid = TileGrid(cube.grid.height, cube.grid.width, size, halo, stride)
    blocks = max(dry_run.blocks_touched(t.read.rows, t.read.cols, block_h, block_w) for t in grid)
    cache = dry_run.read_cache_bytes(blocks, block_h, block_w, itemsize, cube.count)
    reader = SceneReader(cube.path, bands=cube.good_bands, nodata=cube.good_nodata,
                         cache_bytes=cache)
    return PreparedRun(ckpt, cube, torch_device, grid, work, reader, act)


def plan_prediction(scene: str | Path, *, model_path: str | Path = DEFAULT_MODEL_PATH,
                    tile: TileSize = "auto", device: str = "auto",
                    probabilities: bool = False, sample_tiles: int = 2,
                    sample_tile: int = 64) -> PredictPlan:
    """Tile count, tile size, halo, peak-memory and run-time estimates; writes nothing.

    From the scene's header and the speed stored in the model file when it has one for this
    device (:func:`hsimap.dry_run.plan_from_metadata`: no torch, no model run, no pixel read).
    Otherwise the model is loaded and the run time extrapolated from ``sample_tiles`` runs
    of one tile of at most ``sample_tile`` px (+ halo) read and computed here (the fastest
    counts; the first includes warm-up), scaled by read-window pixels.
    """
    quick = dry_run.plan_from_metadata(scene, model=model_path, tile=tile, device=device,
                                    probabilities=probabilities)
    if quick is not None:
        return quick
    import psutil

    spec = OutputSpec(Path("unused.tif"), probabilities=Path("unused_p.tif")) \
        if probabilities else None
    s = prepare_run(scene, model_path, tile, device, spec, None)
    act = s.activation_bpp if s.activation_bpp is not None else \
        activation_bytes_per_pixel(s.ckpt, s.device)
    tiles = list(s.grid)
    read_px = sum(t.read.height * t.read.width for t in tiles)
    largest = max(tiles, key=lambda t: t.read.height * t.read.width)
    sample = max(TileGrid(s.grid.height, s.grid.width, min(s.grid.tile, sample_tile),
                          s.grid.halo, s.grid.stride),
                 key=lambda t: t.read.height * t.read.width)
    with s.reader.env():
        times = _time_tiles(s, sample, sample_tiles)
    side = largest.read.height * largest.read.width
    io = io_bytes_per_pixel(len(s.ckpt.band_indices), len(s.ckpt.classes),
                            s.work.probabilities)
    peak = psutil.Process().memory_info().rss + s.reader.cache_bytes + int(side * (io + (
        act if s.device.type == "cpu" else 0)))
    per_px = min(times) / (sample.read.height * sample.read.width) if times else None
    return PredictPlan(
        n_tiles=len(s.grid), tile=s.grid.tile, halo=s.grid.halo, stride=s.grid.stride,
        height=s.grid.height, width=s.grid.width, device=str(s.device),
        peak_memory_bytes=peak, activation_bytes_per_pixel=act,
        seconds_per_tile=None if per_px is None else per_px * side,
        estimated_seconds=per_px * read_px if per_px is not None else None,
        sample_tiles=len(times), threads=torch.get_num_threads())


def inference_record(ckpt: Checkpoint, device: torch.device, *, shape: tuple[int, ...],
                     seconds: float, tile: int = DEFAULT_TILE) -> dict[str, Any]:
    """What ``train`` stores (metadata ``"inference"``) for a torch-free ``--dry-run``, after
    :func:`classify_array` of a ``shape`` (H, W) scene took ``seconds``: the device, torch
    threads, read-window pixels per second and activation bytes per pixel."""
    grid = TileGrid(int(shape[0]), int(shape[1]), tile, ckpt.model.halo(), ckpt.model.stride())
    read_px = sum(t.read.height * t.read.width for t in grid)
    return {"device": device.type, "threads": torch.get_num_threads(),
            "read_px_per_second": read_px / max(seconds, 1e-9),
            "activation_bytes_per_pixel": activation_bytes_per_pixel(ckpt, device)}


def _time_tiles(s: PreparedRun, tile: Tile, n: int) -> list[float]:
    """Seconds to read and compute ``tile``, ``n`` times (at most 3)."""
    times = []
    for _ in range(max(0, min(n, 3))):
        start = time.perf_counter()
        values, valid = s.reader.read(tile.read)
        valid[:] = True  # time the model even where the sample tile is nodata
        compute_tile(s.ckpt, values, valid, tile, s.work, s.device)
        times.append(time.perf_counter() - start)
    return times


