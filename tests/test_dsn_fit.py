"""DiffSpectralNet: training (determinism, early stopping, errors) and a real-data smoke test."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hsimap.errors import TrainingError
from hsimap.models.base import ProgressEvent, TrainData, get_spec

SALINAS = Path(__file__).parent / "data" / "salinas_a"
QUICK = {"denoiser_iterations": 4, "clf_epochs": 3, "timesteps": (5,)}


def synthetic(seed: int = 0, h: int = 24, w: int = 28, bands: int = 10) -> TrainData:
    """Three classes in vertical stripes with distinct spectra, noise, an invalid corner."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(w)[None, :] * 3 // w, h, axis=0).astype(np.int64)
    means = rng.normal(0, 1, size=(3, bands))
    cube = means[labels].transpose(2, 0, 1) + 0.3 * rng.normal(size=(bands, h, w))
    valid = np.ones((h, w), dtype=bool)
    valid[:4, :4] = False
    cube[:, ~valid] = 0.0
    labels[~valid] = -1
    pick = rng.random((h, w))
    train = valid & (pick < 0.25)
    val = valid & (pick > 0.85)
    return TrainData(cube.astype(np.float32), valid, labels, train, val, 3)


def run_fit(data: TrainData, overrides: dict, seed: int = 0):
    spec = get_spec("diffspectralnet")
    events: list[ProgressEvent] = []
    model, history = spec.fit(data, spec.make_config("tiny", {**QUICK, **overrides}), seed=seed,
                              device=torch.device("cpu"), progress=events.append)
    return model, history, events


def test_same_seed_gives_identical_weights_and_history_is_json():
    data = synthetic()
    m1, h1, events = run_fit(data, {})
    m2, _, _ = run_fit(data, {})
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    m3, _, _ = run_fit(data, {}, seed=1)
    assert not all(torch.equal(s1[k], v) for k, v in m3.state_dict().items())
    json.dumps(h1)
    assert h1["halo"] == m1.halo()
    assert len(h1["denoiser"]["loss"]) == QUICK["denoiser_iterations"]
    stages = {e.stage for e in events}
    assert {"denoiser", "classifier"} <= stages
    assert all("loss" in e.metrics for e in events if e.stage == "denoiser")
    assert {"loss", "train_acc", "val_acc"} <= set(
        next(e for e in events if e.stage == "classifier").metrics)
    assert not m1.training


def test_empty_val_mask_trains_all_epochs():
    data = synthetic()
    data = TrainData(data.cube, data.valid, data.labels, data.train_mask,
                     np.zeros_like(data.val_mask), data.n_classes)
    _, history, _ = run_fit(data, {"patience": 1, "reducer": "scale"})
    clf = history["classifier"]
    assert len(clf["epochs"]) == QUICK["clf_epochs"]
    assert "empty" in clf["early_stopping"]
    json.dumps(history)


def test_small_training_sets_get_at_least_clf_min_batches_steps_per_epoch():
    from hsimap.models.diffspectralnet.classifier import WindowClassifier
    from hsimap.models.diffspectralnet.fit_classifier import PatchSampler, _epoch

    spec = get_spec("diffspectralnet")
    config = spec.make_config("tiny", {"clf_batch": 4, "clf_min_batches": 5})
    clf = WindowClassifier(config, n_feat=3, n_classes=2)
    opt = torch.optim.SGD(clf.parameters(), lr=0.0)
    steps = []
    opt.step = lambda *a, **k: steps.append(1)  # type: ignore[method-assign]
    padded = PatchSampler(torch.randn(3, 20, 20), clf.k + 2)
    rows, cols = torch.tensor([5, 6, 7, 8, 9, 10]), torch.tensor([5, 6, 7, 8, 9, 10])
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    _epoch(clf, opt, padded, rows, cols, y, None, config, torch.Generator().manual_seed(0))
    assert len(steps) == 6  # 6 pixels cycled 4 times (24 >= 5 * 4) in batches of 4
    steps.clear()
    config = spec.make_config("tiny", {"clf_batch": 4, "clf_min_batches": 1})
    _epoch(clf, opt, padded, rows, cols, y, None, config, torch.Generator().manual_seed(0))
    assert len(steps) == 2  # one pass: a batch of 4 and the leftover pair
    steps.clear()
    config = spec.make_config("tiny", {"clf_batch": 64, "clf_min_batches": 1})
    _epoch(clf, opt, padded, rows, cols, y, None, config, torch.Generator().manual_seed(0))
    assert len(steps) == 1  # fewer pixels than a batch: still one pass, nothing repeated


