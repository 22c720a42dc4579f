"""DiffSpectralNet configuration: one frozen dataclass and named presets (data, not code)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

UnetKind = Literal["3d", "2d", "pixel"]
ScheduleKind = Literal["linear", "cosine"]
LossKind = Literal["l1", "l2"]
ReducerKind = Literal["pca", "scale"]
ReducerFit = Literal["train", "scene"]
FeatureSource = Literal["diffusion", "projection"]
TimestepSampling = Literal["uniform", "features"]
LrSchedule = Literal["constant", "cosine"]
SpectralCalibration = Literal["pairwise", "shared"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "unet": ("3d", "2d", "pixel"),
    "schedule": ("linear", "cosine"),
    "loss": ("l1", "l2"),
    "reducer": ("pca", "scale"),
    "reducer_fit": ("train", "scene"),
    "features": ("diffusion", "projection"),
    "t_sampling": ("uniform", "features"),
    "clf_schedule": ("constant", "cosine"),
    "spectral_calibration": ("pairwise", "shared"),
}


@dataclass(frozen=True)
class DiffSpectralNetConfig:
    """Every setting of the DiffSpectralNet pipeline (denoiser, features, classifier).

    Attributes
    ----------
    proj_bands
        Bands after the stored spectral PCA projection (fitted on valid pixels); 0 keeps all
        input bands (the paper). Clamped to the scene's band count.
    proj_whiten
        Whiten the projection (every component unit variance). ``False`` keeps the
        components' relative variances (one common scale makes their mean variance 1), so
        the low-variance components stay mostly noise and the denoiser can tell added noise
        from signal; whitened, noise looks like signal in every direction.
    unet
        ``"3d"``: SpectralDiff's 3D U-Net over (band, y, x), spectral stride 2 per level.
        ``"2d"``: bands as channels, all convolutions 3x3, no down-sampling anywhere.
        ``"pixel"``: the 2D structure with every convolution 1x1: a per-pixel (spectral)
        denoiser, no spatial context (the classifier's window supplies it); cheap enough to
        train thousands of iterations on a CPU.
    widths
        U-Net channel widths going down; ``len(widths) - 1`` down and up blocks.
    time_dim
        Sinusoidal time-embedding size.
    diffusion_steps, schedule, beta_start, beta_end
        The DDPM forward process (T, beta schedule; the betas apply to ``linear`` only).
    loss
        Epsilon-prediction loss, ``"l1"`` (SpectralDiff) or ``"l2"``.
    denoiser_iterations, crop, batch, lr
        Denoiser training: Adam iterations on random ``crop`` x ``crop`` windows (at most
        ``denoiser_iterations``, see ``denoiser_check_every``).
    t_sampling
        Training timesteps: ``"uniform"`` over ``[0, T)`` (DDPM), or ``"features"``: half of
        them at the feature timesteps, half uniform (the features are read there only).
    denoiser_check_every, denoiser_min_gain
        Every ``denoiser_check_every`` iterations the held-out noise-prediction error (mean
        over the feature timesteps, relative to predicting zero) is measured; training stops
        when it improved by less than ``denoiser_min_gain`` (relative) since the last check
        (0: no checks, run all iterations). The held-out error at the end is always
        measured and logged as ``denoiser_eval``.
    timesteps
        Feature timesteps (0-based index into the schedule: ``alpha_bar[t]`` includes beta_t).
    layers
        Decoder layers to tap: ``i < n`` is the input of up block ``i`` (after the skip is
        concatenated, as SpectralDiff's L0, L1, L2); ``i == n`` is the last decoder output.
    reducer, reduced_dims, reducer_fit
        Per (timestep, layer) map: standardise every channel, then (``"pca"``) whitened PCA to
        ``reduced_dims`` components, or (``"scale"``) keep all channels. Fitted on the training
        pixels (``"train"``) or on a sample of all valid scene pixels (``"scene"``, no labels).
    window
        Classifier neighbourhood ``k`` (odd): ``k x k`` tokens per pixel.
    token_dim, depth, heads, head_dim, mlp_dim, head_hidden
        Transformer classifier sizes (SpectralDiff HSINet: 64, 2, 20, 64, 8, 128).
    clf_epochs, clf_batch, clf_lr, clf_weight_decay, clf_grad_clip, patience
        Classifier training; ``patience`` epochs without a better validation accuracy stop it
        (0: never stop early; the best-validation state is still kept).
    clf_schedule
        The classifier's learning rate over its epochs: ``"constant"`` (``clf_lr``
        throughout) or ``"cosine"`` (``clf_lr`` at the first epoch, decayed along half a
        cosine to nearly zero at the last, set at the start of every epoch), so a fixed
        schedule ends on averaged-out rather than on the last steps' noisy weights.
    clf_average_from
        Weight averaging (stochastic weight averaging, Izmailov et al. 2018; 0: off): the
        classifier kept is the mean of its weights at the end of every epoch from this one
        to the last, its batch-norm statistics then recomputed on the training windows. An
        ensemble of the late epochs in weight space, at no cost at prediction. Needs the
        fixed schedule (``patience = 0``); a fit with fewer epochs (self-training's) averages
        nothing.
    clf_min_batches
        Least optimizer steps per classifier epoch: a training set that makes fewer batches
        in one pass is cycled (reshuffled each pass; 1: one pass, as before); without it,
        30 pixels per class meant 3 steps per epoch and early stopping after ~45 steps.
    clf_ensemble
        Number of window classifiers trained on the same features from different random
        initialisations and sample orders; their softmax probabilities are averaged (1: one
        classifier, as SpectralDiff; MTMSD votes over 5).
    class_weighting
        Inverse-frequency class weights in the cross-entropy.
    noise_seed
        Seed of the position-keyed feature-extraction noise.
    features
        ``"diffusion"`` (DiffSpectralNet); ``"projection"`` feeds the classifier the projected
        spectra themselves (no denoiser): the ablation that measures what the diffusion stage
        adds (``proj_bands = 0``: raw spectra; ``> 0``: PCA).
    with_spectra
        Also give the classifier the projected spectra as one more (reduced) feature map
        next to the diffusion features.
    pixel_path
        The classifier's head also sees a linear embedding of the centre pixel's own feature
        vector (no spatial mixing), next to the CLS output and the centre token.
    feature_dropout
        Probability of dropping a whole feature channel of a training sample (0: off).
    spectrum_path
        The classifier's head also sees a linear embedding of the centre pixel's own
        standardised input spectrum (all bands, unprojected, unmixed with its neighbours).
    noise_draws
        Feature maps at each timestep are the mean over this many fixed, position-keyed noise
        fields (1: one, as the paper; more lowers the noise the features carry, at that
        many U-Net passes per timestep).
    clf_augment
        Train the classifier on randomly rotated (90 degree steps) and mirrored feature
        windows, one of the 8 per sample and step (the per-pixel denoiser's features do not
        depend on orientation, so a rotated window is a plausible scene).
    spectral_weight
        Weight of a per-pixel member: an RBF-SVM on the pixel's standardised spectrum (hsimap's
        ``svm`` kind with its default settings, C and gamma by spatial CV on the training
        pixels) fitted beside the window classifier; the map is the argmax of
        ``(1 - w) * p_classifier + w * p_svm``. 0: no member (the diffusion + transformer
        model alone).
    spectral_calibration
        The member's ``calibration`` (``svm``'s :class:`~hsimap.models.svm.SVMConfig`):
        ``"pairwise"`` (libsvm's sigmoid per class pair) or ``"shared"`` (one slope, no
        offsets; ``fast``'s since 2026-12-06).
    smooth_radius
        Radius (px) of an edge-preserving (bilateral) smoothing of the class probabilities
        before the argmax: each pixel's probabilities become a mean over its valid
        neighbours, weighted by distance and by spectral similarity (see
        ``hsimap.models.smoothing``). Grows the halo by as much. 0: off.
    smooth_range
        Spectral tolerance of that smoothing, as a multiple of the training scene's median
        squared distance between neighbouring pixels' projected spectra (larger: closer to a
        plain Gaussian blur).
    pseudo_epochs, pseudo_confidence, pseudo_ratio
        Self-training (0 epochs: off): once the whole model is fitted (member and smoothing
        included), its map of the training scene labels the unlabelled valid pixels (never
        the validation ones) whose smoothed probability reaches ``pseudo_confidence``; per
        predicted class at most ``pseudo_ratio`` x that class's training pixels, the most
        confident first; the classifier then trains ``pseudo_epochs`` more epochs on the
        training and these pseudo-labelled pixels. Uses no label beyond the training ones.
    """

    proj_bands: int = 32
    proj_whiten: bool = True
    unet: UnetKind = "2d"
    widths: tuple[int, ...] = (32, 32, 64)
    time_dim: int = 32
    diffusion_steps: int = 500
    schedule: ScheduleKind = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    loss: LossKind = "l1"
    denoiser_iterations: int = 400
    crop: int = 32
    batch: int = 8
    lr: float = 1e-3
    t_sampling: TimestepSampling = "uniform"
    denoiser_check_every: int = 0
    denoiser_min_gain: float = 0.01
    timesteps: tuple[int, ...] = (2, 5, 10)
    layers: tuple[int, ...] = (1,)
    reducer: ReducerKind = "pca"
    reduced_dims: int = 16
    reducer_fit: ReducerFit = "train"
    window: int = 7
    token_dim: int = 32
    depth: int = 2
    heads: int = 2
    head_dim: int = 16
    mlp_dim: int = 64
    head_hidden: int = 64
    clf_epochs: int = 40
    clf_batch: int = 64
    clf_lr: float = 1e-3
    clf_weight_decay: float = 1e-4
    clf_grad_clip: float = 15.0
    patience: int = 8
    clf_min_batches: int = 1
    clf_schedule: LrSchedule = "constant"
    clf_average_from: int = 0
    clf_ensemble: int = 1
    class_weighting: bool = True
    noise_seed: int = 0
    features: FeatureSource = "diffusion"
    with_spectra: bool = False
    pixel_path: bool = False
    feature_dropout: float = 0.0
    spectrum_path: bool = False
    clf_augment: bool = False
    noise_draws: int = 1
    spectral_weight: float = 0.0
    spectral_calibration: SpectralCalibration = "pairwise"
    smooth_radius: int = 0
    smooth_range: float = 1.0
    pseudo_epochs: int = 0
    pseudo_confidence: float = 0.9
    pseudo_ratio: float = 1.0

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        self._check_ints()
        self._check_floats()
        self._check_sequences()

    def _check_ints(self) -> None:
        positive = ("time_dim", "diffusion_steps", "denoiser_iterations", "crop", "batch",
                    "reduced_dims", "token_dim", "depth", "heads", "head_dim", "mlp_dim",
                    "head_hidden", "clf_epochs", "clf_batch", "clf_min_batches", "clf_ensemble",
                    "noise_draws")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("proj_bands", "patience", "noise_seed", "denoiser_check_every",
                     "smooth_radius", "pseudo_epochs", "clf_average_from"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.clf_average_from and self.patience:
            raise ValueError("clf_average_from needs the fixed schedule (patience = 0), got "
                             f"patience {self.patience}")
        if self.window % 2 != 1 or self.window < 1:
            raise ValueError(f"window must be a positive odd integer, got {self.window!r}")
        if self.time_dim % 2:
            raise ValueError(f"time_dim must be even, got {self.time_dim}")

    def _check_floats(self) -> None:
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ValueError("need 0 < beta_start < beta_end < 1, got "
                             f"{self.beta_start}, {self.beta_end}")
        for name in ("lr", "clf_lr", "clf_grad_clip"):
            if not float(getattr(self, name)) > 0.0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 <= float(self.feature_dropout) < 1.0:
            raise ValueError(f"feature_dropout must be in [0, 1), got {self.feature_dropout!r}")
        if not 0.0 <= float(self.denoiser_min_gain) < 1.0:
            raise ValueError(f"denoiser_min_gain must be in [0, 1), got "
                             f"{self.denoiser_min_gain!r}")
        if isinstance(self.spectral_weight, bool) or not 0.0 <= float(self.spectral_weight) < 1.0:
            raise ValueError(f"spectral_weight must be in [0, 1), got {self.spectral_weight!r}")
        if isinstance(self.smooth_range, bool) or not float(self.smooth_range) > 0.0:
            raise ValueError(f"smooth_range must be > 0, got {self.smooth_range!r}")
        if isinstance(self.pseudo_confidence, bool) or \
                not 0.0 <= float(self.pseudo_confidence) < 1.0:
            raise ValueError(f"pseudo_confidence must be in [0, 1), got "
                             f"{self.pseudo_confidence!r}")
        if isinstance(self.pseudo_ratio, bool) or not float(self.pseudo_ratio) > 0.0:
            raise ValueError(f"pseudo_ratio must be > 0, got {self.pseudo_ratio!r}")
        if not float(self.clf_weight_decay) >= 0.0:
            raise ValueError(f"clf_weight_decay must be >= 0, got {self.clf_weight_decay!r}")

    def _check_sequences(self) -> None:
        if len(self.widths) < 2 or any(not isinstance(w, int) or w < 1 for w in self.widths):
            raise ValueError(f"widths needs at least two positive integers, got {self.widths!r}")
        if not self.timesteps or len(set(self.timesteps)) != len(self.timesteps):
            raise ValueError(f"timesteps must be non-empty and distinct, got {self.timesteps!r}")
        if any(not isinstance(t, int) or not 0 <= t < self.diffusion_steps
               for t in self.timesteps):
            raise ValueError(f"timesteps must be integers in [0, {self.diffusion_steps}), "
                             f"got {self.timesteps!r}")
        n_blocks = len(self.widths) - 1
        if not self.layers or len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers must be non-empty and distinct, got {self.layers!r}")
        if any(not isinstance(i, int) or not 0 <= i <= n_blocks for i in self.layers):
            raise ValueError(f"layers must be integers in [0, {n_blocks}] for "
                             f"{len(self.widths)} widths, got {self.layers!r}")
        if self.heads * self.head_dim < 1:
            raise ValueError("heads * head_dim must be positive")

    @property
    def n_blocks(self) -> int:
        """Number of down (and up) blocks of the U-Net."""
        return len(self.widths) - 1


# Presets are plain data. ``paper`` follows SpectralDiff's code (method.md A.8) with the
# multi-timestep default of method.md A.4; ``fast`` is the 2-core CPU default (2026-12-01,
# docs/benchmarks.md): a per-pixel denoiser on the unwhitened 32-component projection,
# trained mostly at its feature timesteps until the held-out error plateaus, read at
# t = 50 and 100, the timesteps where it beats predicting zero by the margin on
# Indian Pines (held-out error 0.58 and 0.38 of predict-zero; at t = 2, 5, 10, the old
# timesteps, no denoiser measured here learns anything: the added noise is smaller than the
# scene's own); each feature map reduced to 32 dims by a stored PCA (2026-12-02: 3x cheaper
# than keeping all 288 channels, no worse); the centre pixel's full spectrum reaches the
# classifier's head; no class weights; a fixed 40-epoch schedule (no early stopping) on
# randomly rotated/mirrored windows (``clf_augment``, 2026-12-02: +1 point on Indian Pines
# random 10 %); its class probabilities averaged 0.5/0.5 with a per-pixel RBF-SVM's
# (``spectral_weight``, 2026-12-02, 10 folds: +2.6 / +3.2 points paired on Indian Pines /
# Potsdam disjoint, +0.1 at Indian Pines random 10 %, 0.0 on Salinas-A); and those
# probabilities smoothed edge-preservingly over 6 px with a spectral tolerance of 0.5 x the
# scene's median neighbour distance (``smooth_radius``/``smooth_range``, 2026-12-06: chosen
# on 5 development folds per scene and protocol, then measured on 10 others: +2.5 / +1.5
# points paired on Indian Pines / Potsdam disjoint, +0.4 at Indian Pines random 10 %,
# +0.1 / -0.1 on Salinas-A disjoint / random); the member's Platt sigmoids share one slope
# (``spectral_calibration``, 2026-12-06, fifth session: +0.06 to +0.15 on development folds,
# +0.6 / +1.6 with 10 labelled pixels per class). ``tiny`` is for tests.
PRESETS: Mapping[str, Mapping[str, Any]] = {
    "paper": {
        "proj_bands": 0, "unet": "3d", "widths": (16, 32, 64, 128), "time_dim": 32,
        "diffusion_steps": 500, "schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
        "loss": "l1", "denoiser_iterations": 30000, "crop": 64, "batch": 20, "lr": 1e-4,
        "timesteps": (5, 50, 100, 200), "layers": (1, 2), "reducer": "pca",
        "reduced_dims": 128, "reducer_fit": "train", "window": 13, "token_dim": 64,
        "depth": 2, "heads": 20, "head_dim": 64, "mlp_dim": 8, "head_hidden": 128,
        "clf_epochs": 50, "clf_batch": 64, "clf_lr": 1e-3, "clf_weight_decay": 0.0,
        "clf_grad_clip": 15.0, "patience": 10, "class_weighting": False, "noise_seed": 0,
    },
    "fast": {
        "proj_bands": 32, "proj_whiten": False, "unet": "pixel", "widths": (64, 64, 64),
        "time_dim": 32, "diffusion_steps": 500, "schedule": "linear", "beta_start": 1e-4,
        "beta_end": 0.02, "loss": "l1", "denoiser_iterations": 3000, "crop": 16, "batch": 8,
        "lr": 1e-3, "t_sampling": "features", "denoiser_check_every": 500,
        "denoiser_min_gain": 0.01, "timesteps": (50, 100), "layers": (1,),
        "reducer": "pca", "reduced_dims": 32, "reducer_fit": "train", "window": 7,
        "token_dim": 32, "depth": 2, "heads": 2, "head_dim": 16, "mlp_dim": 64,
        "head_hidden": 64, "clf_epochs": 40, "clf_batch": 64, "clf_lr": 1e-3,
        "clf_weight_decay": 1e-4, "clf_grad_clip": 15.0, "patience": 0,
        "clf_min_batches": 32, "clf_ensemble": 1, "class_weighting": False, "noise_seed": 0,
        "with_spectra": True, "spectrum_path": True, "clf_augment": True,
        "spectral_weight": 0.5, "spectral_calibration": "shared", "smooth_radius": 6,
        "smooth_range": 0.5,
    },
    "tiny": {
        "proj_bands": 8, "unet": "2d", "widths": (8, 8, 16), "time_dim": 16,
        "diffusion_steps": 500, "schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
        "loss": "l1", "denoiser_iterations": 20, "crop": 16, "batch": 4, "lr": 1e-3,
        "timesteps": (5, 50), "layers": (1,), "reducer": "pca", "reduced_dims": 8,
        "reducer_fit": "train", "window": 5, "token_dim": 16, "depth": 1, "heads": 2,
        "head_dim": 8, "mlp_dim": 16, "head_hidden": 16, "clf_epochs": 15, "clf_batch": 64,
        "clf_lr": 3e-3, "clf_weight_decay": 0.0, "clf_grad_clip": 15.0, "patience": 0,
        "class_weighting": True, "noise_seed": 0,
    },
}
