"""``hsimap info`` (text and --json) and the one size convention: width x height everywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from hsimap.cli.main import cli

# A raw Python dict or list of strings in text output: "{'" or "['", or "': " pairs.
RAW_PYTHON = re.compile(r"\{'|\['|': ")


def _numbers_are_numbers(value: object) -> None:
    """No number hidden in a display string such as '160 x 192 px' or '0.75'."""
    if isinstance(value, dict):
        for v in value.values():
            _numbers_are_numbers(v)
    elif isinstance(value, list):
        for v in value:
            _numbers_are_numbers(v)
    elif isinstance(value, str):
        assert not re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?", value), value
        assert not re.search(r"\d+ x \d+", value), value


def test_info_json_of_a_cube_has_numbers_lists_and_width_height(sample_cube: Path) -> None:
    r = CliRunner().invoke(cli, ["info", "--json", str(sample_cube)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    _numbers_are_numbers(data)
    assert data["size"] == {"width": 160, "height": 192}
    assert data["bands"] == 224 and data["dtype"] == "int16" and data["crs"] == "EPSG:32633"
    assert data["transform"][0] == 30.0 and data["transform"][4] == -30.0
    assert data["pixel_size"] == [30.0, 30.0]
    b = data["bounds"]
    assert b["right"] - b["left"] == 160 * 30 and b["top"] - b["bottom"] == 192 * 30
    assert data["nodata"] == -32768
    wl = data["wavelengths_nm"]
    assert len(wl) == 224 and all(isinstance(w, float) for w in wl)
    assert min(wl) == pytest.approx(418.24) and max(wl) == pytest.approx(2445.5, abs=0.05)
    assert len(data["fwhm_nm"]) == 224
    assert data["bad_bands"] == [130, 131, 132, 133, 134, 135]


def test_info_text_of_a_cube_says_width_x_height_and_prints_no_dicts(sample_cube: Path) -> None:
    r = CliRunner().invoke(cli, ["info", str(sample_cube)])
    assert r.exit_code == 0, r.output
    assert "size: 160 x 192 px (width x height)" in r.output
    assert "wavelengths_nm: 418.2-2445.5 nm (224 bands)" in r.output
    assert "top 5809965" in r.output  # full coordinates, not 5.80996e+06
    assert not RAW_PYTHON.search(r.output), r.output


def test_info_json_of_a_nan_nodata_non_square_cube_is_valid_json(tmp_path: Path) -> None:
    path = tmp_path / "nan.tif"
    data = np.random.default_rng(0).random((6, 10, 12), dtype=np.float32)
    data[:, 0, 0] = np.nan
    with rasterio.open(path, "w", driver="GTiff", width=12, height=10, count=6,
                       dtype="float32", nodata=float("nan"), crs="EPSG:32633",
                       transform=from_origin(500000, 6000000, 10, 10)) as dst:
        dst.write(data)
    r = CliRunner().invoke(cli, ["info", "--json", str(path)])
    assert r.exit_code == 0, r.output
    assert "NaN," not in r.output  # json.loads would accept it; other JSON readers do not
    info = json.loads(r.output)
    assert info["size"] == {"width": 12, "height": 10} and info["nodata"] == "NaN"
    assert info["wavelengths_nm"] is None and info["bad_bands"] == []
    r = CliRunner().invoke(cli, ["info", str(path)])
    assert "size: 12 x 10 px (width x height)" in r.output
    assert "wavelengths_nm: unknown" in r.output


def test_info_of_a_model_json_and_text(mlp_model: Path) -> None:
    r = CliRunner().invoke(cli, ["info", "--json", str(mlp_model)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    _numbers_are_numbers(data)
    assert data["model"] == "spectral-mlp"
    assert [c["value"] for c in data["classes"]] == list(range(1, len(data["classes"]) + 1))
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c["color"]) for c in data["classes"])
    assert data["bands"] == {"in_file": 224, "used": 218}
    assert data["bands_used"] == [*range(1, 130), *range(136, 225)]
    assert len(data["wavelengths_nm"]) == 224
    assert isinstance(data["halo_px"], int)
    assert 0 <= data["accuracy"]["val_oa"] <= 1 and data["validation"]["n_val"] > 0
    assert data["config"]["epochs"] == 5
    assert data["trained_on"]["cube"].endswith("potsdam_enmap.tif")
    r = CliRunner().invoke(cli, ["info", str(mlp_model)])
    assert r.exit_code == 0, r.output
    assert not RAW_PYTHON.search(r.output), r.output
    assert "bands_used: 1-129, 136-224" in r.output
    assert re.search(r"^ +validation:\n +method +: polygon$", r.output, re.M), r.output
    assert re.search(r"^ +val_oa +: 0\.\d+$", r.output, re.M)


def test_dry_run_and_datasets_list_say_width_x_height(
        tmp_path: Path, sample_cube: Path, mlp_model: Path) -> None:
    r = CliRunner().invoke(cli, ["predict", str(sample_cube), "-o", str(tmp_path / "m.tif"),
                                 "--model", str(mlp_model), "--dry-run"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "scene: 160 x 192 px (width x height)" in r.output
    r = CliRunner().invoke(cli, ["datasets", "list"])
    assert r.exit_code == 0, r.output
    assert "width x height" in r.output and "rows x cols" not in r.output
    # Salinas-A is 83 rows x 86 columns; Pavia University 610 rows x 340 columns
    assert re.search(r"^salinas_a .* 86 x 83 ", r.output, re.M), r.output
    assert re.search(r"^pavia_university .* 340 x 610 ", r.output, re.M), r.output
    r = CliRunner().invoke(cli, ["datasets", "list", "salinas_a"])
    assert "size:     86 x 83 px (width x height), 204 bands" in r.output
