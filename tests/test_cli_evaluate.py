"""CLI tests of ``hsimap evaluate`` (CliRunner, real files)."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin
from shapely.geometry import box

from hsimap.classes import ClassTable
from hsimap.cli.main import cli

CRS = "EPSG:32633"
TABLE = ClassTable.from_names(["crop", "grass"])


@pytest.fixture()
def scene(tmp_path: Path) -> dict[str, Path]:
    data = np.ones((20, 30), np.uint8)
    data[:, 15:] = 2
    with rasterio.open(tmp_path / "map.tif", "w", driver="GTiff", height=20, width=30, count=1,
                       dtype="uint8", crs=CRS, transform=from_origin(0, 600, 20, 20),
                       nodata=0) as dst:
        dst.write(data, 1)
        dst.update_tags(HSIMAP_CLASSES=TABLE.to_json())
    # 5x5 px of crop on crop, 5x5 px of grass of which 2 columns lie on crop
    frame = gpd.GeoDataFrame({"code": [1, 2]}, geometry=[box(20, 400, 120, 500),
                                                        box(260, 300, 360, 400)], crs=CRS)
    frame.to_file(tmp_path / "ref.gpkg", driver="GPKG")
    return {"map": tmp_path / "map.tif", "ref": tmp_path / "ref.gpkg", "dir": tmp_path}


def test_evaluate_cli_default_out_dir_and_overwrite(scene):
    runner = CliRunner()
    args = ["evaluate", str(scene["map"]), "--labels", str(scene["ref"]), "--class-field",
            "code"]
    result = runner.invoke(cli, args, obj={})
    assert result.exit_code == 0, result.output
    out = scene["dir"] / "map_evaluation"
    assert "Overall accuracy:  80.00 %" in result.output
    assert "Cohen's kappa:" in result.output and "Average accuracy:" in result.output
    assert str(out / "report.html") in result.output
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["confusion_matrix"]["counts"] == [[25, 0], [10, 15]]
    assert doc["inputs"]["class_field"] == "code"

    again = runner.invoke(cli, args, obj={})
    assert again.exit_code == 1
    assert "Error:" in again.output and "--overwrite" in again.output
    assert "Traceback" not in again.output
    assert runner.invoke(cli, [*args, "--overwrite"], obj={}).exit_code == 0


def test_evaluate_cli_options_and_errors(scene):
    runner = CliRunner()
    log = scene["dir"] / "log.json"
    log.write_text(json.dumps({"classifier": {"loss": [1.0, 0.5, 0.2]},
                               "denoiser_eval": {"timesteps": [20, 50], "eps_l1": [0.5, 0.3],
                                                 "zero_l1": [0.8, 0.8], "n_pixels": 99}}))
    out = scene["dir"] / "custom"
    result = runner.invoke(cli, ["evaluate", str(scene["map"]), "--labels", str(scene["ref"]),
                                 "--all-touched", "--log", str(log), "-o", str(out)], obj={})
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert "Training curves" in page
    assert "Denoiser check" in page and "<td>50</td><td>0.300</td><td>0.800</td>" in page
    assert json.loads((out / "metrics.json").read_text())["inputs"]["all_touched"] is True

    missing = runner.invoke(cli, ["evaluate", str(scene["map"]), "--labels",
                                  str(scene["dir"] / "none.gpkg"), "-o", str(out / "x")],
                            obj={})
    assert missing.exit_code == 1
    assert "reference file not found" in missing.output and "Traceback" not in missing.output
    no_labels = runner.invoke(cli, ["evaluate", str(scene["map"])], obj={})
    assert no_labels.exit_code == 2 and "--labels" in no_labels.output


def test_evaluate_class_map_merges_map_classes_and_layer_picks_the_reference(tmp_path: Path):
    """A map with roof, pavement and tree against a reference with impervious and tree, in
    the second layer of a GeoPackage: --class-map merges roof and pavement."""
    table = ClassTable.from_names(["roof", "pavement", "tree"])
    data = np.full((20, 30), 3, np.uint8)
    data[:, :10], data[:, 10:20] = 1, 2
    with rasterio.open(tmp_path / "map.tif", "w", driver="GTiff", height=20, width=30, count=1,
                       dtype="uint8", crs=CRS, transform=from_origin(0, 400, 20, 20),
                       nodata=0) as dst:
        dst.write(data, 1)
        dst.update_tags(HSIMAP_CLASSES=table.to_json())
    ref = tmp_path / "ref.gpkg"
    # 5 x 5 px on roof, 5 x 5 on pavement (both impervious), 5 x 5 on tree
    gpd.GeoDataFrame({"name": ["impervious", "impervious", "tree"]},
                     geometry=[box(20, 200, 120, 300), box(220, 200, 320, 300),
                               box(440, 200, 540, 300)], crs=CRS).to_file(ref, layer="survey")
    gpd.GeoDataFrame({"name": ["tree"]}, geometry=[box(20, 200, 120, 300)],
                     crs=CRS).to_file(ref, layer="old")
    runner = CliRunner()
    base = ["evaluate", str(tmp_path / "map.tif"), "--labels", str(ref), "--class-field",
            "name"]
    r = runner.invoke(cli, [*base, "-o", str(tmp_path / "a")], obj={})
    assert r.exit_code == 1 and "2 layers ('survey', 'old')" in r.output
    assert "--layer" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, [*base, "--layer", "survey", "-o", str(tmp_path / "b")], obj={})
    assert r.exit_code == 1 and "['impervious'] are not in the model's classes" in r.output
    r = runner.invoke(cli, [*base, "--layer", "survey", "--class-map",
                            "roof=impervious,pavement=impervious", "-o", str(tmp_path / "c")],
                      obj={})
    assert r.exit_code == 0, r.output
    assert "Overall accuracy:  100.00 %" in r.output
    doc = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert doc["confusion_matrix"]["counts"] == [[50, 0], [0, 25]]
    assert [c["name"] for c in doc["classes"]] == ["impervious", "tree"]
    # the same from a file (values on the left), and a wrong class named with the fix
    (tmp_path / "merge.txt").write_text("# map class = reference class\n1 = impervious\n"
                                        "2=impervious\n")
    r = runner.invoke(cli, [*base, "--layer", "survey", "--class-map",
                            str(tmp_path / "merge.txt"), "-o", str(tmp_path / "d")], obj={})
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["confusion_matrix"][
        "counts"] == [[50, 0], [0, 25]]
    r = runner.invoke(cli, [*base, "--layer", "survey", "--class-map", "building=impervious",
                            "-o", str(tmp_path / "e")], obj={})
    assert r.exit_code == 1 and "'building' is not a class of the map" in r.output
    assert "1=roof, 2=pavement, 3=tree" in r.output
    r = runner.invoke(cli, [*base, "--layer", "survey", "--class-map", "roof",
                            "-o", str(tmp_path / "f")], obj={})
    assert r.exit_code == 1 and "'roof' is not an old=new pair" in r.output
