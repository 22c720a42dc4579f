"""Models with random weights and buffers, for speed and memory checks without training.

The time and memory of a forward pass do not depend on the weights' values, but a freshly
built model holds some buffers as zeros or ones (the projection, the reducers, batch-norm
statistics), which would make its features degenerate. :func:`untrained_model` draws them
at random, reproducibly; a fitted per-pixel member (DiffSpectralNet's ``spectral_weight``
SVM) is fitted on random spectra. Used by the benchmarks and the scale and CUDA tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from hsimap.models.base import HsiModel, ModelConfig, get_spec

if TYPE_CHECKING:
    from hsimap.models.svm import SVMModel


def randomize_buffers(module: torch.nn.Module) -> None:
    """Draw a module's buffers in place: matrices, weights and biases ~ N(0, 0.3), batch-norm
    running variances ~ U(0.5, 1.5); other buffers are left as built."""
    with torch.no_grad():
        for name, buf in module.named_buffers():
            if name.endswith(("matrix", "weight", "bias")):
                buf.normal_(0, 0.3)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)


def untrained_model(kind: str, config: ModelConfig, *, n_bands: int, n_classes: int,
                    seed: int = 0, member_pixels: int = 2000) -> HsiModel:
    """A ``kind`` model built from ``config`` with random weights and buffers, in eval mode.

    ``torch.manual_seed(seed)`` is set before building, so the same call gives the same model.
    A DiffSpectralNet SVM member is fitted on ``member_pixels`` random spectra (about as
    many support vectors: its prediction cost grows with them).
    """
    spec = get_spec(kind)
    torch.manual_seed(seed)
    model = spec.build(config, n_bands=n_bands, n_classes=n_classes)
    randomize_buffers(model)
    spectral = getattr(model, "spectral", None)
    if spectral is not None:  # DiffSpectralNet's SVM member
        fit_random_svm(spectral, seed=seed, n_pixels=member_pixels)
    return model.eval()


def fit_random_svm(member: SVMModel, *, seed: int = 0, n_pixels: int = 2000) -> None:
    """Fit an SVM member on ``n_pixels`` random spectra with random labels: nearly every
    pixel becomes a support vector, about the count of a real fit on the sample (2,051 and
    2,324 after the refit; the member's cost grows with it)."""
    from hsimap.models.libsvm import fit_svc, svc_tensors
    from hsimap.models.svm import SVMConfig, make_svc

    n_bands, n_classes = int(member.n_bands), int(member.n_classes)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_pixels, n_bands)).astype(np.float32)
    if n_classes < 2:
        raise ValueError("an SVM member needs at least two classes")
    y = np.arange(n_pixels) % n_classes
    svc = fit_svc(make_svc(10.0, 1.0 / n_bands, SVMConfig(), probability=True, seed=seed), x, y)
    member.set_tensors(svc_tensors(svc))
