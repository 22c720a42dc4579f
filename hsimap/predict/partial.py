"""The partial outputs of a prediction while it runs: partial rasters, resume record, finish.

Every output is written window by window into ``.<name>.partial`` beside its final path and
moved into place only when the whole scene is done, so a crash or Ctrl-C never leaves a
complete-looking file. Next to the map's partial file a small JSON *resume record*
(``.<map>.partial.json``) lists the tiles that are durably on disk and a fingerprint of what
produced them (model, scene, tile size, halo, outputs). The record is updated at every
*flush* (not to be confused with the model checkpoint, the model file): the partial rasters
are closed (GDAL writes their blocks and directory) and reopened in ``r+`` mode, and only
then are the tiles written since the last flush listed. A resumed run reopens the partial
rasters, checks the fingerprint and skips the listed tiles. Tile write windows are aligned
to the partial files' blocks whenever the tile size allows it, so no block of a finished
tile is ever rewritten.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

from hsimap._files import partial_path, refuse_special
from hsimap.classes import ClassTable
from hsimap.cube import Grid
from hsimap.errors import HsimapError, OutputError
from hsimap.geotiff import (
    BLOCK,
    class_map_profile,
    sidecar_paths,
    tag_class_map,
    tag_confidence,
    tag_probabilities,
    with_creation_options,
    write_cog,
    write_sidecars,
    write_window,
)
from hsimap.predict.outputs import (
    DEFAULT_FLUSH_SECONDS,
    RECORD_FORMAT,
    RECORD_VERSION,
    OutputSpec,
    TileResult,
    check_outputs,
    record_path,
    write_error,
)

log = logging.getLogger(__name__)


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
    if not spec.cog:  # with --cog they go to the COG driver (write_cog)
        base = with_creation_options(base, spec.creation_options)
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
    elif name == "probabilities":
        tag_probabilities(dst, classes, scale=spec.scale)
    else:
        tag_confidence(dst, spec.confidence_kind, scale=spec.scale)


@dataclass
class _Writing:
    """The file a :meth:`PartialOutputs._writing` block is writing (named if it fails)."""

    path: Path


@dataclass
class PartialOutputs:
    """The partial rasters of one run and its resume record. Use from one thread at a time.

    Create with :meth:`start` (fresh or resumed), feed finished tiles to :meth:`write`, then
    :meth:`finish` (moves files into place) or :meth:`close` (keeps resumable state).
    """

    spec: OutputSpec
    classes: ClassTable
    record: dict[str, Any]
    flush_seconds: float = DEFAULT_FLUSH_SECONDS
    _open: dict[str, Any] = field(default_factory=dict)
    _pending: list[int] = field(default_factory=list)
    _pending_counts: np.ndarray | None = None
    _last_flush: float = field(default_factory=time.monotonic)
    _broken: bool = False  # a write failed: the partial files cannot be trusted
    # Applied to every tile before it is written (predict --mask: nodata outside the AOI).
    tile_filter: Callable[[TileResult], TileResult] | None = None

    @classmethod
    def start(cls, spec: OutputSpec, *, grid: Grid, classes: ClassTable,
              fingerprint: dict[str, Any], n_tiles: int, tile: int, resume: bool,
              overwrite: bool, inputs: tuple[str | Path, ...],
              flush_seconds: float = DEFAULT_FLUSH_SECONDS) -> PartialOutputs:
        """Open the partial outputs: resume an unfinished run, or start a fresh one."""
        previous = read_record(spec.map)
        if resume and previous is not None:
            _check_fingerprint(previous, fingerprint, spec.map)
            check_outputs(spec, inputs=inputs, overwrite=overwrite,
                          done=previous.get("finalized", []))
            self = cls(spec, classes, previous, flush_seconds)
            self._reopen()
            log.info("resuming %s: %d of %d tiles were already done", spec.map.name,
                     len(previous["done"]), n_tiles)
            return self
        check_outputs(spec, inputs=inputs, overwrite=overwrite)
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
        self = cls(spec, classes, record, flush_seconds)
        try:
            for name, profile in _profiles(spec, grid, classes, block).items():
                tmp = partial_path(spec.named_paths()[name])
                try:
                    dst = rasterio.open(tmp, "w", **profile)
                    self._open[name] = dst
                    _tag(name, dst, spec, classes)
                except HsimapError:
                    raise
                except OSError as exc:
                    raise write_error(exc, spec.named_paths()[name]) from exc
            self.flush(force=True)
        except BaseException:
            self.close(keep=False)
            raise
        return self

    @property
    def done(self) -> set[int]:
        """Indices of tiles durably written (as of the last flush)."""
        return set(self.record["done"])

    @property
    def counts(self) -> np.ndarray:
        """Valid pixels per class index over the durable tiles."""
        return np.asarray(self.record["counts"], dtype=np.int64)

    def write(self, result: TileResult) -> None:
        """Write one finished tile into every output; flush when one is due."""
        if self.tile_filter is not None:
            result = self.tile_filter(result)
        for name, data in (("map", result.values), ("probabilities", result.probabilities),
                           ("confidence", result.confidence)):
            if data is None or name not in self._open:
                continue
            try:
                write_window(self._open[name], data, result.write)
            except OSError as exc:
                self._broken = True
                raise write_error(exc, self.spec.named_paths()[name]) from exc
        self._pending.append(result.index)
        counts = result.counts.astype(np.int64)
        self._pending_counts = counts if self._pending_counts is None else \
            self._pending_counts + counts
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self, *, force: bool = False) -> None:
        """Make the tiles written so far durable and list them in the resume record."""
        if not self._pending and not force:
            return
        if self._broken:
            raise OutputError("an earlier write failed; the partial outputs are not usable",
                              path=partial_path(self.spec.map))
        with self._writing(record_path(self.spec.map)) as where:
            for name in list(self._open):
                where.path = self.spec.named_paths()[name]
                self._open.pop(name).close()
            if self._pending:
                self.record["done"] = sorted(set(self.record["done"]) | set(self._pending))
                assert self._pending_counts is not None
                self.record["counts"] = (self.counts + self._pending_counts).tolist()
            self._pending, self._pending_counts = [], None
            where.path = record_path(self.spec.map)
            self._save_record()
        self._reopen()
        self._last_flush = time.monotonic()

    @contextlib.contextmanager
    def _writing(self, path: Path) -> Iterator[_Writing]:
        """Write to the outputs within: an ``OSError`` marks them broken and is raised as
        :func:`write_error` naming ``where.path``, the file being written when it failed
        (``path`` at first; the caller moves it along); hsimap's own errors pass unchanged."""
        where = _Writing(path)
        try:
            yield where
        except HsimapError:
            raise
        except OSError as exc:
            self._broken = True
            raise write_error(exc, where.path) from exc

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
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(self.record, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def close(self, *, keep: bool) -> bool:
        """Stop writing. ``keep``: flush and keep the partial state for ``--resume``.

        Never raises: when the last flush fails (or an earlier write did), the partial
        state cannot be trusted and is removed instead. Returns True when resumable state was
        kept (at least one tile is durable).
        """
        if keep and not self._broken:
            try:
                self.flush()
            except OutputError as exc:
                log.warning("%s; the partial files are removed", exc)
            finally:
                self._close_datasets()
            if self.record["done"] and not self._broken:
                return True
        self._close_datasets()
        remove_partial_state(self.spec)
        return False

    def _close_datasets(self) -> None:
        for name in list(self._open):
            dst = self._open.pop(name)
            try:
                dst.close()
            except OSError as exc:  # a full disk fails the last flush too
                self._broken = True
                log.debug("closing %s failed: %s", name, exc)

    def finish(self, *, overwrite: bool) -> list[Path]:
        """Every tile is written: convert/move every output into place, then drop the record.

        The class map is moved last, so its presence means the whole set is complete.
        """
        self.flush()
        for name in list(self._open):
            self._open.pop(name).close()
        finalized = set(self.record.get("finalized", []))
        written = []
        names = [n for n in self.spec.named_paths() if n != "map"] + ["map"]
        for name in names:
            path = self.spec.named_paths()[name]
            if name not in finalized:
                with self._writing(path):
                    if name == "map" and "sidecars" not in finalized:
                        write_sidecars(path, self.classes)  # the map appears last, complete
                        self.record.setdefault("finalized", []).append("sidecars")
                        self._save_record()
                    _finalise(partial_path(path), path, cog=self.spec.cog,
                              resampling="mode" if name == "map" else "average",
                              creation_options=self.spec.creation_options)
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
    for sidecar in sidecar_paths(spec.map).values():
        partial_path(sidecar).unlink(missing_ok=True)
    record_path(spec.map).unlink(missing_ok=True)
    record_path(spec.map).with_name(record_path(spec.map).name + ".tmp").unlink(missing_ok=True)


def _finalise(tmp: Path, out: Path, *, cog: bool, resampling: str,
              creation_options: tuple[tuple[str, str], ...] = ()) -> None:
    """Move a finished partial raster to ``out``, converting it to a COG first if asked."""
    refuse_special(out)  # it may have been made a FIFO or device node since the start
    if not cog:
        os.replace(tmp, out)
        return
    cog_tmp = tmp.with_name(tmp.name + ".cog")
    write_cog(tmp, cog_tmp, resampling=resampling, creation_options=creation_options)
    os.replace(cog_tmp, out)
    tmp.unlink(missing_ok=True)
