"""Look inside a trained DiffSpectralNet: what each diffusion timestep sees and contributes.

For a window of the scene: the clean input, its position-keyed noised versions at the
feature timesteps, the denoiser's reconstruction of the clean input from each noised
version, and the first three principal components of the reduced features of each
timestep. Everything is shown in the space of the stored spectral projection (the first
three projected components as RGB), so the images are comparable across panels.
"""

from __future__ import annotations

import numpy as np
import torch

from hsimap.models.diffspectralnet.model import DiffSpectralNet


@torch.no_grad()
def inspection_panels(model: DiffSpectralNet, x: torch.Tensor, *, origin: tuple[int, int],
                      rgb_bands: tuple[int, int, int] | None = None) -> dict[str, np.ndarray]:
    """Images ``(h, w, 3)`` in [0, 1] keyed by panel title.

    Parameters
    ----------
    model
        A trained DiffSpectralNet (eval mode).
    x
        ``(1, C, h, w)`` normalised input window.
    origin
        Global ``(row, col)`` of the window (keys the noise as in prediction).
    rgb_bands
        Input band indices nearest to red, green and blue, for a true-colour panel.
    """
    fx = model.features
    xp = fx.projection(x)  # (1, P, h, w)
    panels = {}
    if rgb_bands is not None:
        panels["input (true colour)"] = _rgb(x[0, list(rgb_bands)])
    panels["input (projected PC 1-3)"] = _rgb(xp[0, :3])
    if fx.unet is None:
        panels["features"] = _pca_rgb(fx(x, origin)[0])
        return panels
    maps = dict(fx.raw_maps(x, origin))
    per_t = len(model.config.layers)
    first = 1 if fx.keys[0] == (-1, -1) else 0  # the projected-spectra map comes first
    for n, t in enumerate(model.config.timesteps):
        a = float(fx.abar[t])
        xt = fx.noisy(xp, t, origin)
        tt = torch.full((1,), t, dtype=torch.int64, device=x.device)
        eps, _ = fx.unet.run(xt, tt)
        assert eps is not None  # no taps: the net runs to its output
        x0 = (xt - (1 - a) ** 0.5 * eps) / a ** 0.5
        ref = xp[0, :3]
        panels[f"t={t}: noised"] = _rgb(xt[0, :3], like=ref)
        panels[f"t={t}: denoised"] = _rgb(x0[0, :3], like=ref)
        reduced = torch.cat([fx.reducers[k](maps[k]) for k in
                             range(first + n * per_t, first + (n + 1) * per_t)], dim=1)
        panels[f"t={t}: features PC 1-3"] = _pca_rgb(reduced[0])
    return panels


def _rgb(img: torch.Tensor, *, like: torch.Tensor | None = None) -> np.ndarray:
    """``(3, h, w)`` -> ``(h, w, 3)`` stretched by the 2-98 % range of ``like`` (or itself)."""
    ref = (img if like is None else like).float().reshape(3, -1)
    lo = torch.quantile(ref, 0.02, dim=1)[:, None, None]
    hi = torch.quantile(ref, 0.98, dim=1)[:, None, None]
    out = ((img.float() - lo) / (hi - lo).clamp(min=1e-6)).clamp(0, 1)
    return np.ascontiguousarray(out.permute(1, 2, 0).cpu().numpy())


def _pca_rgb(feats: torch.Tensor) -> np.ndarray:
    """``(D, h, w)`` features -> first three principal components as an RGB image."""
    d, h, w = feats.shape
    flat = feats.reshape(d, -1).T.double()
    flat = flat - flat.mean(0)
    _, _, v = torch.linalg.svd(flat, full_matrices=False)
    comps = (flat @ v[:3].T).T.reshape(-1, h, w)
    if comps.shape[0] < 3:
        comps = torch.cat([comps, comps.new_zeros(3 - comps.shape[0], h, w)])
    return _rgb(comps)
