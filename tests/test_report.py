"""The evaluation report reads right (issue 14, item 4): confusion-matrix numbers legible at
100 % zoom in a 1400 px wide window for any class count, the split and leakage facts of the
training log, and training curves only from per-epoch series."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread
from matplotlib.textpath import TextPath

from hsimap.classes import ClassTable
from hsimap.cli.main import cli
from hsimap.metrics import accuracy_metrics
from hsimap.plots import (
    FIGURE_DPI,
    MIN_TEXT_PX,
    _count_text,
    confusion_layout,
    confusion_png,
    find_series,
)

from .fixtures import write_cube, write_polygons


@pytest.mark.parametrize("k, largest", [(3, 40), (6, 25_000), (16, 250_000), (30, 2_000_000)])
def test_confusion_numbers_are_legible_and_fit_their_cells(k: int, largest: int):
    rng = np.random.default_rng(k)
    cm = rng.integers(0, largest, size=(k, k))
    cm[0, 0] = largest
    table = ClassTable.from_names([f"class number {i}" for i in range(k)])
    uri = confusion_png(accuracy_metrics(cm, classes=table.values), table)
    image = imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")
    lay = confusion_layout(k, largest)
    assert image.shape[1] == round(lay.width_in * FIGURE_DPI)  # drawn at its layout's size
    if k <= 16:  # fits the 1100 px page: shown unscaled in a 1400 px window
        assert image.shape[1] <= 1100
    assert lay.numbers and lay.px(lay.number_pt) >= MIN_TEXT_PX
    widest = max((_count_text(int(n), lay.compact) for n in cm.ravel()), key=len)
    extent = TextPath((0, 0), widest, size=lay.number_pt).get_extents()
    assert extent.width <= 0.9 * lay.cell_in * 72  # points: the count stays in its cell
    assert lay.px(lay.label_pt) >= 10


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A spectral-MLP trained (refitted, and with --no-refit) on the two-halves fixture,
    its map, and evaluate reports with --log for each."""
    d = tmp_path_factory.mktemp("report")
    cube, labels = write_cube(d / "cube.tif"), write_polygons(d / "gt.gpkg")
    (d / "c.toml").write_text("[config]\nepochs = 3\n")
    runner = CliRunner()
    out = {"dir": d}
    for name, extra in (("refit", []), ("kept", ["--no-refit"])):
        model = d / f"{name}.safetensors"
        for args in (["train", "--cube", str(cube), "--labels", str(labels), "--model-type",
                      "spectral-mlp", "--config", str(d / "c.toml"), "--guard", "2",
                      "--validation", "block", "--block-size", "6", "--model", str(model),
                      *extra],
                     ["predict", str(cube), "-o", str(d / f"{name}.tif"), "--model",
                      str(model)],
                     ["evaluate", str(d / f"{name}.tif"), "--labels", str(labels), "--log",
                      str(d / f"{name}.log.json"), "-o", str(d / f"{name}_eval")]):
            r = runner.invoke(cli, args, catch_exceptions=False)
            assert r.exit_code == 0, r.output
        out[name] = d / f"{name}_eval" / "report.html"
        out[f"{name}_log"] = d / f"{name}.log.json"
    return out


def _text(html_path: Path) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html_path.read_text()))


def test_report_states_the_split_and_whether_the_model_saw_the_validation_pixels(evaluated):
    for name in ("refit", "kept"):
        meta = json.loads(evaluated[f"{name}_log"].read_text())["meta"]
        text = _text(evaluated[name])
        split, acc = meta["split"], meta["accuracy"]
        assert "How the model was validated" in text
        assert f"training / validation pixels {split['n_train']} / {split['n_val']}" in text
        assert (f"guard band {split['guard_px']} px; it removed {split['n_guard_removed']} "
                "validation pixels") in text
        assert (f"closest validation pixel to a training pixel {acc['val_distance_px']} px "
                f"({acc['val_distance_px'] * 30:g} m)") in text
        assert f"{acc['val_oa']:.4f} on {acc['val_pixels']} pixels" in text
        assert split["n_val"] > 0
    refit, kept = _text(evaluated["refit"]), _text(evaluated["kept"])
    n_all = json.loads(evaluated["refit_log"].read_text())["meta"]["accuracy"]["fitted_pixels"]
    assert f"refitted on all {n_all} labelled pixels" in refit
    assert "fitted on the" in kept and "training pixels only (--no-refit)" in kept
    assert "refitted on all" not in kept


def test_training_curves_come_from_per_epoch_series_only(evaluated):
    for name in ("refit_log", "kept_log"):
        series = find_series(json.loads(evaluated[name].read_text()))
        assert series and all(re.fullmatch(r"history\.(refit\.)?classifier\.epochs\[\*\]\."
                                           r"(loss|train_acc|val_acc)", k) for k in series), \
            list(series)
