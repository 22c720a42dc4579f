"""Tile grids: which windows to read (tile + halo) and which part of each to keep.

Pure integer arithmetic, no I/O. Every pixel of the scene belongs to exactly one tile's
write window; read windows add ``halo`` pixels on each side, clipped at the scene edge.
Tile origins are multiples of ``stride`` so that a model with spatial down-sampling sees
the same pixel phase in every tile.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from hsimap.errors import ConfigError


@dataclass(frozen=True)
class Window:
    """Half-open pixel window ``[row0, row1) x [col0, col1)``."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def height(self) -> int:
        """Rows."""
        return self.row1 - self.row0

    @property
    def width(self) -> int:
        """Columns."""
        return self.col1 - self.col0

    @property
    def rows(self) -> tuple[int, int]:
        """``(row0, row1)``."""
        return self.row0, self.row1

    @property
    def cols(self) -> tuple[int, int]:
        """``(col0, col1)``."""
        return self.col0, self.col1


@dataclass(frozen=True)
class Tile:
    """One unit of work: ``read`` (with halo) contains ``write`` (kept pixels)."""

    index: int
    read: Window
    write: Window

    @property
    def crop(self) -> tuple[slice, slice]:
        """Slices of the read window that give the write window."""
        r = self.write.row0 - self.read.row0
        c = self.write.col0 - self.read.col0
        return slice(r, r + self.write.height), slice(c, c + self.write.width)


@dataclass(frozen=True)
class TileGrid:
    """A regular grid of tiles over a ``height x width`` scene.

    ``tile`` and ``halo`` are rounded up to multiples of ``stride``; the last row and
    column of tiles are smaller where the scene does not divide evenly (never dropped).
    """

    height: int
    width: int
    tile: int
    halo: int
    stride: int = 1

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ConfigError(f"scene size must be positive, got {self.height}x{self.width}")
        if self.tile < 1:
            raise ConfigError(f"tile size must be a positive number of pixels, got {self.tile}",
                              fix="pass --tile-size 256 (or another positive integer)")
        if self.halo < 0 or self.stride < 1:
            raise ConfigError(f"invalid halo {self.halo} / stride {self.stride}")
        object.__setattr__(self, "tile", _round_up(self.tile, self.stride))
        object.__setattr__(self, "halo", _round_up(self.halo, self.stride))

    @property
    def n_rows(self) -> int:
        """Tiles per column of the grid."""
        return math.ceil(self.height / self.tile)

    @property
    def n_cols(self) -> int:
        """Tiles per row of the grid."""
        return math.ceil(self.width / self.tile)

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    def __iter__(self) -> Iterator[Tile]:
        index = 0
        for r in range(self.n_rows):
            for c in range(self.n_cols):
                yield self._make(index, r, c)
                index += 1

    def __getitem__(self, index: int) -> Tile:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._make(index, *divmod(index, self.n_cols))

    def _make(self, index: int, r: int, c: int) -> Tile:
        r0, c0 = r * self.tile, c * self.tile
        write = Window(r0, min(r0 + self.tile, self.height), c0, min(c0 + self.tile, self.width))
        read = Window(max(0, write.row0 - self.halo), min(self.height, write.row1 + self.halo),
                      max(0, write.col0 - self.halo), min(self.width, write.col1 + self.halo))
        return Tile(index, read, write)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def split_window(write: Window, stride: int) -> list[list[Window]]:
    """Halves of ``write`` along each side longer than ``stride`` (cuts on stride multiples).

    Rows of sub-windows, top to bottom, each row left to right: 1, 2 or 4 windows in all
    (one when neither side can be cut). Used to retry a tile that ran out of memory.
    """
    def cuts(a: int, b: int) -> list[tuple[int, int]]:
        mid = a + ((b - a) // 2 // stride) * stride
        return [(a, b)] if mid <= a or mid >= b else [(a, mid), (mid, b)]
    return [[Window(r0, r1, c0, c1) for c0, c1 in cuts(write.col0, write.col1)]
            for r0, r1 in cuts(write.row0, write.row1)]
