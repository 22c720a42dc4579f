"""Class files (``train --classes FILE``): the code, name and colour of every class, in order.

Three formats are read, chosen by the file's content, not its name:

- **JSON**: a list of ``{"value": 1, "name": "water", "color": "#0064ff"}`` objects (``code``
  is accepted for ``value``, ``colour`` for ``color``; colours as ``#rrggbb``, ``r,g,b`` or a
  ``[r, g, b]`` list), or an object with such a list under ``"classes"``, as ``hsimap info
  model.safetensors --json`` prints it.
- **QGIS style** (``.qml``): a paletted/unique-values raster style (``paletteEntry``), a
  discrete pseudocolour raster style (``item`` of the colour ramp shader) or a categorized
  vector style (``category`` + its symbol's fill colour).
- **Colour map text** (GDAL/ArcGIS ``.clr``, QGIS "Export colour map" ``.txt``): one class per
  line, ``value r g b [a] [name]``, separated by spaces or commas; ``#`` comments and
  QGIS's ``INTERPOLATION:`` line are skipped.

A class file fixes the classes' codes, names, colours and order (the model's output order);
classes it lists that the labels never use are left out of the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsimap.classes import ClassInfo, ClassTable, default_colors, parse_color
from hsimap.errors import InputFileError, LabelError

CLASS_FILE_FIX = ("give a JSON list of {\"value\", \"name\", \"color\"} objects, a QGIS .qml "
                  "style (paletted raster or categorized vector) or a colour map text file "
                  "(.clr: 'value r g b [a] name' per line)")


@dataclass(frozen=True)
class ClassSpec:
    """One class of a class file: its code, and its name and colour when the file gives them."""

    value: int
    name: str | None
    color: str | None


def read_class_file(path: str | Path) -> tuple[ClassSpec, ...]:
    """The classes of a class file, in the file's order (see the module docstring).

    Raises
    ------
    InputFileError
        The file is missing or unreadable.
    LabelError
        Its content is none of the formats, or a code, colour or name is invalid or repeated.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError("class file not found", path=path, fix="check the --classes path")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot be read as a text file ({exc})", path=path,
                             fix=CLASS_FILE_FIX) from exc
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        specs = _from_json(stripped, path)
    elif stripped.startswith("<"):
        specs = _from_qml(text, path)
    else:
        specs = _from_colour_map(text, path)
    if not specs:
        raise LabelError("the class file lists no class", path=path, fix=CLASS_FILE_FIX)
    _check(specs, path)
    return tuple(specs)


def _check(specs: list[ClassSpec], path: Path) -> None:
    values = [s.value for s in specs]
    dup = sorted({v for v in values if values.count(v) > 1})
    if dup:
        raise LabelError(f"class code(s) {dup} appear more than once", path=path,
                         fix="give every class its own code")
    bad = sorted(v for v in values if v < 1)
    if bad:
        raise LabelError(f"class code(s) {bad} are below 1", path=path,
                         fix="class codes must be positive integers (0 is nodata in the map); "
                             "renumber them")
    names = [s.name for s in specs if s.name is not None]
    dup_names = sorted({n for n in names if names.count(n) > 1})
    if dup_names:
        raise LabelError(f"class name(s) {dup_names} appear more than once", path=path,
                         fix="give every class its own name")


def _color(raw: Any, path: Path, where: str) -> str | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, list | tuple):
        raw = ",".join(str(x) for x in raw)
    try:
        return parse_color(str(raw))
    except LabelError:
        raise LabelError(f"{where}: {raw!r} is not a colour", path=path,
                         fix="write colours as #rrggbb (e.g. #0064ff) or r,g,b (e.g. "
                             "0,100,255)") from None


def _code(raw: Any, path: Path, where: str) -> int:
    text = str(raw).strip()
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not number == number or number != int(number) or isinstance(raw, bool):
        raise LabelError(f"{where}: code {raw!r} is not a whole number", path=path,
                         fix="class codes are the integer values the map stores (1, 2, ...)")
    return int(number)


def _from_json(text: str, path: Path) -> list[ClassSpec]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelError(f"is not valid JSON ({exc})", path=path, fix=CLASS_FILE_FIX) from exc
    if isinstance(data, dict) and isinstance(data.get("classes"), list):
        data = data["classes"]
    if not isinstance(data, list):
        raise LabelError("JSON class file must be a list of classes", path=path,
                         fix=CLASS_FILE_FIX)
    specs = []
    for i, item in enumerate(data, 1):
        where = f"class {i}"
        if not isinstance(item, dict):
            raise LabelError(f"{where} is {item!r}, not an object", path=path,
                             fix=CLASS_FILE_FIX)
        raw = item.get("value", item.get("code"))
        if raw is None:
            raise LabelError(f"{where} has no \"value\"", path=path,
                             fix="give every class its integer code as \"value\"")
        name = item.get("name", item.get("label"))
        specs.append(ClassSpec(_code(raw, path, where),
                               None if name is None else str(name).strip() or None,
                               _color(item.get("color", item.get("colour")), path, where)))
    return specs


