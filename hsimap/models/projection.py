"""A stored PCA of standardised bands, shared by DiffSpectralNet (its spectral projection)
and the probability smoothing's guide (:mod:`hsimap.models.smoothing`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

MAX_FIT_PIXELS = 200_000  # valid pixels sampled to fit a projection (:meth:`fit_on_valid`)


def fix_signs(vh: torch.Tensor) -> torch.Tensor:
    """Make the largest-magnitude entry of every component positive (repeatable signs)."""
    idx = vh.abs().argmax(dim=1)
    signs = torch.sign(vh[torch.arange(vh.shape[0]), idx])
    signs[signs == 0] = 1
    return vh * signs[:, None]


class SpectralProjection(nn.Module):
    """Stored PCA of the (already standardised) bands: ``(N, C, h, w) -> (N, P, h, w)``.

    Whitened (every component unit variance) or not (orthonormal components times one common
    scale that makes their mean variance 1, so relative variances survive). No mean is
    subtracted: the input cube is zero-mean over valid pixels, and keeping the map linear
    sends invalid (all-zero) pixels to zero.
    """

    def __init__(self, n_bands: int, n_out: int, *, whiten: bool = True) -> None:
        super().__init__()
        self.identity = n_out == n_bands
        self.whiten = whiten
        self.register_buffer("matrix", torch.zeros(0 if self.identity else n_out, n_bands))

    matrix: torch.Tensor

    @property
    def n_out(self) -> int:
        """Output bands ``P`` (the input bands when the projection is the identity)."""
        return int(self.matrix.shape[1] if self.identity else self.matrix.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        return torch.einsum("pc,nchw->nphw", self.matrix, x)

    @torch.no_grad()
    def fit(self, pixels: torch.Tensor) -> None:
        """Fit from ``(n, C)`` valid pixels."""
        if self.identity:
            return
        x = pixels.to(torch.float64)
        cov = x.T @ x / max(x.shape[0] - 1, 1)  # (C, C), uncentred: data is zero-mean
        evals, evecs = torch.linalg.eigh(cov)
        order = torch.argsort(evals, descending=True)[: self.matrix.shape[0]]
        comps = fix_signs(evecs[:, order].T)  # (P, C)
        lam = evals[order].clamp(min=1e-12 * float(evals.max().clamp(min=1e-30)))
        scale = lam.rsqrt() if self.whiten else lam.mean().rsqrt().expand_as(lam)
        self.matrix.copy_((comps * scale[:, None]).to(self.matrix))

    def fit_on_valid(self, cube: torch.Tensor, valid: np.ndarray, *,
                     rng: np.random.Generator, max_pixels: int = MAX_FIT_PIXELS) -> None:
        """Fit from the valid pixels of a ``(C, H, W)`` standardised scene, at most
        ``max_pixels`` of them drawn with ``rng`` (label-free)."""
        idx = np.flatnonzero(valid)
        if len(idx) > max_pixels:
            idx = np.sort(rng.choice(idx, size=max_pixels, replace=False))
        pixels = cube.reshape(cube.shape[0], -1)[:, torch.from_numpy(idx)].T
        self.fit(pixels.to(self.matrix.device))
