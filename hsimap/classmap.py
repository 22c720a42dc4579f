"""Merging map classes into coarser reference classes (``evaluate --class-map``).

A class map is a list of ``old=new`` pairs: ``old`` a class of the map (its name or its
value), ``new`` the reference class it counts as (a name, or an integer code for integer
references). Several map classes may go to one reference class (``roof=impervious,
pavement=impervious``); map classes not named keep their own class. It is given inline
(``roof=impervious,pavement=impervious``) or as a text file with one ``old=new`` (or CSV
``old,new``) pair per line, ``#`` starting a comment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hsimap.classes import ClassInfo, ClassTable
from hsimap.errors import ConfigError

CLASS_MAP_FIX = ("write it as old=new pairs separated by commas, e.g. --class-map "
                 "roof=impervious,pavement=impervious, or give a file with one old=new pair "
                 "per line")


def parse_class_map(spec: str) -> list[tuple[str, str]]:
    """``old=new`` pairs from an inline spec or, when ``spec`` names a file, from that file."""
    path = Path(spec)
    source: str | None = None
    if "=" not in spec and path.suffix and not path.is_file():
        raise ConfigError("class-map file not found", path=path,
                          fix="check the --class-map path, or " + CLASS_MAP_FIX)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot be read as a text file ({exc})", path=path,
                              fix=CLASS_MAP_FIX) from exc
        items = [line.split("#", 1)[0] for line in text.splitlines()]
        source = str(path)
    else:
        items = spec.split(",")
    pairs: list[tuple[str, str]] = []
    for item in items:
        if not item.strip():
            continue
        parts = re.split(r"\s*[=,;\t]\s*", item.strip(), maxsplit=1)
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ConfigError(f"--class-map: {item.strip()!r} is not an old=new pair",
                              path=source, fix=CLASS_MAP_FIX)
        pairs.append((parts[0].strip(), parts[1].strip()))
    if not pairs:
        raise ConfigError("--class-map holds no old=new pair", path=source, fix=CLASS_MAP_FIX)
    olds = [o for o, _ in pairs]
    repeated = sorted({o for o in olds if olds.count(o) > 1})
    if repeated:
        raise ConfigError(f"--class-map names map class(es) {repeated} more than once",
                          path=source, fix="give every map class one reference class")
    return pairs


def merge_map_classes(map_table: ClassTable | None, pairs: Sequence[tuple[str, str]]
                      ) -> tuple[ClassTable | None, dict[int, int]]:
    """The merged class table and the value each map value becomes.

    A ``new`` that is a map class's name (or, as an integer, its value) merges into that
    class; another name becomes a new class with the value (and colour) of its first map
    class, an integer a class of that value. A map without a legend (``map_table``
    ``None``) takes integer values on both sides, and gets no table.
    """
    if map_table is None:
        bad = [f"{o}={n}" for o, n in pairs if not (o.isdigit() and n.isdigit())]
        if bad:
            raise ConfigError(f"--class-map: the map has no class names, so {bad[0]!r} must "
                              "be a pair of integer values", fix="write value=value pairs, "
                              "e.g. --class-map 1=10,2=10")
        return None, {int(o): int(n) for o, n in pairs}
    classes = list(map_table)
    by_name = {c.name: c for c in classes}
    folded = {c.name.casefold(): c for c in classes}
    by_value = {str(c.value): c for c in classes}

    def find(key: str) -> ClassInfo | None:
        return by_name.get(key) or folded.get(key.casefold()) or by_value.get(key)

    target: dict[str, str] = {}
    for old, want in pairs:
        found = find(old)
        if found is None:
            listed = ", ".join(f"{c.value}={c.name}" for c in classes)
            raise ConfigError(f"--class-map: {old!r} is not a class of the map",
                              fix=f"the map's classes are {listed}; name them by name or "
                                  "value on the left of each old=new pair")
        target[found.name] = want
    merged: dict[str, ClassInfo] = {}  # reference class -> merged class
    lut: dict[int, int] = {}
    for c in classes:
        new: str | None = target.get(c.name)
        into = c if new is None else find(new)
        if into is not None:
            key, info = into.name, into
        elif new is not None and new.isdigit():
            key, info = new, ClassInfo(int(new), f"class {int(new)}", c.color)
        else:
            key, info = str(new), ClassInfo(c.value, str(new), c.color)
        merged.setdefault(key, info)
        lut[c.value] = merged[key].value
    infos = list(merged.values())
    values = [c.value for c in infos]
    clash = sorted({v for v in values if values.count(v) > 1})
    if clash:
        raise ConfigError(f"--class-map: the merged classes share the value(s) {clash}",
                          fix="map onto class names, or onto integer codes no map class has")
    return ClassTable(tuple(infos)), lut


def apply_lut(values: np.ndarray, lut: dict[int, int]) -> np.ndarray:
    """``values`` with every key of ``lut`` replaced by its value (others unchanged)."""
    out = np.asarray(values).copy()
    for old, new in lut.items():
        if old != new:
            out[values == old] = new
    return out
