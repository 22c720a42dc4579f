"""The DiffSpectralNet model: feature extractor + window classifier as one ``HsiModel``."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from hsimap.device import training_threads
from hsimap.errors import ConfigError
from hsimap.models.base import HsiModel, Window, config_to_dict, window_context
from hsimap.models.diffspectralnet.classifier import make_classifier
from hsimap.models.diffspectralnet.config import DiffSpectralNetConfig
from hsimap.models.diffspectralnet.features import FeatureExtractor
from hsimap.models.diffspectralnet.unet import receptive_radius
from hsimap.models.smoothing import smooth_tile
from hsimap.models.svm import SVMConfig, SVMModel

MIN_PROB = 1e-30  # floor of the blended probabilities before the log
# The SVM member's kernel precision: float32 halves its cost (half of ``fast``'s prediction
# time with 5,000 support vectors) and moves its probabilities by up to about 5e-4 (see
# ``SVMModel.kernel_dtype``), before a 0.5/0.5 average and a smoothing.
MEMBER_KERNEL_DTYPE = torch.float32


def unet_radius(config: DiffSpectralNetConfig) -> int:
    """Receptive-field radius of the deepest tapped decoder layer (0 without a U-Net)."""
    if config.features != "diffusion":
        return 0
    return max(receptive_radius(config, i) for i in config.layers)


def model_halo(config: DiffSpectralNetConfig) -> int:
    """Context radius of one output pixel: U-Net taps + tokenizer (1) + ``window // 2``, plus
    the probability smoothing's radius."""
    return unet_radius(config) + 1 + config.window // 2 + config.smooth_radius


