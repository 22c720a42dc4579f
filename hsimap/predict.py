"""Map a scene: cube -> tiles (+ halo) -> model -> crop -> class map GeoTIFF, streamed.

Memory is bounded by the tile: a few tiles' inputs (read ahead by reader threads), one
tile's activations on the device and a few finished windows waiting for the writer thread
exist at a time, never a full-scene array of probabilities or features. Reading, computing
and writing overlap, so the device does not wait on the disk. The tile size is chosen from
the memory available (``tile="auto"``) by probing the model's activation bytes per pixel.

Outputs (class map, optional probabilities and confidence) are written window by window
under temporary ``.partial`` names with a resume record (see :mod:`hsimap.outputs`): a
killed run can be resumed and gives the same files as an uninterrupted one. With a Dask
scheduler address the tile work runs on a cluster instead (see :mod:`hsimap.distributed`).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import torch
from rasterio.windows import Window as RioWindow

from hsimap import plan
from hsimap.aoi import AreaMask
from hsimap.checkpoint import DEFAULT_MODEL_PATH, Checkpoint, load_checkpoint
from hsimap.cube import (
    Cube,
    Nodata,
    RasterPath,
    band_validity,
    gdal_path,
    open_cube,
    path_name,
    unreadable_pixels,
    validity,
)
from hsimap.device import resolve_device
from hsimap.errors import ConfigError, CubeError, DeviceError
from hsimap.fingerprint import file_sha256, scene_fingerprint
from hsimap.geotiff import MAP_NODATA, pixel_hectares
from hsimap.models.base import ProgressCallback, ProgressEvent, no_progress
from hsimap.outputs import (
    DEFAULT_CHECKPOINT_SECONDS,
    PROB_SCALE,
    ConfidenceKind,
    OutputLock,
    OutputSpec,
    PartialOutputs,
    ProbDtype,
    TileResult,
    read_record,
)
from hsimap.plan import (  # shared with the torch-free plan (hsimap.plan)
    GDAL_CACHE_RANGE,
    MAX_WRITES_IN_FLIGHT,
    PREFETCH,
    PredictPlan,
    check_bands,
    io_bytes_per_pixel,
)
from hsimap.preflight import check_predict_outputs
from hsimap.tiling import Tile, TileGrid, Window

log = logging.getLogger(__name__)

DEFAULT_TILE = 256
MAX_OOM_SPLITS = 6

TileSize = int | Literal["auto"]


@dataclass(frozen=True)
class PredictResult:
    """What ``predict_scene`` wrote and how long it took."""

    map_path: Path
    n_tiles: int
    halo: int
    seconds: float
    n_valid: int
    class_counts: dict[str, int]
    tile: int = DEFAULT_TILE
    outputs: tuple[Path, ...] = ()
    resumed_tiles: int = 0
    pixel_hectares: float | None = None  # area of one pixel; None without a metric CRS

    def class_hectares(self) -> dict[str, float] | None:
        """Mapped area per class in hectares, or ``None`` when the CRS has no metric unit."""
        if self.pixel_hectares is None:
            return None
        return {name: n * self.pixel_hectares for name, n in self.class_counts.items()}


def check_scene(cube: Cube, ckpt: Checkpoint) -> None:
    """Refuse a scene whose bands differ from the training scene's, saying what differs."""
    if not check_bands(cube.path, count=cube.count, wavelengths=cube.wavelengths,
                       n_bands=ckpt.n_bands, trained=ckpt.wavelengths):
        log.warning("%s has no wavelength metadata; assuming its bands match the model's",
                    cube.path)


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


# --------------------------------------------------------------------------- reading


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
    classes = np.where(keep, work.values_lut[index], MAP_NODATA).astype(work.map_dtype)
    probs = conf = None
    if probs_t is not None:
        probs = np.where(keep, probs_t.cpu().numpy(), nodata).astype(work.prob_dtype)
    if conf_t is not None:
        conf = np.where(keep, conf_t.cpu().numpy(), nodata).astype(work.prob_dtype)
    return TileResult(tile.index, tile.write, classes, counts, probs, conf)


def _logits_split(ckpt: Checkpoint, x: torch.Tensor, read: Window, write: Window,
                  work: TileWork, device: torch.device, depth: int) -> torch.Tensor:
    """``(K, h, w)`` float32 logits of ``write`` from the normalised read window ``x``.

    On a CUDA out-of-memory error the write window is split into four sub-tiles (each with
    its full halo, taken from ``x``; split points on multiples of the model stride) and
    each is computed on its own: the same result, less memory.
    """
    try:
        with torch.inference_mode(), _autocast(device):
            logits = ckpt.model.forward_tile(x[None].to(device, non_blocking=True),
                                             origin=(read.row0, read.col0))
        r0, c0 = write.row0 - read.row0, write.col0 - read.col0
        return logits[0, :, r0:r0 + write.height, c0:c0 + write.width].float()
    except torch.OutOfMemoryError as exc:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        subs = _split(write, work.stride)
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