def test_cosine_schedule_decays_the_classifier_learning_rate_each_epoch(monkeypatch):
    from hsimap.models.diffspectralnet import fit_classifier

    seen: list[float] = []
    real_epoch = fit_classifier._epoch

    def spy(clf, opt, *args, **kwargs):
        seen.append(opt.param_groups[0]["lr"])
        return real_epoch(clf, opt, *args, **kwargs)

    monkeypatch.setattr(fit_classifier, "_epoch", spy)
    run_fit(synthetic(), {"clf_epochs": 4, "clf_lr": 0.01, "clf_schedule": "cosine"})
    assert seen == pytest.approx([0.01, 0.01 * (1 + 2 ** -0.5) / 2, 0.005,
                                  0.01 * (1 - 2 ** -0.5) / 2])
    seen.clear()
    run_fit(synthetic(), {"clf_epochs": 3, "clf_lr": 0.01})
    assert seen == pytest.approx([0.01] * 3)  # "constant", the default
    with pytest.raises(ValueError, match="clf_schedule"):
        get_spec("diffspectralnet").make_config("tiny", {"clf_schedule": "step"})


def test_fit_refuses_unusable_data():
    data = synthetic()
    none = np.zeros_like(data.train_mask)
    with pytest.raises(TrainingError):
        run_fit(TrainData(data.cube, data.valid, data.labels, none, data.val_mask, 3), {})
    bad = data.labels.copy()
    bad[data.train_mask] = 5
    with pytest.raises(TrainingError):
        run_fit(TrainData(data.cube, data.valid, bad, data.train_mask, data.val_mask, 3), {})
    invalid = np.zeros_like(data.valid)
    with pytest.raises(TrainingError):
        run_fit(TrainData(data.cube, invalid, data.labels, data.train_mask, data.val_mask, 3),
                {})


def _salinas_a() -> tuple[np.ndarray, np.ndarray]:
    scipy_io = pytest.importorskip("scipy.io")
    cube_path, gt_path = SALINAS / "SalinasA_corrected.mat", SALINAS / "SalinasA_gt.mat"
    if not (cube_path.exists() and gt_path.exists()):
        pytest.skip("Salinas-A .mat files not present")
    cube = scipy_io.loadmat(cube_path)["salinasA_corrected"].astype(np.float32)
    gt = scipy_io.loadmat(gt_path)["salinasA_gt"].astype(np.int64)
    return cube.transpose(2, 0, 1), gt


def test_salinas_a_tiny_fit_beats_chance():
    cube, gt = _salinas_a()
    cube = (cube - cube.mean((1, 2), keepdims=True)) / cube.std((1, 2), keepdims=True)
    classes = np.unique(gt[gt > 0])
    labels = np.full(gt.shape, -1, dtype=np.int64)
    for i, c in enumerate(classes):
        labels[gt == c] = i
    rng = np.random.default_rng(0)
    train = np.zeros(gt.shape, dtype=bool)
    val = np.zeros(gt.shape, dtype=bool)
    for i in range(len(classes)):  # random-pixel protocol: 30 train, 20 val per class
        idx = rng.permutation(np.flatnonzero(labels == i))
        train.flat[idx[:30]] = True
        val.flat[idx[30:50]] = True
    data = TrainData(cube, np.ones(gt.shape, dtype=bool), labels, train, val, len(classes))
    spec = get_spec("diffspectralnet")
    model, _ = spec.fit(data, spec.make_config("tiny"), seed=0, device=torch.device("cpu"),
                        progress=lambda e: None)
    logits = model.forward_tile(torch.from_numpy(cube)[None], origin=(0, 0))
    pred = logits[0].argmax(0).numpy()
    test = (labels >= 0) & ~train & ~val
    oa = float((pred[test] == labels[test]).mean())
    assert oa > 0.6, oa  # chance is about 1/6 (tiny, 30 px per class, 15 epochs)