class DiffSpectralNet(HsiModel):
    """Diffusion features (frozen denoising U-Net at several timesteps) + transformer.

    Parameters
    ----------
    config
        The full pipeline configuration.
    n_bands, n_classes
        Input bands ``C`` and output classes ``K``.
    """

    kind = "diffspectralnet"

    def __init__(self, config: DiffSpectralNetConfig, n_bands: int, n_classes: int) -> None:
        super().__init__()
        self.config = config
        self.n_bands = n_bands
        self.n_classes = n_classes
        self.features = FeatureExtractor(config, n_bands)
        self.classifier = make_classifier(config, self.features.out_dims, n_classes, n_bands)
        # the per-pixel member (``spectral_weight``): its tensors come from fitting or loading
        self.spectral: SVMModel | None = None
        member = member_config(config)
        if member is not None:
            self.set_member(SVMModel(member, n_bands=n_bands, n_classes=n_classes))
        if config.smooth_radius > 0:  # the smoothing's spectral scale, fitted (``smoothing``)
            self.register_buffer("smooth_range_sq", torch.ones(()))

    smooth_range_sq: torch.Tensor

    def set_member(self, member: SVMModel) -> None:
        """Install the per-pixel SVM member, its kernel in float32
        (:data:`MEMBER_KERNEL_DTYPE`)."""
        member.set_kernel_dtype(MEMBER_KERNEL_DTYPE)
        self.spectral = member

    def fit_bytes_per_pixel(self) -> float:
        """The reduced feature map of the whole scene (float32), twice where two fits may run
        at once on the CPU (:func:`side_by_side`): ``train``'s validated fit and refit, or
        two of ``compare``'s folds, hold one each (also counted for a single fit: a bound)."""
        maps = 2 if side_by_side(torch.device("cpu")) else 1
        return 4.0 * self.features.out_dims * maps

    def halo(self) -> int:
        """U-Net receptive radius + tokenizer radius + ``window // 2`` + the smoothing's
        radius (stride is 1)."""
        return model_halo(self.config)

    def window_radius(self) -> int:
        """Classifier window radius plus the 3x3 tokenizer: the default validation guard."""
        return self.config.window // 2 + 1

    def stride(self) -> int:
        """No spatial down-sampling anywhere: any tile origin works."""
        return 1

    @torch.no_grad()
    def forward_tile(self, x: torch.Tensor, *, origin: tuple[int, int]) -> torch.Tensor:
        """``(1, C, h, w)`` normalised tile -> ``(1, K, h, w)`` logits (see ``HsiModel``)."""
        return self.forward_window(x, origin=origin, window=(slice(None), slice(None)))

    @torch.no_grad()
    def forward_window(self, x: torch.Tensor, *, origin: tuple[int, int],
                       window: Window) -> torch.Tensor:
        """Logits of ``window`` of the tile ``x`` (see ``HsiModel``): the features over the
        whole tile, the classifier and the member only within ``smooth_radius`` of the
        window (what the smoothing reads), the smoothing only on the window."""
        if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != self.n_bands:
            raise ValueError(f"expected a (1, {self.n_bands}, h, w) tile, got {tuple(x.shape)}")
        need, inner = window_context(window, self.config.smooth_radius, *x.shape[2:])
        a0, a1, b0, b1 = need
        feats = self.features(x, (int(origin[0]), int(origin[1])))  # (1, D, h, w)
        logits = self.classifier.forward_map(
            feats, spectra=x if self.config.spectrum_path else None, region=need)
        if self.spectral is None and self.config.smooth_radius == 0:
            return logits[:, :, inner[0], inner[1]]
        xn = x[:, :, a0:a1, b0:b1]
        p = self.probabilities(logits, None if self.spectral is None else
                               self.spectral.tile_probabilities(xn))
        if self.config.smooth_radius > 0:
            p = self.smooth(p, xn, out=inner)
        else:
            p = p[:, :, inner[0], inner[1]]
        return p.clamp_min_(MIN_PROB).log_()

    def probabilities(self, logits: torch.Tensor,
                      spectral_p: torch.Tensor | None) -> torch.Tensor:
        """``(1 - w) * softmax(logits) + w * p_spectral`` over the class axis (float32); the
        softmax alone without a member. ``spectral_p``: the member's probabilities
        (``tile_probabilities``)."""
        p = torch.softmax(logits.float(), 1)
        if spectral_p is None:
            return p
        w = float(self.config.spectral_weight)
        return p.mul_(1 - w).add_(spectral_p.float(), alpha=w)

    def smooth(self, p: torch.Tensor, x: torch.Tensor, out: Window | None = None
               ) -> torch.Tensor:
        """Edge-preserving smoothing of ``(1, K, h, w)`` probabilities over the tile ``x``
        (``smooth_radius`` px; guide: the spectral projection; invalid pixels, all-zero in
        ``x``, neither vote nor change); ``out``: the part of the tile to return (None:
        all)."""
        range_sq = float(self.smooth_range_sq) * float(self.config.smooth_range)
        return smooth_tile(p, x, self.features.projection(x), radius=self.config.smooth_radius,
                           range_sq=range_sq, out=out)

    def inspect(self, x: torch.Tensor, *, origin: tuple[int, int],
                rgb_bands: tuple[int, int, int] | None = None) -> dict[str, np.ndarray]:
        """Input, noised and denoised views and feature PCs per timestep (see ``panels``)."""
        from hsimap.models.diffspectralnet.panels import inspection_panels

        return inspection_panels(self, x, origin=origin, rgb_bands=rgb_bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as ``forward_tile`` at origin (0, 0)."""
        return self.forward_tile(x, origin=(0, 0))

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-able dict (``build`` needs it plus ``n_bands``/``n_classes``)."""
        return config_to_dict(self.config)


def side_by_side(device: torch.device) -> bool:
    """Whether two fitting threads can run at once: on the CPU, when the cores hold two at
    the fitting threads of :func:`hsimap.device.training_threads` (one on 2 cores)."""
    if device.type != "cpu":
        return False
    threads = training_threads() or torch.get_num_threads()
    return 2 * threads <= (os.cpu_count() or 1)


def member_config(config: DiffSpectralNetConfig) -> SVMConfig | None:
    """The per-pixel SVM member's config (``spectral_weight > 0``), else None."""
    if config.spectral_weight <= 0:
        return None
    return SVMConfig(calibration=config.spectral_calibration)


def build(config: DiffSpectralNetConfig, *, n_bands: int, n_classes: int) -> DiffSpectralNet:
    """Create a DiffSpectralNet with every parameter and buffer at its final shape.

    ``load_state_dict`` on the result restores a trained model exactly.
    """
    if not isinstance(config, DiffSpectralNetConfig):
        raise ConfigError(f"diffspectralnet needs a DiffSpectralNetConfig, got "
                          f"{type(config).__name__}")
    if n_bands < 1 or n_classes < 1:
        raise ConfigError(f"need at least one band and one class, got {n_bands}, {n_classes}")
    return DiffSpectralNet(config, n_bands, n_classes)
