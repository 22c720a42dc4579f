"""Shared code of the hsimap Processing scripts: find the ``hsimap`` CLI, run it, relay it.

This file holds no algorithm: QGIS loads every ``.py`` file in a scripts folder and skips
modules without a ``QgsProcessingAlgorithm`` subclass, so it must keep defining none.
The scripts load it by path (a scripts folder is not on ``sys.path``), so it has to sit in
the same folder as ``hsimap_train.py``, ``hsimap_predict.py`` and ``hsimap_evaluate.py``.

hsimap runs in a subprocess, never inside QGIS's Python: hsimap needs numpy 2 and torch,
QGIS's Python ships its own numpy, and one process cannot hold both.
"""

from __future__ import annotations

import codecs
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from qgis.core import (
    QgsPalettedRasterRenderer,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterVectorLayer,
    QgsRasterLayer,
)

if TYPE_CHECKING:  # not at run time: this module must hold no algorithm class (see above)
    from qgis.core import QgsProcessingAlgorithm, QgsProcessingContext

ENV_VAR = "HSIMAP_EXECUTABLE"

INSTALL_HELP = (
    "Install hsimap into its own Python environment (not QGIS's Python), from a clone of the "
    "hsimap repository:\n"
    "  cd hsimap && python3 -m venv ~/hsimap-venv && "
    "~/hsimap-venv/bin/pip install . torch==2.13.0\n"
    "then point QGIS at it: Settings > Options > System > Environment, add the variable "
    f"{ENV_VAR} = ~/hsimap-venv/bin/hsimap (on Windows: "
    "%USERPROFILE%\\hsimap-venv\\Scripts\\hsimap.exe) and restart QGIS, or put hsimap on PATH."
)

# Environment variables QGIS may set for its own Python or its own GDAL/PROJ. hsimap runs in
# another Python with its own GDAL and PROJ (the rasterio/pyogrio wheels bundle them), which
# find their data files by themselves only when these are unset.
_FOREIGN_ENV = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "GDAL_DATA", "GDAL_DRIVER_PATH",
                "PROJ_LIB", "PROJ_DATA")

# A tqdm bar as hsimap draws it on stderr: "classifier:  25%|##   | 15/60 [00:01<...]".
_TQDM = re.compile(r"^\s*(?P<stage>[^:|]+?):\s+(?P<pct>\d{1,3})%\|")
_TQDM_COUNT = re.compile(r"\|\s*(?P<done>\d+)/(?P<total>\d+)\s")
_SIGINT_GRACE_S = 10.0
_TERMINATE_GRACE_S = 5.0


def find_executable() -> str:
    """Path of the ``hsimap`` CLI: ``$HSIMAP_EXECUTABLE`` if set, else ``hsimap`` on PATH.

    Raises
    ------
    QgsProcessingException
        With the install instructions when neither gives a runnable file.
    """
    explicit = os.environ.get(ENV_VAR, "").strip()
    if explicit:
        path = os.path.expandvars(os.path.expanduser(explicit))
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        raise QgsProcessingException(
            f"hsimap was not found: the environment variable {ENV_VAR} is {explicit!r}, which is "
            f"not an executable file.\n{INSTALL_HELP}")
    found = shutil.which("hsimap")
    if found:
        return found
    raise QgsProcessingException(
        f"hsimap is not installed or not on PATH (and {ENV_VAR} is not set).\n{INSTALL_HELP}")