def test_projection_features_ablation_has_no_denoiser_and_a_small_halo():
    data = synthetic()
    model, history, events = run_fit(data, {"features": "projection", "proj_bands": 6,
                                           "clf_epochs": 15})
    assert model.features.unet is None
    assert model.halo() == model.config.window // 2 + 1
    assert "skipped" in history["denoiser"]
    assert not any(e.stage == "denoiser" for e in events)
    logits = model.forward_tile(torch.from_numpy(data.cube)[None], origin=(0, 0))
    acc = (logits[0].argmax(0).numpy() == data.labels)[data.valid].mean()
    assert acc > 0.6


def test_reusing_the_label_free_stages_copies_projection_and_denoiser():
    data = synthetic()
    first, _, _ = run_fit(data, {})
    spec = get_spec("diffspectralnet")
    config = spec.make_config("tiny", {**QUICK, "clf_epochs": 2})
    events: list[ProgressEvent] = []
    again, history = spec.fit(data, config, seed=5, device=torch.device("cpu"),
                              progress=events.append, init=first)
    assert history["denoiser"] == {"reused": True}
    assert not any(e.stage == "denoiser" for e in events)
    for k, v in first.features.unet.state_dict().items():
        assert torch.equal(v, again.features.unet.state_dict()[k])


def test_ensemble_members_are_trained_separately():
    _, history, events = run_fit(synthetic(), {"clf_ensemble": 2})
    members = history["classifier"]["members"]
    assert len(members) == 2 and members[0]["epochs"] != members[1]["epochs"]
    assert history["classifier"]["epochs"] == members[0]["epochs"]
    assert {e.metrics.get("member") for e in events if e.stage == "classifier"} == {1, 2}
    json.dumps(history)


