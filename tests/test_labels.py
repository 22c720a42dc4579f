"""Labels from vectors: reprojection, points, string and integer class fields, errors,
and class colours from a field (``read_labels(color_field=...)``)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Point, box

from hsimap.classes import default_colors
from hsimap.cube import open_cube
from hsimap.errors import CRSMismatchError, LabelError
from hsimap.labels import parse_color, read_labels

from .fixtures import ORIGIN, UTM, write_cube, write_polygons


@pytest.fixture()
def cube(tmp_path: Path):
    return open_cube(write_cube(tmp_path / "cube.tif"))


def test_geographic_labels_land_on_the_same_pixels_as_utm(tmp_path: Path, cube) -> None:
    utm = read_labels(write_polygons(tmp_path / "utm.shp"), grid=cube.grid)
    wgs = read_labels(write_polygons(tmp_path / "wgs.shp", to_crs="EPSG:4326"), grid=cube.grid)
    assert wgs.reprojected_from == "EPSG:4326"
    assert utm.reprojected_from is None
    assert (utm.values > 0).sum() > 300
    np.testing.assert_array_equal(utm.values, wgs.values)


def test_integer_field_keeps_codes_and_takes_names_from_a_paired_text_field(
        tmp_path: Path, cube) -> None:
    labels = read_labels(write_polygons(tmp_path / "gt.shp"), grid=cube.grid)
    assert labels.class_field == "class_id"
    assert labels.classes.values == [3, 7]
    assert labels.classes.names == ["meadow", "roof"]
    assert set(np.unique(labels.values)) == {0, 3, 7}


def test_string_field_numbers_classes_in_order_of_first_appearance(tmp_path: Path,
                                                                   cube) -> None:
    path = write_polygons(tmp_path / "gt.gpkg", fields=("class_name", "other"))
    labels = read_labels(path, grid=cube.grid, class_field="class_name")
    assert labels.classes.names == ["meadow", "roof"]
    assert labels.classes.values == [1, 2]
    assert labels.values[20, 5] == 1 and labels.values[20, 30] == 2
    # water, tree, roof stay 1, 2, 3 in the order the file lists them (not alphabetical)
    frame = gpd.GeoDataFrame(
        {"class_name": ["water", "tree", "roof", "tree"]},
        geometry=[box(ORIGIN[0] + 30 * c, ORIGIN[1] - 30 * 30, ORIGIN[0] + 30 * (c + 6),
                      ORIGIN[1] - 30 * 10) for c in (2, 10, 20, 28)], crs=UTM)
    frame.to_file(tmp_path / "wtr.gpkg")
    labels = read_labels(tmp_path / "wtr.gpkg", grid=cube.grid)
    assert labels.classes.names == ["water", "tree", "roof"]
    assert labels.classes.values == [1, 2, 3]
    assert labels.values[20, 4] == 1 and labels.values[20, 12] == 2
    assert labels.values[20, 22] == 3 and labels.values[20, 30] == 2


def test_integer_only_field(tmp_path: Path, cube) -> None:
    labels = read_labels(write_polygons(tmp_path / "gt.geojson", fields=("class_id",)),
                         grid=cube.grid)
    assert labels.classes.values == [3, 7]
    assert labels.classes.names == ["class 3", "class 7"]


def test_points_label_the_pixel_they_fall_in(tmp_path: Path, cube) -> None:
    x0, y0 = ORIGIN
    pts = [Point(x0 + 30 * 5 + 15, y0 - 30 * 10 - 15), Point(x0 + 30 * 30 + 1, y0 - 30 * 20 - 1)]
    frame = gpd.GeoDataFrame({"label": ["water", "soil"]}, geometry=pts, crs=UTM)
    frame.to_file(tmp_path / "pts.gpkg")
    labels = read_labels(tmp_path / "pts.gpkg", grid=cube.grid)
    assert (labels.values > 0).sum() == 2
    assert labels.classes.names == ["water", "soil"]
    assert labels.values[10, 5] == 1 and labels.values[20, 30] == 2


def test_missing_class_field_lists_the_fields_that_exist(tmp_path: Path, cube) -> None:
    path = write_polygons(tmp_path / "gt.shp")
    with pytest.raises(LabelError) as err:
        read_labels(path, grid=cube.grid, class_field="landuse")
    msg = str(err.value)
    assert "landuse" in msg and "class_name" in msg and "class_id" in msg and str(path) in msg


def test_ambiguous_fields_ask_for_class_field(tmp_path: Path, cube) -> None:
    frame = gpd.GeoDataFrame({"a": [1, 2], "b": ["x", "y"]},
                             geometry=[box(*ORIGIN, ORIGIN[0] + 300, ORIGIN[1] - 300)] * 2,
                             crs=UTM)
    frame.to_file(tmp_path / "amb.gpkg")
    with pytest.raises(LabelError, match="--class-field"):
        read_labels(tmp_path / "amb.gpkg", grid=cube.grid)


def test_features_outside_are_counted_and_all_outside_is_an_error(tmp_path: Path, cube) -> None:
    far = box(ORIGIN[0] + 1e5, ORIGIN[1] - 1e5, ORIGIN[0] + 1e5 + 300, ORIGIN[1] - 1e5 + 300)
    near = box(ORIGIN[0] + 60, ORIGIN[1] - 600, ORIGIN[0] + 600, ORIGIN[1] - 60)
    gpd.GeoDataFrame({"class": ["a", "b"]}, geometry=[near, far], crs=UTM).to_file(
        tmp_path / "some.gpkg")
    with pytest.warns(UserWarning, match="1 of 2 features lie outside"):
        labels = read_labels(tmp_path / "some.gpkg", grid=cube.grid)
    assert labels.n_outside == 1
    gpd.GeoDataFrame({"class": ["b"]}, geometry=[far], crs=UTM).to_file(tmp_path / "far.gpkg")
    with pytest.raises(LabelError, match="none of the 1 features overlap"):
        read_labels(tmp_path / "far.gpkg", grid=cube.grid)


def test_overlapping_classes_are_reported_not_resolved(tmp_path: Path, cube) -> None:
    a = box(ORIGIN[0], ORIGIN[1] - 600, ORIGIN[0] + 600, ORIGIN[1])
    b = box(ORIGIN[0] + 300, ORIGIN[1] - 600, ORIGIN[0] + 900, ORIGIN[1])
    gpd.GeoDataFrame({"class": ["a", "b"]}, geometry=[a, b], crs=UTM).to_file(
        tmp_path / "ov.gpkg")
    with pytest.raises(LabelError, match="200 pixel"):
        read_labels(tmp_path / "ov.gpkg", grid=cube.grid)
    with pytest.warns(UserWarning, match="left unlabelled"):
        labels = read_labels(tmp_path / "ov.gpkg", grid=cube.grid, on_overlap="drop")
    assert labels.n_conflict_pixels == 200
    assert (labels.values == 1).sum() == 200 and (labels.values == 2).sum() == 200


def test_labels_without_crs_against_a_cube_with_one(tmp_path: Path, cube) -> None:
    path = write_polygons(tmp_path / "nocrs.gpkg", crs=None)
    with pytest.raises(CRSMismatchError, match="no coordinate reference system"):
        read_labels(path, grid=cube.grid)


def test_all_touched_labels_more_pixels(tmp_path: Path, cube) -> None:
    tri = gpd.GeoDataFrame({"class": ["a"]}, crs=UTM, geometry=[box(
        ORIGIN[0] + 50, ORIGIN[1] - 160, ORIGIN[0] + 160, ORIGIN[1] - 50)])
    tri.to_file(tmp_path / "t.gpkg")
    centre = read_labels(tmp_path / "t.gpkg", grid=cube.grid)
    touched = read_labels(tmp_path / "t.gpkg", grid=cube.grid, all_touched=True)
    assert (touched.values > 0).sum() > (centre.values > 0).sum()


def test_multi_layer_geopackage_needs_layer_and_lists_the_layers(tmp_path: Path,
                                                                 cube) -> None:
    path = write_polygons(tmp_path / "gt.gpkg")
    frame = gpd.read_file(path)
    swapped = frame.assign(class_name=frame["class_name"][::-1].to_numpy(),
                           class_id=frame["class_id"][::-1].to_numpy())
    swapped.to_file(path, layer="survey_2023", driver="GPKG")
    with pytest.raises(LabelError) as err:
        read_labels(path, grid=cube.grid)
    text = err.value.format()
    assert str(path) in text and "2 layers" in text
    assert "'gt'" in text and "'survey_2023'" in text and "--layer" in text
    first = read_labels(path, grid=cube.grid, layer="gt")
    second = read_labels(path, grid=cube.grid, layer="survey_2023")
    assert first.values[20, 5] == 3 and second.values[20, 5] == 7
    with pytest.raises(LabelError, match="has no layer 'survey'") as err:
        read_labels(path, grid=cube.grid, layer="survey")
    assert "'survey_2023'" in err.value.format()
    # a single-layer file needs no --layer, and a wrong one is still refused
    single = write_polygons(tmp_path / "one.shp")
    assert read_labels(single, grid=cube.grid, layer="one").values[20, 5] == 3
    with pytest.raises(LabelError, match="has no layer 'two'"):
        read_labels(single, grid=cube.grid, layer="two")


# ------------------------------------------------------------ class colours from a field

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
