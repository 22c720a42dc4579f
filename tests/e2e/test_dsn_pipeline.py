"""DiffSpectralNet through the real pipeline: train_model -> checkpoint -> predict_scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from hsimap.checkpoint import load_checkpoint
from hsimap.predict import predict_scene
from hsimap.training import TrainOptions, train_model

TINY = TrainOptions(kind="diffspectralnet", preset="tiny", seed=3)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, sample_cube: Path,
                sample_labels: Path) -> tuple[Path, Path]:
    """Two tiny DiffSpectralNets trained on the sample scene with the same seed."""
    folder = tmp_path_factory.mktemp("dsn")
    paths = []
    for name in ("a", "b"):
        out = folder / f"{name}.safetensors"
        train_model(sample_cube, sample_labels, out=out, options=TINY)
        paths.append(out)
    return paths[0], paths[1]


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_tile_size_does_not_change_the_diffspectralnet_map(
        tmp_path: Path, sample_cube: Path, tiny_models: tuple[Path, Path]) -> None:
    model = tiny_models[0]
    halo = load_checkpoint(model).model.halo()
    assert halo > 0
    maps = {}
    for tile in (1000, 64, 41):  # whole scene in one tile, then two tilings
        out = tmp_path / f"map_{tile}.tif"
        predict_scene(sample_cube, out=out, model_path=model, tile=tile)
        maps[tile] = _read(out)
    np.testing.assert_array_equal(maps[1000], maps[64])
    np.testing.assert_array_equal(maps[1000], maps[41])
    assert len(np.unique(maps[1000][maps[1000] > 0])) >= 3


def test_same_seed_same_model_same_map(tmp_path: Path, sample_cube: Path,
                                       tiny_models: tuple[Path, Path]) -> None:
    a, b = tiny_models
    sa, sb = load_checkpoint(a).model.state_dict(), load_checkpoint(b).model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert np.array_equal(sa[k].numpy(), sb[k].numpy()), k
    predict_scene(sample_cube, out=tmp_path / "a.tif", model_path=a)
    predict_scene(sample_cube, out=tmp_path / "b.tif", model_path=b)
    np.testing.assert_array_equal(_read(tmp_path / "a.tif"), _read(tmp_path / "b.tif"))


def test_training_log_and_curves_beside_the_model(tiny_models: tuple[Path, Path]) -> None:
    model = tiny_models[0]
    log = json.loads(model.with_name("a.log.json").read_text())
    assert log["history"]["denoiser"]["loss"] and log["history"]["classifier"]["epochs"]
    assert log["meta"]["split"]["method"] == "polygon"
    assert model.with_name("a.curves.png").stat().st_size > 1000
    ev = log["denoiser_eval"]  # the held-out noise-prediction check, at the top level
    assert len(ev["timesteps"]) == len(ev["eps_l1"]) == len(ev["zero_l1"]) > 0
    assert ev["n_pixels"] > 0


@pytest.mark.slow  # the fast preset's fixed 40-epoch classifier: several minutes on 2 cores
def test_default_train_and_predict_use_diffspectralnet_fast(
        tmp_path: Path, sample_cube: Path, sample_labels: Path, monkeypatch) -> None:
    """The README's two commands, as written, on the sample data (fast preset on CPU)."""
    from click.testing import CliRunner

    from hsimap.cli.main import cli

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    r = runner.invoke(cli, ["train", "--cube", str(sample_cube), "--labels",
                            str(sample_labels)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "validation accuracy" in r.output
    assert "denoiser noise error" in r.output and "held-out px" in r.output
    ckpt = load_checkpoint(tmp_path / "hsimap_model.safetensors")
    assert ckpt.model.kind == "diffspectralnet"
    assert ckpt.meta["training"]["options"]["model"] == "diffspectralnet"
    r = runner.invoke(cli, ["predict", str(sample_cube), "-o", "map.tif"],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    classes = _read(tmp_path / "map.tif")
    assert (classes > 0).sum() == 18432  # every valid pixel of the sample scene
    accuracy = ckpt.meta["accuracy"]
    assert accuracy["train_oa"] > 0.6


def test_inside_the_model_figure_is_written(tiny_models: tuple[Path, Path]) -> None:
    """Input, noised/denoised views and feature PCs per timestep, for a few windows."""
    png = tiny_models[0].with_name("a.inside.png")
    assert png.exists() and png.stat().st_size > 10_000


def test_evaluate_report_shows_inside_the_model(tmp_path: Path, sample_cube: Path,
                                                sample_labels: Path,
                                                tiny_models: tuple[Path, Path]) -> None:
    from hsimap.evaluate import evaluate_map

    model = tiny_models[0]
    predict_scene(sample_cube, out=tmp_path / "map.tif", model_path=model)
    evaluate_map(tmp_path / "map.tif", sample_labels, training_log=model.with_name("a.log.json"),
                 out_dir=tmp_path / "ev")
    html = (tmp_path / "ev" / "report.html").read_text()
    assert "Inside the model" in html and "Training curves" in html
