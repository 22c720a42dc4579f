"""The scikit-learn model kinds ``svm`` and ``random-forest``, end to end and against sklearn.

Both are fitted with scikit-learn, stored as plain tensors and applied by hsimap's own torch
code; these tests check that the torch code gives scikit-learn's probabilities, that the
kinds go through train/predict/evaluate/info like any other, and that a model file of either
kind that was tampered with is refused with a clear message and never runs anything.
Settings are small (a TOML config) so that the module takes well under a minute.
"""

from __future__ import annotations

import ast
import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from safetensors.torch import load_file, save_file

from hsimap.checkpoint import (
    load_checkpoint,
    read_metadata,
)

from .bad_inputs import _Payload, assert_clean_failure, run_cli
from .conftest import ROOT, SAMPLE_CUBE, SAMPLE_LABELS
from .fixtures import round_trip

KINDS = ("svm", "random-forest")
SMALL = {
    "svm": 'model = "svm"\n[config]\nc_values = [10.0, 100.0]\ngamma_factors = [0.25, 1.0]\n'
           "cv_max_pixels = 600\nmax_train_pixels = 1000\n",
    "random-forest": 'model = "random-forest"\n[config]\nn_trees = 25\n',
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Each kind trained on the sample through the CLI: model path and the command output
    (``--no-refit``: the saved model is the validated one, whose validation accuracy the
    tests below recompute from its map)."""
    folder = tmp_path_factory.mktemp("sk")
    out = {}
    for kind in KINDS:
        config = folder / f"{kind}.toml"
        config.write_text(SMALL[kind], encoding="utf-8")
        model = folder / f"{kind}.safetensors"
        result = run_cli(["train", "--cube", SAMPLE_CUBE, "--labels", SAMPLE_LABELS,
                          "--model", model, "--config", config, "--no-refit"])
        assert result.exit_code == 0, result.output
        out[kind] = (model, result.output)
    return out


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sample as training sees it: raw good bands ``(C, H, W)``, valid mask and class
    index map (-1 unlabelled)."""
    from hsimap.cube import open_cube
    from hsimap.labels import read_labels
    from hsimap.training_data import load_scene

    cube, raw, valid = load_scene(open_cube(SAMPLE_CUBE))
    return raw, valid, read_labels(SAMPLE_LABELS, grid=cube.grid).index()


@pytest.fixture(scope="module")
def pixels(scene: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Standardised spectra ``(N, C)`` float32 of the sample's labelled pixels and their
    class indices."""
    raw, valid, index = scene
    keep = valid & (index >= 0)
    good = raw[:, valid].astype(np.float64)
    std = (raw[:, keep] - good.mean(1)[:, None]) / good.std(1)[:, None]
    return np.ascontiguousarray(std.T, dtype=np.float32), index[keep]


@pytest.fixture(scope="module")
def maps(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each kind's map of the sample (default tile size), with probabilities (uint16) and
    confidence beside it: ``map.tif``, ``p.tif``, ``c.tif`` in a folder per kind."""
    out = {}
    for kind in KINDS:
        folder = tmp_path_factory.mktemp(kind)
        _predict(trained[kind][0], folder / "map.tif", "--probabilities", folder / "p.tif",
                 "--confidence", folder / "c.tif", "--prob-dtype", "uint16")
        out[kind] = folder
    return out


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def _predict(model: Path, out: Path, *extra: str | Path) -> None:
    result = run_cli(["predict", SAMPLE_CUBE, "-o", out, "--model", model, *extra])
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("kind", KINDS)
def test_train_predict_evaluate_info(kind: str, trained: dict, scene: tuple, maps: dict,
                                     tmp_path: Path) -> None:
    model, output = trained[kind]
    log = json.loads(model.with_name(f"{model.stem}.log.json").read_text())
    meta = read_metadata(model)
    assert meta["model_kind"] == kind and meta["halo"] == 0
    if kind == "svm":
        h = log["history"]["svm"]
        grid = h["cv"]["grid"]
        assert [(r["C"], r["gamma_factor"]) for r in grid] == \
            [(10.0, 0.25), (10.0, 1.0), (100.0, 0.25), (100.0, 1.0)]
        assert all(len(r["fold_scores"]) == 3 for r in grid) and h["cv"]["folds"] == 3
        best = max(grid, key=lambda r: r["mean_score"])
        assert (h["C"], h["gamma_factor"]) == (best["C"], best["gamma_factor"])
        assert h["subsampled"] and h["pixels_used"] == 1000 < h["training_pixels"]
        assert sum(h["class_pixels_used"]) == 1000 and min(h["class_pixels_used"]) > 0
        assert meta["model_config"]["max_train_pixels"] == 1000
    else:
        h = log["history"]["random_forest"]
        assert h["trees"] == 25 and h["nodes"] > 25 and not h["subsampled"]
        assert meta["model_config"]["n_trees"] == 25
    assert "validation accuracy" in output
    # the map's accuracy on the model's own validation pixels is the one train reported
    ckpt = load_checkpoint(model)
    codes = ckpt.extras["split"].numpy()
    with rasterio.open(SAMPLE_CUBE) as src:
        profile = dict(driver="GTiff", height=src.height, width=src.width, count=1,
                       dtype="uint8", crs=src.crs, transform=src.transform, nodata=0)
    index = scene[2]
    values = np.array([c.value for c in ckpt.classes], np.uint8)
    reference = np.where(codes == 2, values[np.clip(index, 0, None)], 0).astype(np.uint8)
    ref_path = tmp_path / "val.tif"
    with rasterio.open(ref_path, "w", **profile) as dst:
        dst.write(reference[None])
    out = maps[kind] / "map.tif"
    result = run_cli(["evaluate", out, "--labels", ref_path, "--log",
                      model.with_name(f"{model.stem}.log.json"), "-o", tmp_path / "ev"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n_reference_pixels"] == meta["accuracy"]["val_pixels"]
    assert metrics["overall_accuracy"] == pytest.approx(meta["accuracy"]["val_oa"], abs=1e-9)
    # > 2x chance (6 classes): the default 7 px guard leaves 345 hard validation pixels
    # (random-forest scored 0.49 there in one run)
    assert metrics["overall_accuracy"] > 0.35
    # probabilities (uint16, 10000 = 1) sum to 1 up to rounding; confidence is their max
    probs = _read(maps[kind] / "p.tif").astype(np.int64)
    conf = _read(maps[kind] / "c.tif")[0].astype(np.int64)
    valid = _read(out)[0] > 0
    total = probs.sum(0)[valid]
    assert np.abs(total - 10000).max() <= len(ckpt.classes)
    np.testing.assert_array_equal(conf[valid], probs.max(0)[valid])
    info = run_cli(["info", model, "--json"])
    assert info.exit_code == 0 and json.loads(info.output)["model"] == kind


@pytest.mark.parametrize("kind", KINDS)
def test_tile_size_does_not_change_the_map(kind: str, trained: dict, maps: dict,
                                           tmp_path: Path) -> None:
    """64 px tiles (partial ones at the right edge) against the default single tile."""
    _predict(trained[kind][0], tmp_path / "m.tif", "--tile-size", "64",
             "--probabilities", tmp_path / "p.tif", "--prob-dtype", "uint16")
    np.testing.assert_array_equal(_read(tmp_path / "m.tif"), _read(maps[kind] / "map.tif"))
    # The logits are the same; predict's float32 softmax may differ in the last bit with the
    # pixel's place in the tile, which moves a probability sitting exactly on a rounding
    # half by one unit (a forest's probabilities are fractions of its trees).
    a, b = _read(tmp_path / "p.tif").astype(int), _read(maps[kind] / "p.tif").astype(int)
    assert np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-4


def test_dask_cluster_gives_the_local_map(trained: dict, maps: dict, tmp_path: Path) -> None:
    from click.testing import CliRunner
    from dask.distributed import LocalCluster

    from hsimap.cli.main import cli

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster:
        for kind in KINDS:
            r = CliRunner().invoke(
                cli, ["predict", str(SAMPLE_CUBE), "-o", str(tmp_path / f"{kind}.tif"),
                      "--model", str(trained[kind][0]), "--tile-size", "96", "--device",
                      "cpu"], env={"DASK_SCHEDULER_ADDRESS": cluster.scheduler_address})
            assert r.exit_code == 0, r.output
            np.testing.assert_array_equal(_read(tmp_path / f"{kind}.tif"),
                                          _read(maps[kind] / "map.tif"))


def test_qgis_train_script_offers_every_kind_with_its_progress_stages(trained: dict) -> None:
    from hsimap.models.base import available_models

    tree = ast.parse((ROOT / "qgis" / "hsimap_train.py").read_text(encoding="utf-8"))
    consts = {t.id: ast.literal_eval(node.value) for node in tree.body
              if isinstance(node, ast.Assign) for t in node.targets
              if isinstance(t, ast.Name) and t.id in ("MODEL_TYPES", "STAGES", "PRESETS")}
    from hsimap.models import BUILTIN_MODULES
    from hsimap.models.base import get_spec

    builtin = [k for k in available_models()  # kinds other tests register don't count
               if get_spec(k).build.__module__.startswith(BUILTIN_MODULES)]
    assert sorted(consts["MODEL_TYPES"]) == builtin
    assert consts["MODEL_TYPES"][1] == "spectral-mlp"  # tests/e2e/test_qgis.py's index
    assert {"fast", "thorough"} <= set(consts["PRESETS"])
    for kind in builtin:  # every preset is offered (the default one as the first entry)
        spec = get_spec(kind)
        assert set(spec.presets) - {spec.default_preset} <= set(consts["PRESETS"]), kind
    for kind in KINDS:
        output = trained[kind][1]
        stages = consts["STAGES"][kind]
        positions = [output.find(f"{stage}:") for stage in stages]
        assert all(p >= 0 for p in positions) and positions == sorted(positions), output


# --------------------------------------------------------------------------- against sklearn


def _sample(labels: np.ndarray, classes: tuple[int, ...], per_class: int,
            seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class,
                                              replace=False) for c in classes]))


def _tile_probs(model: torch.nn.Module, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, K)`` and softmax probabilities of ``(N, C)`` spectra, as one tile."""
    tile = torch.from_numpy(x.T.copy()).reshape(1, x.shape[1], 1, len(x))
    with torch.inference_mode():
        logits = model.forward_tile(tile, origin=(0, 0))[0, :, 0].T  # type: ignore
    return logits, torch.softmax(logits.double(), 1)


@pytest.mark.parametrize("classes", [(0, 1, 2, 3, 4, 5), (1, 3), (0, 2, 5)],
                         ids=["all", "two", "subset"])
def test_svm_probabilities_are_sklearns(classes: tuple[int, ...], pixels: tuple,
                                        tmp_path: Path) -> None:
    from hsimap.models.libsvm import fit_svc, svc_tensors
    from hsimap.models.svm import SVMConfig, SVMModel, make_svc

    x, y = pixels
    n_bands = x.shape[1]
    fit = _sample(y, classes, 60, seed=1)
    svc = fit_svc(make_svc(100.0, 0.5 / n_bands, SVMConfig(), probability=True, seed=0),
                  x[fit], y[fit])
    svc.set_params(decision_function_shape="ovo")
    model = SVMModel(SVMConfig(), n_bands=n_bands, n_classes=6)
    model.set_tensors(svc_tensors(svc))
    test = np.random.default_rng(2).choice(len(y), 2500, replace=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = svc.predict_proba(x[test])
        votes = svc.predict(x[test])
        decision = svc.decision_function(x[test])
    with torch.inference_mode():
        dec = model.decision_values(torch.from_numpy(x[test])).numpy()
    if len(classes) == 2:  # scikit-learn's binary decision_function is libsvm's, negated
        decision = -decision[:, None]
    np.testing.assert_allclose(dec, decision, atol=1e-7)
    logits, probs = _tile_probs(model, x[test])
    absent = [k for k in range(6) if k not in classes]
    assert torch.all(probs[:, absent] < 1e-25)
    np.testing.assert_allclose(probs[:, list(classes)].numpy(), expected, atol=1e-4)
    assert (np.asarray(classes)[expected.argmax(1)] == probs.argmax(1).numpy()).all()
    assert (probs.argmax(1).numpy() == votes).mean() > 0.95
    loaded = round_trip(model, n_bands, tmp_path)
    again, _ = _tile_probs(loaded, x[test])
    assert torch.equal(again, logits)


def test_svm_float32_kernel_is_close_to_libsvm_and_other_dtypes_are_refused(
        pixels: tuple) -> None:
    """The float32 kernel (DiffSpectralNet's member) stays within 1e-3 of scikit-learn's
    probabilities and gives its argmax on nearly every pixel; the default stays float64;
    float16 is refused."""
    from hsimap.models.libsvm import fit_svc, svc_tensors
    from hsimap.models.svm import SVMConfig, SVMModel, make_svc

    x, y = pixels
    n_bands = x.shape[1]
    fit = _sample(y, (0, 1, 2, 3, 4, 5), 60, seed=1)
    svc = fit_svc(make_svc(100.0, 0.5 / n_bands, SVMConfig(), probability=True, seed=0),
                  x[fit], y[fit])
    model = SVMModel(SVMConfig(), n_bands=n_bands, n_classes=6)
    model.set_tensors(svc_tensors(svc))
    assert model.kernel_dtype == torch.float64
    model.set_kernel_dtype(torch.float32)
    test = np.random.default_rng(2).choice(len(y), 2500, replace=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = svc.predict_proba(x[test])
    _, probs = _tile_probs(model, x[test])
    np.testing.assert_allclose(probs.numpy(), expected, atol=1e-3)  # float64: 1e-4
    assert (expected.argmax(1) == probs.argmax(1).numpy()).mean() > 0.999
    with pytest.raises(ValueError, match="float32 or float64"):
        model.set_kernel_dtype(torch.float16)


def test_svm_shared_calibration_follows_the_vote_with_few_pixels(scene: tuple,
                                                                 tmp_path: Path) -> None:
    """``calibration = "shared"``: one Platt slope for every pair (the median of libsvm's),
    no offsets, recorded in the log and kept by the model file. With 5 training pixels per
    class libsvm's per-pair sigmoids break down (some slopes come out inverted), and the
    pairwise map strays from libsvm's vote, which the shared one follows."""
    from sklearn.svm import SVC

    from hsimap.models import svm
    from hsimap.models.base import TrainData

    raw, valid, index = scene
    good = raw[:, valid].astype(np.float64)
    z = ((raw - good.mean(1)[:, None, None]) / good.std(1)[:, None, None]).astype(np.float32)
    z[:, ~valid] = 0
    rng = np.random.default_rng(0)
    train = np.zeros(index.shape, bool)
    for c in range(6):
        train.flat[rng.choice(np.flatnonzero(index == c), 5, replace=False)] = True
    data = TrainData(z, valid, index, train, np.zeros_like(train), 6)
    test = torch.from_numpy(np.ascontiguousarray(z[:, (index >= 0) & ~train].T))
    fitted = {}
    for calibration in ("pairwise", "shared"):
        model, history = svm.fit(data, svm.SVMConfig(calibration=calibration), seed=0,
                                 device=torch.device("cpu"), progress=lambda e: None)
        with torch.inference_mode():
            fitted[calibration] = (model, history["svm"], model.forward_pixels(test).argmax(1))
    pairwise, shared = fitted["pairwise"][1], fitted["shared"][1]
    assert (pairwise["C"], pairwise["gamma"]) == (shared["C"], shared["gamma"])
    assert pairwise["platt"]["slopes"]["max"] > 0  # an inverted sigmoid
    assert shared["platt"]["calibration"] == "shared" and "shared_slope" not in pairwise["platt"]
    slope = shared["platt"]["slopes"]["median"]
    model = fitted["shared"][0]
    assert slope < 0 and shared["platt"]["shared_slope"] == slope
    assert torch.all(model.prob_a == slope) and torch.all(model.prob_b == 0)
    vote = torch.from_numpy(SVC(C=shared["C"], gamma=shared["gamma"])
                            .fit(z[:, train].T, index[train]).predict(test.numpy()))
    agree = {k: float((v[2] == vote).double().mean()) for k, v in fitted.items()}
    assert agree["shared"] > 0.85 and agree["shared"] > agree["pairwise"] + 0.2
    loaded = round_trip(model, raw.shape[0], tmp_path)
    assert loaded.config.calibration == "shared"
    with torch.inference_mode():
        assert torch.equal(loaded.forward_pixels(test).argmax(1), fitted["shared"][2])


@pytest.mark.parametrize("classes", [(0, 1, 2, 3, 4, 5), (0, 2, 5)], ids=["all", "subset"])
def test_forest_probabilities_are_sklearns(classes: tuple[int, ...], pixels: tuple,
                                           tmp_path: Path) -> None:
    from hsimap.models.forest import (
        RandomForestConfig,
        RandomForestModel,
        forest_tensors,
        make_forest,
    )

    x, y = pixels
    n_bands = x.shape[1]
    fit = np.flatnonzero(np.isin(y, classes))[::2]
    config = RandomForestConfig(n_trees=25)
    forest = make_forest(config, seed=3).fit(x[fit], y[fit])
    model = RandomForestModel(config, n_bands=n_bands, n_classes=6)
    model.set_tensors(forest_tensors(forest, 6))
    rng = np.random.default_rng(4)
    test = rng.choice(len(y), 3000, replace=False)
    # also values exactly at split thresholds (float32 spectra, float64 thresholds)
    at = x[test[:500]].copy()
    inner = forest.estimators_[0].tree_.feature >= 0
    feats = forest.estimators_[0].tree_.feature[inner]
    thrs = forest.estimators_[0].tree_.threshold[inner].astype(np.float32)
    pick = rng.integers(0, len(feats), 500)
    at[np.arange(500), feats[pick]] = thrs[pick]
    probe = np.concatenate([x[test], at])
    expected = forest.predict_proba(probe)
    logits, probs = _tile_probs(model, probe)
    np.testing.assert_allclose(probs[:, list(classes)].numpy(), expected, atol=1e-6, rtol=0)
    absent = [k for k in range(6) if k not in classes]
    assert torch.all(probs[:, absent] < 1e-25)
    loaded = round_trip(model, n_bands, tmp_path)
    assert torch.equal(_tile_probs(loaded, probe)[0], logits)


# --------------------------------------------------------------------------- bad files


def _tampered(model: Path, folder: Path, name: str, change: dict[str, torch.Tensor | None],
              *, kind: str | None = None) -> Path:
    """A copy of ``model`` with tensors replaced (None: removed) and maybe another kind."""
    tensors = load_file(str(model))
    for key, value in change.items():
        if value is None:
            tensors.pop(f"model.{key}")
        else:
            tensors[f"model.{key}"] = value
    meta = read_metadata(model)
    if kind is not None:
        meta["model_kind"] = kind
        meta["model_config"] = {}
    path = folder / f"{name}.safetensors"
    save_file(tensors, str(path), metadata={"hsimap": json.dumps(meta)})
    return path


def _payload(marker: Path) -> torch.Tensor:
    """Bytes that run ``touch marker`` if anyone unpickles them, as a uint8 tensor."""
    return torch.frombuffer(bytearray(pickle.dumps(_Payload(str(marker)))), dtype=torch.uint8)


def _svm_cases(t: dict[str, torch.Tensor], marker: Path) -> dict[str, tuple[dict, str]]:
    sv, n_sup = t["model.support_vectors"], t["model.n_support"]
    return {
        "bands": ({"support_vectors": sv[:, :-1].contiguous()}, "expected (>=1, 218)"),
        "count": ({"n_support": n_sup + 1}, "does not add up"),
        "coef": ({"dual_coef": t["model.dual_coef"][:, :-1].contiguous()}, "dual_coef is"),
        "classes": ({"class_index": t["model.class_index"] + 3}, "class_index"),
        "pairs": ({"prob_a": t["model.prob_a"][:-1].contiguous()}, "prob_a has"),
        "gamma": ({"gamma": torch.tensor([float("nan")], dtype=torch.float64)},
                  "NaN or infinite"),
        "pickle": ({"dual_coef": _payload(marker)}, "torch.uint8"),
        "missing": ({"intercept": None}, "missing key"),
    }


def _forest_cases(t: dict[str, torch.Tensor], marker: Path) -> dict[str, tuple[dict, str]]:
    left, right = t["model.children_left"], t["model.children_right"]
    inner = int(torch.nonzero(left >= 0)[3, 0])  # an inner node of the first tree
    loop, twin, wide = left.clone(), right.clone(), t["model.feature"].clone()
    loop[inner] = 0  # back to the root: a cycle
    twin[inner] = left[inner]  # both children the same node: one orphan, one with 2 parents
    wide[int(torch.nonzero(left >= 0)[0, 0])] = 5000
    off = t["model.tree_offsets"].clone()
    off[1] = off[2]
    return {
        "cycle": ({"children_left": loop}, "does not come after its parent"),
        "twin": ({"children_right": twin}, "exactly one path"),
        "band": ({"feature": wide}, "outside 0..217"),
        "offsets": ({"tree_offsets": off}, "tree_offsets must rise"),
        "value": ({"value": t["model.value"][:, :3].contiguous()}, "value is"),
        "pickle": ({"value": _payload(marker)}, "torch.uint8"),
        "threshold": ({"threshold": t["model.threshold"].double()}, "torch.float64"),
    }


@pytest.mark.parametrize("kind", KINDS)
def test_tampered_model_files_are_refused_and_run_nothing(kind: str, trained: dict,
                                                          tmp_path: Path) -> None:
    model = trained[kind][0]
    marker = tmp_path / "pwned"
    tensors = load_file(str(model))
    cases = (_svm_cases if kind == "svm" else _forest_cases)(tensors, marker)
    other = "random-forest" if kind == "svm" else "svm"
    cases["other_kind"] = ({}, "missing key")  # this kind's tensors, the other kind's name
    out = tmp_path / "out"
    out.mkdir()
    for name, (change, words) in cases.items():
        bad = _tampered(model, tmp_path, name, change,
                        kind=other if name == "other_kind" else None)
        result = run_cli(["predict", SAMPLE_CUBE, "-o", out / "map.tif", "--model", bad])
        assert_clean_failure(result, words=("weights do not fit", words, "retrain"), path=bad)
        assert not marker.exists(), f"{name}: the pickle payload ran"
        assert not list(out.iterdir()), f"{name}: output left behind"


@pytest.mark.parametrize(("kind", "field", "words"), [
    ("svm", "c_values = []", "c_values must list at least one value"),
    ("svm", "gamma_factors = [1.0, -2.0]", "gamma_factors must hold positive numbers"),
    ("svm", "cv_folds = 1", "cv_folds must be at least 2"),
    ("svm", "max_train_pixels = 5", "at least 10"),
    ("svm", "smooth_radius = -1", "smooth_radius must be a whole number >= 0"),
    ("svm", "smooth_radius = 2.5", "smooth_radius must be a whole number"),
    ("svm", "smooth_range = 0", "smooth_range must be a positive number"),
    ("svm", 'calibration = "platt"', "calibration must be"),
    ("random-forest", "n_trees = 0", "must be positive"),
    ("random-forest", 'max_features = "half"', "max_features must be 'sqrt', 'log2'"),
    ("random-forest", "max_depth = 2.5", "max_depth must be a whole number"),
])
def test_invalid_config_fields(kind: str, field: str, words: str, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f'model = "{kind}"\n[config]\n{field}\n', encoding="utf-8")
    model = tmp_path / "m.safetensors"
    result = run_cli(["train", "--cube", SAMPLE_CUBE, "--labels", SAMPLE_LABELS,
                      "--model", model, "--config", config])
    assert_clean_failure(result, words=(words, "[config]"), path=config)
    assert not model.exists()


def test_every_svm_preset_and_fasts_member_share_one_slope_and_old_files_keep_theirs() -> None:
    """``calibration = "shared"`` comes from the presets (svm's, and ``fast``'s member via
    ``spectral_calibration``); a config stored before the field existed reads as
    ``"pairwise"``, the behaviour it was fitted with."""
    from hsimap.models.base import config_from_dict, get_spec
    from hsimap.models.diffspectralnet.config import DiffSpectralNetConfig
    from hsimap.models.svm import SVMConfig

    spec = get_spec("svm")
    assert {spec.make_config(p, {}).calibration for p in spec.presets} == {"shared"}
    assert config_from_dict(SVMConfig, {}).calibration == "pairwise"
    dsn = get_spec("diffspectralnet")
    fast = dsn.make_config("fast", {})
    assert fast.spectral_calibration == "shared"
    member = dsn.build(fast, n_bands=40, n_classes=3).spectral
    assert member is not None and member.config.calibration == "shared"
    assert config_from_dict(DiffSpectralNetConfig, {}).spectral_calibration == "pairwise"
    plain = dsn.build(dsn.make_config("fast", {"spectral_calibration": "pairwise"}),
                      n_bands=40, n_classes=3).spectral
    assert plain is not None and plain.config.calibration == "pairwise"


def test_svm_fits_in_threads_show_no_sklearn_deprecation_warning() -> None:
    """hsimap fits SVMs in threads (DiffSpectralNet's member beside its classifier,
    compare's folds); scikit-learn's FutureWarnings about ``probability=True`` and
    ``probA_`` are filtered once at import, not per fit (catch_warnings is not
    thread-safe). Run in a fresh interpreter with warnings shown (pytest's config hides
    FutureWarnings)."""
    import subprocess
    import sys

    script = """
import threading, numpy as np, torch
from hsimap.models.base import TrainData
from hsimap.models.svm import SVMConfig, fit
rng = np.random.default_rng(0)
labels = np.repeat(np.arange(3), 200).reshape(20, 30)
cube = (rng.normal(size=(3, 8))[labels].transpose(2, 0, 1) + rng.normal(size=(8, 20, 30)))
data = TrainData(cube.astype(np.float32), np.ones((20, 30), bool), labels,
                 rng.random((20, 30)) < 0.5, np.zeros((20, 30), bool), 3)
config = SVMConfig(c_values=(1.0, 10.0), gamma_factors=(1.0,))
runs = [threading.Thread(target=fit, args=(data, config), kwargs=dict(
    seed=0, device=torch.device("cpu"), progress=lambda e: None)) for _ in range(2)]
[t.start() for t in runs]
[t.join() for t in runs]
print("fitted")
"""
    done = subprocess.run([sys.executable, "-W", "default", "-c", script],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "fitted" in done.stdout, done.stderr
    assert "Warning" not in done.stderr, done.stderr


def test_libsvm_fits_in_threads_give_what_they_give_alone() -> None:
    """scikit-learn's libsvm draws its probability cross-validation from one process-wide
    generator that every fit reseeds: two plain fits at once in threads interleave the
    draws (seen here: every slope differed). ``fit_svc`` takes turns, so fits in threads
    (compare's DiffSpectralNet folds, each with its SVM member) keep their results."""
    import threading

    from hsimap.models.libsvm import fit_svc
    from hsimap.models.svm import SVMConfig, make_svc

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1500, 50)), rng.integers(0, 6, 1500)

    def slopes(seed: int) -> np.ndarray:
        svc = fit_svc(make_svc(10.0, 1 / 50, SVMConfig(), probability=True, seed=seed), x, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(svc.probA_).copy()

    alone = {seed: slopes(seed) for seed in (0, 1)}
    out: dict[int, np.ndarray] = {}
    runs = [threading.Thread(target=lambda i=i: out.__setitem__(i, slopes(i % 2)))
            for i in range(4)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert all(np.array_equal(out[i], alone[i % 2]) for i in range(4))
