"""Class colours from a field of the labels (``read_labels(color_field=...)``)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest

from hsimap.classes import default_colors
from hsimap.cube import open_cube
from hsimap.errors import LabelError
from hsimap.labels import parse_color, read_labels

SOURCE = {"roof": "#e60000", "pavement": "156,156,156", "low vegetation": "98E600",
          "tree": "#267300", "water": "0 100 255"}  # soil: no colour given


def _labels_with_colors(sample_labels: Path, tmp_path: Path, colors: dict[str, str]) -> Path:
    frame = gpd.read_file(sample_labels)
    name_field = next(c for c in frame.columns if frame[c].dtype.kind == "O"
                      and "water" in set(frame[c]))
    frame["colour"] = [colors.get(n) for n in frame[name_field]]
    out = tmp_path / "labels.gpkg"
    frame.to_file(out, driver="GPKG")
    return out


def test_colors_come_from_the_field_and_missing_ones_keep_the_default(
        sample_cube: Path, sample_labels: Path, tmp_path: Path) -> None:
    path = _labels_with_colors(sample_labels, tmp_path, SOURCE)
    grid = open_cube(sample_cube).grid
    labels = read_labels(path, grid=grid, color_field="colour")
    colors = {c.name: c.color for c in labels.classes}
    assert colors == {"roof": "#e60000", "pavement": "#9c9c9c", "low vegetation": "#98e600",
                      "tree": "#267300", "water": "#0064ff",
                      "soil": default_colors(labels.classes.names)[4]}
    plain = read_labels(path, grid=grid)
    assert plain.classes.values == labels.classes.values
    assert (plain.values == labels.values).all()


def test_a_class_with_two_colours_and_a_bad_colour_are_refused(
        sample_cube: Path, sample_labels: Path, tmp_path: Path) -> None:
    grid = open_cube(sample_cube).grid
    frame = gpd.read_file(sample_labels)
    frame["colour"] = ["#ff0000" if i % 2 else "#00ff00" for i in range(len(frame))]
    mixed = tmp_path / "mixed.gpkg"
    frame.to_file(mixed, driver="GPKG")
    with pytest.raises(LabelError, match="several colours") as info:
        read_labels(mixed, grid=grid, color_field="colour")
    assert "#00ff00, #ff0000" in str(info.value)
    (tmp_path / "b").mkdir()
    bad = _labels_with_colors(sample_labels, tmp_path / "b", {"water": "blue-ish"})
    with pytest.raises(LabelError, match="'blue-ish', not a colour"):
        read_labels(bad, grid=grid, color_field="colour")
    with pytest.raises(LabelError, match="has no field 'rgb'") as info:
        read_labels(bad, grid=grid, color_field="rgb")
    assert "colour" in info.value.format()


@pytest.mark.parametrize(("text", "expected"), [
    ("#0064FF", "#0064ff"), ("0064ff", "#0064ff"), ("#06f", "#0066ff"),
    ("0,100,255", "#0064ff"), (" 0, 100, 255 ", "#0064ff"), ("0 100 255", "#0064ff"),
    ("0,100,255,128", "#0064ff"), ("0;100;255", "#0064ff"),
])
def test_parse_color_accepts_hex_and_rgb(text: str, expected: str) -> None:
    assert parse_color(text) == expected


@pytest.mark.parametrize("text", ["blue", "#12345", "256,0,0", "1,2", "-1,0,0", "abc"])
def test_parse_color_refuses_anything_else(text: str) -> None:
    with pytest.raises(LabelError, match="not a colour"):
        parse_color(text)


def test_train_color_field_reaches_the_map(sample_cube: Path, sample_labels: Path,
                                           tmp_path: Path) -> None:
    """`hsimap train --color-field` stores the colours; `predict` writes them into the map."""
    import rasterio
    from click.testing import CliRunner

    from hsimap.cli.main import cli

    path = _labels_with_colors(sample_labels, tmp_path, SOURCE)
    model = tmp_path / "m.safetensors"
    runner = CliRunner()
    r = runner.invoke(cli, ["train", "--cube", str(sample_cube), "--labels", str(path),
                            "--color-field", "colour", "--model-type", "spectral-mlp",
                            "--model", str(model)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = tmp_path / "map.tif"
    r = runner.invoke(cli, ["predict", str(sample_cube), "-o", str(out), "--model", str(model)],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    labels = read_labels(path, grid=open_cube(sample_cube).grid, color_field="colour")
    with rasterio.open(out) as src:
        cmap = src.colormap(1)
    water = next(c.value for c in labels.classes if c.name == "water")
    assert cmap[water][:3] == (0, 100, 255)
    tree = next(c.value for c in labels.classes if c.name == "tree")
    assert cmap[tree][:3] == (0x26, 0x73, 0x00)
