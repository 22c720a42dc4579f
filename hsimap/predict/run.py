"""Run a prediction: check and lock the outputs, then map every tile, locally or on Dask.

Memory is bounded by the tile: a few tiles' inputs (read ahead by reader threads), one
tile's activations on the device and a few finished windows waiting for the writer thread
exist at a time, never a full-scene array of probabilities or features. Reading, computing
and writing overlap, so the device does not wait on the disk. Outputs are written window by
window under temporary ``.partial`` names with a resume record
(:mod:`hsimap.predict.outputs`): a killed run can be resumed and gives the same files as an
uninterrupted one. With a Dask scheduler address the tile work runs on a cluster instead
(:mod:`hsimap.predict.cluster`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsimap.aoi import AreaMask
from hsimap.checkpoint import DEFAULT_MODEL_PATH, Checkpoint
from hsimap.cube import Cube, RasterPath, gdal_path, path_name
from hsimap.dry_run import MAX_WRITES_IN_FLIGHT, PREFETCH
from hsimap.errors import CubeError
from hsimap.fingerprint import file_sha256, scene_fingerprint
from hsimap.geotiff import pixel_hectares
from hsimap.models.base import ProgressCallback, ProgressEvent, no_progress
from hsimap.predict.cluster import probe_scheduler, run_on_cluster
from hsimap.predict.engine import DEFAULT_TILE, SceneReader, TileWork, compute_tile, mask_tile
from hsimap.predict.outputs import (
    DEFAULT_FLUSH_SECONDS,
    ConfidenceKind,
    OutputLock,
    OutputSpec,
    ProbDtype,
    TileResult,
)
from hsimap.predict.partial import PartialOutputs, read_record
from hsimap.predict.plan import PreparedRun, TileSize, prepare_run
from hsimap.preflight import check_predict_outputs
from hsimap.tiling import Tile, TileGrid

log = logging.getLogger(__name__)


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


def fingerprint(*, ckpt: Checkpoint, model_path: Path, scene: RasterPath, cube: Cube,
                grid: TileGrid, spec: OutputSpec, precision: str) -> dict[str, Any]:
    """What must be the same for a partial output to be resumed.

    The model and the scene are identified by content (see :mod:`hsimap.fingerprint`), not
    by size and modification time, which a rewrite with ``cp -p`` or ``rsync -t`` keeps.
    """
    return {
        "model_sha256": file_sha256(model_path),
        "scene": str(Path(scene).resolve()) if isinstance(scene, Path) else scene,
        **scene_fingerprint(scene),
        "scene_shape": [cube.count, cube.grid.height, cube.grid.width],
        "bands": list(ckpt.band_indices),
        "tile": grid.tile, "halo": grid.halo, "stride": grid.stride,
        "precision": precision,
        **spec.fingerprint_part(),
    }


def predict_scene(scene: str | Path, *, out: str | Path,
                  model_path: str | Path = DEFAULT_MODEL_PATH, tile: TileSize = "auto",
                  device: str = "auto", overwrite: bool = False,
                  probabilities: str | Path | None = None,
                  confidence: str | Path | None = None, prob_dtype: ProbDtype = "uint8",
                  confidence_kind: ConfidenceKind = "max", cog: bool = False,
                  scheduler: str | None = None, resume: bool = False,
                  flush_seconds: float = DEFAULT_FLUSH_SECONDS,
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
    model_path
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
    flush_seconds
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
        scene, out=out, model=model_path, probabilities=probabilities, confidence=confidence,
        prob_dtype=prob_dtype, confidence_kind=confidence_kind, cog=cog,
        creation_options=creation_options, overwrite=overwrite, resume=resume)
    if scheduler:
        probe_scheduler(scheduler)
    with OutputLock(spec.map):
        return _predict_locked(scene, spec, model_path=model_path, tile=tile,
                               device=device,
                               overwrite=overwrite, scheduler=scheduler, resume=resume,
                               inputs=tuple(inputs), flush_seconds=flush_seconds,
                               progress=progress, start=start, mask=mask,
                               mask_layer=mask_layer)


def _predict_locked(scene: RasterPath, spec: OutputSpec, *, model_path: str | Path,
                    tile: TileSize,
                    device: str, overwrite: bool, scheduler: str | None, resume: bool,
                    inputs: tuple[str | Path, ...], flush_seconds: float,
                    progress: ProgressCallback, start: float, mask: str | Path | None = None,
                    mask_layer: str | None = None) -> PredictResult:
    """:func:`predict_scene` once its outputs are checked and locked."""
    record = read_record(spec.map) if resume else None
    s = prepare_run(scene, model_path, tile, device, spec, record, scheduler)
    aoi = None if mask is None else AreaMask.open(mask, s.cube.grid, layer=mask_layer)
    try:
        return _predict_with(s, scene, spec, model_path=model_path, device=device,
                             overwrite=overwrite,
                             scheduler=scheduler, resume=resume, inputs=inputs,
                             flush_seconds=flush_seconds, progress=progress,
                             start=start, aoi=aoi)
    finally:
        if aoi is not None:
            aoi.close()


def _predict_with(s: PreparedRun, scene: RasterPath, spec: OutputSpec, *, model_path: str | Path,
                  device: str, overwrite: bool, scheduler: str | None, resume: bool,
                  inputs: tuple[str | Path, ...], flush_seconds: float,
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
    fp = fingerprint(ckpt=s.ckpt, model_path=Path(model_path), scene=s.cube.path, cube=s.cube,
                     grid=s.grid,
                     spec=spec, precision=precision)
    if aoi is not None:
        fp["mask"] = aoi.describe()
    sink = PartialOutputs.start(spec, grid=s.cube.grid, classes=s.ckpt.classes, fingerprint=fp,
                                n_tiles=len(s.grid), tile=s.grid.tile, resume=resume,
                                overwrite=overwrite, inputs=inputs,
                                flush_seconds=flush_seconds)
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
            run_on_cluster(scheduler, scene=s.cube.path, model_path=Path(model_path), tiles=todo,
                           work=s.work, reader=s.reader, device=device, sink=sink,
                           on_written=written)
        else:
            run_local(s.ckpt, s.reader, todo, s.work, s.device, sink, written)
        sink.flush()
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


def _no_valid_pixel(s: PreparedRun) -> CubeError:
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