def subprocess_env() -> dict[str, str]:
    """QGIS's environment minus what would break another Python; unbuffered UTF-8 output."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["HSIMAP_PROGRESS"] = "bars"  # a pipe gets plain lines otherwise; the relay parses bars
    return env


class StageProgress:
    """Turn hsimap's per-stage tqdm percentages into one 0-100 value.

    ``stages`` lists the stage names hsimap reports, in order (e.g. ``denoiser``,
    ``features``, ``classifier``); each gets an equal share. A stage not listed is appended,
    which shrinks every share: the value never goes back (a bar that jumps back reads as a
    restarted job), it waits until the new shares catch up.
    """

    def __init__(self, stages: Sequence[str]) -> None:
        self.stages = list(stages)
        self.last_line: dict[str, str] = {}
        self.reached = 0.0

    def update(self, line: str) -> tuple[str, float] | None:
        """``(stage, overall percent)`` if ``line`` is a progress-bar line, else None."""
        match = _TQDM.match(line)
        if not match:
            return None
        stage = match.group("stage").strip()
        if stage not in self.stages:
            self.stages.append(stage)
        self.last_line[stage] = line.strip()
        share = 100.0 / len(self.stages)
        count = _TQDM_COUNT.search(line, match.end() - 1)
        if count and int(count.group("total")) > 0:  # finer than tqdm's whole percent
            fraction = min(1.0, int(count.group("done")) / int(count.group("total")))
        else:
            fraction = min(100, int(match.group("pct"))) / 100.0
        self.reached = max(self.reached, share * self.stages.index(stage) + share * fraction)
        return stage, self.reached


def _pump(stream: object, name: str, out: queue.Queue[tuple[str, str | None]]) -> None:
    """Read ``stream`` in chunks, split on newlines and carriage returns (tqdm redraws with
    ``\\r``), and queue ``(name, line)``; ``(name, None)`` at end of stream."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    fd = stream.fileno()  # type: ignore[attr-defined]
    while True:
        chunk = os.read(fd, 8192)
        text = decoder.decode(chunk, final=not chunk)
        pending += text
        parts = re.split(r"\r\n|\r|\n", pending)
        pending = parts.pop()
        if pending.endswith("]") and _TQDM.match(pending):  # a complete tqdm frame: tqdm
            parts.append(pending)  # ends it with the next frame's "\r", which may be long
            pending = ""
        for part in parts:
            if part.strip():
                out.put((name, part))
        if not chunk:
            break
    if pending.strip():
        out.put((name, pending))
    out.put((name, None))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Ask hsimap to stop as Ctrl-C would (it then removes partial outputs), then insist."""
    if proc.poll() is not None:
        return
    if os.name == "posix":
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(_SIGINT_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.terminate()
    try:
        proc.wait(_TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def error_message(stderr_lines: Sequence[str], returncode: int) -> str:
    """hsimap's ``Error: ...`` paragraph, or the tail of stderr when it printed none."""
    for i, line in enumerate(stderr_lines):
        if line.startswith("Error:"):
            return " ".join(x.strip() for x in stderr_lines[i:] if not _TQDM.match(x))
    tail = [x for x in stderr_lines if not _TQDM.match(x)][-5:]
    return "\n".join(tail) or f"exit code {returncode}, no message"


def run_hsimap(args: Sequence[str], feedback: QgsProcessingFeedback, *,
               stages: Sequence[str] = (), outputs: Iterable[str] = ()) -> list[str]:
    """Run ``hsimap ARGS``, relaying its output and progress to ``feedback``.

    Parameters
    ----------
    args
        Command-line arguments after ``hsimap`` (subcommand first).
    feedback
        Processing feedback: stdout goes to the log, tqdm bars drive the progress bar, Cancel
        stops hsimap.
    stages
        Progress stage names in the order hsimap reports them.
    outputs
        Files this run writes; the ones that did not exist before are removed if the run is
        cancelled (a safety net: hsimap itself leaves nothing half-written).

    Returns
    -------
    list of str
        hsimap's stdout lines (its summary).

    Raises
    ------
    QgsProcessingException
        hsimap missing, cancelled, or exited non-zero (carrying its ``Error:`` message).
    """
    exe = find_executable()
    cmd = [exe, *args]
    feedback.pushCommandInfo(subprocess.list2cmdline(cmd))
    outputs = [o for o in outputs if o and not os.path.exists(o)]
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=subprocess_env())
    except OSError as exc:
        raise QgsProcessingException(f"could not start {exe}: {exc}\n{INSTALL_HELP}") from exc
    readers = [threading.Thread(target=_pump, args=(s, n, lines), daemon=True)
               for s, n in ((proc.stdout, "out"), (proc.stderr, "err"))]
    for reader in readers:
        reader.start()
    try:
        stdout_lines, stderr_lines = _relay(lines, feedback, StageProgress(stages))
    except BaseException as exc:
        _stop(proc)
        if not isinstance(exc, _Cancelled):
            raise
        for o in outputs:
            if os.path.exists(o):
                os.remove(o)
        raise QgsProcessingException(f"hsimap {args[0]} was cancelled: hsimap was stopped "
                                     "and no output was written.") from None
    finally:
        for reader in readers:
            reader.join(timeout=_TERMINATE_GRACE_S)
        for stream in (proc.stdout, proc.stderr):
            stream.close()  # type: ignore[union-attr]
    returncode = proc.wait()
    if returncode != 0:
        raise QgsProcessingException(f"hsimap {args[0]} failed: "
                                     f"{error_message(stderr_lines, returncode)}")
    feedback.setProgress(100)
    return stdout_lines


