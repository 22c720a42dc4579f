"""CLI tests of ``hsimap datasets list`` and ``hsimap datasets convert``."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import scipy.io
from click.testing import CliRunner
from rasterio.features import rasterize

from hsimap.cli.main import cli

DATA = Path(__file__).parent / "data" / "salinas_a"
CUBE = DATA / "SalinasA_corrected.mat"
GT = DATA / "SalinasA_gt.mat"
IP8 = Path(__file__).parent / "data" / "indian_pines_8bit"
IP8_CUBE = IP8 / "IP_200_M.mat"
IP8_GT = IP8 / "Label_M_IP_16.mat"
IP8_CROP_CLASSES = {4: "Corn-mintill", 5: "Corn-notill", 7: "Grass-pasture", 8: "Grass-trees",
                    10: "Oats", 11: "Soybean-clean", 12: "Soybean-mintill"}


def test_datasets_list():
    result = CliRunner().invoke(cli, ["datasets", "list"], obj={})
    assert result.exit_code == 0, result.output
    for name in ("indian_pines", "indian_pines_8bit", "pavia_university", "salinas",
                 "salinas_a", "ksc", "botswana"):
        assert name in result.output
    assert "145 x 145" in result.output and "Hyperion" in result.output
    one = CliRunner().invoke(cli, ["datasets", "list", "salinas_a"], obj={})
    assert one.exit_code == 0
    assert "Corn_senesced_green_weeds" in one.output and "1343" in one.output
    bad = CliRunner().invoke(cli, ["datasets", "list", "nope"], obj={})
    assert bad.exit_code == 1 and "unknown benchmark dataset" in bad.output


@pytest.mark.skipif(not (CUBE.exists() and GT.exists()), reason="Salinas-A test data missing")
def test_datasets_convert_cli(tmp_path):
    runner = CliRunner()
    args = ["datasets", "convert", str(CUBE), str(GT), "-o", str(tmp_path / "out")]
    result = runner.invoke(cli, args, obj={})
    assert result.exit_code == 0, result.output
    assert "Salinas-A" in result.output and "nominal georeference" in result.output
    with rasterio.open(tmp_path / "out" / "salinas_a.tif") as src:
        assert (src.count, src.height, src.width) == (204, 83, 86)
    assert (tmp_path / "out" / "salinas_a_gt.gpkg").is_file()

    again = runner.invoke(cli, args, obj={})
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert "Traceback" not in again.output
    assert runner.invoke(cli, [*args, "--overwrite"], obj={}).exit_code == 0


def test_datasets_convert_unknown_keys(tmp_path):
    cube, gt = tmp_path / "a.mat", tmp_path / "b.mat"
    scipy.io.savemat(cube, {"data": np.zeros((4, 4, 3))})
    scipy.io.savemat(gt, {"labels": np.ones((4, 4), np.uint8)})
    runner = CliRunner()
    result = runner.invoke(cli, ["datasets", "convert", str(cube), str(gt), "-o",
                                 str(tmp_path / "o")], obj={})
    assert result.exit_code == 1
    assert "data 4x4x3" in result.output and "labels 4x4" in result.output
    assert "--cube-key" in result.output
    ok = runner.invoke(cli, ["datasets", "convert", str(cube), str(gt), "-o",
                             str(tmp_path / "o"), "--cube-key", "data", "--gt-key", "labels",
                             "--name", "toy"], obj={})
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "o" / "toy.tif").is_file() and (tmp_path / "o" / "toy_gt.gpkg").is_file()


def test_datasets_list_indian_pines_8bit():
    result = CliRunner().invoke(cli, ["datasets", "list", "indian_pines_8bit"], obj={})
    assert result.exit_code == 0, result.output
    assert "IP_200_M.mat [data_M]" in result.output and "[label_M]" in result.output
    assert "unlabelled: -1 (and 0)" in result.output
    assert "hszhaohs/SSGA" in result.output and "MIT" in result.output
    assert "Buildings-Grass-Trees-Drives" in result.output and "2468" in result.output


def test_datasets_convert_indian_pines_8bit_crop_and_train(tmp_path):
    out = tmp_path / "ip8"
    runner = CliRunner()
    result = runner.invoke(cli, ["datasets", "convert", str(IP8_CUBE), str(IP8_GT), "-o",
                                 str(out)], obj={})
    assert result.exit_code == 0, result.output
    assert "a 24 x 24 px crop of the 145 x 145 px scene (width x height), 200 bands" \
        in result.output
    assert "133 unlabelled pixels, value -1 or 0, have none" in result.output
    assert "nominal georeference (EPSG:32616, 20 m pixels)" in result.output
    image, labels = out / "indian_pines_8bit.tif", out / "indian_pines_8bit_gt.gpkg"
    with rasterio.open(image) as src:
        assert (src.count, src.height, src.width, src.dtypes[0]) == (200, 24, 24, "uint8")
        transform = src.transform
    frame = gpd.read_file(labels)
    assert dict(zip(frame["class_id"], frame["class_name"], strict=True)) == IP8_CROP_CLASSES
    back = rasterize(zip(frame.geometry, frame["class_id"], strict=True), out_shape=(24, 24),
                     transform=transform, fill=0, dtype="int32")
    gt = scipy.io.loadmat(IP8_GT)["label_M"]
    assert (back[gt == -1] == 0).all() and (back[gt != -1] == gt[gt != -1]).all()

    # what convert wrote trains as it is (tiny preset, shortened further: a smoke run)
    config = tmp_path / "smoke.toml"
    config.write_text("[config]\ndenoiser_iterations = 4\nclf_epochs = 3\n")
    model = tmp_path / "ip8.safetensors"
    trained = runner.invoke(cli, ["train", "--cube", str(image), "--labels", str(labels),
                                  "--preset", "tiny", "--config", str(config), "--validation",
                                  "block", "--block-size", "6", "--model", str(model),
                                  "--device", "cpu"], obj={})
    assert trained.exit_code == 0, trained.output
    from hsimap.checkpoint import load_checkpoint

    ckpt = load_checkpoint(model)
    assert {c.value: c.name for c in ckpt.classes} == IP8_CROP_CLASSES
    assert ckpt.n_bands == 200
