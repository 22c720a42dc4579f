"""The two commands users type, end to end on the bundled sample scene."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from click.testing import CliRunner

from hsimap.cli.main import cli


def test_help_and_version_do_not_import_torch() -> None:
    code = ("import sys; from click.testing import CliRunner; from hsimap.cli.main import cli; "
            "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
            "assert 'train' in r.output and 'predict' in r.output; "
            "assert 'torch' not in sys.modules and 'rioxarray' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "hsimap, version" in result.output


def test_train_then_predict_writes_a_georeferenced_named_coloured_map(
        tmp_path: Path, sample_cube: Path, sample_labels: Path) -> None:
    runner = CliRunner()
    model = tmp_path / "m.safetensors"
    r = runner.invoke(cli, ["train", "--cube", str(sample_cube), "--labels", str(sample_labels),
                            "--model", str(model), "--model-type", "spectral-mlp"],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "validation accuracy" in r.output and model.exists()
    log = json.loads(model.with_name("m.log.json").read_text())
    assert log["history"]["classifier"]["epochs"]
    out = tmp_path / "map.tif"
    r = runner.invoke(cli, ["predict", str(sample_cube), "-o", str(out), "--model", str(model)],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert f"map: {out}" in r.output
    with rasterio.open(sample_cube) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert dst.shape == src.shape and dst.count == 1
        assert dst.dtypes[0] == "uint8" and dst.nodata == 0
        band1 = src.read(1)
        classes = dst.read(1)
        nodata_in = band1 == src.nodata
        assert nodata_in.any() and (classes[nodata_in] == 0).all()
        assert (classes[~nodata_in] > 0).all()
        assert set(np.unique(classes)) <= {0, 1, 2, 3, 4, 5, 6}
        cmap = dst.colormap(1)
        table = json.loads(dst.tags()["HSIMAP_CLASSES"])
        assert [c["name"] for c in table] == ["roof", "pavement", "low vegetation", "tree",
                                              "soil", "water"]
        for c in table:
            rgb = tuple(int(c["color"][i:i + 2], 16) for i in (1, 3, 5))
            assert cmap[c["value"]][:3] == rgb
        assert dst.tags(1)["CLASS_5"] == "soil"
    aux = out.with_name("map.tif.aux.xml").read_text()
    assert "<Category>water</Category>" in aux
    assert 'label="low vegetation"' in out.with_suffix(".qml").read_text()


def test_default_model_path_is_shared_by_train_and_predict(
        tmp_path: Path, sample_cube: Path, sample_labels: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    r = runner.invoke(cli, ["train", "--cube", str(sample_cube), "--labels", str(sample_labels),
                            "--model-type", "spectral-mlp", "--config", str(_epochs(tmp_path))])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "hsimap_model.safetensors").exists()
    r = runner.invoke(cli, ["predict", str(sample_cube), "-o", "map.tif"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "map.tif").exists()
    r = runner.invoke(cli, ["predict", str(sample_cube), "-o", "map.tif"])
    assert r.exit_code == 1 and "--overwrite" in r.output


def _epochs(folder: Path) -> Path:
    cfg = folder / "quick.toml"
    cfg.write_text("[config]\nepochs = 3\n")
    return cfg


def test_tile_size_does_not_change_the_map(tmp_path: Path, sample_cube: Path,
                                           spatial_model: Path) -> None:
    """``hsimap predict --tile-size`` with a model whose windows reach 4+ px around each pixel
    (a per-pixel model could not see a wrong halo or crop): every tile size, including tiles
    that do not divide the scene and one tile larger than it, gives the same map and the
    same probabilities (the untrained model's map is nearly one class; its probabilities
    vary from pixel to pixel, so they show any difference)."""
    from hsimap.checkpoint import load_checkpoint

    assert load_checkpoint(spatial_model).model.halo() > 0
    runner = CliRunner()
    outputs = []
    for tile in (37, 64, 1000):
        out, probs = tmp_path / f"map_{tile}.tif", tmp_path / f"probs_{tile}.tif"
        r = runner.invoke(cli, ["predict", str(sample_cube), "-o", str(out), "--model",
                                str(spatial_model), "--tile-size", str(tile), "--device", "cpu",
                                "--probabilities", str(probs)], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        with rasterio.open(out) as src, rasterio.open(probs) as psrc:
            outputs.append((src.read(1), psrc.read()))
    assert len(np.unique(outputs[0][1])) > 10  # the probabilities are not constant
    for classes, probs in outputs[1:]:
        np.testing.assert_array_equal(classes, outputs[0][0])
        np.testing.assert_array_equal(probs, outputs[0][1])


def test_info_describes_cube_and_model(sample_cube: Path, mlp_model: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(cli, ["info", str(sample_cube)])
    assert r.exit_code == 0, r.output
    assert "160 x 192 px (width x height)" in r.output and "EPSG:32633" in r.output
    assert "130, 131, 132, 133, 134, 135" in r.output
    r = runner.invoke(cli, ["info", "--json", str(mlp_model)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["model"] == "spectral-mlp" and data["classes"][0]["name"] == "roof"
