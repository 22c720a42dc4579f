"""Training on several scenes (flight lines, tiles), each with its own labels file.

The scenes are checked to share one band set, their class tables are merged into one (by
class name), and their arrays are laid side by side in one mosaic, left to right in the
order given, with a nodata gap between neighbours wider than twice the model's halo. No
model window, feature map or denoiser crop that matters then reaches from one scene into
another (gap pixels are invalid: never labelled, never in a loss), so every model kind
trains on the mosaic unchanged through its usual one-cube ``fit``. Splits are drawn per
scene and placed into the mosaic.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hsimap.classes import ClassInfo, ClassTable
from hsimap.classfile import ClassSpec
from hsimap.cube import Cube
from hsimap.dry_run import WAVELENGTH_TOLERANCE_NM  # the tolerance of predict's band check
from hsimap.errors import ConfigError, InputFileError, LabelError, SceneMismatchError
from hsimap.labels import Labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScenePair:
    """One training scene: the cube, its labels and (optionally) the labels' layer."""

    cube: str | Path
    labels: str | Path
    layer: str | None = None


def read_scenes_file(path: str | Path) -> list[ScenePair]:
    """The scenes listed in a CSV file (header ``cube,labels[,layer]``) or a TOML file
    (``[[scene]]`` tables with ``cube``, ``labels`` and optionally ``layer``).

    Relative paths are taken from the file's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError("scenes file not found", path=path, fix="check the --scenes path")
    base = path.parent
    example = ("write a header line `cube,labels` and one `scene.tif,labels.shp` line per scene"
               if path.suffix.lower() != ".toml" else
               'write one [[scene]] table per scene, with cube = "scene.tif" and labels = '
               '"labels.shp"')
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot be read as text ({exc})", path=path, fix=example) from exc
    rows: list[dict[str, object]]
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"is not valid TOML ({exc})", path=path, fix=example) from exc
        tables = data.get("scene", data.get("scenes"))
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise ConfigError("holds no [[scene]] tables", path=path, fix=example)
        rows = list(tables)
    else:
        reader = csv.DictReader(line for line in text.splitlines() if line.strip()
                                and not line.lstrip().startswith("#"))
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "cube" not in fields or "labels" not in fields:
            raise ConfigError(f"has no `cube` and `labels` columns (header: "
                              f"{','.join(reader.fieldnames or []) or 'none'})", path=path,
                              fix=example)
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                for row in reader]
    scenes = []
    for i, row in enumerate(rows, start=1):
        cube, labels, layer = row.get("cube"), row.get("labels"), row.get("layer") or None
        if not isinstance(cube, str) or not cube or not isinstance(labels, str) or not labels:
            raise ConfigError(f"scene {i} lacks a cube or a labels path ({row})", path=path,
                              fix=example)
        if layer is not None and not isinstance(layer, str):
            raise ConfigError(f"scene {i}: layer must be a name, got {layer!r}", path=path,
                              fix='write layer = "name"')
        scenes.append(ScenePair(_relative_to(cube, base), _relative_to(labels, base), layer))
    if not scenes:
        raise ConfigError("lists no scene", path=path, fix=example)
    return scenes


def _relative_to(text: str, base: Path) -> str | Path:
    if text.startswith("/vsi") or "://" in text:
        return text
    p = Path(text).expanduser()
    return p if p.is_absolute() else base / p


def check_band_sets(cubes: Sequence[Cube]) -> None:
    """Refuse scenes whose bands differ: band count, and wavelengths (within 2 nm) when both
    declare them. The message names both files."""
    first = cubes[0]
    for cube in cubes[1:]:
        if cube.count != first.count:
            raise SceneMismatchError(
                f"has {cube.count} bands but the first training scene {first.path} has "
                f"{first.count}", path=cube.path,
                fix="train on scenes of one sensor and band set (resample or subset the bands "
                    "to match, e.g. gdal_translate -b), or train one model per band set")
        if cube.wavelengths is None or first.wavelengths is None:
            if (cube.wavelengths is None) != (first.wavelengths is None):
                log.warning("%s declares no wavelengths; assuming its bands match those of %s",
                            cube.path if cube.wavelengths is None else first.path,
                            first.path if cube.wavelengths is None else cube.path)
            continue
        diff = np.abs(np.asarray(cube.wavelengths) - np.asarray(first.wavelengths))
        worst = int(diff.argmax())
        if diff[worst] > WAVELENGTH_TOLERANCE_NM:
            n_off = int((diff > WAVELENGTH_TOLERANCE_NM).sum())
            raise SceneMismatchError(
                f"band {worst + 1} is at {cube.wavelengths[worst]:.2f} nm but band {worst + 1} "
                f"of the first training scene {first.path} is at "
                f"{first.wavelengths[worst]:.2f} nm ({n_off} bands differ by more than "
                f"{WAVELENGTH_TOLERANCE_NM:g} nm)", path=cube.path,
                fix="resample the scenes to one set of wavelengths, or train one model per "
                    "band set")
    res = [abs(c.grid.transform.a) for c in cubes]
    if max(res) > 1.01 * min(res):
        log.warning("the training scenes have different pixel sizes (%s m): spatial models see "
                    "different ground distances per pixel", ", ".join(f"{r:g}" for r in res))


def merge_labels(labels: Sequence[Labels], paths: Sequence[str | Path],
                 codes_given: Sequence[bool], *, recolor: bool,
                 class_specs: Sequence[ClassSpec] | None = None) -> list[Labels]:
    """The scenes' labels recoded onto one class table, the same object in every result.

    Classes are the same class when their names agree (ignoring case). A scene whose class
    field holds integer codes (``codes_given``) keeps them: a name with another code, or a
    code with another name, than in an earlier scene is refused naming both files. Text
    classes of later scenes take the earlier scenes' codes; new names get the next free code,
    in order of first appearance. ``recolor``: pick the default colours for the merged
    table (no colour field and no class file); otherwise a class keeps its first colour.
    With ``class_specs`` (a class file) the codes already agree; the class file's order
    is kept.
    """
    by_name: dict[str, ClassInfo] = {}
    first_path: dict[str, str | Path] = {}
    by_value: dict[int, str] = {}
    remaps: list[dict[int, int]] = []
    for lab, path, given in zip(labels, paths, codes_given, strict=True):
        remap = {}
        for c in lab.classes:
            key = c.name.strip().casefold()
            known = by_name.get(key)
            if known is not None:
                if given and c.value != known.value and class_specs is None:
                    raise LabelError(
                        f"class {c.name!r} has code {c.value} here but {known.value} in "
                        f"{first_path[key]}", path=path,
                        fix="give each class one code in every labels file, or pass --classes "
                            "FILE to fix the codes")
                remap[c.value] = known.value
                continue
            value = c.value
            if remaps and not given and class_specs is None:  # a text class of a later scene
                value = max(by_value, default=0) + 1
            elif value in by_value:
                other = by_value[value]
                raise LabelError(
                    f"class code {value} is {c.name!r} here but {by_name[other].name!r} in "
                    f"{first_path[other]}", path=path,
                    fix="give each class one code in every labels file, or pass --classes "
                        "FILE to fix the codes")
            info = ClassInfo(value, c.name, c.color)
            by_name[key], first_path[key], by_value[value] = info, path, key
            remap[c.value] = value
        remaps.append(remap)
    infos = list(by_name.values())
    if class_specs is not None:
        order = {s.value: i for i, s in enumerate(class_specs)}
        infos.sort(key=lambda c: order.get(c.value, len(order)))
        table = ClassTable(tuple(infos))
    elif recolor:
        table = ClassTable.from_pairs([(c.value, c.name) for c in infos])
    else:
        table = ClassTable(tuple(sorted(infos, key=lambda c: c.value)))
    out = []
    for lab, remap in zip(labels, remaps, strict=True):
        values = np.zeros_like(lab.values)
        for old, new in remap.items():
            values[lab.values == old] = new
        out.append(dataclasses.replace(lab, values=values, classes=table))
    return out


def mosaic_offsets(widths: Sequence[int], gap: int, stride: int = 1) -> tuple[list[int], int]:
    """Column offsets of scenes laid left to right with at least ``gap`` nodata columns
    between neighbours (each offset a multiple of ``stride``), and the mosaic's width."""
    offsets, col = [], 0
    for w in widths:
        col = -(-col // stride) * stride
        offsets.append(col)
        col += int(w) + gap
    return offsets, offsets[-1] + int(widths[-1])


def mosaic_gap(halo: int, window_radius: int) -> int:
    """Nodata columns between scenes: more than twice the widest context radius."""
    return 2 * max(halo, window_radius, 1) + 1


def paste(parts: Sequence[np.ndarray], offsets: Sequence[int], width: int,
          fill: float | int | bool) -> np.ndarray:
    """Arrays ``(..., h_i, w_i)`` placed at column ``offsets`` (row 0) of one
    ``(..., max h, width)`` array filled with ``fill``."""
    if len(parts) == 1:
        return parts[0]
    height = max(p.shape[-2] for p in parts)
    out = np.full((*parts[0].shape[:-2], height, width), fill, dtype=parts[0].dtype)
    for p, col in zip(parts, offsets, strict=True):
        out[..., :p.shape[-2], col:col + p.shape[-1]] = p
    return out