def low_rank_scene(h: int = 32, w: int = 32, bands: int = 16, seed: int = 0) -> TrainData:
    """Spectra of rank 2 plus a little noise: added noise is easy to tell from signal."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(2, bands))
    coef = rng.normal(size=(h, w, 2))
    cube = (coef @ basis).transpose(2, 0, 1) + 0.01 * rng.normal(size=(bands, h, w))
    cube = (cube - cube.mean((1, 2), keepdims=True)) / cube.std((1, 2), keepdims=True)
    labels = (coef[..., 0] > 0).astype(np.int64)
    pick = rng.random((h, w))
    return TrainData(cube.astype(np.float32), np.ones((h, w), bool), labels, pick < 0.3,
                     pick > 0.9, 2)


def test_denoiser_eval_is_logged_and_a_trained_denoiser_beats_predicting_zero():
    data = low_rank_scene()
    over = {"unet": "pixel", "widths": (32, 32, 32), "proj_bands": 0, "proj_whiten": False,
            "timesteps": (100, 200), "t_sampling": "features", "denoiser_iterations": 150,
            "crop": 8, "batch": 8, "clf_epochs": 1}
    _, history, _ = run_fit(data, over)
    ev = history["denoiser_eval"]
    assert ev["timesteps"] == [100, 200]
    assert ev["held_out"] and ev["n_pixels"] > 0
    assert all(abs(z - 0.798) < 0.05 for z in ev["zero_l1"])  # E|N(0, 1)|
    assert all(r < 0.8 for r in ev["ratio"]), ev
    _, untrained, _ = run_fit(data, {**over, "denoiser_iterations": 1})
    assert untrained["denoiser_eval"]["ratio"][0] > ev["ratio"][0]
    json.dumps(history)


def test_denoiser_stops_when_the_held_out_error_plateaus():
    over = {"unet": "pixel", "denoiser_iterations": 40, "denoiser_check_every": 5,
            "denoiser_min_gain": 0.9, "crop": 8}
    _, history, events = run_fit(low_rank_scene(), over)
    den = history["denoiser"]
    assert "plateau" in den["stopped"]
    assert den["iterations"] == 10 and len(den["checks"]) == 2
    # the progress display is told the stage ended (it printed "10/40 ... not finished")
    last = [e for e in events if e.stage == "denoiser"][-1]
    assert (last.done, last.total) == (10, 40)
    assert last.note and last.note.startswith("stopped early at iteration 10 of 40")


def test_feature_timestep_sampling_puts_half_the_draws_on_feature_timesteps():
    from hsimap.models.diffspectralnet.fit_denoiser import _timesteps

    spec = get_spec("diffspectralnet")
    gen = torch.Generator().manual_seed(0)
    feat = spec.make_config("tiny", {"t_sampling": "features", "timesteps": (5, 50)})
    t = _timesteps(feat, 4000, gen)
    share = float(torch.isin(t, torch.tensor([5, 50])).float().mean())
    assert 0.45 < share < 0.56
    uni = _timesteps(spec.make_config("tiny", {}), 4000, gen)
    assert float(torch.isin(uni, torch.tensor([5, 50])).float().mean()) < 0.02


def test_held_out_blocks_are_never_in_a_training_crop():
    from hsimap.models.diffspectralnet.fit_denoiser import crop_origins, holdout_blocks

    valid = np.ones((40, 48), bool)
    held = holdout_blocks(valid, 8, seed=3)
    assert 0 < held.sum() < valid.sum() // 5
    for y, x in crop_origins(valid, 8, exclude=held):
        assert not held[y:y + 8, x:x + 8].any()


def test_svm_member_is_fitted_blended_refitted_without_cv_and_saved(tmp_path: Path):
    """``spectral_weight``: the SVM member is fitted on the training pixels (its CV in the
    history), the map is the log of the weighted mean of the two models' probabilities, the
    refit reuses the chosen C and gamma (no CV), and the member survives save and load."""
    from .fixtures import round_trip

    data = synthetic()
    model, history, events = run_fit(data, {"spectral_weight": 0.5})
    member = history["spectral"]
    assert member["weight"] == 0.5 and member["cv"]["grid"] and member["support_vectors"] > 0
    assert {"cross-validation", "svm"} <= {e.stage for e in events}
    assert model.spectral is not None and model.spectral.fitted
    x = torch.from_numpy(data.cube)[None]
    with torch.no_grad():
        alone = model.classifier.forward_map(model.features(x, (0, 0)), spectra=x)
        svm_p = model.spectral.tile_probabilities(x)
        svm_logp = model.spectral.forward_tile(x, origin=(0, 0))
        blended = model.forward_tile(x, origin=(0, 0))
    assert svm_p.dtype == torch.float64 and torch.allclose(svm_logp.exp().double(), svm_p,
                                                           atol=1e-6)
    expected = 0.5 * torch.softmax(alone, 1) + 0.5 * svm_p.float()
    assert torch.allclose(blended.exp(), expected, atol=1e-6)

    spec = get_spec("diffspectralnet")
    config = spec.make_config("tiny", {**QUICK, "spectral_weight": 0.5})
    events.clear()
    refitted, refit_history = spec.refit(model, data, config, history, seed=0,
                                         device=torch.device("cpu"), progress=events.append)
    again = refit_history["spectral"]
    assert "skipped" in again["cv"] and "cross-validation" not in {e.stage for e in events}
    assert (again["C"], again["gamma_factor"]) == (member["C"], member["gamma_factor"])

    loaded = round_trip(refitted, 10, tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded.forward_tile(x, origin=(0, 0)),
                           refitted.forward_tile(x, origin=(0, 0)))
    # the member's kernel runs in float32 however it came (fit, refit, file), within 1e-3 of
    # the float64 (libsvm-exact) kernel of the ``svm`` kind
    for m in (model, refitted, loaded):
        assert m.spectral.kernel_dtype == torch.float32 and m.spectral.sv_k.dtype == torch.float32
    exact = copy.deepcopy(loaded.spectral)
    exact.set_kernel_dtype(torch.float64)
    with torch.no_grad():
        fast_p = loaded.spectral.forward_tile(x, origin=(0, 0)).exp()
        exact_p = exact.forward_tile(x, origin=(0, 0)).exp()
    assert exact.sv_k.dtype == torch.float64 and not torch.equal(fast_p, exact_p)
    assert torch.allclose(fast_p, exact_p, atol=1e-3)


def test_class_probabilities_match_the_class_map_tile_by_tile():
    """``class_probabilities`` (the benchmark's blend input): per-pixel probabilities summing
    to 1, 0 where invalid, whose argmax is ``classify_array``'s map, with tiles smaller than
    the scene (so halos and mosaicking are exercised)."""
    from hsimap.checkpoint import Checkpoint, Normalisation
    from hsimap.classes import ClassTable
    from hsimap.predict import classify_array
    from hsimap.predict.engine import class_probabilities

    data = synthetic()
    model, _, _ = run_fit(data, {"spectral_weight": 0.5})
    ckpt = Checkpoint(model, Normalisation(np.zeros(10, np.float32), np.ones(10, np.float32)),
                      ClassTable.from_names(["a", "b", "c"]), {})
    probs = class_probabilities(ckpt, data.cube.copy(), data.valid, tile=8)
    labels = classify_array(ckpt, data.cube.copy(), data.valid, tile=8)
    assert probs.shape == (3, *data.valid.shape) and (probs[:, ~data.valid] == 0).all()
    assert np.allclose(probs[:, data.valid].sum(0), 1, atol=1e-3)
    top = np.sort(probs[:, data.valid], axis=0)
    clear = top[-1] - top[-2] > 1e-3  # not a tie at the 1e-4 rounding
    assert (probs.argmax(0)[data.valid][clear] == labels[data.valid][clear]).all()
    assert (labels[~data.valid] == -1).all()


def test_smoothing_scale_is_fitted_recorded_and_saved(tmp_path: Path):
    """``smooth_radius``: fit stores the scene's median neighbour distance in the model and the
    history; the halo grows by the radius; the map is the smoothed softmax; save and load
    keep the scale."""
    from hsimap.checkpoint import Checkpoint, Normalisation, load_checkpoint, save_checkpoint
    from hsimap.classes import ClassTable
    from hsimap.models.smoothing import smooth_probabilities

    data = synthetic()
    plain, _, _ = run_fit(data, {})
    model, history, _ = run_fit(data, {"smooth_radius": 2})
    assert model.halo() == plain.halo() + 2
    scale = history["smoothing"]["range_sq"]
    assert scale > 0 and float(model.smooth_range_sq) == pytest.approx(scale)
    x = torch.from_numpy(data.cube)[None]
    with torch.no_grad():
        logits = model.classifier.forward_map(model.features(x, (0, 0)), spectra=x)
        want = smooth_probabilities(torch.softmax(logits, 1), model.features.projection(x),
                                    torch.from_numpy(data.valid)[None, None], radius=2,
                                    range_sq=scale)
        got = model.forward_tile(x, origin=(0, 0)).exp()
    assert torch.allclose(got, want, atol=1e-6)
    path = save_checkpoint(tmp_path / "m.safetensors", Checkpoint(
        model, Normalisation(np.zeros(10, np.float32), np.ones(10, np.float32)),
        ClassTable.from_names(["a", "b", "c"]), {"n_bands": 10, "band_indices": list(range(10)),
                                                 "wavelengths": None}))
    loaded = load_checkpoint(path).model
    assert float(loaded.smooth_range_sq) == pytest.approx(scale)
    with torch.no_grad():
        assert torch.equal(loaded.forward_tile(x, origin=(0, 0)),
                           model.forward_tile(x, origin=(0, 0)))


def test_pseudo_labels_take_the_most_confident_free_pixels_per_class_up_to_the_ratio():
    """Only valid pixels outside the training and validation masks at or above the
    confidence; per predicted class at most ratio x its training pixels, most confident
    first."""
    from hsimap.models.diffspectralnet.config import DiffSpectralNetConfig
    from hsimap.models.diffspectralnet.fit import pseudo_labels

    h, w = 4, 6
    labels = -np.ones((h, w), np.int64)
    train = np.zeros((h, w), bool)
    train[0, 0], train[0, 1], train[0, 2] = True, True, True
    labels[0, 0], labels[0, 1], labels[0, 2] = 0, 0, 1  # class 0: 2 training px, class 1: 1
    val = np.zeros((h, w), bool)
    val[3, 5] = True
    valid = np.ones((h, w), bool)
    valid[3, 4] = False
    data = TrainData(np.zeros((2, h, w), np.float32), valid, labels, train, val, 2)
    predicted = np.zeros((h, w), np.int64)
    predicted[2:] = 1
    confidence = np.linspace(0.5, 0.99, h * w, dtype=np.float32).reshape(h, w)
    config = DiffSpectralNetConfig(pseudo_epochs=1, pseudo_confidence=0.6, pseudo_ratio=1.5)
    chosen = pseudo_labels(predicted, confidence, data, config)
    free = valid & ~train & ~val & (confidence >= 0.6)
    assert not (chosen & ~free).any()
    # class 0 (rows 0-1): ceil(1.5 x 2) = 3, the 3 most confident free ones: row 1's last 3
    assert chosen[:2].sum() == 3 and chosen[1, 3:].all()
    # class 1 (rows 2-3): ceil(1.5 x 1) = 2: (3, 3) and (3, 2) ((3, 4) invalid, (3, 5) val)
    assert chosen[2:].sum() == 2 and chosen[3, 2] and chosen[3, 3]


def test_self_training_adds_pseudo_labelled_epochs_and_refits():
    """``pseudo_epochs``: the history records the pseudo-labelled pixels and the extra
    epochs, progress names the stage, the same seed gives the same weights, and the refit
    (reusing the label-free stages) runs it too."""
    data = synthetic()
    over = {"spectral_weight": 0.5, "smooth_radius": 2, "pseudo_epochs": 3,
            "pseudo_confidence": 0.5}
    model, history, events = run_fit(data, over)
    st = history["self_training"]
    assert st["pseudo_pixels"] > 0 and sum(st["per_class"]) == st["pseudo_pixels"]
    assert len(st["classifier"]["epochs"]) == 3 and st["epochs"] == 3
    assert st["pseudo_pixels"] <= int(data.train_mask.sum()) + data.n_classes
    assert "self-training" in {e.stage for e in events}
    again, _, _ = run_fit(data, over)
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    plain, _, _ = run_fit(data, {k: v for k, v in over.items() if k != "pseudo_epochs"})
    assert not torch.equal(plain.classifier.head[-1].weight, model.classifier.head[-1].weight)
    spec = get_spec("diffspectralnet")
    config = spec.make_config("tiny", {**QUICK, **over})
    _, refit_history = spec.refit(model, data, config, history, seed=0,
                                  device=torch.device("cpu"), progress=lambda e: None)
    assert refit_history["self_training"]["pseudo_pixels"] > 0


def test_weight_averaging_keeps_the_mean_of_the_late_epochs_weights(monkeypatch):
    from torch.optim.swa_utils import AveragedModel

    snapshots: list[dict[str, torch.Tensor]] = []
    real_update = AveragedModel.update_parameters

    def spy(self, clf):
        snapshots.append({k: v.detach().clone() for k, v in clf.named_parameters()})
        real_update(self, clf)

    monkeypatch.setattr(AveragedModel, "update_parameters", spy)
    model, history, _ = run_fit(synthetic(), {"clf_epochs": 4, "clf_average_from": 2})
    assert len(snapshots) == 3  # after epochs 2, 3 and 4
    moved = 0
    for name, p in model.classifier.named_parameters():
        mean = torch.stack([s[name] for s in snapshots]).mean(0)
        assert torch.allclose(p, mean, atol=1e-6), name
        moved += not torch.allclose(p, snapshots[-1][name])
    assert moved > 0  # not simply the last epoch's weights
    clf = history["classifier"]
    assert clf["weight_average"]["epochs"] == 3 and "val_acc" in clf["weight_average"]
    assert "mean of the weights after epochs 2-4" in clf["early_stopping"]
    bn = model.classifier.head[1]  # statistics recomputed for the averaged weights
    assert bn.momentum == 0.1 and torch.isfinite(bn.running_var).all()
    with pytest.raises(ValueError, match="patience"):
        get_spec("diffspectralnet").make_config("tiny", {"clf_average_from": 2, "patience": 3})


def test_refresh_bn_sets_the_mean_of_one_pass_over_the_training_windows():
    from hsimap.models.diffspectralnet.classifier import WindowClassifier
    from hsimap.models.diffspectralnet.fit_classifier import PatchSampler, refresh_bn

    config = get_spec("diffspectralnet").make_config("tiny", {})
    clf = WindowClassifier(config, n_feat=3, n_classes=2)
    sampler = PatchSampler(torch.randn(3, 30, 30), clf.k + 2)
    rows, cols = torch.arange(3, 23), torch.arange(2, 22)
    clf.tokenizer[1].running_mean.fill_(7.0)  # stale statistics
    refresh_bn(clf, sampler, rows, cols, None, batch=5)  # 4 equal batches: the plain mean
    with torch.no_grad():
        conv = clf.tokenizer[0](sampler(rows, cols))  # (n, dim, k, k)
    bn = clf.tokenizer[1]
    assert torch.allclose(bn.running_mean, conv.mean((0, 2, 3)), atol=1e-5)
    assert bn.momentum == 0.1 and clf.training


def _same_fit(a: tuple, b: tuple) -> None:
    """Two ``(model, history)`` pairs: the same weights, the same history but for seconds."""
    sa, sb = a[0].state_dict(), b[0].state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)

    def timeless(h: object) -> object:
        if isinstance(h, dict):
            return {k: timeless(v) for k, v in h.items()
                    if "seconds" not in k and k != "timings"}
        if isinstance(h, list):
            return [timeless(v) for v in h]
        return h

    assert timeless(a[1]) == timeless(b[1])


@pytest.mark.parametrize("extra", [
    {"spectral_weight": 0.5},  # the member's two fits overlap the denoiser and classifiers
    {"feature_dropout": 0.3, "clf_ensemble": 2, "pseudo_epochs": 1},  # every dropout draw
])
def test_fit_and_refit_overlapped_gives_fit_then_refit_bit_for_bit(extra):
    """The two fits of ``train`` (validated, then on every labelled pixel) run in threads on
    2 cores (docs/benchmarks.md: the quick start's training from 3 min 12 s to 2 min 2 s),
    with the same weights and histories as one after the other, the dropout masks included;
    progress reaches each callback one call at a time, the refit's under its own."""
    import threading

    spec = get_spec("diffspectralnet")
    assert spec.fit_and_refit is not None
    data = synthetic()
    everything = TrainData(data.cube, data.valid, data.labels, data.train_mask | data.val_mask,
                           np.zeros_like(data.val_mask), data.n_classes)
    config = spec.make_config("tiny", {**QUICK, "clf_epochs": 2, **extra})
    cpu = torch.device("cpu")
    before = torch.get_rng_state()
    fitted, refitted = spec.fit_and_refit(data, everything, config, seed=3, device=cpu,
                                          progress=lambda e: None,
                                          refit_progress=lambda e: None, overlap=False)
    active, most = [0], [0]
    lock = threading.Lock()
    stages: dict[str, set[str]] = {"fit": set(), "refit": set()}

    def watch(which: str):
        def call(e: ProgressEvent) -> None:
            with lock:
                active[0] += 1
                most[0] = max(most[0], active[0])
            stages[which].add(e.stage)
            with lock:
                active[0] -= 1
        return call

    overlapped = spec.fit_and_refit(data, everything, config, seed=3, device=cpu,
                                    progress=watch("fit"), refit_progress=watch("refit"),
                                    overlap=True)
    assert torch.equal(torch.get_rng_state(), before)  # the global generator is left alone
    _same_fit(fitted, overlapped[0])
    _same_fit(refitted, overlapped[1])
    assert most[0] == 1
    assert "denoiser" in stages["fit"] and "denoiser" not in stages["refit"]
    assert "classifier" in stages["refit"]
    if "spectral_weight" in extra:
        assert "cross-validation" in stages["fit"] and "cross-validation" not in stages["refit"]
    assert overlapped[1][1]["denoiser"] == {"reused": True}
    assert overlapped[1][0].config == config


def test_fit_and_refit_overlaps_only_a_fixed_schedule_on_the_cpu(monkeypatch):
    """Overlap needs the CPU, a fixed schedule and cores for two fits at the fitting threads;
    train's and compare's memory checks count two feature maps where two fits may run."""
    import importlib

    from hsimap.errors import ConfigError

    fit_module = importlib.import_module("hsimap.models.diffspectralnet.fit")
    model_module = importlib.import_module("hsimap.models.diffspectralnet.model")
    spec = get_spec("diffspectralnet")
    fixed = spec.make_config("tiny", QUICK)
    stopping = spec.make_config("tiny", {**QUICK, "patience": 2})
    cpu = torch.device("cpu")
    monkeypatch.setattr(model_module.os, "cpu_count", lambda: 2)
    monkeypatch.setenv("HSIMAP_TRAIN_THREADS", "1")
    assert fit_module.overlaps(fixed, cpu)
    assert not fit_module.overlaps(stopping, cpu)  # the refit's length comes last
    assert not fit_module.overlaps(fixed, torch.device("cuda"))
    one_map = 4.0 * spec.build(fixed, n_bands=10, n_classes=3).features.out_dims
    assert spec.build(fixed, n_bands=10, n_classes=3).fit_bytes_per_pixel() == 2 * one_map
    # compare fits two folds at once whatever the schedule
    assert spec.build(stopping, n_bands=10, n_classes=3).fit_bytes_per_pixel() == 2 * one_map
    monkeypatch.setenv("HSIMAP_TRAIN_THREADS", "2")  # two fits would share 2 cores 4 ways
    assert not fit_module.overlaps(fixed, cpu)
    assert spec.build(fixed, n_bands=10, n_classes=3).fit_bytes_per_pixel() == one_map
    data = synthetic()
    with pytest.raises(ConfigError, match="patience"):
        spec.fit_and_refit(data, data, stopping, seed=0, device=cpu, progress=lambda e: None,
                           refit_progress=lambda e: None, overlap=True)


def test_an_overlapped_fit_that_fails_stops_the_others_and_raises_its_error(monkeypatch):
    """A worker's error (here the SVM member's) is the one raised, and an interruption of
    the calling thread (Ctrl-C) stops the workers at their next progress event: no fit
    thread is left running either way."""
    import importlib
    import threading

    from hsimap.errors import TrainingError

    fit_module = importlib.import_module("hsimap.models.diffspectralnet.fit")
    spec = get_spec("diffspectralnet")
    data = synthetic()
    config = spec.make_config("tiny", {**QUICK, "clf_epochs": 30, "spectral_weight": 0.5})
    cpu = torch.device("cpu")

    def broken(*args, **kwargs):
        raise TrainingError("the member could not be fitted")

    with monkeypatch.context() as m:
        m.setattr(fit_module, "_fit_member", broken)
        with pytest.raises(TrainingError, match="member could not"):
            spec.fit_and_refit(data, data, config, seed=0, device=cpu,
                               progress=lambda e: None, refit_progress=lambda e: None,
                               overlap=True)
    assert not [t for t in threading.enumerate() if t.name.startswith("hsimap-fit")]

    refit_epochs: list[int] = []

    def interrupt(e: ProgressEvent) -> None:
        if e.stage == "classifier" and e.done == 2:
            raise KeyboardInterrupt

    def watch(e: ProgressEvent) -> None:
        if e.stage == "classifier":
            refit_epochs.append(e.done)

    with pytest.raises(KeyboardInterrupt):
        spec.fit_and_refit(data, data, config, seed=0, device=cpu, progress=interrupt,
                           refit_progress=watch, overlap=True)
    assert not [t for t in threading.enumerate() if t.name.startswith("hsimap-fit")]
    assert max(refit_epochs, default=0) < config.clf_epochs  # stopped, not run to the end


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_with_a_generator_draws_the_masks_of_torch_dropout(p):
    """The classifier's dropout modules draw from a generator of their own when one is set:
    from a copy of the global state, the masks (and so the gradients) of ``nn.Dropout`` /
    ``nn.Dropout1d``; without one they are those modules."""
    from torch import nn

    from hsimap.models.diffspectralnet.classifier import Dropout, Dropout1d

    x = torch.randn(16, 8, 5, requires_grad=True)
    for ours, theirs in ((Dropout(p), nn.Dropout(p)), (Dropout1d(p), nn.Dropout1d(p))):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(7)
            want = [theirs(x), theirs(x)]
            want[0].sum().backward()
            grad = x.grad.clone()
            x.grad = None
            torch.manual_seed(7)
            ours.generator = torch.Generator()
            ours.generator.set_state(torch.get_rng_state())
            torch.manual_seed(99)  # the global generator plays no part any more
            got = [ours(x), ours(x)]
            got[0].sum().backward()
            assert all(torch.equal(a, b) for a, b in zip(want, got, strict=True))
            assert torch.equal(x.grad, grad)
            x.grad = None
            ours.eval()
            assert torch.equal(ours(x), x)
            ours.generator = None
            ours.train()
            torch.manual_seed(7)
            assert torch.equal(ours(x), want[0])
