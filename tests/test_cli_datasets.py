"""CLI tests of ``hsimap datasets list`` and ``hsimap datasets convert``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import scipy.io
from click.testing import CliRunner

from hsimap.cli.main import cli

DATA = Path(__file__).parent / "data" / "salinas_a"
CUBE = DATA / "SalinasA_corrected.mat"
GT = DATA / "SalinasA_gt.mat"


def test_datasets_list():
    result = CliRunner().invoke(cli, ["datasets", "list"], obj={})
    assert result.exit_code == 0, result.output
    for name in ("indian_pines", "pavia_university", "salinas", "salinas_a", "ksc",
                 "botswana"):
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
