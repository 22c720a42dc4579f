"""``fit``: projection -> denoiser -> frozen features + reducers -> classifier."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from hsimap.errors import ConfigError, TrainingError
from hsimap.models.base import ProgressCallback, ProgressEvent, TrainData, config_to_dict
from hsimap.models.diffspectralnet.classifier import ClassifierEnsemble, set_dropout_generator
from hsimap.models.diffspectralnet.config import DiffSpectralNetConfig
from hsimap.models.diffspectralnet.fit_classifier import train_classifier
from hsimap.models.diffspectralnet.fit_denoiser import train_denoiser
from hsimap.models.diffspectralnet.model import (
    DiffSpectralNet,
    build,
    member_config,
    side_by_side,
    unet_radius,
)
from hsimap.models.smoothing import guide_scale
from hsimap.models.workers import Job, Workers

MAX_FIT_VALUES = 200_000_000  # cap on samples x channels gathered to fit the reducers
TILE_CORE = {"2d": 256, "3d": 64, "pixel": 256}  # core tile (no halo) for scene features

Window = tuple[slice, slice, slice, slice]  # padded rows/cols, core rows/cols within it


def _check(data: TrainData, config: DiffSpectralNetConfig) -> None:
    if not isinstance(config, DiffSpectralNetConfig):
        raise ConfigError(f"diffspectralnet needs a DiffSpectralNetConfig, got "
                          f"{type(config).__name__}")
    if data.cube.ndim != 3 or data.valid.shape != data.cube.shape[1:]:
        raise TrainingError(f"cube {data.cube.shape} and valid mask {data.valid.shape} "
                            "do not describe the same (C, H, W) scene")
    for name in ("labels", "train_mask", "val_mask"):
        if getattr(data, name).shape != data.valid.shape:
            raise TrainingError(f"{name} has shape {getattr(data, name).shape}, expected "
                                f"{data.valid.shape}")
    n_train = int(data.train_mask.sum())
    if n_train < 2:
        raise TrainingError(f"only {n_train} training pixel(s)",
                            fix="label more pixels or use a larger training fraction")
    y = data.labels[data.train_mask]
    if y.min() < 0 or y.max() >= data.n_classes:
        raise TrainingError(f"training labels must lie in 0..{data.n_classes - 1}, "
                            f"found {int(y.min())}..{int(y.max())}")
    if not data.valid.any():
        raise TrainingError("the training scene has no valid pixels",
                            fix="check the cube's nodata value")


def tile_windows(h: int, w: int, core: int, halo: int) -> Iterator[Window]:
    """Cover an ``h x w`` scene with ``core``-sized tiles read with a ``halo`` margin."""
    for y0 in range(0, h, core):
        for x0 in range(0, w, core):
            y1, x1 = min(h, y0 + core), min(w, x0 + core)
            py0, px0 = max(0, y0 - halo), max(0, x0 - halo)
            py1, px1 = min(h, y1 + halo), min(w, x1 + halo)
            yield (slice(py0, py1), slice(px0, px1),
                   slice(y0 - py0, y1 - py0), slice(x0 - px0, x1 - px0))


def _fit_pixels(data: TrainData, config: DiffSpectralNetConfig, n_max: int,
                rng: np.random.Generator) -> np.ndarray:
    """``(H, W)`` bool mask of the pixels whose raw features fit the reducers."""
    mask = data.train_mask if config.reducer_fit == "train" else data.valid
    idx = np.flatnonzero(mask)
    if len(idx) > n_max:
        idx = np.sort(rng.choice(idx, size=n_max, replace=False))
    out = np.zeros(mask.size, dtype=bool)
    out[idx] = True
    return out.reshape(mask.shape)


@torch.no_grad()
def fit_reducers(model: DiffSpectralNet, cube: torch.Tensor, fit_mask: np.ndarray,
                 device: torch.device, progress: ProgressCallback) -> None:
    """Gather raw (timestep, layer) features at ``fit_mask`` pixels, tile by tile, and fit."""
    fx = model.features
    _, h, w = cube.shape
    samples: list[list[torch.Tensor]] = [[] for _ in fx.keys]
    windows = list(tile_windows(h, w, TILE_CORE[model.config.unet], unet_radius(model.config)))
    for n, (pr, pc, cr, cc) in enumerate(windows):
        sel = torch.from_numpy(fit_mask[pr, pc][cr, cc])
        if not sel.any():
            continue
        x = cube[None, :, pr, pc].to(device)
        for k, m in fx.raw_maps(x, (pr.start, pc.start)):
            core = m[0, :, cr, cc].cpu()  # (ch, hc, wc)
            samples[k].append(core[:, sel].T)  # (n_sel, ch)
        progress(ProgressEvent("features", n + 1, 2 * len(windows)))
    for k, reducer in enumerate(fx.reducers):
        reducer.fit(torch.cat(samples[k]))  # type: ignore[operator]


@torch.no_grad()
def extract_features(model: DiffSpectralNet, cube: torch.Tensor, device: torch.device,
                     progress: ProgressCallback) -> torch.Tensor:
    """Reduced feature map ``(D, H, W)`` of the whole scene on ``device``, tile by tile."""
    fx = model.features
    _, h, w = cube.shape
    out = torch.zeros(fx.out_dims, h, w, device=device)
    windows = list(tile_windows(h, w, TILE_CORE[model.config.unet], unet_radius(model.config)))
    for n, (pr, pc, cr, cc) in enumerate(windows):
        f = fx(cube[None, :, pr, pc].to(device), (pr.start, pc.start))  # (1, D, hp, wp)
        rows = slice(pr.start + cr.start, pr.start + cr.stop)
        cols = slice(pc.start + cc.start, pc.start + cc.stop)
        out[:, rows, cols] = f[0, :, cr, cc]
        progress(ProgressEvent("features", len(windows) + n + 1, 2 * len(windows)))
    return out


def _fit_projection(model: DiffSpectralNet, cube: torch.Tensor, valid: np.ndarray,
                    rng: np.random.Generator) -> torch.Tensor:
    """Fit the spectral projection on valid pixels; return the projected scene ``(P,H,W)``."""
    model.features.projection.fit_on_valid(cube, valid, rng=rng)
    with torch.no_grad():
        return model.features.projection(cube[None])[0]


def _reuse_label_free_stages(model: DiffSpectralNet, init: DiffSpectralNet) -> None:
    """Copy the spectral projection and denoiser weights of ``init`` into ``model``."""
    if init.n_bands != model.n_bands:
        raise ConfigError(f"init model has {init.n_bands} bands, this scene {model.n_bands}")
    try:
        model.features.projection.load_state_dict(init.features.projection.state_dict())
        if model.features.unet is not None:
            if init.features.unet is None:
                raise ConfigError("init model has no denoiser to reuse")
            model.features.unet.load_state_dict(init.features.unet.state_dict())
    except RuntimeError as exc:  # shapes differ: another projection size or U-Net
        raise ConfigError(f"init model does not match this config ({exc})") from exc


def _train_classifiers(model: DiffSpectralNet, feats: torch.Tensor, data: TrainData,
                       config: DiffSpectralNetConfig, *, gen: torch.Generator,
                       progress: ProgressCallback, cube: torch.Tensor) -> dict[str, Any]:
    """Train the classifier, or each ensemble member in turn (one shared generator, so the
    members differ in initialisation and sample order). The history is the first member's
    with every member's under ``"members"``."""
    clf = model.classifier
    spectra = cube.to(feats.device) if config.spectrum_path else None
    if not isinstance(clf, ClassifierEnsemble):
        return train_classifier(clf, feats, data.labels, data.train_mask, data.val_mask,
                                config, gen=gen, progress=progress, cube=spectra)
    runs = []
    for i, member in enumerate(clf.each(), 1):  # built one after another: own initialisation

        def tagged(e: ProgressEvent, i: int = i) -> None:
            progress(dataclasses.replace(e, metrics={**e.metrics, "member": i}))

        runs.append(train_classifier(member, feats, data.labels, data.train_mask,
                                     data.val_mask, config, gen=gen, progress=tagged,
                                     cube=spectra))
    clf.eval()
    return {**runs[0], "members": runs,
            "seconds": round(sum(r["seconds"] for r in runs), 3)}


