"""Class files (``train --classes FILE``): JSON, QGIS .qml styles and .clr colour maps fix the
codes, names, colours and order of the classes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from hsimap.classes import ClassInfo, ClassTable
from hsimap.classfile import ClassSpec, read_class_file
from hsimap.cube import open_cube
from hsimap.errors import LabelError
from hsimap.geotiff import qml_style
from hsimap.labels import read_labels

from .fixtures import ORIGIN, UTM, write_cube, write_polygons

WANT = (ClassSpec(10, "roof", "#e60000"), ClassSpec(20, "meadow", "#98e600"))

# A categorized vector style as QGIS 3.34 saves it (Layer Properties > Symbology > Save
# Style), trimmed to the parts that matter, on the integer field class_id.
CATEGORIZED_QML = """<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.34.4-Prizren" styleCategories="Symbology">
  <renderer-v2 type="categorizedSymbol" attr="class_id" enableorderby="0">
    <categories>
      <category value="7" label="roof" symbol="0" render="true" type="long" uuid="{a}"/>
      <category value="3" label="meadow" symbol="1" render="true" type="long" uuid="{b}"/>
      <category value="" label="" symbol="2" render="true" type="string" uuid="{c}"/>
    </categories>
    <symbols>
      <symbol name="0" type="fill" alpha="1" force_rhr="0" clip_to_extent="1">
        <layer class="SimpleFill" enabled="1" pass="0" locked="0">
          <Option type="Map">
            <Option name="border_width_map_unit_scale" value="3x:0,0,0,0,0,0" type="QString"/>
            <Option name="color" value="230,0,0,255,rgb:0.9,0,0,1" type="QString"/>
            <Option name="outline_color" value="35,35,35,255" type="QString"/>
          </Option>
        </layer>
      </symbol>
      <symbol name="1" type="fill" alpha="1">
        <layer class="SimpleFill" enabled="1">
          <prop k="color" v="152,230,0,255"/>
          <prop k="outline_color" v="35,35,35,255"/>
        </layer>
      </symbol>
      <symbol name="2" type="fill" alpha="1">
        <layer class="SimpleFill" enabled="1">
          <prop k="color" v="1,2,3,255"/>
        </layer>
      </symbol>
    </symbols>
  </renderer-v2>
