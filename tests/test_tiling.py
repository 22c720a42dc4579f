"""Tile grids cover every pixel exactly once, for any scene size, tile size and halo."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsimap.errors import ConfigError
from hsimap.tiling import TileGrid, Window, split_window


@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), tile=st.integers(1, 128),
       halo=st.integers(0, 40), stride=st.sampled_from([1, 2, 4]))
def test_tiles_cover_every_pixel_exactly_once(h: int, w: int, tile: int, halo: int,
                                              stride: int) -> None:
    grid = TileGrid(h, w, tile, halo, stride)
    cover = np.zeros((h, w), dtype=np.int32)
    for t in grid:
        cover[t.write.row0:t.write.row1, t.write.col0:t.write.col1] += 1
        assert t.read.row0 % stride == 0 and t.read.col0 % stride == 0
        assert t.read.row0 <= t.write.row0 and t.read.row1 >= t.write.row1
        # the halo is there on every side that is not a scene edge
        assert t.write.row0 - t.read.row0 == min(grid.halo, t.write.row0)
        assert t.read.col1 - t.write.col1 == min(grid.halo, w - t.write.col1)
        rs, cs = t.crop
        assert rs.stop - rs.start == t.write.height and cs.stop - cs.start == t.write.width
    assert (cover == 1).all()
    assert len(list(grid)) == len(grid)
    assert grid[len(grid) - 1] == list(grid)[-1]


def test_mosaicking_identity_outputs_reproduces_input() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(97, 61))
    grid = TileGrid(97, 61, 16, 5, 2)
    out = np.full_like(image, np.nan)
    for t in grid:
        window = image[t.read.row0:t.read.row1, t.read.col0:t.read.col1]
        out[t.write.row0:t.write.row1, t.write.col0:t.write.col1] = window[t.crop]
    np.testing.assert_array_equal(out, image)


def test_invalid_tile_size() -> None:
    with pytest.raises(ConfigError, match="tile size"):
        TileGrid(10, 10, 0, 0)


@given(st.integers(0, 40), st.integers(1, 90), st.integers(0, 40), st.integers(1, 90),
       st.sampled_from([1, 2, 4, 8]))
@settings(max_examples=150, deadline=None)
def test_split_window_halves_cover_the_window_with_cuts_on_stride(
        row0: int, height: int, col0: int, width: int, stride: int) -> None:
    """The out-of-memory split: 1, 2 or 4 sub-windows tiling ``write`` exactly, each cut on a
    stride multiple from the window's origin, a side cut only when two strides long."""
    write = Window(row0, row0 + height, col0, col0 + width)
    rows = split_window(write, stride)
    cover = np.zeros((row0 + height, col0 + width), dtype=np.int32)
    for row in rows:
        assert len({(w.row0, w.row1) for w in row}) == 1  # a row of sub-windows shares rows
        for sub in row:
            cover[sub.row0:sub.row1, sub.col0:sub.col1] += 1
            assert (sub.row0 - row0) % stride == 0 and (sub.col0 - col0) % stride == 0
    assert (cover[row0:, col0:] == 1).all() and cover.sum() == height * width
    assert len(rows) == (2 if height > stride and height // 2 // stride > 0 else 1)
    assert len(rows[0]) == (2 if width > stride and width // 2 // stride > 0 else 1)
