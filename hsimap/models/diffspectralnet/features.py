"""Feature extraction: spectral projection, position-keyed noising, U-Net taps, reducers.

Everything here is fully convolutional per tile: a stored linear spectral projection, the
noisy input at each feature timestep (noise keyed by global position, see :mod:`.noise`),
the frozen U-Net's decoder taps, and a stored per-map reducer (a 1x1 linear map). Nothing
depends on the tile beyond each pixel's receptive field.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from hsimap.models.diffspectralnet.config import DiffSpectralNetConfig
from hsimap.models.diffspectralnet.noise import position_noise
from hsimap.models.diffspectralnet.schedule import Diffusion
from hsimap.models.diffspectralnet.unet import DenoisingUNet, layer_channels
from hsimap.models.projection import SpectralProjection, fix_signs

MapKey = tuple[int, int]  # (timestep, layer)


def projected_bands(config: DiffSpectralNetConfig, n_bands: int) -> int:
    """Bands the U-Net sees: ``proj_bands`` clamped to ``n_bands`` (0 keeps all)."""
    return n_bands if config.proj_bands == 0 else min(config.proj_bands, n_bands)


def reduced_dims(config: DiffSpectralNetConfig, channels: int) -> int:
    """Output size of one map's reducer."""
    return channels if config.reducer == "scale" else min(config.reduced_dims, channels)


class MapReducer(nn.Module):
    """Stored affine reducer of one feature map: ``y = W x + b`` per pixel.

    ``"pca"``: ``W`` is ``(d, ch)`` (standardisation and whitened PCA folded together);
    ``"scale"``: ``W`` is ``(ch,)``, an elementwise standardisation.
    """

    def __init__(self, kind: str, channels: int, dims: int) -> None:
        super().__init__()
        self.kind = kind
        shape = (channels,) if kind == "scale" else (dims, channels)
        self.register_buffer("weight", torch.zeros(shape))
        self.register_buffer("bias", torch.zeros(dims))

    weight: torch.Tensor
    bias: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, ch, h, w)`` -> ``(N, d, h, w)``."""
        if self.kind == "scale":
            return x * self.weight[:, None, None] + self.bias[:, None, None]
        y = torch.einsum("dc,nchw->ndhw", self.weight, x)
        return y + self.bias[:, None, None]

    @torch.no_grad()
    def fit(self, samples: torch.Tensor) -> None:
        """Fit from ``(n, ch)`` feature samples (float64 internally)."""
        x = samples.to(torch.float64)
        mean = x.mean(0)
        std = x.std(0, unbiased=False)
        inv = torch.where(std > 1e-6 * std.max().clamp(min=1e-30), 1.0 / std,
                          torch.zeros_like(std))
        if self.kind == "scale":
            self.weight.copy_(inv.to(self.weight))
            self.bias.copy_((-mean * inv).to(self.bias))
            return
        z = (x - mean) * inv  # (n, ch) standardised
        dims = self.weight.shape[0]
        _, s, vh = torch.linalg.svd(z, full_matrices=False)  # vh: (r, ch)
        var = s.square() / max(x.shape[0] - 1, 1)
        keep = min(dims, vh.shape[0])
        scale = torch.zeros(dims, dtype=torch.float64)
        ok = var[:keep] > 1e-6 * var[0].clamp(min=1e-30)
        scale[:keep] = torch.where(ok, var[:keep].clamp(min=1e-30).rsqrt(),
                                   torch.zeros_like(var[:keep]))
        comps = torch.zeros(dims, x.shape[1], dtype=torch.float64)
        comps[:keep] = fix_signs(vh[:keep])
        w = comps * scale[:, None] * inv[None, :]  # (d, ch) acting on raw features
        self.weight.copy_(w.to(self.weight))
        self.bias.copy_((-(w @ mean)).to(self.bias))


NOISE_DRAW_STRIDE = 7919  # noise seed step between the fixed noise fields of ``noise_draws``


class FeatureExtractor(nn.Module):
    """Projection + frozen U-Net + reducers: ``(1, C, h, w)`` cube -> ``(1, D, h, w)`` features."""

    def __init__(self, config: DiffSpectralNetConfig, n_bands: int) -> None:
        super().__init__()
        self.config = config
        p = projected_bands(config, n_bands)
        self.projection = SpectralProjection(n_bands, p, whiten=config.proj_whiten)
        self.diffusion = config.features == "diffusion"
        self.unet = DenoisingUNet(config, p) if self.diffusion else None
        self.process = Diffusion.from_config(config)  # schedule and noising formulas
        self.keys: list[MapKey] = []
        chans: list[int] = []
        if not self.diffusion or config.with_spectra:  # the projected spectra as a map
            self.keys, chans = [(-1, -1)], [p]
        if self.diffusion:
            diff_keys = [(t, i) for t in config.timesteps for i in config.layers]
            self.keys += diff_keys
            chans += [layer_channels(config, i, p) for _, i in diff_keys]
        self.reducers = nn.ModuleList(
            MapReducer(config.reducer, c, reduced_dims(config, c)) for c in chans)
        self.map_channels = chans
        self.out_dims = sum(reduced_dims(config, c) for c in chans)


    def noisy(self, xp: torch.Tensor, t: int, origin: tuple[int, int],
              draw: int = 0) -> torch.Tensor:
        """``x_t`` for projected input ``xp`` ``(1, P, h, w)`` with position-keyed noise
        (``draw`` > 0: another fixed noise field, for ``noise_draws``)."""
        _, p, h, w = xp.shape
        seed = self.config.noise_seed + NOISE_DRAW_STRIDE * draw
        eps = position_noise(origin, (p, h, w), t, seed, device=xp.device)
        return self.process.noisy(xp, t, eps.to(xp.dtype)[None])

    def raw_maps(self, x: torch.Tensor,
                 origin: tuple[int, int]) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(map index, (1, ch, h, w) raw tap)`` for every (timestep, layer) key."""
        xp = self.projection(x)  # (1, P, h, w)
        k = 0
        if self.keys[0] == (-1, -1):
            yield 0, xp
            k = 1
        if self.unet is None:
            return
        layers = tuple(self.config.layers)
        for t in self.config.timesteps:
            tt = torch.full((xp.shape[0],), t, dtype=torch.int64, device=xp.device)
            _, feats = self.unet.run(self.noisy(xp, t, origin), tt, taps=layers)
            for draw in range(1, self.config.noise_draws):  # mean over fixed noise fields
                _, more = self.unet.run(self.noisy(xp, t, origin, draw), tt, taps=layers)
                feats = {i: feats[i] + more[i] for i in layers}
            if self.config.noise_draws > 1:
                feats = {i: feats[i] / self.config.noise_draws for i in layers}
            for i in layers:
                yield k, feats[i]
                k += 1

    def forward(self, x: torch.Tensor, origin: tuple[int, int]) -> torch.Tensor:
        """Reduced features ``(1, D, h, w)`` of a normalised cube tile ``(1, C, h, w)``."""
        parts = [self.reducers[k](m) for k, m in self.raw_maps(x, origin)]
        return torch.cat(parts, dim=1)