def _split(write: Window, stride: int) -> list[list[Window]]:
    """Halves of ``write`` along each side longer than ``stride`` (cuts on stride multiples)."""
    def cuts(a: int, b: int) -> list[tuple[int, int]]:
        mid = a + ((b - a) // 2 // stride) * stride
        return [(a, b)] if mid <= a or mid >= b else [(a, mid), (mid, b)]
    return [[Window(r0, r1, c0, c1) for c0, c1 in cuts(write.col0, write.col1)]
            for r0, r1 in cuts(write.row0, write.row1)]


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
    with torch.inference_mode(), _autocast(device), _PeakTensorMemory() as mem:
        ckpt.model.forward_tile(x, origin=(0, 0))
    return mem.peak / (side * side)


def memory_budget(device: torch.device) -> int:
    """Working-set bytes ``tile="auto"`` aims for (see :func:`hsimap.plan.memory_budget`)."""
    return plan.memory_budget()


def auto_tile_size(ckpt: Checkpoint, device: torch.device, *, budget: int | None = None,
                   work: TileWork | None = None, input_block: int | None = None,
                   ) -> tuple[int, float]:
    """Largest tile side whose working set fits ``budget``; also the activation B/px.

    When the tile is at least one block of the (tiled) input, it is rounded down to a whole
    number of input blocks so that reads decode as few blocks as possible.
    """
    act = activation_bytes_per_pixel(ckpt, device)
    halo, stride = ckpt.model.halo(), ckpt.model.stride()
    io = plan.io_bytes_per_pixel(len(ckpt.band_indices), len(ckpt.classes),
                                 work is not None and work.probabilities)
    budget = budget or memory_budget(device)
    if device.type == "cuda":  # activations live on the GPU, buffers in host memory
        free, _ = torch.cuda.mem_get_info(device)
        side_dev = math.sqrt(0.6 * free / max(act, 1.0))
        side_host = math.sqrt(budget / io)
        side = min(side_dev, side_host)
    else:
        side = math.sqrt(budget / (act + io))
    tile = plan.tile_for_side(side, halo=halo, stride=stride, input_block=input_block)
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


# --------------------------------------------------------------------------- predict


def fingerprint(*, ckpt: Checkpoint, model: Path, scene: RasterPath, cube: Cube,
                grid: TileGrid, spec: OutputSpec, precision: str) -> dict[str, Any]:
    """What must be the same for a partial output to be resumed.

    The model and the scene are identified by content (see :mod:`hsimap.fingerprint`), not
    by size and modification time, which a rewrite with ``cp -p`` or ``rsync -t`` keeps.
    """
    return {
        "model_sha256": file_sha256(model),
        "scene": str(Path(scene).resolve()) if isinstance(scene, Path) else scene,
        **scene_fingerprint(scene),
        "scene_shape": [cube.count, cube.grid.height, cube.grid.width],
        "bands": list(ckpt.band_indices),
        "tile": grid.tile, "halo": grid.halo, "stride": grid.stride,
        "precision": precision,
        **spec.fingerprint_part(),
    }


@dataclass
class _Setup:
    ckpt: Checkpoint
    cube: Cube
    device: torch.device
    grid: TileGrid
    work: TileWork
    reader: SceneReader
    activation_bpp: float | None


def _setup(scene: str | Path, model: str | Path, tile: TileSize, device: str,
           spec: OutputSpec | None, record: dict[str, Any] | None,
           scheduler: str | None = None) -> _Setup:
    torch_device = torch.device("cpu") if scheduler else resolve_device(device)
    ckpt = load_checkpoint(model, device=torch_device)
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
                              plan.tiled_block(block_h, block_w, cube.grid.width))
    grid = TileGrid(cube.grid.height, cube.grid.width, size, halo, stride)
    blocks = max(plan.blocks_touched(t.read.rows, t.read.cols, block_h, block_w) for t in grid)
    cache = plan.read_cache_bytes(blocks, block_h, block_w, itemsize, cube.count)
    reader = SceneReader(cube.path, bands=cube.good_bands, nodata=cube.good_nodata,
                         cache_bytes=cache)
    return _Setup(ckpt, cube, torch_device, grid, work, reader, act)


