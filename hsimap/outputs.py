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

Before any work, every file a run will write (outputs, the map's ``.aux.xml`` and ``.qml``
sidecars, partial files) is checked together: no two may coincide, none may be an input,
none may be a device, FIFO, socket or folder, and none may exist without ``--overwrite``.
A lock file (``.<map>.lock``, held with ``flock``) keeps a second run off the same outputs.
A failed write is reported as an :class:`~hsimap.errors.OutputError` ("disk full" when the
file system is full) and the partial files are removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

from hsimap.classes import ClassTable
from hsimap.cube import Grid, gdal_message
from hsimap.errors import HsimapError, OutputError
from hsimap.geotiff import (
    BLOCK,
    check_output,
    class_map_profile,
    partial_path,
    refuse_special,
    same_file,
    sidecar_paths,
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
# A GDAL write that fails with less than this free on the file system failed for lack of
# space (GDAL's own message says only "Write failed"; it prints ENOSPC to stderr).
DISK_FULL_BYTES = 64 * 2**20


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
    creation_options
        GDAL creation options (``("COMPRESS", "ZSTD")``, ...) for every output, on top of
        (and replacing) hsimap's own: of the GTiff driver, or of the COG driver with ``cog``.
    """

    map: Path
    probabilities: Path | None = None
    confidence: Path | None = None
    prob_dtype: ProbDtype = "uint8"
    confidence_kind: ConfidenceKind = "max"
    cog: bool = False
    creation_options: tuple[tuple[str, str], ...] = ()

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
        seen: dict[Path, str] = {}
        for path, what in self.files():
            other = seen.setdefault(path.resolve(), what)
            if other != what:
                raise OutputError(
                    f"{other} and {what} would both be written to {path.name}", path=path,
                    fix="give the map a name ending in .tif (its sidecars are NAME.tif.aux.xml "
                        "and NAME.qml) and the other outputs names of their own")

    def named_paths(self) -> dict[str, Path]:
        """``{"map": ..., "probabilities": ..., "confidence": ...}`` for the requested outputs."""
        out = {"map": Path(self.map)}
        if self.probabilities is not None:
            out["probabilities"] = Path(self.probabilities)
        if self.confidence is not None:
            out["confidence"] = Path(self.confidence)
        return out

    def final_files(self) -> list[tuple[Path, str]]:
        """``(path, what it is)`` of every file a finished run leaves: outputs and sidecars."""
        files = [(path, f"the {name} output") for name, path in self.named_paths().items()]
        files += [(path, f"the map's {what}") for what, path in sidecar_paths(self.map).items()]
        return files

    def files(self) -> list[tuple[Path, str]]:
        """``(path, what it is)`` of every file a run writes, temporary ones included."""
        final = self.final_files()
        temporary = [(partial_path(path), f"the partial file of {what}") for path, what in final]
        temporary += [(partial_path(path).with_name(partial_path(path).name + ".cog"),
                       f"the COG partial file of the {name} output")
                      for name, path in self.named_paths().items()]
        temporary += [(record_path(self.map), "the resume record"),
                      (lock_path(self.map), "the lock file")]
        return final + temporary

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
        part: dict[str, Any] = {"outputs": sorted(self.named_paths()),
                                "prob_dtype": self.prob_dtype,
                                "confidence_kind": self.confidence_kind}
        if self.creation_options:  # absent when unused: older resume records still match
            part["creation_options"] = [list(kv) for kv in self.creation_options]
        return part


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


def lock_path(map_path: Path) -> Path:
    """The lock file of a run writing ``map_path``: ``.<map>.lock``."""
    return Path(map_path).with_name(f".{Path(map_path).name}.lock")


def check_outputs(spec: OutputSpec, *, inputs: Iterable[str | Path], overwrite: bool,
                  done: Iterable[str] = ()) -> None:
    """Check every file a run will leave, together, before any work.

    Each output and each sidecar must differ from every input (and from the files a raster
    input is made of), must not be a device, FIFO, socket or folder, and must not exist
    unless ``overwrite``; ``done`` names outputs an unfinished run already moved into place.
    """
    inputs = list(inputs)
    finished = set(done)
    names = {str(path): name for name, path in spec.named_paths().items()}
    for path, what in spec.final_files():
        name = names.get(str(path))
        if (name or "sidecars") in finished:
            continue
        if name is None and any(same_file(path, item) for item in inputs):
            raise OutputError(f"{what} would replace an input file", path=path,
                              fix="choose another map name; inputs are never overwritten")
        if name is None and os.path.lexists(path) and not overwrite:
            refuse_special(path)
            raise OutputError(f"output already exists: {what}", path=path,
                              fix="pass --overwrite to replace it (with the map), move it "
                                  "away, or choose another map name")
        check_output(path, inputs=tuple(inputs), overwrite=overwrite)


def input_files(*paths: str | Path) -> list[str | Path]:
    """The given inputs plus the local files a raster input is made of (VRT sources, ENVI
    headers, ``.aux.xml``), as GDAL lists them."""
    from hsimap.cube import is_virtual

    out: list[str | Path] = list(paths)
    for path in paths:
        try:
            with rasterio.open(path) as src:
                out += [f for f in src.files[1:] if not is_virtual(f)]
        except (RasterioIOError, OSError, ValueError):
            continue  # not a raster (the model), or unreadable: reported when it is opened
    return out


def write_error(exc: BaseException, path: Path) -> OutputError:
    """An :class:`OutputError` for a failed write of ``path``; "disk full" when it is."""
    folder = path.parent if str(path.parent) else Path(".")
    code = next((getattr(e, "errno", None) for e in _chain(exc)
                 if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT)), None)
    try:
        free: int | None = shutil.disk_usage(folder).free
    except OSError:
        free = None
    detail = gdal_message(exc)
    full = code is not None or "no space left" in detail.lower() or (
        isinstance(exc, RasterioIOError) and free is not None and free < DISK_FULL_BYTES)
    if full:
        what = "disk quota exceeded" if code == errno.EDQUOT else "disk full"
        room = "" if free is None else f" with {_size(free)} free in {folder}"
        return OutputError(f"{what}: writing failed{room} ({detail})", path=path,
                           fix="free some space there, or write the outputs to another disk "
                               "(-o); the partial files were removed, so run the command "
                               "again from the beginning")
    return OutputError(f"cannot be written ({detail})", path=path,
                       fix="check the disk and the folder's permissions, then run again")


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    item: BaseException | None = exc
    while item is not None and id(item) not in seen:
        seen.add(id(item))
        yield item
        item = item.__cause__ or item.__context__


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


class OutputLock:
    """An exclusive lock on the outputs of one map: ``.<map>.lock``, held with ``flock``.

    The kernel releases a ``flock`` when its process dies, so a killed run leaves no stale
    lock (the file stays until the next run, which takes it over). A second run on the same
    outputs fails at once, naming the process that holds them. Without ``fcntl`` (Windows)
    the lock is an ``O_EXCL`` file that a killed run leaves behind.
    """

    def __init__(self, map_path: Path) -> None:
        self.map = Path(map_path)
        self.path = lock_path(self.map)
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise :class:`OutputError` when another run holds it."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            self._acquire_exclusive()
            return
        for _ in range(10):
            fd = self._open(os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 4096, 0)
                os.close(fd)
                raise self._busy(owner) from None
            try:  # the holder may have removed the file between our open and flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                self._write_owner()
                return
            os.close(fd)
        raise OutputError("cannot take the lock file", path=self.path,  # pragma: no cover
                          fix="run again; if this repeats, another process keeps replacing it")

    def _acquire_exclusive(self) -> None:  # pragma: no cover - Windows
        try:
            self._fd = self._open(os.O_RDWR | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            owner = self.path.read_bytes()
            raise self._busy(owner, stale_hint=True) from None
        self._write_owner()

    def _open(self, flags: int) -> int:
        try:
            return os.open(self.path, flags | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise write_error(exc, self.path) from exc

    def _write_owner(self) -> None:
        assert self._fd is not None
        owner = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, owner, 0)
        except OSError as exc:
            self.release()
            raise write_error(exc, self.path) from exc

    def _busy(self, owner: bytes, *, stale_hint: bool = False) -> OutputError:
        try:
            info = json.loads(owner.decode() or "{}")
        except ValueError:
            info = {}
        who = (f" (pid {info.get('pid')} on {info.get('host')}, started {info.get('started')})"
               if info.get("pid") else "")
        fix = "wait for it to finish, or give this run another output name (-o)"
        if stale_hint:
            fix += f"; if no such run exists any more, delete {self.path}"
        return OutputError(f"another hsimap run is writing this output now{who}", path=self.map,
                           fix=fix)

    def release(self) -> None:
        """Remove the lock file and let go of the lock (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if os.fstat(self._fd).st_ino == os.stat(self.path).st_ino:
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


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
    _broken: bool = False  # a write failed: the partial files cannot be trusted
    # Applied to every tile before it is written (predict --mask: nodata outside the AOI).
    tile_filter: Callable[[TileResult], TileResult] | None = None

    @classmethod
    def start(cls, spec: OutputSpec, *, grid: Grid, classes: ClassTable,
              fingerprint: dict[str, Any], n_tiles: int, tile: int, resume: bool,
              overwrite: bool, inputs: tuple[str | Path, ...],
              checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS) -> PartialOutputs:
        """Open the partial outputs: resume an unfinished run, or start a fresh one."""
        previous = read_record(spec.map)
        if resume and previous is not None:
            _check_fingerprint(previous, fingerprint, spec.map)
            check_outputs(spec, inputs=inputs, overwrite=overwrite,
                          done=previous.get("finalized", []))
            self = cls(spec, classes, previous, checkpoint_seconds)
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
        self = cls(spec, classes, record, checkpoint_seconds)
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
        if self.tile_filter is not None:
            result = self.tile_filter(result)
        for name, data in (("map", result.classes), ("probabilities", result.probabilities),
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
        if time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds:
            self.checkpoint()

    def checkpoint(self, *, force: bool = False) -> None:
        """Make the tiles written so far durable and list them in the resume record."""
        if not self._pending and not force:
            return
        if self._broken:
            raise OutputError("an earlier write failed; the partial outputs are not usable",
                              path=partial_path(self.spec.map))
        target = record_path(self.spec.map)
        try:
            for name in list(self._open):
                target = self.spec.named_paths()[name]
                self._open.pop(name).close()
            if self._pending:
                self.record["done"] = sorted(set(self.record["done"]) | set(self._pending))
                assert self._pending_counts is not None
                self.record["counts"] = (self.counts + self._pending_counts).tolist()
            self._pending, self._pending_counts = [], None
            target = record_path(self.spec.map)
            self._save_record()
        except HsimapError:
            raise
        except OSError as exc:
            self._broken = True
            raise write_error(exc, target) from exc
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
        """Stop writing. ``keep``: checkpoint and keep the partial state for ``--resume``.

        Never raises: when the last checkpoint fails (or an earlier write did), the partial
        state cannot be trusted and is removed instead. Returns True when resumable state was
        kept (at least one tile is durable).
        """
        if keep and not self._broken:
            try:
                self.checkpoint()
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
        self.checkpoint()
        for name in list(self._open):
            self._open.pop(name).close()
        finalized = set(self.record.get("finalized", []))
        written = []
        names = [n for n in self.spec.named_paths() if n != "map"] + ["map"]
        for name in names:
            path = self.spec.named_paths()[name]
            if name not in finalized:
                try:
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
                except HsimapError:
                    raise
                except OSError as exc:
                    self._broken = True
                    raise write_error(exc, path) from exc
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


def write_cog(src: Path, dst: Path, *, resampling: str,
              creation_options: tuple[tuple[str, str], ...] = ()) -> None:
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
    options = with_creation_options(
        dict(COMPRESS="DEFLATE", PREDICTOR="YES", BLOCKSIZE=block,
             OVERVIEW_RESAMPLING=resampling.upper(), BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS"),
        creation_options)
    rio_copy(src, dst, driver="COG", **options)


# Profile keys that are not creation options: --co may not set them.
_NOT_CREATION_OPTIONS = {"driver", "width", "height", "count", "dtype", "nodata", "crs",
                         "transform"}


def with_creation_options(profile: Mapping[str, Any],
                          options: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``profile`` with the GDAL creation ``options`` set, replacing its own spelling of the
    same key (GDAL keys are case-insensitive: ``compress`` and ``COMPRESS`` are one)."""
    out = dict(profile)
    for key, value in options:
        for k in [k for k in out if k.lower() == key.lower()]:
            del out[k]
        out[key.upper()] = value
    return out


def check_creation_options(options: tuple[tuple[str, str], ...], *, cog: bool) -> None:
    """Refuse creation options GDAL would ignore or reject, before anything is computed: a
    1 x 1 raster is written in memory with them, and any GDAL complaint is the error.

    Raises :class:`OutputError` naming the options and GDAL's words.
    """
    from rasterio.errors import RasterioError
    from rasterio.io import MemoryFile

    if not options:
        return
    structural = [k for k, _ in options if k.lower() in _NOT_CREATION_OPTIONS]
    if structural:
        raise OutputError(f"--co {structural[0]}=... is not a creation option",
                          fix="--co sets GDAL creation options such as COMPRESS=ZSTD, "
                              "ZSTD_LEVEL=9, BLOCKXSIZE=512; size, bands, type, nodata and "
                              "georeference come from the scene and the model")
    complaints: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            complaints.append(record.getMessage())

    handler = _Collect(logging.WARNING)
    gdal_log = logging.getLogger("rasterio._env")
    gdal_log.addHandler(handler)
    driver = "COG" if cog else "GTiff"
    try:
        with rasterio.Env(), MemoryFile() as mem, MemoryFile() as copy:
            base = dict(driver="GTiff", width=16, height=16, count=1, dtype="uint8",
                        crs="EPSG:32633", transform=rasterio.Affine(30, 0, 0, 0, -30, 480))
            with mem.open(**(base if cog else with_creation_options(base, options))) as dst:
                dst.write(np.zeros((1, 16, 16), np.uint8))
            if cog:
                from rasterio.shutil import copy as rio_copy

                rio_copy(mem.name, copy.name, driver="COG", **dict(options))
    except RasterioError as exc:
        complaints.append(str(exc))
    finally:
        gdal_log.removeHandler(handler)
    if complaints:
        given = " ".join(f"{k}={v}" for k, v in options)
        words = "; ".join(c.removeprefix("CPLE_NotSupported in ").removeprefix(
            "CPLE_IllegalArg in ").rstrip(". ") for c in dict.fromkeys(complaints))
        raise OutputError(f"GDAL's {driver} driver does not accept the creation options "
                          f"{given}: {words}",
                          fix=f"give creation options of the {driver} driver (see "
                              f"https://gdal.org/drivers/raster/{driver.lower()}.html), "
                              "as --co KEY=VALUE")


def existing_partials(spec: OutputSpec) -> Iterable[Path]:
    """Partial files of ``spec`` that exist now (for messages)."""
    paths = [partial_path(p) for p in spec.named_paths().values()] + [record_path(spec.map)]
    return [p for p in paths if p.exists()]
