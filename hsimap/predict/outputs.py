"""What a prediction writes, checked before any work: output specs, tile results, the lock.

Before any work, every file a run will write (outputs, the map's ``.aux.xml`` and ``.qml``
sidecars, partial files, resume record, lock) is checked together: no two may coincide, none
may be an input, none may be a device, FIFO, socket or folder, and none may exist without
``--overwrite``. A lock file (``.<map>.lock``, held with ``flock``) keeps a second run off
the same outputs. A failed write is reported as an :class:`~hsimap.errors.OutputError`
("disk full" when the file system is full). Writing the partial files and moving them into
place is :mod:`hsimap.predict.partial`.
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

from hsimap._files import check_output, partial_path, refuse_special, same_file
from hsimap.cube import gdal_message
from hsimap.errors import OutputError
from hsimap.geotiff import sidecar_paths
from hsimap.tiling import Window

log = logging.getLogger(__name__)

ProbDtype = Literal["uint8", "uint16"]
ConfidenceKind = Literal["max", "margin"]

# dtype -> (value of probability 1.0, nodata). 255 / 65535 stay free for nodata.
PROB_SCALE: Mapping[str, tuple[int, int]] = {"uint8": (254, 255), "uint16": (10000, 65535)}
RECORD_FORMAT = "hsimap-predict-partial"
RECORD_VERSION = 1
DEFAULT_FLUSH_SECONDS = 10.0
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

    ``values`` holds map values (``MAP_NODATA`` where the input is invalid); ``counts`` the
    valid pixels per class index; ``probabilities`` ``(K, h, w)`` and ``confidence``
    ``(h, w)`` scaled integers (nodata where invalid) when requested.
    """

    index: int
    write: Window
    values: np.ndarray  # (h, w) map values
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
