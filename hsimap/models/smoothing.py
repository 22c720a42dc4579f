"""Edge-preserving smoothing of the class probabilities: a spatial prior on the map.

Each valid pixel's class probabilities become a weighted mean of those of the valid pixels
within ``radius`` px (itself included)::

    weight(i, j) = exp(-|i - j|^2 / (2 sigma^2)) * exp(-d(i, j)^2 / (2 s^2))

with ``sigma = radius / 2`` px, ``d(i, j)^2`` the mean squared difference of the two pixels'
projected spectra and ``s^2`` the median of that distance between neighbouring valid pixels
of the training scene (:func:`range_scale`, fitted once and stored with the model, so every
tile of a prediction uses the same value). A bilateral filter on the probability maps, the
idea of edge-preserving-filter classification of hyperspectral images (Kang, Li and
Benediktsson, IEEE TGRS 2014, who used a guided filter): neighbours that look alike vote,
so labels spread within a field but not across its edge.

The filter reads ``radius`` px around every output pixel: the model's halo grows by that.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hsimap.models.base import Window, window_bounds
from hsimap.models.projection import SpectralProjection

RANGE_PIXELS = 20_000  # valid centre pixels sampled by ``range_scale``
_CHUNK = 32  # spectral channels per step of the distance computation
_PROJECT_VALUES = 50_000_000  # cube values projected per block by ``range_scale``


def offsets(radius: int) -> list[tuple[int, int]]:
    """Every ``(dy, dx)`` with ``|dy|, |dx| <= radius``, row-major."""
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over channels of ``(a - b)^2`` for ``(1, P, h, w)`` tensors, in channel chunks."""
    out = torch.zeros((1, 1, *a.shape[2:]), dtype=a.dtype, device=a.device)
    for c0 in range(0, a.shape[1], _CHUNK):
        d = a[:, c0:c0 + _CHUNK] - b[:, c0:c0 + _CHUNK]
        out += d.square_().sum(1, keepdim=True)
    return out.div_(a.shape[1])


def smooth_probabilities(p: torch.Tensor, guide: torch.Tensor, valid: torch.Tensor, *,
                         radius: int, range_sq: float,
                         out: Window | None = None) -> torch.Tensor:
    """Bilateral smoothing of ``(1, K, h, w)`` class probabilities over one tile.

    Parameters
    ----------
    p
        Class probabilities (any values outside ``valid`` are ignored).
    guide
        ``(1, P, h, w)`` spectra that define similarity (the model's spectral projection).
    valid
        ``(1, 1, h, w)`` bool: pixels that vote and are smoothed; others keep ``p``.
    radius
        Neighbourhood radius in px (0: ``p`` unchanged).
    range_sq
        ``s^2`` of the module docstring (> 0).
    out
        The rows and columns of the tile to return (None: all): only they are computed,
        each from every pixel of the tile within ``radius``, so its values are those of the
        whole tile's result.
    """
    h, w = p.shape[2:]
    r0, r1, c0, c1 = window_bounds(out, h, w)
    if radius <= 0:
        return p[:, :, r0:r1, c0:c1]
    r = radius
    oh, ow = r1 - r0, c1 - c0
    v = valid.to(p.dtype)
    pad = (r, r, r, r)
    pp, vp, gp = F.pad(p * v, pad), F.pad(v, pad), F.pad(guide, pad)
    p_out, g_out = p[:, :, r0:r1, c0:c1], guide[:, :, r0:r1, c0:c1]
    num = torch.zeros_like(p_out)
    den = torch.zeros((1, 1, oh, ow), dtype=p.dtype, device=p.device)
    two_sigma_sq = 2.0 * (radius / 2.0) ** 2
    for dy, dx in offsets(r):
        rows = slice(r + r0 + dy, r + r0 + dy + oh)
        cols = slice(r + c0 + dx, r + c0 + dx + ow)
        wt = _sq_dist(gp[:, :, rows, cols], g_out).div_(-2.0 * range_sq).exp_()
        wt.mul_(vp[:, :, rows, cols]).mul_(math.exp(-(dy * dy + dx * dx) / two_sigma_sq))
        num.addcmul_(wt, pp[:, :, rows, cols])
        den += wt
    return torch.where(valid[:, :, r0:r1, c0:c1], num / den.clamp_min(1e-30), p_out)


