"""A stored PCA of standardised bands, shared by DiffSpectralNet (its spectral projection)
and the probability smoothing's guide (:mod:`hsimap.models.smoothing`)."""

from __future__ import annotations

import torch
from torch import nn


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
