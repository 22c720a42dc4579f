"""The class table: map value, name and colour of every land-cover class.

It is built from the labels at train time, stored in the checkpoint and written into every
map (colour table, category names, QGIS style), so a class keeps its value, name and colour
from the shapefile to QGIS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hsimap.errors import LabelError

# The largest class value a map can hold: maps are uint8 or uint16 with nodata 0.
MAX_CLASS_VALUE = 65535

# Colour-blind-safe qualitative colours for classes no land-cover keyword names: Okabe & Ito
# (2008, "Color Universal Design", black left out) followed by Paul Tol's "muted" scheme (Tol
# 2021, "Colour Schemes", SRON/EPS/TN/09-002).
DEFAULT_PALETTE: tuple[str, ...] = (
    "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7",
    "#cc6677", "#332288", "#ddcc77", "#117733", "#88ccee", "#882255", "#44aa99", "#999933",
    "#aa4499",
)

# Land-cover colours by class-name keyword: (keywords, shades). The first word of a class
# name that is a keyword (or a keyword + "s") picks the group; the n-th class of a group gets
# its n-th shade, and a group out of shades hands over to DEFAULT_PALETTE. The first shades of
# water, tree, low vegetation, roof, pavement and soil are the colours of the source of the
# bundled sample's land-cover polygons (sample_data/README.md); the wetland shade is ESA
# WorldCover 2020's herbaceous wetland (#0096a0); the rest follow the same hues.
LANDCOVER_COLORS: tuple[tuple[frozenset[str], tuple[str, ...]], ...] = tuple(
    (frozenset(words.split()), shades) for words, shades in (
        ("water river lake sea ocean pond reservoir canal stream lagoon",
         ("#0064ff", "#1f78b4", "#6baed6", "#08306b")),
        ("wetland marsh swamp bog fen mangrove reed", ("#0096a0", "#41b6c4")),
        ("tree forest wood woods woodland orchard pine oak hardwood hammock mopane",
         ("#267300", "#1b5e20", "#38a800", "#4f7942")),
        ("shrub shrubland bush scrub heath", ("#6b8e23", "#8fbc3f")),
        ("vegetation grass grasses grassland meadow pasture lawn herbaceous hay park weed riparian",
         ("#98e600", "#b2df8a", "#7fbf3f", "#c7e9a0")),
        ("crop cropland field agriculture corn wheat soybean alfalfa oats vineyard celery "
         "lettuce broccoli grape vinyard stubble",
         ("#ffd92f", "#e6ab02", "#c9b600", "#ffed6f", "#b8860b", "#f5deb3")),
        ("roof building house urban built settlement industrial residential bldg tower",
         ("#e60000", "#b30000", "#ff6f6f", "#8b0000")),
        ("pavement road street asphalt parking impervious concrete railway paved drive "
         "sidewalk metal steel brick bitumen",
         ("#9c9c9c", "#616161", "#c8c8c8", "#404040")),
        ("soil bare sand earth rock gravel fallow dirt stone quarry mud firescar",
         ("#a87000", "#8c510a", "#d8b365", "#bf812d")),
        ("shadow", ("#303030",)),
        ("snow ice glacier cloud", ("#f0f0f0",)),
    ))


def _landcover_group(name: str) -> int | None:
    """Index into LANDCOVER_COLORS of the first keyword word in ``name``, if any."""
    for word in re.findall(r"[a-z]+", name.lower()):
        for i, (words, _) in enumerate(LANDCOVER_COLORS):
            if word in words or (word.endswith("s") and word[:-1] in words):
                return i
    return None


def default_colors(names: Sequence[str]) -> list[str]:
    """Distinct colours for classes named ``names`` (in order): land-cover hues by keyword
    (water blue, vegetation green, built-up red/grey, soil brown), then DEFAULT_PALETTE."""
    colors: list[str | None] = [None] * len(names)
    used_in_group: dict[int, int] = {}
    for i, name in enumerate(names):
        group = _landcover_group(name)
        if group is None:
            continue
        shades = LANDCOVER_COLORS[group][1]
        n = used_in_group.get(group, 0)
        if n < len(shades):
            colors[i] = shades[n]
            used_in_group[group] = n + 1
    taken = {c for c in colors if c is not None}
    spare = [c for c in DEFAULT_PALETTE if c not in taken]
    k = 0
    for i, color in enumerate(colors):
        if color is None:  # past the spare colours, the palette repeats
            colors[i] = spare[k] if k < len(spare) else DEFAULT_PALETTE[k % len(DEFAULT_PALETTE)]
            k += 1
    return [c for c in colors if c is not None]


@dataclass(frozen=True)
class ClassInfo:
    """One class: its value in the map, its name and its colour (``#rrggbb``)."""

    value: int
    name: str
    color: str

    def rgb(self) -> tuple[int, int, int]:
        """Return the colour as an ``(r, g, b)`` tuple of 0..255 ints."""
        c = self.color.lstrip("#")
        return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


@dataclass(frozen=True)
class ClassTable:
    """Ordered classes. Model output index ``i`` is ``classes[i]``; the map stores its value."""

    classes: tuple[ClassInfo, ...]

    def __post_init__(self) -> None:
        values = [c.value for c in self.classes]
        if len(set(values)) != len(values):
            raise LabelError(f"class values are not unique: {values}")
        if any(v < 1 for v in values):
            raise LabelError(
                f"class values must be positive integers, got {sorted(values)}",
                fix="0 and negative values are reserved for 'no class'; renumber the classes",
            )
        if any(v > MAX_CLASS_VALUE for v in values):
            raise LabelError(
                f"class value(s) {sorted(v for v in values if v > MAX_CLASS_VALUE)[:5]} exceed "
                f"{MAX_CLASS_VALUE}, the largest a class map (uint16) can store",
                fix=f"renumber the classes from 1 to at most {MAX_CLASS_VALUE}")

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self) -> Iterator[ClassInfo]:
        return iter(self.classes)

    @property
    def values(self) -> list[int]:
        """Map values in model-output order."""
        return [c.value for c in self.classes]

    @property
    def names(self) -> list[str]:
        """Class names in model-output order."""
        return [c.name for c in self.classes]

    @property
    def map_dtype(self) -> str:
        """Smallest unsigned dtype holding every value plus the nodata value 0."""
        return "uint8" if max(self.values) <= 255 else "uint16"

    @classmethod
    def from_names(cls, names: Sequence[str]) -> ClassTable:
        """Number classes ``1..K`` in the given order and colour them by name."""
        return cls.from_pairs([(i + 1, n) for i, n in enumerate(names)])

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[int, str]]) -> ClassTable:
        """Build from ``(value, name)`` pairs, sorted by value, colours from
        :func:`default_colors`."""
        ordered = sorted(pairs)
        colors = default_colors([str(n) for _, n in ordered])
        return cls(tuple(ClassInfo(int(v), str(n), c)
                         for (v, n), c in zip(ordered, colors, strict=True)))

    def to_json(self) -> str:
        """Serialise to a JSON list of ``{"value", "name", "color"}`` objects."""
        return json.dumps([c.__dict__ for c in self.classes])

    @classmethod
    def from_json(cls, text: str) -> ClassTable:
        """Inverse of :meth:`to_json`."""
        return cls(tuple(ClassInfo(int(d["value"]), str(d["name"]), str(d["color"]))
                         for d in json.loads(text)))


def parse_color(text: str, *, field: str = "colour", path: str | Path | None = None) -> str:
    """``#rrggbb`` from ``#rrggbb``, ``rrggbb``, ``#rgb`` or ``r,g,b[,a]`` (0..255 integers)."""
    s = text.strip().lower()
    hex_part = s[1:] if s.startswith("#") else s
    if len(hex_part) in (3, 6) and all(ch in "0123456789abcdef" for ch in hex_part) and (
            s.startswith("#") or len(hex_part) == 6):
        if len(hex_part) == 3:
            hex_part = "".join(ch * 2 for ch in hex_part)
        return f"#{hex_part}"
    parts = [p for p in s.replace(";", ",").replace(" ", ",").split(",") if p]
    if len(parts) in (3, 4) and all(p.isdigit() and int(p) <= 255 for p in parts):
        r, g, b = (int(p) for p in parts[:3])
        return f"#{r:02x}{g:02x}{b:02x}"
    raise LabelError(f"field {field!r} holds {text!r}, not a colour", path=path,
                     fix="write colours as #rrggbb (e.g. #0064ff) or r,g,b (e.g. 0,100,255)")
