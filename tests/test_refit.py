"""The saved model is refitted on every labelled pixel after validation (issue 12 item 3):
the validation figure stays that of the model fitted without the validation pixels, the saved
model has seen them, and the log and evaluate know it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hsimap.checkpoint import load_checkpoint
from hsimap.cli.main import cli
from hsimap.training import TrainOptions, log_path_for, train_model

from .fixtures import write_cube, write_polygons

DSN_TINY = {"denoiser_iterations": 4, "clf_epochs": 3, "clf_min_batches": 2}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("refit")
    return {"folder": folder, "cube": write_cube(folder / "cube.tif"),
            "labels": write_polygons(folder / "gt.shp")}


def fit(scene: dict[str, Path], name: str, **options: object):
    out = scene["folder"] / f"{name}.safetensors"
    result = train_model(scene["cube"], scene["labels"], out=out, overwrite=True,
                         options=TrainOptions(device="cpu", **options))  # type: ignore[arg-type]
    return result, json.loads(log_path_for(out).read_text())


@pytest.mark.parametrize("kind, overrides", [
    ("spectral-mlp", {"epochs": 3, "min_batches": 2}),
    ("diffspectralnet", {"preset": "tiny", **DSN_TINY}),
    ("svm", {}),
    ("random-forest", {"n_trees": 10}),
])
def test_refit_fits_the_saved_model_on_every_labelled_pixel(scene, kind, overrides):
    over = dict(overrides)
    preset = over.pop("preset", None)
    common = {"kind": kind, "preset": preset, "overrides": over}
    kept, kept_log = fit(scene, f"{kind}_kept", refit=False, **common)
    refit, refit_log = fit(scene, f"{kind}_refit", **common)
    n_train, n_val = refit.split["n_train"], refit.split["n_val"]
    assert n_val > 0
    # the same validated fit: the same figures either way
    assert refit.val_accuracy == kept.val_accuracy
    assert refit.train_accuracy == kept.train_accuracy
    assert (refit.refitted, refit.fitted_pixels) == (True, n_train + n_val)
    assert (kept.refitted, kept.fitted_pixels) == (False, n_train)
    acc = refit_log["meta"]["accuracy"]
    assert acc["refitted_on_all"] is True and acc["fitted_pixels"] == n_train + n_val
    assert "refit" in refit_log["history"] and "refit" not in kept_log["history"]
    # the log's record of training pixels, which evaluate checks references against, holds
    # the validation pixels once they trained the saved model
    runs = refit_log["training_data"]["train_pixel_runs"]
    assert sum(runs[1::2]) == n_train + n_val
    assert sum(kept_log["training_data"]["train_pixel_runs"][1::2]) == n_train
    a = load_checkpoint(kept.model_path).model.state_dict()
    b = load_checkpoint(refit.model_path).model.state_dict()
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_dsn_refit_reuses_the_denoiser_and_keeps_the_schedule(scene):
    result, log = fit(scene, "dsn_reuse", kind="diffspectralnet", preset="tiny",
                      overrides=DSN_TINY)
    refit = log["history"]["refit"]
    assert refit["denoiser"] == {"reused": True}
    assert refit["classifier"]["n_train"] == result.fitted_pixels
    assert refit["classifier"]["n_val"] == 0
    assert len(refit["classifier"]["epochs"]) == DSN_TINY["clf_epochs"]
    saved = load_checkpoint(result.model_path).model
    kept, _ = fit(scene, "dsn_reuse_kept", kind="diffspectralnet", preset="tiny",
                  overrides=DSN_TINY, refit=False)
    first = load_checkpoint(kept.model_path).model
    for (name, p), q in zip(saved.features.unet.state_dict().items(),
                            first.features.unet.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_fixed_schedule_keeps_the_last_epoch(scene):
    """patience 0 = a fixed schedule: the kept state is the last epoch's, not the epoch with
    the best validation accuracy (choosing one would bias the validation figure)."""
    _, log = fit(scene, "dsn_fixed", kind="diffspectralnet", preset="tiny",
                 overrides={**DSN_TINY, "clf_epochs": 4, "patience": 0}, refit=False)
    clf = log["history"]["classifier"]
    assert clf["best_epoch"] == 4
    assert clf["best_val_epoch"] in (1, 2, 3, 4)
    assert "fixed schedule" in clf["early_stopping"]


def test_cli_says_it_refitted_and_evaluate_warns_on_the_validation_part(scene):
    import geopandas as gpd

    folder = scene["folder"]
    model = folder / "cli.safetensors"
    runner = CliRunner()
    result = runner.invoke(cli, [
        "train", "--cube", str(scene["cube"]), "--labels", str(scene["labels"]),
        "--model", str(model), "--model-type", "random-forest", "--export-split",
        str(folder / "split"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "refitted on all" in result.output and "--no-refit" in result.output
    out = runner.invoke(cli, ["-q", "predict", str(scene["cube"]), "-o", str(folder / "m.tif"),
                              "--model", str(model)])
    assert out.exit_code == 0, out.output
    frame = gpd.read_file(folder / "split" / "cli_split.gpkg")
    val = folder / "val_part.gpkg"
    frame[frame["split"] == "val"].to_file(val)
    ev = runner.invoke(cli, ["evaluate", str(folder / "m.tif"), "--labels", str(val), "--log",
                             str(log_path_for(model)), "-o", str(folder / "ev")])
    assert ev.exit_code == 0, ev.output
    m = re.search(r"Warning: (\d+) of (\d+) reference pixels \(100.0 %\) were training", ev.output)
    assert m and m.group(1) == m.group(2), ev.output


def test_the_checkpoint_keeps_the_config_asked_for(scene):
    """The refit runs the epochs early stopping kept, but the model file (and `info`) keep the
    config the user gave; the log has the schedule the refit ran."""
    result, log = fit(scene, "mlp_config", kind="spectral-mlp",
                      overrides={"epochs": 6, "min_batches": 2, "patience": 1})
    saved = load_checkpoint(result.model_path).model
    assert saved.config.epochs == 6
    kept = log["history"]["classifier"]["best_epoch"]
    assert len(log["history"]["refit"]["classifier"]["epochs"]) == kept
