"""Default class colours: land-cover hues by name (water blue, vegetation green, built-up red
or grey, soil brown), then a colour-blind-safe palette; always distinct."""

from __future__ import annotations

import colorsys
from pathlib import Path

import pytest

from hsimap.classes import DEFAULT_PALETTE, ClassTable, default_colors
from hsimap.cube import open_cube
from hsimap.datasets import DATASETS
from hsimap.labels import read_labels


def _hls(color: str) -> tuple[float, float, float]:
    """Hue in degrees, lightness and saturation (0..1) of ``#rrggbb``."""
    r, g, b = (int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    h, lightness, s = colorsys.rgb_to_hls(r, g, b)
    return h * 360, lightness, s


def _is_blue(c: str) -> bool:
    h, _, s = _hls(c)
    return 190 <= h <= 250 and s > 0.5


def _is_green(c: str) -> bool:
    h, _, s = _hls(c)
    return 70 <= h <= 160 and s > 0.3


def _is_red_or_grey(c: str) -> bool:
    h, _, s = _hls(c)
    return s < 0.05 or h <= 10 or h >= 350


def _is_brown(c: str) -> bool:
    h, lightness, s = _hls(c)
    return 20 <= h <= 45 and lightness < 0.7 and s > 0.2


def test_sample_labels_get_land_cover_colours(sample_cube: Path, sample_labels: Path) -> None:
    """The bundled shapefile, read as train reads it: the colours of its own source."""
    labels = read_labels(sample_labels, grid=open_cube(sample_cube).grid)
    colors = {c.name: c.color for c in labels.classes}
    assert colors == {"roof": "#e60000", "pavement": "#9c9c9c", "low vegetation": "#98e600",
                      "tree": "#267300", "soil": "#a87000", "water": "#0064ff"}
    assert _is_blue(colors["water"]) and _is_green(colors["tree"])
    assert _is_green(colors["low vegetation"]) and _is_brown(colors["soil"])
    assert _is_red_or_grey(colors["roof"]) and _is_red_or_grey(colors["pavement"])


@pytest.mark.parametrize(("names", "test"), [
    (["Water", "River", "lake_1", "Sea"], _is_blue),
    (["Trees", "Forest", "Woods", "Meadows", "Grass-pasture", "Hippo grass"], _is_green),
    (["Roof", "Buildings", "Asphalt", "Road", "Parking lot"], _is_red_or_grey),
    (["Bare Soil", "Gravel", "Mud flats", "Fallow"], _is_brown),
])
def test_keyword_groups_have_their_hue(names: list[str], test) -> None:
    colors = default_colors(names)
    assert all(test(c) for c in colors), list(zip(names, colors, strict=True))
    assert len(set(colors)) == len(colors)


def test_unknown_names_take_the_colour_blind_safe_palette_without_repeating_taken_colours(
        ) -> None:
    colors = default_colors(["alpha", "beta", "water", "gamma"])
    assert colors == [DEFAULT_PALETTE[0], DEFAULT_PALETTE[1], "#0064ff", DEFAULT_PALETTE[2]]
    # a group out of shades hands over to the palette, still distinct
    many_waters = default_colors([f"water {i}" for i in range(6)])
    assert len(set(many_waters)) == 6 and many_waters[4:] == list(DEFAULT_PALETTE[:2])
    assert DEFAULT_PALETTE[0] == "#e69f00" and "#000000" not in DEFAULT_PALETTE


def test_more_classes_than_colours_still_gets_a_colour_each() -> None:
    names = [f"class {i}" for i in range(40)]
    colors = default_colors(names)
    assert len(colors) == 40 and colors[:16] == list(DEFAULT_PALETTE)
    assert colors[16] == DEFAULT_PALETTE[0]


@pytest.mark.parametrize("dataset", DATASETS, ids=lambda d: d.name)
def test_benchmark_scenes_get_distinct_colours(dataset) -> None:
    table = dataset.class_table
    assert len({c.color for c in table}) == len(table)
    by_name = {c.name.lower(): c.color for c in table}
    for name, color in by_name.items():
        if name == "water":
            assert _is_blue(color)
        if name in ("trees", "woods", "meadows"):
            assert _is_green(color)
        if name in ("bare soil", "exposed soils"):
            assert _is_brown(color)


def test_class_table_from_names_uses_default_colors() -> None:
    table = ClassTable.from_names(["water", "tree", "unknown thing"])
    assert [c.color for c in table] == default_colors(["water", "tree", "unknown thing"])
    assert table.classes[0].color == "#0064ff"
