"""``hsimap compare``: the same spatial folds for every model, JSON = CSV, HTML renders."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from scipy import ndimage

from hsimap.cli.main import cli
from hsimap.compare import SUMMARY_FIELDS, make_folds
from hsimap.errors import TrainingError
from tests.chromium import assert_images_render, needs_chromium

from .fixtures import ORIGIN, TRANSFORM, UTM

SIDE = 48
CELL = 8  # a 6 x 6 checkerboard of 6 x 6 px polygons (2 px gaps), three classes


def write_patchwork(folder: Path, *, cells: int = SIDE // CELL) -> tuple[Path, Path]:
    """A 12-band cube whose three classes differ in spectrum, and one polygon per cell."""
    import geopandas as gpd
    from shapely.geometry import box

    rng = np.random.default_rng(0)
    signatures = rng.normal(0, 300, size=(3, 12))
    data = rng.normal(1000, 60, size=(12, SIDE, SIDE)).astype("float32")
    geoms, names = [], []
    x0, y0 = ORIGIN
    for i in range(cells):
        for j in range(cells):
            c = (i + 2 * j) % 3
            r0, c0 = i * CELL + 1, j * CELL + 1
            data[:, r0:r0 + CELL - 2, c0:c0 + CELL - 2] += signatures[c][:, None, None]
            geoms.append(box(x0 + c0 * 30, y0 - (r0 + CELL - 2) * 30, x0 + (c0 + CELL - 2) * 30,
                             y0 - r0 * 30))
            names.append(("grass", "roof", "water")[c])
    cube = folder / "cube.tif"
    with rasterio.open(cube, "w", driver="GTiff", height=SIDE, width=SIDE, count=12,
                       dtype="float32", crs=UTM, transform=TRANSFORM, nodata=-9999.0) as dst:
        dst.write(data)
    labels = folder / "gt.gpkg"
    gpd.GeoDataFrame({"class_name": names}, geometry=geoms, crs=UTM).to_file(labels)
    return cube, labels


SMALL = {"spectral-mlp": "epochs = 3\nmin_batches = 2\n",
         "random-forest": "n_trees = 5\nn_jobs = 1\n",
         "svm": "c_values = [10.0]\ngamma_factors = [1.0]\ncv_folds = 2\n"}


def config_args(folder: Path, kinds: list[str]) -> list[str]:
    args = []
    for kind in kinds:
        path = folder / f"{kind}.toml"
        path.write_text("[config]\n" + SMALL[kind])
        args += ["--config", f"{kind}={path}"]
    return args


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("compare")
    cube, labels = write_patchwork(folder)
    kinds = ["spectral-mlp", "random-forest", "svm"]
    out = folder / "out"
    result = CliRunner().invoke(cli, [
        "-q", "compare", "--cube", str(cube), "--labels", str(labels), "--models",
        ",".join(kinds), "--folds", "3", "--guard", "2", "-o", str(out), "--train-best",
        str(folder / "best.safetensors"), "--device", "cpu", *config_args(folder, kinds)])
    assert result.exit_code == 0, result.output
    return {"folder": folder, "out": out, "output": result.output, "kinds": kinds,
            "doc": json.loads((out / "compare.json").read_text())}


def test_every_model_is_scored_on_the_same_folds(compared):
    doc = compared["doc"]
    assert [m["model"] for m in doc["models"]] == compared["kinds"]
    per_fold = doc["folds"]["per_fold"]
    assert len(per_fold) == 3 and all(f["n_test"] > 0 for f in per_fold)
    assert sum(f["n_test"] for f in per_fold) == 36 * 36  # every labelled pixel tested once
    for f in range(3):
        rows = [r for r in doc["per_fold"] if r["fold"] == f]
        assert [r["model"] for r in rows] == compared["kinds"]
        assert {r["n_test"] for r in rows} == {per_fold[f]["n_test"]}
        assert len({r["n_train"] for r in rows}) == 1  # same early-stopping split too
    # the spectra separate the classes: every model is far above chance
    assert all(r["oa_mean"] > 0.8 for r in doc["summary"])
    best = [r for r in doc["summary"] if r["best"]]
    assert len(best) == 1 and best[0]["model"] == doc["best"] and best[0]["oa_diff"] == 0.0
    assert all(r["oa_diff"] <= 0 for r in doc["summary"])
    assert f"best: {doc['best']}" in compared["output"]


def test_train_best_writes_the_winner(compared):
    from hsimap.checkpoint import read_metadata

    meta = read_metadata(compared["folder"] / "best.safetensors")
    assert meta["training"]["options"]["model"] == compared["doc"]["best"]


def test_json_equals_csv(compared):
    doc = compared["doc"]
    with open(compared["out"] / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(SUMMARY_FIELDS)
    assert len(rows) == len(doc["summary"])
    for row, rec in zip(rows, doc["summary"], strict=True):
        for key in SUMMARY_FIELDS:
            want = rec[key]
            if isinstance(want, bool):
                assert row[key] == str(want)
            elif isinstance(want, float):
                assert float(row[key]) == want
            elif want is None:
                assert row[key] == ""
            else:
                assert row[key] == str(want)
    with open(compared["out"] / "compare_folds.csv", newline="") as f:
        folds = list(csv.DictReader(f))
    assert [float(r["oa"]) for r in folds] == [r["oa"] for r in doc["per_fold"]]
    # the summary is the mean of the folds
    for rec in doc["summary"]:
        oa = [r["oa"] for r in doc["per_fold"] if r["model"] == rec["model"]]
        assert rec["oa_mean"] == pytest.approx(np.mean(oa))
        assert rec["oa_std"] == pytest.approx(np.std(oa, ddof=1))


def test_html_is_self_contained(compared):
    text = (compared["out"] / "compare.html").read_text()
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in text and "https://" not in text
    for kind in compared["kinds"]:
        assert kind in text


@needs_chromium
def test_html_renders_in_headless_chromium(compared, tmp_path):
    assert_images_render(compared["out"] / "compare.html", tmp_path, n_images=2)


def test_folds_partition_the_labels_and_keep_the_guard():
    rng = np.random.default_rng(1)
    index = np.full((40, 40), -1, dtype=np.int64)
    groups = np.full((40, 40), -1, dtype=np.int64)
    for g in range(30):
        r, c = rng.integers(0, 36, 2)
        index[r:r + 4, c:c + 4] = g % 3
        groups[r:r + 4, c:c + 4] = g
    folds = make_folds(index, groups, k=4, guard=3, seed=0)
    again = make_folds(index, groups, k=4, guard=3, seed=0)
    np.testing.assert_array_equal(folds.fold, again.fold)
    assert ((folds.fold >= 0) == (index >= 0)).all()
    for f in range(4):
        test, train = folds.test(f), folds.train(f)
        assert test.any() and train.any() and not (test & train).any()
        near = ndimage.maximum_filter(test, size=2 * 3 + 1)
        assert not (near & train).any()
        # a polygon is never split between test and training
        for g in np.unique(groups[test]):
            assert not (train & (groups == g)).any()


def test_too_few_groups_is_a_clean_error(tmp_path):
    index = np.full((20, 20), -1, dtype=np.int64)
    index[2:8, 2:8], index[12:18, 12:18] = 0, 1
    with pytest.raises(TrainingError, match="too few for 5 folds"):
        make_folds(index, np.full((20, 20), -1, dtype=np.int64), k=5, guard=2, block_size=16)
    cube, labels = write_patchwork(tmp_path, cells=2)
    result = CliRunner().invoke(cli, ["compare", "--cube", str(cube), "--labels", str(labels),
                                      "--models", "random-forest", "--folds", "6",
                                      "-o", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "too few for 6 folds" in result.output and "--folds" in result.output
    assert "Traceback" not in result.output


def test_unknown_model_is_a_clean_error(tmp_path):
    cube, labels = write_patchwork(tmp_path, cells=2)
    result = CliRunner().invoke(cli, ["compare", "--cube", str(cube), "--labels", str(labels),
                                      "--models", "svm,xgboost", "-o", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "unknown model 'xgboost'" in result.output and "random-forest" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_two_presets_of_one_kind_are_two_models(tmp_path):
    """``--models svm,svm:smooth``: two rows on the same folds, named as given, the --config
    of the kind applied to both, the preset of each recorded; --train-best trains the
    winner with its preset; a name given twice or an unknown preset is a clean error before
    anything is written."""
    from hsimap.checkpoint import read_metadata

    cube, labels = write_patchwork(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "-q", "compare", str(cube), "--labels", str(labels), "--models", "svm,svm:smooth",
        "--folds", "2", "--guard", "2", "-o", str(out), "--device", "cpu", "--train-best",
        str(tmp_path / "best.safetensors"), *config_args(tmp_path, ["svm"])])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "compare.json").read_text())
    assert [(m["model"], m["kind"], m["preset"]) for m in doc["models"]] == \
        [("svm", "svm", "fast"), ("svm:smooth", "svm", "smooth")]
    assert all(m["overrides"]["c_values"] == [10.0] for m in doc["models"])
    assert [r["model"] for r in doc["summary"]] == ["svm", "svm:smooth"]
    for f in range(2):
        rows = [r for r in doc["per_fold"] if r["fold"] == f]
        assert [r["model"] for r in rows] == ["svm", "svm:smooth"]
        assert len({r["n_test"] for r in rows}) == 1
    meta = read_metadata(tmp_path / "best.safetensors")
    assert meta["training"]["options"]["model"] == "svm"
    assert meta["halo"] == (6 if doc["best"] == "svm:smooth" else 0)
    for models, words in (("svm,svm", "named twice"), ("svm:nope", "unknown preset 'nope'")):
        bad = tmp_path / f"bad_{models.replace(',', '_').replace(':', '_')}"
        result = CliRunner().invoke(cli, ["compare", str(cube), "--labels", str(labels),
                                          "--models", models, "-o", str(bad)])
        assert result.exit_code != 0 and words in result.output, result.output
        assert "Traceback" not in result.output and not bad.exists()


@pytest.mark.slow
def test_compare_with_diffspectralnet_tiny(tmp_path):
    """diffspectralnet (tiny preset) goes through the same folds as a per-pixel model."""
    cube, labels = write_patchwork(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "-q", "compare", "--cube", str(cube), "--labels", str(labels), "--models",
        "diffspectralnet,random-forest", "--preset", "diffspectralnet=tiny", "--folds", "2",
        "-o", str(out), "--device", "cpu", *config_args(tmp_path, ["random-forest"])])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "compare.json").read_text())
    assert doc["folds"]["guard_px"] == 7
    for f in range(2):
        rows = [r for r in doc["per_fold"] if r["fold"] == f]
        assert len({r["n_test"] for r in rows}) == 1 and len({r["n_train"] for r in rows}) == 1


def test_compare_takes_layer_classes_and_mask_like_train(tmp_path):
    """Issue 14 item 8: `compare CUBE` (positional, as train) with `--layer` of a two-layer
    GeoPackage, `--classes FILE` fixing the codes and order, and `--mask` keeping the left
    half of the scene: the comparison reads that layer, uses the file's classes and only
    the labels inside the mask, and --train-best trains with the same options."""
    import geopandas as gpd
    from shapely.geometry import box

    from hsimap.checkpoint import read_metadata

    cube, labels = write_patchwork(tmp_path)
    gpkg = tmp_path / "two_layers.gpkg"
    gt = gpd.read_file(labels)
    gt.to_file(gpkg, layer="survey_2024")
    gt.iloc[:3].to_file(gpkg, layer="draft")
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps([{"value": 7, "name": "water", "color": "#0064ff"},
                                   {"value": 3, "name": "grass", "color": "#55aa00"},
                                   {"value": 5, "name": "roof", "color": "#e31a1c"}]))
    x0, y0 = ORIGIN
    mask = tmp_path / "aoi.gpkg"
    gpd.GeoDataFrame(geometry=[box(x0, y0 - SIDE * 30, x0 + SIDE // 2 * 30, y0)],
                     crs=UTM).to_file(mask)
    config = tmp_path / "svm.toml"
    config.write_text("[config]\n" + SMALL["svm"])
    out = tmp_path / "cmp"
    base = ["compare", str(cube), "--labels", str(gpkg), "--models", "svm", "--config",
            f"svm={config}", "--folds", "2", "--guard", "1", "--device", "cpu", "-o", str(out)]
    r = CliRunner().invoke(cli, base)  # two layers, no --layer: refused with their names
    assert r.exit_code == 1 and "survey_2024" in r.output and "draft" in r.output, r.output
    r = CliRunner().invoke(cli, [*base, "--layer", "survey_2024", "--classes", str(classes),
                                 "--mask", str(mask), "--train-best",
                                 str(tmp_path / "best.safetensors")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "compare.json").read_text())
    assert doc["inputs"]["classes"] == ["water", "grass", "roof"]
    assert doc["inputs"]["layer"] == "survey_2024" and doc["inputs"]["mask"] == str(mask)
    inside = sum(f["n_test"] for f in doc["folds"]["per_fold"])
    r = CliRunner().invoke(cli, ["compare", "--cube", str(cube), "--labels", str(gpkg),
                                 "--layer", "survey_2024", "--models", "svm", "--config",
                                 f"svm={config}", "--folds", "2", "--guard", "1", "--device",
                                 "cpu", "-o", str(tmp_path / "all")], catch_exceptions=False)
    assert r.exit_code == 0, r.output  # --cube: the older spelling, the same
    everywhere = sum(f["n_test"] for f in json.loads(
        (tmp_path / "all" / "compare.json").read_text())["folds"]["per_fold"])
    assert 0 < inside < everywhere
    meta = read_metadata(tmp_path / "best.safetensors")
    assert [(c["value"], c["name"]) for c in meta["classes"]] == [(7, "water"), (3, "grass"),
                                                                  (5, "roof")]
    assert meta["training"]["options"]["mask"] == str(mask)


def test_default_models_are_shipped_and_offer_the_smoothed_svm():
    """The default ``--models`` and the QGIS script's ticked entries name shipped kinds and
    presets, and both include ``svm:smooth`` (level with diffspectralnet on Indian Pines
    disjoint blocks, docs/benchmarks.md); QGIS leaves only diffspectralnet unticked."""
    import ast

    from hsimap.cli.compare import DEFAULT_MODELS
    from hsimap.model_kinds import check_name

    names = DEFAULT_MODELS.split(",")
    assert "svm:smooth" in names and len(set(names)) == len(names)
    for name in names:
        kind, _, preset = name.partition(":")
        assert check_name(kind, preset or None), name
    script = Path(__file__).resolve().parents[1] / "qgis" / "hsimap_compare.py"
    tree = ast.parse(script.read_text(encoding="utf-8"))
    offered = next(ast.literal_eval(node.value) for node in tree.body
                   if isinstance(node, ast.Assign)
                   and any(getattr(t, "id", None) == "MODEL_TYPES" for t in node.targets))
    ticked = next(ast.literal_eval(k.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Call) for k in node.keywords
                  if k.arg == "defaultValue" and isinstance(k.value, ast.List))
    assert sorted(offered[i] for i in ticked) == sorted(set(names) - {"diffspectralnet"})


def test_diffspectralnet_folds_fitted_two_at_a_time_score_as_one_after_the_other(
        tmp_path, monkeypatch):
    """Where its fits may share the cores (``ModelSpec.concurrent_fits``), compare fits
    DiffSpectralNet's folds after the first two at a time in threads: every fold's scores
    are those of the folds fitted one after the other (docs/benchmarks.md: the sample's
    5-fold compare of
    diffspectralnet from 232 s to 192 s)."""
    import threading

    import hsimap.models.diffspectralnet as dsn
    from hsimap.compare import CompareOptions, ModelChoice, compare_models

    cube, labels = write_patchwork(tmp_path)
    choice = ModelChoice("diffspectralnet", "tiny", {
        "denoiser_iterations": 4, "clf_epochs": 2, "clf_min_batches": 2,
        "spectral_weight": 0.5, "feature_dropout": 0.2})
    per_fold = {}
    for together in (False, True):
        monkeypatch.setattr(dsn, "side_by_side", lambda device, together=together: together)
        events, threads = [], set()

        def record(e, events=events, threads=threads):
            events.append(e)
            if e.stage == "diffspectralnet folds" and e.done:
                threads.add(threading.current_thread().name.startswith("hsimap-fit"))

        compare_models(cube, labels, models=[choice], out_dir=tmp_path / f"out{together}",
                       options=CompareOptions(folds=3, device="cpu"), progress=record)
        doc = json.loads((tmp_path / f"out{together}" / "compare.json").read_text())
        per_fold[together] = [(r["fold"], r["oa"], r["aa"], r["kappa"], r["n_train"])
                              for r in doc["per_fold"]]
        done = [e.done for e in events if e.stage == "diffspectralnet folds"]
        assert done == [0, 1, 2, 3]  # in order, even when two folds end at once
        assert threads == ({False, True} if together else {False})  # folds 1-2 in workers
    assert per_fold[True] == per_fold[False]
    assert [row[0] for row in per_fold[True]] == [0, 1, 2]
