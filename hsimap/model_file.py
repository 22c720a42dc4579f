"""The model file's JSON metadata, read and checked without torch.

``hsimap info`` and ``hsimap predict --dry-run`` need the class table, the bands, the halo
and the recorded inference speed of a model, not its weights; reading them here keeps those
commands free of the torch import. :mod:`hsimap.checkpoint` loads the weights.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from hsimap._version import __version__
from hsimap.errors import CheckpointError, InputFileError

FORMAT = "hsimap-model"
FORMAT_VERSION = 1
META_KEY = "hsimap"

_PICKLE_MAGICS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, after checking the file is a safe safetensors file."""
    path = Path(path)
    if not path.exists():
        raise InputFileError("model file not found", path=path,
                             fix="train one with `hsimap train` or pass --model PATH")
    if path.is_dir():
        raise InputFileError("is a folder, not a model file", path=path,
                             fix="pass the .safetensors file written by `hsimap train`")
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
            size = path.stat().st_size
    except OSError as exc:
        raise InputFileError(f"model file cannot be read ({exc.strerror})", path=path,
                             fix="check the file's permissions (chmod u+r)") from exc
    # A safetensors header length can itself begin with pickle's b"\x80\x02".."\x05" (640,
    # 896, ... bytes), so the pickle test applies only to files that are not safetensors.
    plausible = len(head) == 9 and head[8:9] == b"{" and \
        struct.unpack("<Q", head[:8])[0] + 8 <= size
    if not plausible and head.startswith(_PICKLE_MAGICS):
        raise CheckpointError(
            "is a pickle-based file (torch.save/pickle); hsimap never unpickles model files "
            "because that can run arbitrary code", path=path,
            fix="use a model written by `hsimap train` (safetensors)")
    if len(head) < 9 or struct.unpack("<Q", head[:8])[0] + 8 > size:
        raise CheckpointError("is truncated or not an hsimap model file", path=path,
                              fix="copy the file again or retrain")
    _check_complete(path, struct.unpack("<Q", head[:8])[0], size)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            raw = (fh.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"is damaged ({exc})", path=path,
                              fix="copy the file again or retrain") from exc
    if raw is None:
        raise CheckpointError("is a safetensors file without hsimap metadata", path=path,
                              fix="use a model written by `hsimap train`")
    try:
        meta: dict[str, Any] = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"has damaged hsimap metadata ({exc})", path=path,
                              fix="copy the file again or retrain") from exc
    if not isinstance(meta, dict):
        raise CheckpointError("has damaged hsimap metadata (not a JSON object)", path=path,
                              fix="copy the file again or retrain")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"unknown model format {meta.get('format')!r}", path=path)
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"model format version {meta.get('format_version')!r} is not supported by hsimap "
            f"{__version__} (reads version {FORMAT_VERSION})", path=path,
            fix="use the hsimap version that wrote it (see `hsimap info MODEL`) or retrain")
    check_metadata(meta, path)
    return meta


def _damaged(path: Path, what: str) -> CheckpointError:
    return CheckpointError(
        f"has damaged hsimap metadata: {what}", path=path,
        fix="the file was edited or damaged; copy it again from where `hsimap train` wrote it, "
            "or retrain")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_metadata(meta: dict[str, Any], path: Path) -> None:
    """Refuse metadata a reader would trip over (the file's JSON could have been edited):
    the model kind, the class table, the band count, the bands used and the wavelengths."""
    kind = meta.get("model_kind")
    if not isinstance(kind, str):
        raise _damaged(path, f"model_kind is {kind!r}, not a model name")
    config = meta.get("model_config")
    if config is not None and not isinstance(config, dict):
        raise _damaged(path, f"model_config is {config!r}, not a table of fields")
    _check_bands(meta, path)
    _check_classes(meta.get("classes"), path)


def _check_bands(meta: dict[str, Any], path: Path) -> None:
    n_bands: Any = meta.get("n_bands")
    if not _whole(n_bands) or n_bands < 1:
        raise _damaged(path, f"n_bands is {n_bands!r}, not a positive whole number")
    bands = meta.get("band_indices")
    if not isinstance(bands, list) or not bands or not all(_whole(b) for b in bands):
        raise _damaged(path, f"band_indices is {bands!r}, not a list of band numbers")
    outside = [b for b in bands if not 0 <= b < n_bands]
    if outside or len(set(bands)) != len(bands):
        raise _damaged(path, f"band_indices {outside or bands} "
                             f"{'lie beyond the' if outside else 'repeat bands of the'} "
                             f"{n_bands} bands of n_bands")
    for key in ("wavelengths", "fwhm"):
        values = meta.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or len(values) != n_bands or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise _damaged(path, f"{key} is not a list of {n_bands} numbers (one per band)")


def _check_classes(classes: Any, path: Path) -> None:
    from hsimap.classes import MAX_CLASS_VALUE

    if not isinstance(classes, list) or len(classes) < 2:
        raise _damaged(path, f"classes is {_short(classes)}, not a list of at least two "
                             "{value, name, color} entries")
    seen: set[int] = set()
    for i, entry in enumerate(classes):
        if not isinstance(entry, dict):
            raise _damaged(path, f"class entry {i + 1} is {_short(entry)}, not "
                                 "{value, name, color}")
        missing = [k for k in ("value", "name", "color") if k not in entry]
        if missing:
            raise _damaged(path, f"class entry {i + 1} ({_short(entry)}) has no "
                                 f"{' or '.join(repr(k) for k in missing)}")
        value = entry["value"]
        if not _whole(value) or not 1 <= value <= MAX_CLASS_VALUE or value in seen:
            why = "repeats another class's value" if value in seen else \
                f"is not a whole number from 1 to {MAX_CLASS_VALUE}"
            raise _damaged(path, f"class entry {i + 1} has value {value!r}, which {why} "
                                 "(0 is the map's nodata)")
        seen.add(value)
        if not isinstance(entry["name"], str):
            raise _damaged(path, f"class entry {i + 1} has name {entry['name']!r}, not a text")
        color = entry["color"]
        if not (isinstance(color, str) and len(color) == 7 and color[0] == "#" and
                all(ch in "0123456789abcdefABCDEF" for ch in color[1:])):
            raise _damaged(path, f"class entry {i + 1} has colour {color!r}, not #rrggbb")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_complete(path: Path, header_len: int, size: int) -> None:
    """Refuse a file shorter than the tensor data its safetensors header describes."""
    with open(path, "rb") as fh:
        fh.seek(8)
        text = fh.read(header_len)
    try:
        header = json.loads(text)
        end = max((int(v["data_offsets"][1]) for k, v in header.items()
                   if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise CheckpointError("is damaged or not an hsimap model file (unreadable header)",
                              path=path, fix="copy the file again or retrain") from exc
    expected = 8 + header_len + end
    if size < expected:
        raise CheckpointError(
            f"is truncated: {size} bytes on disk, {expected} expected", path=path,
            fix="the copy or download was interrupted; copy the file again or retrain")
