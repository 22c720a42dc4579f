"""``svm``: an RBF support vector machine on the standardised spectrum, stored as tensors.

Fitting uses scikit-learn's ``SVC`` (libsvm). ``C`` and ``gamma`` come from a small grid
scored by *grouped spatial* cross-validation on the training pixels only: the folds are
square blocks of the scene grid (``cv_block`` px), so a fold is never scored on pixels that
sit right beside its training pixels. ``gamma`` is searched as multiples of scikit-learn's
``"scale"`` value, ``1 / (n_bands * var(X))``.

The checkpoint stores what the fitted machine is made of (support vectors, dual
coefficients, intercepts, gamma, the Platt sigmoids ``probA``/``probB`` and the class
order), never a pickle, and inference is re-implemented in torch: RBF kernel, the one-vs-one
decision values, the pairwise Platt probabilities and libsvm's pairwise coupling
(:func:`hsimap.models.libsvm.multiclass_probability`, method 2 of Wu, Lin & Weng 2004,
JMLR 5:975-1005), so the probabilities are scikit-learn's ``predict_proba`` for the stored
sigmoids. With ``calibration = "shared"`` (every preset's) the stored sigmoids are one
common slope and no offsets instead of libsvm's per-pair fits (see :class:`SVMConfig`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from hsimap.errors import ConfigError
from hsimap.models.base import (
    ModelSpec,
    ProgressCallback,
    ProgressEvent,
    TrainData,
    Window,
    register,
    window_context,
)
from hsimap.models.fitted import (
    MIN_PROB,
    PIXEL_CHUNK,
    FittedTensorsModel,
    block_groups,
    buffer,
    class_counts,
    stratified_subsample,
    training_pixels,
)
from hsimap.models.libsvm import (
    PAIRWISE_MIN_PROB,
    fit_svc,
    multiclass_probability,
    shared_sigmoid,
    svc_tensors,
)
from hsimap.models.smoothing import ProbabilitySmoother


def _positive_numbers(name: str, values: tuple[Any, ...]) -> None:
    if not values:
        raise ConfigError(f"{name} must list at least one value")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or v <= 0:
            raise ConfigError(f"{name} must hold positive numbers, got {v!r}")


@dataclass(frozen=True)
class SVMConfig:
    """Settings of the RBF-SVM fit.

    ``c_values`` x ``gamma_factors`` is the grid (``gamma = factor / (n_bands * var(X))``),
    scored by ``cv_folds``-fold grouped cross-validation with ``cv_block`` px square groups
    on at most ``cv_max_pixels`` training pixels; the final machine is fitted on at most
    ``max_train_pixels`` (both stratified subsamples: libsvm's cost grows about with the
    square of the pixel count).

    ``class_weights``: libsvm's ``class_weight="balanced"`` (off by default; the CV scores
    are libsvm's one-vs-one vote's). It moves the decision values, and so the vote and,
    through them, the map.

    ``calibration``: how a class pair's decision value becomes a pairwise probability.
    ``"shared"`` (every preset's since 2026-12-06; the dataclass default stays
    ``"pairwise"``, so a model file written before keeps its meaning): one Platt slope for
    every pair, the median of libsvm's per-pair slopes, and no offsets, so a pair's
    probability follows the sign of its decision value and the map mostly follows libsvm's
    vote. ``"pairwise"``: libsvm's own sigmoid per pair (slope and offset fitted on an
    internal 5-fold cross-validation of the training pixels; the probabilities are then
    scikit-learn's ``predict_proba``). Those per-pair fits break down with few training
    pixels per class (some slopes come out flat or inverted): on development folds
    ``"shared"`` scores +11.5 / +6.1 points of OA at 5 / 10 px per class on Indian Pines,
    +6.7 / +3.5 on Potsdam, +0.3 to +0.8 at 30 px per class, at Indian Pines random 10 % and
    on its disjoint blocks, and within noise (-0.5 to -0.1) on Salinas-A and Potsdam
    disjoint (docs/benchmarks.md, fifth session).

    ``smooth_radius`` (px; 0: off) and ``smooth_range``: an edge-preserving (bilateral)
    smoothing of the class probabilities before the argmax, the one DiffSpectralNet's ``fast``
    ends with (:mod:`hsimap.models.smoothing`): each pixel's probabilities become a mean over
    the valid pixels within the radius, weighted by distance and by spectral likeness (a
    stored 32-component PCA of the bands; tolerance ``smooth_range`` x the scene's median
    neighbour distance, fitted label-free). The model then reads ``smooth_radius`` px of
    context (its halo). The ``smooth`` preset turns it on.
    """

    c_values: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)
    gamma_factors: tuple[float, ...] = (0.0625, 0.25, 1.0, 4.0)
    cv_folds: int = 3
    cv_block: int = 16
    cv_max_pixels: int = 2500
    max_train_pixels: int = 5000
    class_weights: bool = False
    cache_mb: int = 500
    smooth_radius: int = 0
    smooth_range: float = 1.0
    calibration: Literal["pairwise", "shared"] = "pairwise"

    def __post_init__(self) -> None:
        _positive_numbers("c_values", self.c_values)
        _positive_numbers("gamma_factors", self.gamma_factors)
        for name in ("cv_folds", "cv_block", "cv_max_pixels", "max_train_pixels", "cache_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
        if self.cv_folds < 2:
            raise ConfigError(f"cv_folds must be at least 2, got {self.cv_folds}")
        if self.cv_block < 1 or self.cache_mb < 1:
            raise ConfigError("cv_block and cache_mb must be positive")
        if self.max_train_pixels < 10 or self.cv_max_pixels < 10:
            raise ConfigError(f"max_train_pixels and cv_max_pixels must be at least 10, got "
                              f"{self.max_train_pixels} and {self.cv_max_pixels}")
        if isinstance(self.smooth_radius, bool) or not isinstance(self.smooth_radius, int) \
                or self.smooth_radius < 0:
            raise ConfigError(f"smooth_radius must be a whole number >= 0, got "
                              f"{self.smooth_radius!r}")
        if isinstance(self.smooth_range, bool) or not isinstance(self.smooth_range, (int, float)) \
                or not math.isfinite(self.smooth_range) or self.smooth_range <= 0:
            raise ConfigError(f"smooth_range must be a positive number, got "
                              f"{self.smooth_range!r}")


class SVMModel(FittedTensorsModel[SVMConfig]):
    """One-vs-one RBF-SVM with Platt probabilities, applied per pixel in torch."""

    kind = "svm"
    stored = {
        "support_vectors": (torch.float32, 2),  # (S, C): exact, the training spectra are f32
        "n_support": (torch.int64, 1),  # (m,) support vectors per class, in class order
        "class_index": (torch.int64, 1),  # (m,) output class index of each SVM class
        "dual_coef": (torch.float64, 2),  # (m-1, S) libsvm's sv_coef
        "intercept": (torch.float64, 1),  # (P,) -rho of each pair (0,1), (0,2), ... (m-2,m-1)
        "prob_a": (torch.float64, 1),  # (P,) Platt sigmoid slopes
        "prob_b": (torch.float64, 1),  # (P,) and offsets
        "gamma": (torch.float64, 1),  # (1,) RBF kernel width
    }

    # Precision of the kernel sums (``decision_values``); the Platt sigmoid and the pairwise
    # coupling always run in float64. float64 reproduces libsvm's decision values to 1e-7 (the
    # ``svm`` kind's promise); float32 halves the cost (the matmuls and the exponentials of
    # ``pixels x support vectors``) but sums dual coefficients as large as C in single
    # precision, which moves the probabilities by up to about 5e-4 (measured on the sample;
    # argmax the same for more than 99.9 % of pixels): what DiffSpectralNet's member uses,
    # whose probabilities are averaged with the classifier's and smoothed anyway. (Keeping
    # only the coefficient sums in float64 cost most of the gain: 17 % instead of 50 %.)
    kernel_dtype: torch.dtype = torch.float64

    def __init__(self, config: SVMConfig, *, n_bands: int, n_classes: int) -> None:
        super().__init__(config, n_bands=n_bands, n_classes=n_classes)
        # the edge-preserving smoothing of the probabilities (``smooth_radius > 0``): its
        # guide and scale come from fitting or loading
        self.smoother = ProbabilitySmoother(n_bands, radius=config.smooth_radius,
                                            range_factor=float(config.smooth_range)) \
            if config.smooth_radius > 0 else None

    def halo(self) -> int:
        """Per pixel, plus the smoothing's radius when it is on."""
        return int(self.config.smooth_radius)

    def fit_bytes_per_pixel(self) -> float:
        """The smoothing's fit projects the whole scene once (float32 guide values)."""
        if self.smoother is None:
            return 0.0
        return 4.0 * self.smoother.projection.n_out

    def forward_tile(self, x: torch.Tensor, *, origin: tuple[int, int]) -> torch.Tensor:
        """``(1, C, h, w)`` -> ``(1, K, h, w)`` log-probabilities, smoothed over the tile when
        ``smooth_radius > 0`` (pixels within the halo of the tile's edge are the engine's to
        crop)."""
        return self.forward_window(x, origin=origin, window=(slice(None), slice(None)))

    def forward_window(self, x: torch.Tensor, *, origin: tuple[int, int],
                       window: Window) -> torch.Tensor:
        """Log-probabilities of ``window`` of the tile ``x`` (see ``HsiModel``); with the
        smoothing, the probabilities only within its radius of the window."""
        radius = 0 if self.smoother is None else self.smoother.radius
        (a0, a1, b0, b1), inner = window_context(window, radius, *x.shape[2:])
        xn = x[:, :, a0:a1, b0:b1]
        if self.smoother is None:  # per pixel: the window alone
            return super().forward_tile(xn, origin=(origin[0] + a0, origin[1] + b0))
        with torch.autocast(x.device.type, enabled=False):
            p = self.smoother(self.tile_probabilities(xn).float(), xn.float(), out=inner)
        return p.clamp_min_(MIN_PROB).log_()

    def set_kernel_dtype(self, dtype: torch.dtype) -> None:
        """Compute the kernel in ``dtype`` (``torch.float32`` or ``torch.float64``) from now
        on: not stored in the model file, so the owner sets it after building or loading."""
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"kernel dtype must be float32 or float64, got {dtype}")
        self.kernel_dtype = dtype
        if self.fitted:
            self.prepare()

    def check_tensors(self, tensors: Mapping[str, torch.Tensor]) -> str | None:
        """Shapes and values that inference relies on."""
        sv, n_sup, cls = tensors["support_vectors"], tensors["n_support"], tensors["class_index"]
        s, c = sv.shape
        m = len(n_sup)
        pairs = m * (m - 1) // 2
        if c != self.n_bands or s < 1:
            return f"support_vectors is {tuple(sv.shape)}, expected (>=1, {self.n_bands})"
        if not 2 <= m <= self.n_classes or cls.shape != (m,):
            return (f"n_support and class_index must list the same 2..{self.n_classes} "
                    f"classes, got {m} and {len(cls)}")
        if bool((n_sup < 0).any()) or int(n_sup.sum()) != s:
            return f"n_support {n_sup.tolist()} does not add up to the {s} support vectors"
        if bool((cls < 0).any()) or bool((cls >= self.n_classes).any()) or \
                bool((cls[1:] <= cls[:-1]).any()):
            return f"class_index {cls.tolist()} is not increasing within 0..{self.n_classes - 1}"
        if tensors["dual_coef"].shape != (m - 1, s):
            return f"dual_coef is {tuple(tensors['dual_coef'].shape)}, expected {(m - 1, s)}"
        for name in ("intercept", "prob_a", "prob_b"):
            if tensors[name].shape != (pairs,):
                return f"{name} has {tuple(tensors[name].shape)} values, expected ({pairs},)"
        if tensors["gamma"].shape != (1,) or float(tensors["gamma"][0]) <= 0:
            return "gamma must be one positive number"
        return None

    def prepare(self) -> None:
        """Kernel norms and the ``(S, P)`` matrix that turns kernel values into decisions."""
        sv = buffer(self, "support_vectors").double()
        n_sup = buffer(self, "n_support").tolist()
        coef = buffer(self, "dual_coef")
        m = len(n_sup)
        start = np.concatenate([[0], np.cumsum(n_sup)]).astype(int)
        pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
        weights = torch.zeros(sv.shape[0], len(pairs), dtype=torch.float64, device=sv.device)
        for p, (i, j) in enumerate(pairs):  # libsvm's predict_values: coef[j-1] for i, coef[i]
            weights[start[i]:start[i + 1], p] = coef[j - 1, start[i]:start[i + 1]]
            weights[start[j]:start[j + 1], p] = coef[i, start[j]:start[j + 1]]
        kdt = self.kernel_dtype
        self.register_buffer("sv_k", sv.to(kdt), persistent=False)
        self.register_buffer("sv_sq_k", (sv * sv).sum(1).to(kdt), persistent=False)
        self.register_buffer("pair_weights_k", weights.to(kdt), persistent=False)
        upper = torch.zeros(len(pairs), m * m, dtype=torch.float64, device=sv.device)
        lower = torch.zeros_like(upper)
        for p, (i, j) in enumerate(pairs):
            upper[p, i * m + j] = 1.0
            lower[p, j * m + i] = 1.0
        to_output = torch.zeros(m, self.n_classes, dtype=torch.float64, device=sv.device)
        to_output[torch.arange(m), buffer(self, "class_index")] = 1.0
        self.register_buffer("upper", upper, persistent=False)  # (P, m*m)
        self.register_buffer("lower", lower, persistent=False)  # (P, m*m)
        self.register_buffer("to_output", to_output, persistent=False)  # (m, K)

    def decision_values(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` spectra -> ``(N, P)`` float64 one-vs-one decision values (libsvm's;
        the kernel sums in :attr:`kernel_dtype`)."""
        parts = []
        sv, sv_sq = buffer(self, "sv_k"), buffer(self, "sv_sq_k")
        minus_gamma = -buffer(self, "gamma").to(sv.dtype)  # (1,): no device sync
        for i in range(0, x.shape[0], PIXEL_CHUNK):
            xk = x[i:i + PIXEL_CHUNK].to(sv.dtype)
            # |x - sv|^2 = |sv|^2 - 2 x.sv + |x|^2, then exp(-gamma d2), in place: (n, S)
            d2 = torch.addmm(sv_sq[None], xk, sv.T, alpha=-2.0)
            kernel = d2.add_((xk * xk).sum(1, keepdim=True)).mul_(minus_gamma)
            kernel = kernel.clamp_max_(0.0).exp_()  # d2 >= 0 up to rounding
            parts.append(torch.addmm(buffer(self, "intercept")[None].to(sv.dtype), kernel,
                                     buffer(self, "pair_weights_k")).double())
        return torch.cat(parts)

    def forward_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` -> ``(N, K)`` float64 probabilities (libsvm ``predict_probability``)."""
        dec = self.decision_values(x)
        f = dec * buffer(self, "prob_a") + buffer(self, "prob_b")
        r = torch.sigmoid(-f).clamp_(PAIRWISE_MIN_PROB, 1 - PAIRWISE_MIN_PROB)  # (N, P)
        m = len(buffer(self, "n_support"))
        # r_ij and r_ji = 1 - r_ij into (N, m, m), then the m SVM classes into the K output
        # classes, by products with 0/1 matrices: exact, and no slow indexed writes
        pairwise = (r @ buffer(self, "upper") + (1 - r) @ buffer(self, "lower")).view(-1, m, m)
        # The coupling is many small steps on (n, m) tensors. At most 32768 elements each,
        # torch's grain size, keeps them on one thread: on a busy machine a two-thread
        # barrier per step cost 10-20x more than the arithmetic.
        step = max(1, 32768 // m)
        probs = [multiclass_probability(pairwise[i:i + step])
                 for i in range(0, x.shape[0], step)]
        return torch.cat(probs) @ buffer(self, "to_output")


def _spread(values: torch.Tensor) -> dict[str, float] | None:
    """Min / median / max of a tensor of per-pair values (the log's record), or None."""
    if not len(values):
        return None
    return {"min": float(values.min()), "median": float(values.median()),
            "max": float(values.max())}


def make_svc(c: float, gamma: float, config: SVMConfig, *, probability: bool,
             seed: int) -> Any:
    """The scikit-learn estimator with hsimap's settings."""
    from sklearn.svm import SVC

    return SVC(kernel="rbf", C=c, gamma=gamma, probability=probability,
               class_weight="balanced" if config.class_weights else None,
               cache_size=config.cache_mb, random_state=seed)


def build(config: SVMConfig, *, n_bands: int, n_classes: int) -> SVMModel:
    """An empty model (tensors set by ``fit`` or by loading a checkpoint)."""
    return SVMModel(config, n_bands=n_bands, n_classes=n_classes)


def fit(data: TrainData, config: SVMConfig, *, seed: int, device: torch.device,
        progress: ProgressCallback) -> tuple[SVMModel, dict[str, Any]]:
    """Grid-search C and gamma by grouped spatial CV, then fit with probabilities."""
    start = time.perf_counter()
    flat, x, y = training_pixels(data)
    n_train = len(y)
    used = stratified_subsample(y, config.max_train_pixels, seed=seed)
    flat, x, y = flat[used], x[used], y[used]
    variance = float(x.astype(np.float64).var())
    gamma_scale = 1.0 / (data.n_bands * variance) if variance > 0 else 1.0
    cv = grid_search(x, y, flat, data.cube.shape[2], config, gamma_scale=gamma_scale,
                     seed=seed, progress=progress)
    c, factor = cv["chosen"]["C"], cv["chosen"]["gamma_factor"]
    progress(ProgressEvent("svm", 0, 1))
    fit_start = time.perf_counter()
    svc = fit_svc(make_svc(c, factor * gamma_scale, config, probability=True, seed=seed), x, y)
    model = build(config, n_bands=data.n_bands, n_classes=data.n_classes)
    tensors = svc_tensors(svc)
    platt: dict[str, Any] = {"calibration": config.calibration,
                             "slopes": _spread(tensors["prob_a"]),
                             "offsets": _spread(tensors["prob_b"])}
    if config.calibration == "shared":
        tensors = shared_sigmoid(tensors)
        platt["shared_slope"] = float(tensors["prob_a"][0]) if len(tensors["prob_a"]) else None
    model.set_tensors(tensors)
    progress(ProgressEvent("svm", 1, 1, {"support_vectors": float(len(svc.support_))}))
    smoothing = None if model.smoother is None else model.smoother.fit(
        torch.from_numpy(np.ascontiguousarray(data.cube, dtype=np.float32)), data.valid,
        rng=np.random.default_rng(seed))
    history = {"svm": {
        "training_pixels": n_train, "pixels_used": len(y),
        "subsampled": len(y) < n_train,
        "subsample": f"stratified, at most {config.max_train_pixels} px (max_train_pixels)",
        "class_pixels_used": class_counts(y, data.n_classes),
        "gamma_scale": gamma_scale, "C": c, "gamma_factor": factor,
        "gamma": factor * gamma_scale, "cv": cv,
        "support_vectors": int(len(svc.support_)),
        "support_per_class": [int(v) for v in svc.n_support_],
        "platt": platt,
        "fit_seconds": time.perf_counter() - fit_start,
        "seconds": time.perf_counter() - start,
    }, **({"smoothing": smoothing} if smoothing is not None else {})}
    return model.to(device).eval(), history


def grid_search(x: np.ndarray, y: np.ndarray, flat: np.ndarray, width: int,
                config: SVMConfig, *, gamma_scale: float, seed: int,
                progress: ProgressCallback) -> dict[str, Any]:
    """Mean accuracy of every ``(C, gamma)`` over grouped spatial folds, and the best.

    Groups are ``cv_block`` x ``cv_block`` px squares of the scene grid (``flat``: flat
    pixel index of each sample, ``width``: scene width), folds ``GroupKFold``'s. The first
    best grid point wins (grid order: C, then gamma factor, both as configured). Without two
    groups or two classes there is nothing to score and scikit-learn's defaults are used.
    """
    from sklearn.model_selection import GroupKFold

    pos = stratified_subsample(y, config.cv_max_pixels, seed=seed + 1)
    xc, yc = x[pos], y[pos]
    groups = block_groups(flat[pos], width, config.cv_block)
    n_groups = len(np.unique(groups))
    folds = min(config.cv_folds, n_groups)
    info: dict[str, Any] = {
        "method": "GroupKFold", "folds": folds, "block_px": config.cv_block,
        "groups": n_groups, "pixels": len(yc), "scoring": "accuracy (overall, per fold)",
        "subsample": f"stratified, at most {config.cv_max_pixels} px (cv_max_pixels)",
    }
    if len(config.c_values) == 1 and len(config.gamma_factors) == 1:  # e.g. a refit
        info.update(skipped="one grid point: nothing to choose, no cross-validation",
                    grid=[], chosen={"C": float(config.c_values[0]),
                                     "gamma_factor": float(config.gamma_factors[0])})
        return info
    if folds < 2 or len(np.unique(yc)) < 2:
        info.update(skipped=f"{n_groups} spatial group(s), {len(np.unique(yc))} class(es): "
                            "no cross-validation; C=1 and gamma='scale' used",
                    grid=[], chosen={"C": 1.0, "gamma_factor": 1.0})
        return info
    splits = list(GroupKFold(n_splits=folds).split(xc, yc, groups))
    grid = [(float(c), float(f)) for c in config.c_values for f in config.gamma_factors]
    rows: list[dict[str, Any]] = []
    for n, (c, factor) in enumerate(grid, 1):
        scores: list[float | None] = []
        for tr, te in splits:
            if len(np.unique(yc[tr])) < 2:
                scores.append(None)  # a fold whose training part holds one class
                continue
            svc = fit_svc(make_svc(c, factor * gamma_scale, config, probability=False,
                                   seed=seed), xc[tr], yc[tr])
            scores.append(float(svc.score(xc[te], yc[te])))
        usable = [s for s in scores if s is not None]
        rows.append({"C": c, "gamma_factor": factor, "gamma": factor * gamma_scale,
                     "fold_scores": scores,
                     "mean_score": float(np.mean(usable)) if usable else None})
        best = max((r["mean_score"] for r in rows if r["mean_score"] is not None),
                   default=float("nan"))
        progress(ProgressEvent("cross-validation", n, len(grid), {"best_cv_acc": best}))
    scored = [r for r in rows if r["mean_score"] is not None]
    if not scored:
        info.update(skipped="no fold had two classes to train on; C=1 and gamma='scale' used",
                    grid=rows, chosen={"C": 1.0, "gamma_factor": 1.0})
        return info
    best_row = max(scored, key=lambda r: r["mean_score"])  # first of equals: grid order
    info.update(grid=rows, chosen={"C": best_row["C"], "gamma_factor": best_row["gamma_factor"],
                                   "mean_score": best_row["mean_score"]})
    return info


def chosen_grid(config: SVMConfig, chosen: Mapping[str, Any]) -> SVMConfig:
    """``config`` with the one-point grid of an earlier cross-validation's choice (``C`` and
    ``gamma_factor``): fitting it runs no CV."""
    return dataclasses.replace(config, c_values=(chosen["C"],),
                               gamma_factors=(chosen["gamma_factor"],))


def refit(model: Any, data: TrainData, config: SVMConfig, history: Mapping[str, Any], *,
          seed: int, device: torch.device,
          progress: ProgressCallback) -> tuple[SVMModel, dict[str, Any]]:
    """Fit again on every labelled pixel with the C and gamma factor the grid search chose."""
    fixed = chosen_grid(config, history["svm"]["cv"]["chosen"])
    new, refit_history = fit(data, fixed, seed=seed, device=device, progress=progress)
    new.config = config  # the checkpoint keeps the config asked for; the log, the C used
    return new, refit_history


# ``smooth``: chosen on development folds of the stored benchmark folds, as ``fast``'s
# smoothing was (docs/benchmarks.md, 2026-12-06 second session).
# every preset: one shared Platt slope (see SVMConfig.calibration; 2026-12-06, fifth session)
SHARED = {"calibration": "shared"}
SMOOTH_PRESET = {**SHARED, "smooth_radius": 6, "smooth_range": 2.0}

SPEC = register(ModelSpec(
    kind=SVMModel.kind,
    config_cls=SVMConfig,
    presets={
        "fast": SHARED,
        "thorough": {**SHARED, "c_values": (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0),
                     "gamma_factors": (1 / 64, 1 / 16, 0.25, 1.0, 4.0),
                     "cv_max_pixels": 6000, "max_train_pixels": 15000},
        # the default grid, then the probabilities smoothed edge-preservingly (SMOOTH_PRESET)
        "smooth": SMOOTH_PRESET,
    },
    default_preset="fast",
    build=build,
    fit=fit,
    refit=refit,
    description="RBF support vector machine on the spectrum (C, gamma by spatial CV)",
))