</qgis>
"""


@pytest.fixture()
def cube(tmp_path: Path):
    return open_cube(write_cube(tmp_path / "cube.tif"))


def test_json_qml_and_clr_class_files_read_alike(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps(
        [{"value": 10, "name": "roof", "color": "#E60000"},
         {"code": 20, "name": "meadow", "colour": [152, 230, 0]}]))
    assert read_class_file(tmp_path / "c.json") == WANT
    # `hsimap info model --json` output: the classes under "classes"
    (tmp_path / "info.json").write_text(json.dumps(
        {"kind": "model", "classes": [{"value": 10, "name": "roof", "color": "#e60000"},
                                      {"value": 20, "name": "meadow", "color": "#98e600"}]}))
    assert read_class_file(tmp_path / "info.json") == WANT
    # hsimap's own paletted raster style (the map.qml beside every map)
    table = ClassTable(tuple(ClassInfo(s.value, str(s.name), str(s.color)) for s in WANT))
    (tmp_path / "map.qml").write_text(qml_style(table))
    assert read_class_file(tmp_path / "map.qml") == WANT
    # GDAL/ArcGIS .clr and QGIS's colour map export (commas, alpha, names with spaces)
    (tmp_path / "c.clr").write_text("# comment\n10 230 0 0 roof\n20 152 230 0 255 meadow\n")
    assert read_class_file(tmp_path / "c.clr") == WANT
    (tmp_path / "q.txt").write_text("# QGIS Generated Color Map Export File\n"
                                    "INTERPOLATION:DISCRETE\n10,230,0,0,255,roof\n"
                                    "20,152,230,0,255,low vegetation\n")
    assert read_class_file(tmp_path / "q.txt")[1] == ClassSpec(20, "low vegetation", "#98e600")
    (tmp_path / "plain.clr").write_text("10 230 0 0\n20 152 230 0\n")
    assert read_class_file(tmp_path / "plain.clr")[0] == ClassSpec(10, None, "#e60000")
    (tmp_path / "cat.qml").write_text(CATEGORIZED_QML)
    assert read_class_file(tmp_path / "cat.qml") == (ClassSpec(7, "roof", "#e60000"),
                                                     ClassSpec(3, "meadow", "#98e600"))


@pytest.mark.parametrize(("text", "problem"), [
    ('[{"value": 1, "name": "a"}, {"value": 1, "name": "b"}]', "code(s) [1] appear more"),
    ('[{"value": 0, "name": "a"}]', "below 1"),
    ('[{"value": 1.5, "name": "a"}]', "not a whole number"),
    ('[{"name": "a"}]', 'has no "value"'),
    ('[{"value": 1, "name": "a", "color": "blueish"}]', "'blueish' is not a colour"),
    ("[{bad json", "not valid JSON"),
    ("1 2 3\n", "not 'value r g b"),
    ("<qgis><renderer-v2/></qgis>", "holds no class"),
])
def test_bad_class_files_are_refused_with_the_file_and_the_fix(tmp_path: Path, text: str,
                                                               problem: str) -> None:
    path = tmp_path / "classes.txt"
    path.write_text(text)
    with pytest.raises(LabelError, match=re.escape(problem)) as info:
        read_class_file(path)
    assert str(path) in info.value.format() and info.value.fix


def test_class_file_fixes_codes_names_colours_and_order_of_text_labels(tmp_path: Path,
                                                                       cube) -> None:
    (tmp_path / "c.json").write_text(json.dumps(
        [{"value": 9, "name": "water", "color": "#0000ff"},
         {"value": 7, "name": "Roof", "color": "#ff0000"},
         {"value": 4, "name": "meadow"}]))
    specs = read_class_file(tmp_path / "c.json")
    path = write_polygons(tmp_path / "gt.gpkg", fields=("class_name", "other"))
    labels = read_labels(path, grid=cube.grid, class_specs=specs)
    # file order, file codes; "roof" matches "Roof" ignoring case; water (unused) left out
    assert labels.classes.values == [7, 4]
    assert labels.classes.names == ["Roof", "meadow"]
    assert labels.classes.classes[0].color == "#ff0000"
    assert labels.classes.classes[1].color.startswith("#")
    assert labels.values[20, 5] == 4 and labels.values[20, 30] == 7
    np.testing.assert_array_equal(labels.index()[20, [5, 30]], [1, 0])
    # a label name the class file lacks is refused, naming it
    frame = gpd.GeoDataFrame({"class_name": ["meadow", "forest"]},
                             geometry=[box(ORIGIN[0] + 60, ORIGIN[1] - 900, ORIGIN[0] + 300,
                                           ORIGIN[1] - 300)] * 2, crs=UTM)
    frame.to_file(tmp_path / "more.gpkg")
    with pytest.raises(LabelError, match=r"\['forest'\] are not in the class file"):
        read_labels(tmp_path / "more.gpkg", grid=cube.grid, class_specs=specs)


def test_class_file_on_integer_codes_keeps_the_codes_and_checks_them(tmp_path: Path,
                                                                     cube) -> None:
    (tmp_path / "cat.qml").write_text(CATEGORIZED_QML)
    specs = read_class_file(tmp_path / "cat.qml")
    path = write_polygons(tmp_path / "gt.shp", fields=("class_id",))
    labels = read_labels(path, grid=cube.grid, class_specs=specs)
    assert labels.classes.values == [7, 3]  # the style's order
    assert labels.classes.names == ["roof", "meadow"]
    assert [c.color for c in labels.classes] == ["#e60000", "#98e600"]
    (tmp_path / "few.clr").write_text("3 0 0 255 meadow\n")
    with pytest.raises(LabelError, match=r"code\(s\) \[7\] of the labels are not in the class"):
        read_labels(path, grid=cube.grid, class_specs=read_class_file(tmp_path / "few.clr"))


def test_train_classes_file_fixes_the_map_values_and_legend(tmp_path: Path) -> None:
    """`hsimap train --classes FILE`: the map holds the file's codes, names and colours."""
    import rasterio
    from click.testing import CliRunner

    from hsimap.cli.main import cli

    cube = write_cube(tmp_path / "cube.tif")
    labels = write_polygons(tmp_path / "gt.gpkg", fields=("class_name", "other"))
    (tmp_path / "classes.clr").write_text("5 0 0 255 roof\n2 0 255 0 meadow\n")
    (tmp_path / "fast.toml").write_text("[config]\nepochs = 3\n")
    model, out = tmp_path / "m.safetensors", tmp_path / "map.tif"
    runner = CliRunner()
    r = runner.invoke(cli, ["train", "--cube", str(cube), "--labels", str(labels),
                            "--class-field", "class_name", "--classes",
                            str(tmp_path / "classes.clr"), "--model-type", "spectral-mlp",
                            "--config", str(tmp_path / "fast.toml"), "--guard", "1",
                            "--model", str(model)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["info", str(model), "--json"], catch_exceptions=False)
    assert json.loads(r.output)["classes"] == [
        {"value": 5, "name": "roof", "color": "#0000ff"},
        {"value": 2, "name": "meadow", "color": "#00ff00"}]
    r = runner.invoke(cli, ["predict", str(cube), "-o", str(out), "--model", str(model)],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    with rasterio.open(out) as src:
        data, cmap, tags = src.read(1), src.colormap(1), src.tags(1)
    assert set(np.unique(data)) <= {0, 2, 5}
    assert data[20, 4] == 2 and data[20, 31] == 5
    assert cmap[5][:3] == (0, 0, 255) and cmap[2][:3] == (0, 255, 0)
    assert tags["CLASS_5"] == "roof" and tags["CLASS_2"] == "meadow"
    r = runner.invoke(cli, ["train", "--cube", str(cube), "--labels", str(labels),
                            "--classes", str(tmp_path / "nope.json"), "--model",
                            str(tmp_path / "n.safetensors")])
    assert r.exit_code != 0 and "nope.json: class file not found" in r.output
    assert "Traceback" not in r.output