class _Cancelled(Exception):
    """The user pressed Cancel."""


def _relay(lines: queue.Queue[tuple[str, str | None]], feedback: QgsProcessingFeedback,
           progress: StageProgress) -> tuple[list[str], list[str]]:
    """Hand queued output lines to ``feedback`` until both streams end; stdout/stderr lines."""
    stdout_lines: list[str] = []
    stderr_lines: list[str] = []
    open_streams, stage = 2, None
    while open_streams:
        if feedback.isCanceled():
            raise _Cancelled
        try:
            name, line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
            continue
        if name == "out":
            stdout_lines.append(line)
            feedback.pushConsoleInfo(line)
            continue
        update = progress.update(line)
        if update is not None:
            if stage is not None and update[0] != stage:
                feedback.pushConsoleInfo(progress.last_line[stage])
            stage = update[0]
            feedback.setProgress(update[1])
            continue
        stderr_lines.append(line)
        if line.startswith(("Error:", "Usage:", "Try ")):
            continue  # reported through the exception below
        if "warning" in line.lower():
            feedback.pushWarning(line)
        else:
            feedback.pushInfo(line)
    if stage is not None:
        feedback.pushConsoleInfo(progress.last_line[stage])
    return stdout_lines, stderr_lines


def file_source(layer: object, what: str) -> str:
    """The file behind a raster layer, for hsimap, which reads files only."""
    source = layer.source() if layer is not None else ""  # type: ignore[attr-defined]
    path = source.split("|")[0]
    if not path or not os.path.isfile(path):
        raise QgsProcessingException(
            f"{what}: hsimap reads files, and this layer is not a plain file ({source!r}). "
            "Save it to a file first (right-click > Export > Save As...).")
    return path


MASK, CLASSES = "MASK", "CLASSES"  # the optional area-of-interest and class-file parameters


def label_option_parameters() -> list[QgsProcessingParameterDefinition]:
    """The optional, advanced ``MASK`` (area-of-interest polygons: ``--mask``) and ``CLASSES``
    (class file: ``--classes``) parameters that train and compare share."""
    params: list[QgsProcessingParameterDefinition] = [
        QgsProcessingParameterVectorLayer(
            MASK, "Area of interest (polygons; only labels inside are used)",
            [QgsProcessing.TypeVectorPolygon], optional=True),
        QgsProcessingParameterFile(
            CLASSES, "Class file: each class's code, name and colour, in order (JSON list, "
            "QGIS .qml style or .clr colour map)", optional=True,
            fileFilter="Class files (*.json *.qml *.clr);;All files (*)"),
    ]
    for param in params:
        param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return params