def _fit_member(config: Any, data: TrainData, *, seed: int, device: torch.device,
                progress: ProgressCallback,
                chosen: Mapping[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """Fit the per-pixel SVM member (``spectral_weight > 0``) on the training pixels: hsimap's
    ``svm`` kind, C and gamma by its spatial CV, or the ``chosen`` ones of an earlier fit
    (the refit: nothing left to cross-validate on). Needs no other stage of the model."""
    from hsimap.models import svm

    member, history = svm.fit(data, config if chosen is None else svm.chosen_grid(config, chosen),
                              seed=seed, device=device, progress=progress)
    member.config = config  # as built from the checkpoint: the grid asked for, not the one used
    return member, history


def _fit_smoothing(model: DiffSpectralNet, cube: torch.Tensor, data: TrainData,
                   seed: int) -> dict[str, Any]:
    """Fit the probability smoothing's spectral scale (``smooth_radius > 0``) on the scene's
    valid pixels (label-free) and store it in the model. Its pixel sample comes from a
    generator of its own (``seed``), so the scale does not depend on the stages before it."""
    scale = guide_scale(model.features.projection, cube, data.valid,
                        radius=model.config.smooth_radius, rng=np.random.default_rng(seed))
    model.smooth_range_sq.fill_(scale)
    return {"radius": model.config.smooth_radius, "range_sq": scale,
            "range": model.config.smooth_range}


PSEUDO_TILE = 128  # core tile of the self-training map of the training scene


@torch.no_grad()
def scene_map(model: DiffSpectralNet, cube: torch.Tensor,
              device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The fitted model's class index and probability maps ``(H, W)`` of the whole training
    scene, tile by tile with the model's halo (as prediction reads it)."""
    _, h, w = cube.shape
    labels = np.zeros((h, w), dtype=np.int64)
    confidence = np.zeros((h, w), dtype=np.float32)
    for pr, pc, cr, cc in tile_windows(h, w, PSEUDO_TILE, model.halo()):
        logp = model.forward_window(cube[None, :, pr, pc].to(device),
                                    origin=(pr.start, pc.start), window=(cr, cc))[0]
        best, idx = logp.float().max(0)
        rows = slice(pr.start + cr.start, pr.start + cr.stop)
        cols = slice(pc.start + cc.start, pc.start + cc.stop)
        labels[rows, cols] = idx.cpu().numpy()
        confidence[rows, cols] = best.exp().cpu().numpy()
    return labels, confidence


def pseudo_labels(predicted: np.ndarray, confidence: np.ndarray, data: TrainData,
                  config: DiffSpectralNetConfig) -> np.ndarray:
    """``(H, W)`` bool mask of the pseudo-labelled pixels: valid, neither training nor
    validation, confidence >= ``pseudo_confidence``; per predicted class at most
    ``pseudo_ratio`` x its training pixels, the most confident first (ties: row-major)."""
    free = data.valid & ~data.train_mask & ~data.val_mask & \
        (confidence >= config.pseudo_confidence)
    counts = np.bincount(data.labels[data.train_mask], minlength=data.n_classes)
    out = np.zeros(free.size, dtype=bool)
    flat_pred, flat_conf = predicted.reshape(-1), confidence.reshape(-1)
    for k in range(data.n_classes):
        idx = np.flatnonzero(free.reshape(-1) & (flat_pred == k))
        keep = int(np.ceil(config.pseudo_ratio * counts[k]))
        if len(idx) > keep:
            idx = idx[np.argsort(-flat_conf[idx], kind="stable")[:keep]]
        out[idx] = True
    return out.reshape(free.shape)


def _self_train(model: DiffSpectralNet, feats: torch.Tensor, cube: torch.Tensor,
                data: TrainData, config: DiffSpectralNetConfig, *, gen: torch.Generator,
                device: torch.device, progress: ProgressCallback) -> dict[str, Any]:
    """``pseudo_epochs`` more classifier epochs on the training pixels plus the pseudo-labelled
    ones of the fitted model's own map (see ``DiffSpectralNetConfig``)."""
    start = time.perf_counter()
    predicted, confidence = scene_map(model, cube, device)
    chosen = pseudo_labels(predicted, confidence, data, config)
    labels = np.where(chosen, predicted, data.labels)
    extended = dataclasses.replace(data, labels=labels, train_mask=data.train_mask | chosen)
    tuned = dataclasses.replace(config, clf_epochs=config.pseudo_epochs, patience=0)

    def tagged(e: ProgressEvent) -> None:
        progress(dataclasses.replace(e, stage="self-training"))

    run = _train_classifiers(model, feats, extended, tuned, gen=gen, progress=tagged,
                             cube=cube)
    model.eval()
    return {"pseudo_pixels": int(chosen.sum()),
            "per_class": np.bincount(predicted[chosen], minlength=data.n_classes).tolist(),
            "confidence": float(config.pseudo_confidence), "ratio": float(config.pseudo_ratio),
            "epochs": config.pseudo_epochs, "classifier": run,
            "seconds": round(time.perf_counter() - start, 3)}


@dataclasses.dataclass
class _Run:
    """One fit after its label-free stages and feature maps: what the later stages need."""

    model: DiffSpectralNet
    data: TrainData
    config: DiffSpectralNetConfig
    seed: int
    device: torch.device
    cube: torch.Tensor
    feats: torch.Tensor
    gen: torch.Generator
    den: dict[str, Any]
    start: float
    seconds: dict[str, float]


# torch's global generator initialises the weights; fits in threads take turns with it
GLOBAL_RNG = threading.Lock()


def _prepare(data: TrainData, cfg: DiffSpectralNetConfig, *, seed: int, device: torch.device,
             progress: ProgressCallback, init: DiffSpectralNet | None) -> _Run:
    """Build the model, fit (or reuse) its projection and denoiser, fit the reducers and
    extract the scene's feature map.

    These stages draw from torch's global generator (seeded here with ``seed``: it
    initialises the weights). They run holding :data:`GLOBAL_RNG`, inside ``fork_rng``, so
    fits in other threads neither see nor move that state. On the CPU the classifier's
    dropout then draws from a copy of the state it would have drawn from (the same masks),
    so the later stages need no global state and run in any thread.
    """
    with GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        return _label_free(data, cfg, seed=seed, device=device, progress=progress, init=init)


def _label_free(data: TrainData, cfg: DiffSpectralNetConfig, *, seed: int,
                device: torch.device, progress: ProgressCallback,
                init: DiffSpectralNet | None) -> _Run:
    """:func:`_prepare`'s stages (see there)."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build(cfg, n_bands=data.n_bands, n_classes=data.n_classes)
    cube = torch.from_numpy(np.ascontiguousarray(data.cube, dtype=np.float32))
    t0 = time.perf_counter()
    if init is not None:
        _reuse_label_free_stages(model, init)
        den: dict[str, Any] = {"reused": True}
        model.to(device)
    else:
        xp = _fit_projection(model, cube, data.valid, rng)
        model.to(device)
        den = {"skipped": "features = projection"} if model.features.unet is None else \
            train_denoiser(model.features.unet, xp, torch.from_numpy(data.valid), cfg,
                           rng=rng, gen=gen, device=device, progress=progress)
    model.eval()
    t1 = time.perf_counter()
    n_max = max(2000, min(20000, MAX_FIT_VALUES // max(sum(model.features.map_channels), 1)))
    fit_reducers(model, cube, _fit_pixels(data, cfg, n_max, rng), device, progress)
    feats = extract_features(model, cube, device, progress)
    if device.type == "cpu":
        dropout = torch.Generator()
        dropout.set_state(torch.get_rng_state())
        set_dropout_generator(model, dropout)
    return _Run(model, data, cfg, seed, device, cube, feats, gen, den, start,
                {"projection_and_denoiser_s": round(t1 - t0, 3),
                 "features_s": round(time.perf_counter() - t1, 3)})


def _classify(run: _Run, progress: ProgressCallback) -> dict[str, Any]:
    """Train the run's classifier(s); the history, with the stage's seconds noted."""
    t = time.perf_counter()
    clf = _train_classifiers(run.model, run.feats, run.data, run.config, gen=run.gen,
                             progress=progress, cube=run.cube)
    run.seconds["classifier_s"] = round(time.perf_counter() - t, 3)
    return clf


def _finish(run: _Run, clf: dict[str, Any], spectral: dict[str, Any] | None,
            progress: ProgressCallback) -> tuple[DiffSpectralNet, dict[str, Any]]:
    """The stages after the classifier and the member (smoothing, self-training), then the
    model in eval mode and the history."""
    t = time.perf_counter()
    model, cfg = run.model, run.config
    smoothing = None if cfg.smooth_radius == 0 else \
        _fit_smoothing(model, run.cube, run.data, run.seed)
    pseudo = None if cfg.pseudo_epochs == 0 else \
        _self_train(model, run.feats, run.cube, run.data, cfg, gen=run.gen, device=run.device,
                    progress=progress)
    set_dropout_generator(model, None)
    model.eval()
    den = run.den
    history = {
        "kind": model.kind, "config": config_to_dict(cfg), "seed": run.seed,
        "halo": model.halo(), "stride": model.stride(), "feature_dims": model.features.out_dims,
        "denoiser": den, "classifier": clf,
        **({"spectral": spectral} if spectral is not None else {}),
        **({"smoothing": smoothing} if smoothing is not None else {}),
        **({"self_training": pseudo} if pseudo is not None else {}),
        **({"denoiser_eval": den["eval"]} if "eval" in den else {}),
        "timings": {**run.seconds,
                    "spectral_s": round(run.seconds.get("spectral_s", 0.0)
                                        + time.perf_counter() - t, 3),
                    "total_s": round(time.perf_counter() - run.start, 3)},
    }
    return model, history


def _install_member(run: _Run, job: Job | None) -> dict[str, Any] | None:
    """Put the member ``job`` fitted into the run's model (its seconds into the timings);
    its history as the model's log keeps it. None without a member."""
    if job is None:
        return None
    member, history = job.result()
    run.model.set_member(member)
    run.seconds["spectral_s"] = job.seconds
    return {**history["svm"], "weight": run.config.spectral_weight}


def fit(data: TrainData, config: DiffSpectralNetConfig, *, seed: int, device: torch.device,
        progress: ProgressCallback, init: DiffSpectralNet | None = None,
        spectral_chosen: Mapping[str, Any] | None = None,
        ) -> tuple[DiffSpectralNet, dict[str, Any]]:
    """Train a DiffSpectralNet on one scene (see the module docstring for the stages).

    Same seed, data and config give identical weights on CPU. The global torch RNG state is
    restored afterwards. Returns the model in eval mode on ``device`` and a JSON-able history.
    Where two fitting threads fit the cores (:func:`side_by_side`), the SVM member fits in a
    worker thread beside the other stages (the same result; ``progress`` is then called from
    both threads, one call at a time).

    ``init``: a model fitted on the same scene with the same projection/denoiser settings
    whose spectral projection and denoiser are reused (both are label-free), skipping those
    stages; used by benchmarks that compare label splits on one scene.
    ``spectral_chosen``: the SVM member's C and gamma factor (an earlier fit's choice), instead
    of its cross-validation.
    """
    _check(data, config)
    member = member_config(config)
    with Workers(1 if member is not None and side_by_side(device) else 0) as workers:
        progress = workers.progress(progress)
        fitted = None if member is None else workers.run(
            _fit_member, member, data, seed=seed, device=device, progress=progress,
            chosen=spectral_chosen)
        run = _prepare(data, config, seed=seed, device=device, progress=progress, init=init)
        clf = _classify(run, progress)
        return _finish(run, clf, _install_member(run, fitted), progress)


def refit(model: Any, data: TrainData, config: DiffSpectralNetConfig, history: Mapping[str, Any],
          *, seed: int, device: torch.device,
          progress: ProgressCallback) -> tuple[DiffSpectralNet, dict[str, Any]]:
    """Refit the classifier on every labelled pixel (``data.train_mask``), reusing ``model``'s
    label-free stages (spectral projection and denoiser: they never saw a label).

    The schedule is the one the validated fit used: the preset's epochs with a fixed schedule
    (``patience = 0``), else the epoch early stopping kept, now as a fixed schedule (there is
    nothing left to validate on), recorded in the refit's history.
    """
    fixed = _refit_config(config, history)
    spectral = history.get("spectral")
    new, history = fit(data, fixed, seed=seed, device=device, progress=progress, init=model,
                       spectral_chosen=None if spectral is None else spectral["cv"]["chosen"])
    new.config = config  # the checkpoint keeps the config asked for; the log, the schedule used
    return new, history


def overlaps(config: DiffSpectralNetConfig, device: torch.device) -> bool:
    """Whether :func:`fit_and_refit` runs the two fits' classifiers at the same time:
    :func:`side_by_side`, with a fixed schedule (with early stopping the refit's length is
    known only at the end of the validated fit)."""
    return config.patience == 0 and side_by_side(device)


def _refit_config(config: DiffSpectralNetConfig, history: Mapping[str, Any] | None
                  ) -> DiffSpectralNetConfig:
    """The refit's fixed schedule: the preset's epochs (``patience = 0``), else the epoch the
    validated fit's early stopping kept (``history``)."""
    if config.patience == 0:
        return config
    assert history is not None
    kept = int(history.get("classifier", {}).get("best_epoch") or config.clf_epochs)
    return dataclasses.replace(config, clf_epochs=max(1, kept), patience=0)


Fitted = tuple[DiffSpectralNet, dict[str, Any]]


def fit_and_refit(data: TrainData, everything: TrainData, config: DiffSpectralNetConfig, *,
                  seed: int, device: torch.device, progress: ProgressCallback,
                  refit_progress: ProgressCallback, overlap: bool | None = None,
                  ) -> tuple[Fitted, Fitted]:
    """:func:`fit` on ``data``, then :func:`refit` on ``everything``: the same two models
    and histories, bit for bit, in less time where they can overlap (:func:`overlaps`;
    ``overlap`` forces it either way).

    Overlapped, the SVM members (the validated one, then the refit's with its choice of C
    and gamma) fit in a worker thread from the start, beside the denoiser; the refit's
    classifier trains in another worker while the validated one trains on the calling
    thread. Each classifier draws its batches, turns and dropout masks from generators of
    its own, so no fit sees another's random draws. ``progress`` and ``refit_progress`` are
    called from these threads, one call at a time. When one thread fails (or the caller is
    interrupted), the others stop at their next progress event and its error is raised.
    """
    if overlap is None:
        overlap = overlaps(config, device)
    if not overlap:
        model, history = fit(data, config, seed=seed, device=device, progress=progress)
        return (model, history), refit(model, everything, config, history, seed=seed,
                                       device=device, progress=refit_progress)
    if config.patience != 0 or device.type != "cpu":
        raise ConfigError("fit_and_refit overlaps fits only on the CPU with a fixed "
                          "schedule (patience = 0)")
    _check(data, config)
    _check(everything, config)
    with Workers(2) as workers:
        progress, refit_progress = workers.progress(progress), workers.progress(refit_progress)
        member = member_config(config)
        fitted = None if member is None else workers.run(
            _fit_member, member, data, seed=seed, device=device, progress=progress,
            chosen=None)
        run = _prepare(data, config, seed=seed, device=device, progress=progress, init=None)
        again = _prepare(everything, _refit_config(config, None), seed=seed, device=device,
                         progress=refit_progress, init=run.model)
        later = workers.run(_classify, again, refit_progress)
        refitted = None if fitted is None else workers.run(
            _refit_member, fitted, member, everything, seed=seed, device=device,
            progress=refit_progress)
        clf = _classify(run, progress)
        model, history = _finish(run, clf, _install_member(run, fitted), progress)
        new, history_again = _finish(again, later.result(), _install_member(again, refitted),
                                     refit_progress)
    new.config = config  # as refit: the checkpoint keeps the config asked for
    return (model, history), (new, history_again)


def _refit_member(first: Job, member: Any, everything: TrainData, *, seed: int,
                  device: torch.device,
                  progress: ProgressCallback) -> tuple[Any, dict[str, Any]]:
    """The refit's SVM member, with the C and gamma the validated member's CV chose."""
    chosen = first.result()[1]["svm"]["cv"]["chosen"]
    return _fit_member(member, everything, seed=seed, device=device, progress=progress,
                       chosen=chosen)
