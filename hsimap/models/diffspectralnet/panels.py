"""Look inside a trained DiffSpectralNet: what each diffusion timestep sees and contributes.

For a window of the scene: the clean input; then per feature timestep the position-keyed
noised input, the denoiser's noise-prediction error per pixel (its window mean beside the
error of predicting zero, on one colour scale for every timestep: dark = the denoiser
knows the noise there), what denoising changes (the reconstruction minus the clean input,
amplified to its own range around grey: structure there is what the denoiser does not
reproduce) and the first three principal components of that timestep's reduced features.
Spectral images are shown in the space of the stored spectral projection (the first three
projected components as RGB), so they are comparable across panels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
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
        xt = fx.noisy(xp, t, origin)
        tt = torch.full((1,), t, dtype=torch.int64, device=x.device)
        eps, _ = fx.unet.run(xt, tt)
        assert eps is not None  # no taps: the net runs to its output
        x0 = fx.process.predict_x0(xt, t, eps)
        ref = xp[0, :3]
        true_eps = fx.process.noise_of(xt, t, xp)  # the noise that was added
        err = (eps - true_eps).abs().mean(1)[0]  # (h, w) mean over projected bands
        zero = float(true_eps.abs().mean())
        panels[f"t={t}: noised"] = _rgb(xt[0, :3], like=ref)
        panels[f"t={t}: noise error {float(err.mean()):.2f} (zero: {zero:.2f})"] = \
            _heat(err, vmax=2 * ZERO_L1)
        panels[f"t={t}: denoised - input, amplified"] = _diverging(x0[0, :3] - ref)
        reduced = torch.cat([fx.reducers[k](maps[k]) for k in
                             range(first + n * per_t, first + (n + 1) * per_t)], dim=1)
        panels[f"t={t}: features PC 1-3"] = _pca_rgb(reduced[0])
    return panels


ZERO_L1 = 0.7979  # E|eps| of standard normal noise: predicting zero scores this


def _heat(values: torch.Tensor, *, vmax: float) -> np.ndarray:
    """``(h, w)`` values in ``[0, vmax]`` -> ``(h, w, 3)`` magma colours (fixed scale)."""
    from matplotlib import colormaps

    unit = (values.float() / vmax).clamp(0, 1).cpu().numpy()
    return np.ascontiguousarray(colormaps["magma"](unit)[..., :3])


def _diverging(diff: torch.Tensor) -> np.ndarray:
    """``(3, h, w)`` signed differences -> ``(h, w, 3)`` around mid-grey, the 98th
    percentile of their magnitude at full scale (amplified to their own range)."""
    scale = torch.quantile(diff.float().abs().flatten(), 0.98).clamp(min=1e-6)
    out = (0.5 + 0.5 * diff.float() / scale).clamp(0, 1)
    return np.ascontiguousarray(out.permute(1, 2, 0).cpu().numpy())


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