def label_option_args(alg: QgsProcessingAlgorithm, parameters: dict[str, object],
                      context: QgsProcessingContext,
                      feedback: QgsProcessingFeedback) -> list[str]:
    """``--mask`` / ``--classes`` for what the user set of :func:`label_option_parameters`;
    the mask is the layer's own file when hsimap reads it as is, else a temporary
    GeoPackage (memory layers, filtered layers, one table of a multi-layer file)."""
    args: list[str] = []
    if alg.parameterAsVectorLayer(parameters, MASK, context) is not None:
        args += ["--mask", alg.parameterAsCompatibleSourceLayerPath(
            parameters, MASK, context, ["shp", "gpkg", "geojson"], "gpkg", feedback)]
    classes = alg.parameterAsFile(parameters, CLASSES, context)
    if classes:
        args += ["--classes", classes]
    return args


def require_suffix(path: str, suffixes: Sequence[str], what: str) -> None:
    """Refuse an output path whose extension hsimap would not honour."""
    if not path.lower().endswith(tuple(suffixes)):
        raise QgsProcessingException(
            f"{what}: hsimap writes {' / '.join(suffixes)} files, not {path!r}; "
            f"choose a file name ending in {suffixes[0]}.")


def qml_path(map_path: str) -> str:
    """The ``.qml`` style hsimap writes next to a map (QGIS's default-style name)."""
    return os.path.splitext(map_path)[0] + ".qml"


def style_class_map(layer: QgsRasterLayer, map_path: str) -> bool:
    """Give ``layer`` the class colours and names: from hsimap's ``.qml`` sidecar, else from
    the embedded colour table and the class names in the GeoTIFF's tags. True when a paletted
    style was set."""
    qml = qml_path(map_path)
    if os.path.isfile(qml):
        _, ok = layer.loadNamedStyle(qml)
        if ok and isinstance(layer.renderer(), QgsPalettedRasterRenderer):
            layer.triggerRepaint()
            return True
    classes = QgsPalettedRasterRenderer.colorTableToClassData(
        layer.dataProvider().colorTable(1))
    if not classes:
        return False
    names = _class_names(map_path)
    if names:  # keep the named classes only (the table has 256 entries)
        classes = [c for c in classes if int(c.value) in names]
        for c in classes:
            c.label = names[int(c.value)]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    layer.triggerRepaint()
    return True


def _class_names(map_path: str) -> dict[int, str]:
    """value -> class name from the map's ``HSIMAP_CLASSES`` tag (JSON), else its band
    metadata ``CLASS_<value>``; empty when neither can be read."""
    try:
        from osgeo import gdal
    except ImportError:
        return {}
    ds = gdal.Open(map_path)
    if ds is None:
        return {}
    try:
        table = json.loads(ds.GetMetadataItem("HSIMAP_CLASSES") or "[]")
        names = {int(c["value"]): str(c["name"]) for c in table}
    except (ValueError, TypeError, KeyError):
        names = {}
    if not names:
        for key, value in (ds.GetRasterBand(1).GetMetadata() or {}).items():
            if key.startswith("CLASS_") and key[6:].isdigit():
                names[int(key[6:])] = value
    return names


class ClassMapStyler(QgsProcessingLayerPostProcessorInterface):
    """Styles the map layer Processing loads into the project once the algorithm finishes."""

    _alive: list[ClassMapStyler] = []  # Processing holds only a C++ pointer: keep it alive

    def __init__(self, map_path: str) -> None:
        super().__init__()
        self.map_path = map_path

    def postProcessLayer(self, layer: object, context: object,
                         feedback: QgsProcessingFeedback) -> None:
        """Apply the class colours and names."""
        if isinstance(layer, QgsRasterLayer) and not style_class_map(layer, self.map_path):
            feedback.pushWarning(f"{self.map_path} has no class colour table; kept the "
                                 "default style")

    @classmethod
    def create(cls, map_path: str) -> ClassMapStyler:
        """A styler that outlives the Python frame creating it."""
        styler = cls(map_path)
        cls._alive.append(styler)
        return styler


def attach_styler(context: object, map_path: str) -> None:
    """Style ``map_path`` when Processing loads it into the project on completion."""
    if context.willLoadLayerOnCompletion(map_path):  # type: ignore[attr-defined]
        details = context.layerToLoadOnCompletionDetails(map_path)  # type: ignore[attr-defined]
        details.setPostProcessor(ClassMapStyler.create(map_path))