def _from_qml(text: str, path: Path) -> list[ClassSpec]:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise LabelError(f"is not a valid QGIS style (XML: {exc})", path=path,
                         fix=CLASS_FILE_FIX) from exc
    specs = []
    # Raster: paletted / unique values, or a discrete pseudocolour ramp.
    for entry in [*root.iter("paletteEntry"), *root.iter("item")]:
        if entry.get("value") is None:
            continue
        where = f"entry {entry.get('label') or entry.get('value')!r}"
        specs.append(ClassSpec(_code(entry.get("value"), path, where),
                               (entry.get("label") or "").strip() or None,
                               _color(entry.get("color"), path, where)))
    if specs:
        return specs
    # Vector: categorized renderer, each category's symbol holds its colour.
    symbols: dict[str, str | None] = {}
    for symbol in root.iter("symbol"):
        name = symbol.get("name")
        if name is None or name in symbols:
            continue
        symbols[name] = _symbol_colour(symbol)
    for category in root.iter("category"):
        value, label = category.get("value"), (category.get("label") or "").strip()
        if value is None or value == "":
            continue  # the "all other values" category
        where = f"category {label or value!r}"
        raw = symbols.get(category.get("symbol") or "")
        color = _color(raw, path, where) if raw else None
        try:
            code = _code(value, path, where)
        except LabelError:
            raise LabelError(
                f"{where}: the category value {value!r} is not an integer class code",
                path=path, fix="a categorized style used as a class file must categorize an "
                               "integer class-code field; or write a JSON class file") from None
        specs.append(ClassSpec(code, label or None, color))
    if not specs:
        raise LabelError("the QGIS style holds no class (no palette entry and no category)",
                         path=path, fix="save a paletted or categorized style from QGIS "
                                        "(Layer Properties > Symbology > Style > Save Style)")
    return specs


def _symbol_colour(symbol: Any) -> str | None:
    """The fill colour of a QGIS symbol: ``<prop k="color">`` (QGIS < 3.26) or ``<Option
    name="color">`` (later), as ``r,g,b,a``."""
    for element in symbol.iter():
        key = element.get("k") if element.tag == "prop" else (
            element.get("name") if element.tag == "Option" else None)
        if key == "color":
            value = element.get("v") if element.tag == "prop" else element.get("value")
            if value:
                return ",".join(value.split(",")[:4])  # QGIS >= 3.28 appends ",rgb:..."
    return None


_COLOUR_MAP_LINE = re.compile(
    r"^(?P<value>[-+]?\d+(?:\.0*)?)[,\s]+(?P<r>\d+)[,\s]+(?P<g>\d+)[,\s]+(?P<b>\d+)"
    r"(?:[,\s]+(?P<a>\d+)(?=[,\s]|$))?(?:[,\s]+(?P<name>.*))?$")


def _from_colour_map(text: str, path: Path) -> list[ClassSpec]:
    specs = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#") or line.upper().startswith("INTERPOLATION"):
            continue
        match = _COLOUR_MAP_LINE.match(line)
        where = f"line {n}"
        if match is None:
            raise LabelError(f"{where} reads {line!r}, not 'value r g b [a] [name]'",
                             path=path, fix=CLASS_FILE_FIX)
        rgb = ",".join(match.group(k) for k in "rgb")
        name = (match.group("name") or "").strip().strip('"').strip()
        specs.append(ClassSpec(_code(match.group("value"), path, where), name or None,
                               _color(rgb, path, where)))
    return specs


def codes_for_names(specs: Sequence[ClassSpec], names: Iterable[str], *,
                    path: str | Path | None) -> dict[str, int]:
    """The class file's code of every label name (exact match, else ignoring case).

    Raises :class:`LabelError` naming the label names the class file does not list.
    """
    exact = {s.name: s.value for s in specs if s.name is not None}
    folded = {s.name.casefold(): s.value for s in specs if s.name is not None}
    lookup, unknown = {}, []
    for name in dict.fromkeys(names):
        code = exact.get(name, folded.get(name.casefold()))
        if code is None:
            unknown.append(name)
        else:
            lookup[name] = code
    if unknown:
        listed = ", ".join(repr(n) for n in exact) or "(no names)"
        raise LabelError(f"class name(s) {unknown[:5]} are not in the class file (--classes), "
                         f"which lists {listed}", path=path,
                         fix="add them to the class file, or correct their spelling in the "
                             "labels")
    return lookup


def table_from_specs(specs: Sequence[ClassSpec], used: Iterable[int], *,
                     names: Mapping[int, str] | None = None,
                     path: str | Path | None = None) -> ClassTable:
    """The class table of the classes ``used`` by the labels, in the class file's order, with
    its codes, names and colours (``names`` and the default colours fill what it leaves out).

    Raises :class:`LabelError` naming the codes used that the class file does not list.
    """
    used = set(used)
    listed = {s.value for s in specs}
    missing = sorted(used - listed)
    if missing:
        raise LabelError(f"class code(s) {missing[:10]} of the labels are not in the class file "
                         f"(--classes), which lists {sorted(listed)}", path=path,
                         fix="add them to the class file, or correct the codes in the labels")
    kept = [s for s in specs if s.value in used]
    label_names = [s.name or (names or {}).get(s.value) or f"class {s.value}" for s in kept]
    defaults = default_colors(label_names)
    return ClassTable(tuple(ClassInfo(s.value, n, s.color or d)
                            for s, n, d in zip(kept, label_names, defaults, strict=True)))