def plan_prediction(scene: str | Path, *, model: str | Path = DEFAULT_MODEL_PATH,
                    tile: TileSize = "auto", device: str = "auto",
                    probabilities: bool = False, sample_tiles: int = 2,
                    sample_tile: int = 64) -> PredictPlan:
    """Tile count, tile size, halo, peak-memory and run-time estimates; writes nothing.

    From the scene's header and the speed stored in the model file when it has one for this
    device (:func:`hsimap.plan.plan_from_metadata`: no torch, no model run, no pixel read).
    Otherwise the model is loaded and the run time extrapolated from ``sample_tiles`` runs
    of one tile of at most ``sample_tile`` px (+ halo) read and computed here (the fastest
    counts; the first includes warm-up), scaled by read-window pixels.
    """
    quick = plan.plan_from_metadata(scene, model=model, tile=tile, device=device,
                                    probabilities=probabilities)
    if quick is not None:
        return quick
    import psutil

    spec = OutputSpec(Path("unused.tif"), probabilities=Path("unused_p.tif")) \
        if probabilities else None
    s = _setup(scene, model, tile, device, spec, None)
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


def _time_tiles(s: _Setup, tile: Tile, n: int) -> list[float]:
    """Seconds to read and compute ``tile``, ``n`` times (at most 3)."""
    times = []
    for _ in range(max(0, min(n, 3))):
        start = time.perf_counter()
        values, valid = s.reader.read(tile.read)
        valid[:] = True  # time the model even where the sample tile is nodata
        compute_tile(s.ckpt, values, valid, tile, s.work, s.device)
        times.append(time.perf_counter() - start)
    return times


