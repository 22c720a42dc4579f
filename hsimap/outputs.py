"""Prediction outputs: class map, probabilities, confidence; partial files, resume record, COG.

Every output is written window by window into ``.<name>.partial`` beside its final path and
moved into place only when the whole scene is done, so a crash or Ctrl-C never leaves a
complete-looking file. Next to the map's partial file a small JSON *resume record*
(``.<map>.partial.json``) lists the tiles that are durably on disk and a fingerprint of what
produced them (model, scene, tile size, halo, outputs). The record is updated at every
*checkpoint*: the partial rasters are closed (GDAL writes their blocks and directory) and
reopened in ``r+`` mode, and only then are the tiles written since the last checkpoint
listed. A resumed run reopens the partial rasters, checks the fingerprint and skips the
listed tiles. Tile write windows are aligned to the partial files' blocks whenever the tile
size allows it, so no block of a finished tile is ever rewritten.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

from hsimap.classes import ClassTable
from hsimap.cube import Grid
from hsimap.errors import OutputError
from hsimap.geotiff import (
    BLOCK,
    check_output,
    class_map_profile,
    partial_path,
    tag_class_map,
    write_sidecars,
    write_window,
)
from hsimap.tiling import Window

log = logging.getLogger(__name__)

ProbDtype = Literal["uint8", "uint16"]
ConfidenceKind = Literal["max", "margin"]

# dtype -> (value of probability 1.0, nodata). 255 / 65535 stay free for nodata.
PROB_SCALE: Mapping[str, tuple[int, int]] = {"uint8": (254, 255), "uint16": (10000, 65535)}
RECORD_FORMAT = "hsimap-predict-partial"
RECORD_VERSION = 1
DEFAULT_CHECKPOINT_SECONDS = 10.0
PROBS_TAG = "HSIMAP_PROBABILITY_SCALE"
CONFIDENCE_TAG = "HSIMAP_CONFIDENCE_KIND"


@dataclass(frozen=True)
class OutputSpec:
    """Which rasters a prediction writes, and how.

    Attributes
    ----------
    map
        Class-map GeoTIFF (always written).
    probabilities
        Per-class probability GeoTIFF (one band per class, scaled integers), or ``None``.
    confidence
        Confidence GeoTIFF (one band, same scaling as probabilities), or ``None``.
    prob_dtype
        ``uint8`` (probability 1 = 254, nodata 255) or ``uint16`` (1 = 10000, nodata 65535).
    confidence_kind
        ``max``: the winning class's probability; ``margin``: best minus second best.
    cog
        Convert every output to a Cloud-Optimized GeoTIFF (with overviews) when finished.
    """

    map: Path
    probabilities: Path | None = None
    confidence: Path | None = None
    prob_dtype: ProbDtype = "uint8"
    confidence_kind: ConfidenceKind = "max"
    cog: bool = False

    def __post_init__(self) -> None:
        if self.prob_dtype not in PROB_SCALE:
            raise OutputError(f"unknown probability dtype {self.prob_dtype!r}",
                              fix="use uint8 or uint16")
        if self.confidence_kind not in ("max", "margin"):
            raise OutputError(f"unknown confidence kind {self.confidence_kind!r}",
                              fix="use max or margin")
        paths = [Path(p).resolve() for p in self.named_paths().values()]
        if len(set(paths)) != len(paths):
            raise OutputError("two outputs have the same path", path=self.map,
                              fix="give the map, probabilities and confidence different names")

    def named_paths(self) -> dict[str, Path]:
        """``{"map": ..., "probabilities": ..., "confidence": ...}`` for the requested outputs."""
        out = {"map": Path(self.map)}
        if self.probabilities is not None:
            out["probabilities"] = Path(self.probabilities)
        if self.confidence is not None:
            out["confidence"] = Path(self.confidence)
        return out

    @property
    def scale(self) -> int:
        """Integer value of probability 1.0."""
        return PROB_SCALE[self.prob_dtype][0]

    @property
    def prob_nodata(self) -> int:
        """Nodata value of the probability and confidence rasters."""
        return PROB_SCALE[self.prob_dtype][1]

    def fingerprint_part(self) -> dict[str, Any]:
        """What about the outputs must match for a run to be resumed."""
        return {"outputs": sorted(self.named_paths()), "prob_dtype": self.prob_dtype,
                "confidence_kind": self.confidence_kind}


@dataclass
class TileResult:
    """Everything one tile contributes to the outputs (write window only, ready to write).

    ``classes`` holds map values (``MAP_NODATA`` where the input is invalid); ``counts`` the
    valid pixels per class index; ``probabilities`` ``(K, h, w)`` and ``confidence``
    ``(h, w)`` scaled integers (nodata where invalid) when requested.
    """

    index: int
    write: Window
    classes: np.ndarray
    counts: np.ndarray
    probabilities: np.ndarray | None = None
    confidence: np.ndarray | None = None


def record_path(map_path: Path) -> Path:
    """The resume record of a map: ``.<map>.partial.json``."""
    return partial_path(Path(map_path)).with_name(partial_path(Path(map_path)).name + ".json")


def read_record(map_path: Path) -> dict[str, Any] | None:
    """The resume record of an unfinished run writing ``map_path``, or ``None``."""
    path = record_path(map_path)
    if not path.exists():
        return None
    try:
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"the resume record is unreadable ({exc})", path=path,
                          fix="run again without --resume to start from the beginning") from exc
    if record.get("format") != RECORD_FORMAT or record.get("version") != RECORD_VERSION:
        raise OutputError("is not a resume record this hsimap version understands", path=path,
                          fix="run again without --resume to start from the beginning")
    return record


def block_for_tile(tile: int, grid: Grid) -> int | None:
    """GTiff block side that tile windows align to (``None``: the file stays striped)."""
    if grid.height <= 16 or grid.width <= 16:
        return None
    for block in (BLOCK, 512, 128, 64, 32, 16):
        if tile % block == 0 and block < max(grid.height, grid.width):
            return block
    return BLOCK


def _profiles(spec: OutputSpec, grid: Grid, classes: ClassTable,
              block: int | None) -> dict[str, dict[str, Any]]:
    base = class_map_profile(grid, classes)
    base.pop("tiled", None)
    base.pop("blockxsize", None)
    base.pop("blockysize", None)
    if block is not None:
        base.update(tiled=True, blockxsize=block, blockysize=block)
    out = {"map": dict(base)}
    prob = dict(base, dtype=spec.prob_dtype, nodata=spec.prob_nodata)
    if spec.probabilities is not None:
        out["probabilities"] = dict(prob, count=len(classes),
                                    interleave="band" if len(classes) > 1 else "pixel")
    if spec.confidence is not None:
        out["confidence"] = dict(prob, count=1)
    return out


def _tag(name: str, dst: Any, spec: OutputSpec, classes: ClassTable) -> None:
    if name == "map":
        tag_class_map(dst, classes)
        return
    scale = 1.0 / spec.scale
    if name == "probabilities":
        for i, c in enumerate(classes, start=1):
            dst.set_band_description(i, c.name)
            dst.update_tags(i, CLASS_VALUE=str(c.value))
        dst.update_tags(**{PROBS_TAG: str(spec.scale), "HSIMAP_CLASSES": classes.to_json()})
    else:
        dst.set_band_description(1, f"confidence ({spec.confidence_kind})")
        dst.update_tags(**{PROBS_TAG: str(spec.scale), CONFIDENCE_TAG: spec.confidence_kind})
    dst.scales = (scale,) * dst.count
    dst.offsets = (0.0,) * dst.count


@dataclass
class PartialOutputs:
    """The partial rasters of one run and its resume record. Use from one thread at a time.

    Create with :meth:`start` (fresh or resumed), feed finished tiles to :meth:`write`, then
    :meth:`finish` (moves files into place) or :meth:`close` (keeps resumable state).
    """

    spec: OutputSpec
    classes: ClassTable
    record: dict[str, Any]
    checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS
    _open: dict[str, Any] = field(default_factory=dict)
    _pending: list[int] = field(default_factory=list)
    _pending_counts: np.ndarray | None = None
    _last_checkpoint: float = field(default_factory=time.monotonic)

    @classmethod
    def start(cls, spec: OutputSpec, *, grid: Grid, classes: ClassTable,
              fingerprint: dict[str, Any], n_tiles: int, tile: int, resume: bool,
              overwrite: bool, inputs: tuple[str | Path, ...],
              checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS) -> PartialOutputs:
        """Open the partial outputs: resume an unfinished run, or start a fresh one."""
        previous = read_record(spec.map)
        if resume and previous is not None:
            _check_fingerprint(previous, fingerprint, spec.map)
            finalized = set(previous.get("finalized", []))
            for name, path in spec.named_paths().items():
                if name not in finalized:
                    check_output(path, inputs=inputs, overwrite=overwrite)
            self = cls(spec, classes, previous, checkpoint_seconds)
            self._reopen()
            log.info("resuming %s: %d of %d tiles were already done", spec.map.name,
                     len(previous["done"]), n_tiles)
            return self
        for path in spec.named_paths().values():
            check_output(path, inputs=inputs, overwrite=overwrite)
        if resume:
            log.info("no unfinished run writing %s to resume; starting from the beginning",
                     spec.map)
        elif previous is not None or partial_path(spec.map).exists():
            done = len(previous["done"]) if previous else 0
            log.warning("replacing the unfinished output of an earlier run (%d tiles were done) "
                        "in %s; pass --resume to continue it instead", done,
                        partial_path(spec.map))
        remove_partial_state(spec)
        block = block_for_tile(tile, grid)
        record = {"format": RECORD_FORMAT, "version": RECORD_VERSION,
                  "fingerprint": fingerprint, "n_tiles": n_tiles, "tile": tile,
                  "block": block, "done": [], "counts": [0] * len(classes), "finalized": []}
        self = cls(spec, classes, record, checkpoint_seconds)
        try:
            for name, profile in _profiles(spec, grid, classes, block).items():
                dst = rasterio.open(partial_path(spec.named_paths()[name]), "w", **profile)
                self._open[name] = dst
                _tag(name, dst, spec, classes)
            self.checkpoint(force=True)
        except BaseException:
            self.close(keep=False)
            raise
        return self

    @property
    def done(self) -> set[int]:
        """Indices of tiles durably written (as of the last checkpoint)."""
        return set(self.record["done"])

    @property
    def counts(self) -> np.ndarray:
        """Valid pixels per class index over the durable tiles."""
        return np.asarray(self.record["counts"], dtype=np.int64)

    def write(self, result: TileResult) -> None:
        """Write one finished tile into every output; checkpoint when one is due."""
        write_window(self._open["map"], result.classes, result.write)
        if result.probabilities is not None and "probabilities" in self._open:
            write_window(self._open["probabilities"], result.probabilities, result.write)
        if result.confidence is not None and "confidence" in self._open:
            write_window(self._open["confidence"], result.confidence, result.write)
        self._pending.append(result.index)
        counts = result.counts.astype(np.int64)
        self._pending_counts = counts if self._pending_counts is None else \
            self._pending_counts + counts
        if time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds:
            self.checkpoint()

    def checkpoint(self, *, force: bool = False) -> None:
        """Make the tiles written so far durable and list them in the resume record."""
        if not self._pending and not force:
            return
        for name in list(self._open):
            self._open.pop(name).close()
        if self._pending:
            self.record["done"] = sorted(set(self.record["done"]) | set(self._pending))
            assert self._pending_counts is not None
            self.record["counts"] = (self.counts + self._pending_counts).tolist()
        self._pending, self._pending_counts = [], None
        self._save_record()
        self._reopen()
        self._last_checkpoint = time.monotonic()

    def _reopen(self) -> None:
        finalized = set(self.record.get("finalized", []))
        for name, path in self.spec.named_paths().items():
            if name in finalized:
                continue
            tmp = partial_path(path)
            try:
                self._open[name] = rasterio.open(tmp, "r+")
            except RasterioIOError as exc:
                self.close(keep=True)
                raise OutputError(f"the unfinished output cannot be reopened ({exc})", path=tmp,
                                  fix="run again without --resume to start from the "
                                      "beginning") from exc

    def _save_record(self) -> None:
        path = record_path(self.spec.map)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def close(self, *, keep: bool) -> bool:
        """Stop writing. ``keep``: checkpoint and keep the partial state for ``--resume``.

        Returns True when resumable state was kept (at least one tile is durable).
        """
        if keep:
            try:
                self.checkpoint()
            finally:
                for name in list(self._open):
                    self._open.pop(name).close()
            if self.record["done"]:
                return True
        for name in list(self._open):
            self._open.pop(name).close()
        remove_partial_state(self.spec)
        return False

    def finish(self, *, overwrite: bool) -> list[Path]:
        """Every tile is written: convert/move every output into place, then drop the record.

        The class map is moved last, so its presence means the whole set is complete.
        """
        self.checkpoint()
        for name in list(self._open):
            self._open.pop(name).close()
        finalized = set(self.record.get("finalized", []))
        written = []
        names = [n for n in self.spec.named_paths() if n != "map"] + ["map"]
        for name in names:
            path = self.spec.named_paths()[name]
            if name not in finalized:
                _finalise(partial_path(path), path, cog=self.spec.cog,
                          resampling="mode" if name == "map" else "average")
                if name == "map":
                    write_sidecars(path, self.classes)
                self.record.setdefault("finalized", []).append(name)
                if name != "map":
                    self._save_record()
            written.append(path)
        record_path(self.spec.map).unlink(missing_ok=True)
        return written


def _check_fingerprint(record: Mapping[str, Any], fingerprint: Mapping[str, Any],
                       map_path: Path) -> None:
    old = record.get("fingerprint", {})
    differ = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
    if differ:
        detail = "; ".join(f"{k}: was {old.get(k)!r}, now {fingerprint.get(k)!r}"
                           for k in differ[:4])
        raise OutputError(
            f"cannot resume: the unfinished run was made with different settings ({detail})",
            path=partial_path(map_path),
            fix="resume with the same model, scene, tile size and outputs, or run again without "
                "--resume to start from the beginning (the partial output is then replaced)")


def remove_partial_state(spec: OutputSpec) -> None:
    """Delete every partial raster and the resume record of ``spec``."""
    for path in spec.named_paths().values():
        partial_path(path).unlink(missing_ok=True)
        partial_path(path).with_name(partial_path(path).name + ".cog").unlink(missing_ok=True)
    record_path(spec.map).unlink(missing_ok=True)


def _finalise(tmp: Path, out: Path, *, cog: bool, resampling: str) -> None:
    """Move a finished partial raster to ``out``, converting it to a COG first if asked."""
    if not cog:
        os.replace(tmp, out)
        return
    cog_tmp = tmp.with_name(tmp.name + ".cog")
    write_cog(tmp, cog_tmp, resampling=resampling)
    os.replace(cog_tmp, out)
    tmp.unlink(missing_ok=True)


def write_cog(src: Path, dst: Path, *, resampling: str) -> None:
    """Cloud-Optimized GeoTIFF copy of ``src`` (GDAL's COG driver: deflate, overviews).

    GDAL's ``CreateCopy`` keeps the colour table, nodata, band descriptions, scale/offset and
    every metadata tag; ``resampling`` (``mode`` for classes, ``average`` for probabilities)
    builds the overviews, which skip nodata pixels.
    """
    from rasterio.shutil import copy as rio_copy

    with rasterio.open(src) as s:
        side = max(s.height, s.width)
    block = 512  # smaller blocks for small rasters, so they still get overviews
    while block > 64 and side < 2 * block:
        block //= 2
    rio_copy(src, dst, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES", BLOCKSIZE=block,
             OVERVIEW_RESAMPLING=resampling.upper(), BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")


def existing_partials(spec: OutputSpec) -> Iterable[Path]:
    """Partial files of ``spec`` that exist now (for messages)."""
    paths = [partial_path(p) for p in spec.named_paths().values()] + [record_path(spec.map)]
    return [p for p in paths if p.exists()]
