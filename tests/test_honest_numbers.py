"""Honest numbers: train exports the split it used and says how far validation is from
training; evaluate warns when the reference is the training file or holds training pixels."""

from __future__ import annotations

import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from shapely.geometry import box

from hsimap.checkpoint import load_checkpoint
from hsimap.cli.main import cli
from hsimap.cube import Grid
from hsimap.labels import read_labels

from .fixtures import ORIGIN, UTM, write_cube, write_polygons


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("honest")
    cube = write_cube(folder / "cube.tif")
    labels = write_polygons(folder / "gt.shp")
    config = folder / "mlp.toml"
    config.write_text('model = "spectral-mlp"\n[config]\nepochs = 3\nmin_batches = 2\n')
    model = folder / "m.safetensors"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--cube", str(cube), "--labels", str(labels),
                                 "--model", str(model), "--config", str(config),
                                 "--export-split", str(folder / "split"), "--no-refit",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = runner.invoke(cli, ["-q", "predict", str(cube), "-o", str(folder / "map.tif"),
                              "--model", str(model)])
    assert out.exit_code == 0, out.output
    return {"folder": folder, "cube": cube, "labels": labels, "model": model,
            "map": folder / "map.tif", "output": result.output,
            "split": folder / "split" / "m_split.gpkg"}


def test_export_split_gives_back_the_pixels_used(trained):
    frame = gpd.read_file(trained["split"])
    with rasterio.open(trained["cube"]) as src:
        grid = Grid(src.height, src.width, src.transform, src.crs)
        assert frame.crs == src.crs
    assert set(frame["split"]) == {"train", "val"}
    assert set(frame["class_id"]) == {3, 7} and set(frame["class_name"]) == {"meadow", "roof"}
    codes = load_checkpoint(trained["model"]).extras["split"].numpy()
    original = read_labels(trained["labels"], grid=grid)
    for side, code in (("train", 1), ("val", 2)):
        part = trained["folder"] / f"{side}.gpkg"
        frame[frame["split"] == side].to_file(part)
        back = read_labels(part, grid=grid, class_field="class_id")
        np.testing.assert_array_equal(back.values > 0, codes == code)
        np.testing.assert_array_equal(back.values[codes == code],
                                      original.values[codes == code])


def test_train_says_how_many_pixels_and_how_far(trained):
    lines = [ln for ln in trained["output"].splitlines() if "validation accuracy:" in ln]
    assert len(lines) == 1, trained["output"]
    line = lines[0]
    m = re.search(r"on (\d+) held-out pixels, each at least (\d+) px, (\d+) m from any "
                  r"training pixel \(\w+ split, guard (\d+) px\)", line)
    assert m, line
    n_val, dist, metres, guard = map(int, m.groups())
    codes = load_checkpoint(trained["model"]).extras["split"].numpy()
    assert n_val == int((codes == 2).sum()) > 0
    assert dist > guard and metres == 30 * dist  # the guard is a strict lower bound
    assert "m_split.gpkg" in trained["output"]


def evaluate(trained: dict, reference: Path, out: str) -> str:
    result = CliRunner().invoke(cli, ["evaluate", str(trained["map"]), "--labels",
                                      str(reference), "--log",
                                      str(trained["model"].with_suffix(".log.json")),
                                      "-o", str(trained["folder"] / out)])
    assert result.exit_code == 0, result.output
    return result.output


def test_evaluate_warns_on_the_training_file(trained):
    output = evaluate(trained, trained["labels"], "on_training")
    assert "Warning: the reference" in output and "is the file the model was trained on" in output
    assert re.search(r"Warning: \d+ of \d+ reference pixels \([\d.]+ %\) were training pixels",
                     output)
    html = (trained["folder"] / "on_training" / "report.html").read_text()
    assert "is the file the model was trained on" in html


def test_evaluate_does_not_warn_on_disjoint_reference(trained):
    x0, y0 = ORIGIN  # the top strip (rows 0-3) holds no training polygon
    frame = gpd.GeoDataFrame({"class_name": ["meadow", "roof"], "class_id": [3, 7]},
                             geometry=[box(x0 + 4 * 30, y0 - 4 * 30, x0 + 16 * 30, y0),
                                       box(x0 + 20 * 30, y0 - 4 * 30, x0 + 34 * 30, y0)],
                             crs=UTM)
    disjoint = trained["folder"] / "disjoint.gpkg"
    frame.to_file(disjoint)
    output = evaluate(trained, disjoint, "on_disjoint")
    assert "Warning" not in output and "Overall accuracy" in output


def test_evaluate_does_not_warn_on_the_exported_validation_part(trained):
    frame = gpd.read_file(trained["split"])
    val = trained["folder"] / "val_only.gpkg"
    frame[frame["split"] == "val"].to_file(val)
    output = evaluate(trained, val, "on_val")
    assert "Warning" not in output