def range_scale(cube: torch.Tensor, valid: np.ndarray, *, radius: int,
                project: Callable[[torch.Tensor], torch.Tensor],
                rng: np.random.Generator) -> float:
    """Median squared guide distance between valid pixels at most ``radius`` px apart.

    ``cube`` is the ``(C, H, W)`` normalised scene and ``project`` maps ``(1, C, h, w)``
    spectra to ``(1, P, h, w)`` guide values (the model's spectral projection, per pixel);
    the scene is projected once, in row blocks, then up to :data:`RANGE_PIXELS` valid centre
    pixels drawn with ``rng`` are compared with each of their valid neighbours. Label-free,
    like the projection. 1.0 where no two valid pixels are neighbours or all distances are 0.
    """
    h, w = valid.shape
    idx = np.flatnonzero(valid)
    if idx.size > RANGE_PIXELS:
        idx = np.sort(rng.choice(idx, RANGE_PIXELS, replace=False))
    ys, xs = np.divmod(idx, w)
    rows = max(1, _PROJECT_VALUES // max(1, w * cube.shape[0]))
    with torch.no_grad():
        guide = torch.cat([project(cube[None, :, r0:r0 + rows])[0]
                           for r0 in range(0, h, rows)], 1).reshape(-1, h * w)
        centre = guide[:, torch.from_numpy(idx)]
        dists = []
        for dy, dx in offsets(radius):
            if dy == 0 and dx == 0:
                continue
            y2, x2 = ys + dy, xs + dx
            ok = (y2 >= 0) & (y2 < h) & (x2 >= 0) & (x2 < w)
            ok[ok] &= valid[y2[ok], x2[ok]]
            if ok.any():
                nb = torch.from_numpy(y2[ok] * w + x2[ok])
                d = guide[:, nb] - centre[:, torch.from_numpy(ok)]
                dists.append(d.square().mean(0))
    if not dists:
        return 1.0
    med = float(torch.cat(dists).median())
    return med if med > 0 else 1.0


def guide_scale(projection: SpectralProjection, cube: torch.Tensor, valid: np.ndarray, *,
                radius: int, rng: np.random.Generator) -> float:
    """:func:`range_scale` of a ``(C, H, W)`` CPU scene with ``projection`` as the guide (run
    on the projection's device)."""
    device = projection.matrix.device
    return range_scale(cube, valid, radius=radius,
                       project=lambda t: projection(t.to(device)).cpu(), rng=rng)


def smooth_tile(p: torch.Tensor, x: torch.Tensor, guide: torch.Tensor, *, radius: int,
                range_sq: float, out: Window | None = None) -> torch.Tensor:
    """:func:`smooth_probabilities` over one model tile: ``x`` the ``(1, C, h, w)``
    standardised input, whose all-zero (invalid) pixels neither vote nor change; ``guide``
    its ``(1, P, h, w)`` projection; ``out`` the part of the tile to return (None: all)."""
    valid = (x != 0).any(1, keepdim=True)
    return smooth_probabilities(p, guide.to(p.dtype), valid, radius=radius, range_sq=range_sq,
                                out=out)


GUIDE_COMPONENTS = 32  # principal components of the guide (DiffSpectralNet fast's projection)


class ProbabilitySmoother(nn.Module):
    """The smoothing with a guide of its own, for a per-pixel model (``svm``): an unwhitened
    PCA of the standardised bands (:data:`GUIDE_COMPONENTS` components, as DiffSpectralNet's
    ``fast`` projection) and the fitted scale ``s^2``, both stored with the model.

    Parameters
    ----------
    n_bands
        Input bands.
    radius, range_factor
        The smoothing's radius (px, > 0) and its spectral tolerance as a multiple of the
        fitted scale (the models' ``smooth_radius`` and ``smooth_range``).
    """

    def __init__(self, n_bands: int, *, radius: int, range_factor: float) -> None:
        super().__init__()
        self.radius = radius
        self.range_factor = range_factor
        self.projection = SpectralProjection(n_bands, min(GUIDE_COMPONENTS, n_bands),
                                             whiten=False)
        self.register_buffer("range_sq", torch.ones((), dtype=torch.float64))

    range_sq: torch.Tensor

    @torch.no_grad()
    def fit(self, cube: torch.Tensor, valid: np.ndarray, *,
            rng: np.random.Generator) -> dict[str, float]:
        """Fit the guide's projection on valid pixels of the ``(C, H, W)`` standardised scene
        (:meth:`SpectralProjection.fit_on_valid`, drawn with ``rng``), then the scale
        (:func:`range_scale`). Label-free. Returns what the log records."""
        self.projection.fit_on_valid(cube, valid, rng=rng)
        scale = guide_scale(self.projection, cube, valid, radius=self.radius, rng=rng)
        self.range_sq.fill_(scale)
        return {"radius": self.radius, "range": self.range_factor, "range_sq": scale,
                "guide_components": self.projection.n_out}

    def forward(self, p: torch.Tensor, x: torch.Tensor, out: Window | None = None
                ) -> torch.Tensor:
        """Smooth ``(1, K, h, w)`` probabilities over the tile ``x`` (:func:`smooth_tile`);
        ``out``: the part of the tile to return (None: all)."""
        return smooth_tile(p, x, self.projection(x), radius=self.radius,
                           range_sq=float(self.range_sq) * self.range_factor, out=out)