def predict_scene(scene: str | Path, *, out: str | Path,
                  model: str | Path = DEFAULT_MODEL_PATH, tile: TileSize = "auto",
                  device: str = "auto", overwrite: bool = False,
                  probabilities: str | Path | None = None,
                  confidence: str | Path | None = None, prob_dtype: ProbDtype = "uint8",
                  confidence_kind: ConfidenceKind = "max", cog: bool = False,
                  scheduler: str | None = None, resume: bool = False,
                  checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
                  progress: ProgressCallback = no_progress,
                  creation_options: Mapping[str, str] | None = None,
                  mask: str | Path | None = None,
                  mask_layer: str | None = None) -> PredictResult:
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
        Tile side in pixels (the halo comes on top and is read, computed and cropped), or
        ``"auto"``: the largest tile whose working set fits the memory budget.
    device
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (with ``scheduler``: the workers' device).
    overwrite
        Replace existing outputs.
    probabilities, confidence
        Optional per-class probability and confidence GeoTIFFs, scaled to ``prob_dtype``
        (``uint8``: 0..254, nodata 255; ``uint16``: 0..10000, nodata 65535).
    confidence_kind
        ``max`` (winning probability) or ``margin`` (best minus second best).
    cog
        Write Cloud-Optimized GeoTIFFs (overviews: mode for the map, average otherwise).
    scheduler
        Address of a Dask scheduler (``tcp://host:8786``): run the tiles on that cluster.
    resume
        Continue an interrupted run from its partial files (same settings required).
    checkpoint_seconds
        How often finished tiles are made durable and listed in the resume record.
    progress
        Called with a :class:`ProgressEvent` after each tile.
    creation_options
        GDAL creation options for every output (``{"COMPRESS": "ZSTD"}``), replacing
        hsimap's own; those of the COG driver with ``cog``. Checked before anything is read.
    mask, mask_layer
        An area of interest (polygons, or a raster: non-zero = inside; see
        :class:`hsimap.aoi.AreaMask`) and the layer of a multi-layer vector file: pixels
        outside are nodata in every output. The model still sees them as context.
    """
    start = time.perf_counter()
    scene = gdal_path(scene)
    spec, inputs, _ = check_predict_outputs(
        scene, out=out, model=model, probabilities=probabilities, confidence=confidence,
        prob_dtype=prob_dtype, confidence_kind=confidence_kind, cog=cog,
        creation_options=creation_options, overwrite=overwrite, resume=resume)
    if scheduler:
        from hsimap.distributed import probe_scheduler

        probe_scheduler(scheduler)
    with OutputLock(spec.map):
        return _predict_locked(scene, spec, model=model, tile=tile, device=device,
                               overwrite=overwrite, scheduler=scheduler, resume=resume,
                               inputs=tuple(inputs), checkpoint_seconds=checkpoint_seconds,
                               progress=progress, start=start, mask=mask,
                               mask_layer=mask_layer)


def _predict_locked(scene: RasterPath, spec: OutputSpec, *, model: str | Path, tile: TileSize,
                    device: str, overwrite: bool, scheduler: str | None, resume: bool,
                    inputs: tuple[str | Path, ...], checkpoint_seconds: float,
                    progress: ProgressCallback, start: float, mask: str | Path | None = None,
                    mask_layer: str | None = None) -> PredictResult:
    """:func:`predict_scene` once its outputs are checked and locked."""
    record = read_record(spec.map) if resume else None
    s = _setup(scene, model, tile, device, spec, record, scheduler)
    aoi = None if mask is None else AreaMask.open(mask, s.cube.grid, layer=mask_layer)
    try:
        return _predict_with(s, scene, spec, model=model, device=device, overwrite=overwrite,
                             scheduler=scheduler, resume=resume, inputs=inputs,
                             checkpoint_seconds=checkpoint_seconds, progress=progress,
                             start=start, aoi=aoi)
    finally:
        if aoi is not None:
            aoi.close()


def _predict_with(s: _Setup, scene: RasterPath, spec: OutputSpec, *, model: str | Path,
                  device: str, overwrite: bool, scheduler: str | None, resume: bool,
                  inputs: tuple[str | Path, ...], checkpoint_seconds: float,
                  progress: ProgressCallback, start: float,
                  aoi: AreaMask | None) -> PredictResult:
    """:func:`predict_scene` once the scene, model and mask are open."""
    log.info("predicting %s: %d tiles of %d px, halo %d px, on %s", path_name(s.cube.path),
             len(s.grid), s.grid.tile, s.grid.halo,
             f"Dask cluster {scheduler}" if scheduler else s.device)
    if scheduler:  # the workers resolve the device; "auto" may mean a GPU there
        precision = {"cpu": "fp32", "auto": "auto"}.get(device, "bf16")
    else:
        precision = "bf16" if s.device.type == "cuda" else "fp32"
    fp = fingerprint(ckpt=s.ckpt, model=Path(model), scene=s.cube.path, cube=s.cube, grid=s.grid,
                     spec=spec, precision=precision)
    if aoi is not None:
        fp["mask"] = aoi.describe()
    sink = PartialOutputs.start(spec, grid=s.cube.grid, classes=s.ckpt.classes, fingerprint=fp,
                                n_tiles=len(s.grid), tile=s.grid.tile, resume=resume,
                                overwrite=overwrite, inputs=inputs,
                                checkpoint_seconds=checkpoint_seconds)
    if aoi is not None:
        sink.tile_filter = functools.partial(mask_tile, aoi=aoi, work=s.work)
    resumed = len(sink.done)
    todo = [t for t in s.grid if t.index not in sink.done]
    total = len(s.grid)
    done_count = [resumed]

    def written(_: TileResult) -> None:
        done_count[0] += 1
        progress(ProgressEvent("predict", done_count[0], total))

    try:
        if scheduler:
            from hsimap.distributed import run_on_cluster

            run_on_cluster(scheduler, scene=s.cube.path, model=Path(model), tiles=todo,
                           work=s.work, reader=s.reader, device=device, sink=sink,
                           on_written=written)
        else:
            run_local(s.ckpt, s.reader, todo, s.work, s.device, sink, written)
        sink.checkpoint()
    except BaseException:
        kept = sink.close(keep=True)
        log.warning("prediction stopped: %s", f"{len(sink.done)} of {total} tiles are saved "
                    f"in {sink.spec.map.parent / ('.' + sink.spec.map.name + '.partial')}; "
                    "run the same command with --resume to finish" if kept else
                    "no tile was finished; the partial files were removed")
        raise
    if not sink.counts.any():  # like train, refuse a scene with nothing to classify
        sink.close(keep=False)
        if aoi is not None:
            raise CubeError("no valid pixel of the scene lies inside the mask, so the map "
                            "would be empty", path=aoi.path,
                            fix="check that the mask covers valid pixels of the scene")
        raise _no_valid_pixel(s)
    try:
        paths = sink.finish(overwrite=overwrite)
    except BaseException:
        sink.close(keep=True)  # after a failed write (disk full) this removes the partials
        raise
    counts = sink.counts
    return PredictResult(spec.map, total, s.grid.halo, time.perf_counter() - start,
                         int(counts.sum()),
                         {c.name: int(n) for c, n in zip(s.ckpt.classes, counts, strict=True)},
                         tile=s.grid.tile, outputs=tuple(paths), resumed_tiles=resumed,
                         pixel_hectares=pixel_hectares(s.cube.grid.crs, s.cube.grid.transform))


def mask_tile(result: TileResult, *, aoi: AreaMask, work: TileWork) -> TileResult:
    """``result`` with every pixel outside ``aoi`` made nodata, and its counts redone."""
    w = result.write
    inside = aoi.window(RioWindow(w.col0, w.row0, w.width, w.height))
    if inside.all():
        return result
    classes = np.where(inside, result.classes, MAP_NODATA).astype(result.classes.dtype)
    counts = np.array([int((classes == v).sum()) for v in work.values_lut.tolist()],
                      dtype=np.int64)
    nodata = PROB_SCALE[work.prob_dtype][1]
    probs = None if result.probabilities is None else \
        np.where(inside[None], result.probabilities, nodata).astype(result.probabilities.dtype)
    conf = None if result.confidence is None else \
        np.where(inside, result.confidence, nodata).astype(result.confidence.dtype)
    return TileResult(result.index, result.write, classes, counts, probs, conf)


def _no_valid_pixel(s: _Setup) -> CubeError:
    """The error for a scene in which the model finds no pixel to classify."""
    empty = s.reader.empty_bands()
    if empty:
        listed = ",".join(str(b) for b in empty)
        return CubeError(
            f"has no valid pixel: band(s) {listed} hold no valid value at all (every value is "
            "nodata, NaN or inf), and the model needs them, so the map would be empty",
            path=s.cube.path,
            fix=f"give a scene with data in band(s) {listed}, or retrain with --bad-bands "
                f"{listed} so that the model does without them")
    return CubeError(
        "has no valid pixel: every pixel is nodata, NaN or inf in some band, so the map would "
        "be empty", path=s.cube.path,
        fix="check the nodata value of the scene, or give another scene")


def run_local(ckpt: Checkpoint, reader: SceneReader, tiles: list[Tile], work: TileWork,
              device: torch.device, sink: PartialOutputs,
              on_written: Callable[[TileResult], None]) -> None:
    """Read ahead (reader threads), compute (this thread), write (writer thread), overlapped."""
    if not tiles:
        return
    readers = ThreadPoolExecutor(PREFETCH, thread_name_prefix="hsimap-read")
    writer = ThreadPoolExecutor(1, thread_name_prefix="hsimap-write")
    reads: deque[tuple[Tile, Future[tuple[np.ndarray, np.ndarray]]]] = deque()
    writes: deque[Future[None]] = deque()
    pending: Iterator[Tile] = iter(tiles)

    def submit_read() -> None:
        t = next(pending, None)
        if t is not None:
            reads.append((t, readers.submit(reader.read, t.read)))

    def write(result: TileResult) -> None:
        sink.write(result)
        on_written(result)

    env = reader.env()
    env.__enter__()
    try:
        for _ in range(PREFETCH):
            submit_read()
        while reads:
            t, fut = reads.popleft()
            values, valid = fut.result()
            submit_read()
            result = compute_tile(ckpt, values, valid, t, work, device)
            del values, valid
            writes.append(writer.submit(write, result))
            while len(writes) > MAX_WRITES_IN_FLIGHT or (writes and writes[0].done()):
                writes.popleft().result()
        while writes:
            writes.popleft().result()
    finally:
        readers.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True, cancel_futures=True)
        env.__exit__(None, None, None)


def classify_array(ckpt: Checkpoint, values: np.ndarray, valid: np.ndarray, *,
                   tile: int = DEFAULT_TILE, device: torch.device | None = None) -> np.ndarray:
    """Class index map ``(H, W)`` (-1 where invalid) of an in-memory raw ``(C, H, W)`` cube."""
    device = device or torch.device("cpu")
    _, height, width = values.shape
    grid = TileGrid(height, width, tile, ckpt.model.halo(), ckpt.model.stride())
    # the per-tile step of predict_scene, with map value = class index + 1 (0 = invalid)
    work = TileWork(np.arange(1, len(ckpt.classes) + 1), "int64", grid.halo, grid.stride)
    result = np.full((height, width), -1, dtype=np.int64)
    for t in grid:
        window = (slice(None), slice(*t.read.rows), slice(*t.read.cols))
        v = np.array(values[window], dtype=np.float32)  # normalised in place by compute_tile
        done = compute_tile(ckpt, v, valid[window[1:]], t, work, device)
        result[slice(*t.write.rows), slice(*t.write.cols)] = done.classes - 1
    return result
