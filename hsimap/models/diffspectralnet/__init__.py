"""DiffSpectralNet (arXiv 2312.12441): diffusion features + transformer classifier.

Stage 1 trains a denoising U-Net (SpectralDiff's 3D U-Net, or a 2D bands-as-channels variant
on a stored spectral projection) on unlabelled crops of the scene. Stage 2 freezes it,
extracts decoder features at several timesteps with position-keyed noise, reduces them with
stored per-map PCA, and fits a transformer over each pixel's ``k x k`` feature window.
Prediction is fully convolutional per tile and exact with ``halo()`` pixels of context.
"""

from __future__ import annotations

import torch

from hsimap.models.base import ModelSpec, register
from hsimap.models.diffspectralnet.config import PRESETS, DiffSpectralNetConfig
from hsimap.models.diffspectralnet.fit import fit, fit_and_refit, refit
from hsimap.models.diffspectralnet.model import DiffSpectralNet, build, model_halo, side_by_side


def concurrent_fits(config: DiffSpectralNetConfig, device: torch.device) -> bool:
    """Fits may run in threads at once where two fitting threads fit the cores: each holds
    torch's global generator only while it initialises (``fit.GLOBAL_RNG``)."""
    return side_by_side(device)


SPEC = register(ModelSpec(
    kind="diffspectralnet",
    config_cls=DiffSpectralNetConfig,
    presets=PRESETS,
    default_preset="fast",
    gpu_preset="paper",
    build=build,
    fit=fit,
    refit=refit,
    fit_and_refit=fit_and_refit,
    concurrent_fits=concurrent_fits,
    description=("DiffSpectralNet: frozen denoising-diffusion U-Net features at several "
                 "timesteps + a transformer over each pixel's neighbourhood "
                 "(presets: paper = SpectralDiff-sized 3D U-Net, fast = 2-core CPU, "
                 "tiny = tests)"),
))

__all__ = ["PRESETS", "SPEC", "DiffSpectralNet", "DiffSpectralNetConfig", "build", "fit",
           "model_halo"]
