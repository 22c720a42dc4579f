"""The class table: map value, name and colour of every land-cover class.

It is built from the labels at train time, stored in the checkpoint and written into every
map (colour table, category names, QGIS style), so a class keeps its value, name and colour
from the shapefile to QGIS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from hsimap.errors import LabelError

# A qualitative palette (ColorBrewer "Set1" + "Dark2", Brewer 2002, Apache-2.0 licensed colour
# specifications) used when the labels carry no colours of their own.
DEFAULT_PALETTE: tuple[str, ...] = (
    "#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#ffff33", "#a65628", "#f781bf",
    "#999999", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
)


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
        """Number classes ``1..K`` in the given order and colour them from the palette."""
        return cls.from_pairs([(i + 1, n) for i, n in enumerate(names)])

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[int, str]]) -> ClassTable:
        """Build from ``(value, name)`` pairs, sorted by value, colours from the palette."""
        ordered = sorted(pairs)
        return cls(tuple(
            ClassInfo(int(v), str(n), DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)])
            for i, (v, n) in enumerate(ordered)
        ))

    def to_json(self) -> str:
        """Serialise to a JSON list of ``{"value", "name", "color"}`` objects."""
        return json.dumps([c.__dict__ for c in self.classes])

    @classmethod
    def from_json(cls, text: str) -> ClassTable:
        """Inverse of :meth:`to_json`."""
        return cls(tuple(ClassInfo(int(d["value"]), str(d["name"]), str(d["color"]))
                         for d in json.loads(text)))
