"""Denoising U-Nets: SpectralDiff's 3D "SimpleUnet" and a CPU-friendly 2D variant.

Both follow SpectralDiff's structure (method.md A.3): a stem conv, ``n`` down blocks, ``n``
up blocks fed with the matching skip (the first up block concatenates the bottleneck with
itself, as in the original), a 1x1 head. A block is ``conv -> ReLU -> BN -> + ReLU(Linear(
temb)) -> conv -> ReLU -> BN -> transform``. Nothing pools, attends or normalises over space,
and BatchNorm runs with its running statistics at feature-extraction time, so every output
pixel depends only on a bounded spatial neighbourhood (:func:`receptive_radius`).

- ``"3d"``: input ``(N, 1, B', h, w)`` with the bands zero-padded to a multiple of
  ``2**n``; convs 3x3x3; the transform is a (4,5,5) conv with stride (2,1,1) (down) or its
  transpose (up): the spectral axis halves per level, space is never down-sampled.
- ``"2d"``: bands are channels, every conv (transforms too) is 3x3 with stride 1.
- ``"pixel"``: as ``"2d"`` with every conv 1x1: a per-pixel spectral denoiser (radius 0).

Both take and return ``(N, P, h, w)``; tapped features come back as ``(N, ch, h, w)`` with
the 3D (channel, spectral) axes flattened to ``ch = channel * spectral``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsimap.models.diffspectralnet.config import DiffSpectralNetConfig
from hsimap.models.diffspectralnet.schedule import SinusoidalEmbedding

CONV_RADIUS = {"3d": 1, "2d": 1, "pixel": 0}  # 3x3(x3) convs; 1x1 for "pixel"
TRANSFORM_RADIUS = {"3d": 2, "2d": 1, "pixel": 0}  # spatial half-width of the transform kernel


def padded_bands(n_bands: int, n_blocks: int) -> int:
    """Band count padded to a multiple of ``2**n_blocks`` (3D U-Net halves it per level)."""
    step = 2 ** n_blocks
    return -(-n_bands // step) * step


def receptive_radius(config: DiffSpectralNetConfig, layer: int) -> int:
    """Exact spatial receptive-field radius (pixels) of decoder layer ``layer``.

    Layer ``i < n`` is the input of up block ``i``; ``n`` the last up block's output. The
    stem adds one conv, every block two convs and one transform; the 1x1 head adds nothing.
    """
    conv = CONV_RADIUS[config.unet]
    block = 2 * conv + TRANSFORM_RADIUS[config.unet]
    return conv + config.n_blocks * block + layer * block


def layer_channels(config: DiffSpectralNetConfig, layer: int, n_in: int) -> int:
    """Channels per pixel of tapped layer ``layer`` (3D: channel x spectral, flattened).

    The duplicated bottleneck of layer 0 is stored once. ``n_in`` is the U-Net's input band
    count (after projection).
    """
    n, w = config.n_blocks, config.widths
    ch = w[n] if layer == 0 else (w[0] if layer == n else 2 * w[n - layer])
    if config.unet != "3d":
        return ch
    spectral = padded_bands(n_in, n) // 2 ** (n - layer)
    return ch * spectral


class _Pointwise(nn.Conv2d):
    """A 1x1 convolution computed as a matrix product over the channel axis (the ``pixel``
    U-Net): the same parameters and values as ``nn.Conv2d(c_in, c_out, 1)``, 1.5-2x faster to
    train on CPUs, where a 1x1 convolution's backward pass is the slow part."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.movedim(1, -1), self.weight.flatten(1), self.bias).movedim(-1, 1)


def _conv(kind: str, c_in: int, c_out: int, k: int) -> nn.Module:
    """``k``-wide convolution of a U-Net kind (3D, 2D, or pointwise for ``pixel``)."""
    if kind == "pixel" or k == 1 and kind == "2d":
        return _Pointwise(c_in, c_out)
    return (nn.Conv3d if kind == "3d" else nn.Conv2d)(c_in, c_out, k, padding=k // 2)


class _Block(nn.Module):
    """One SpectralDiff U-Net block (``up`` blocks take the concatenated skip)."""

    def __init__(self, c_in: int, c_out: int, time_dim: int, *, up: bool, kind: str) -> None:
        super().__init__()
        norm: type[nn.BatchNorm2d] | type[nn.BatchNorm3d] = (
            nn.BatchNorm3d if kind == "3d" else nn.BatchNorm2d)
        self.time_mlp = nn.Linear(time_dim, c_out)
        k = 1 if kind == "pixel" else 3
        self.conv1 = _conv(kind, 2 * c_in if up else c_in, c_out, k)
        self.conv2 = _conv(kind, c_out, c_out, k)
        self.bnorm1 = norm(c_out)
        self.bnorm2 = norm(c_out)
        self.transform: nn.Module
        if kind != "3d":
            self.transform = _conv(kind, c_out, c_out, k)
        elif up:
            self.transform = nn.ConvTranspose3d(c_out, c_out, (4, 5, 5), (2, 1, 1), (1, 2, 2))
        else:
            self.transform = nn.Conv3d(c_out, c_out, (4, 5, 5), (2, 1, 1), (1, 2, 2))

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.bnorm1(F.relu(self.conv1(x)))  # (N, out, [S,] h, w)
        te = F.relu(self.time_mlp(temb))  # (N, out)
        h = h + te.view(te.shape + (1,) * (h.dim() - 2))
        h = self.bnorm2(F.relu(self.conv2(h)))
        return self.transform(h)


class DenoisingUNet(nn.Module):
    """Epsilon-predicting U-Net over ``(N, P, h, w)`` inputs (see module docstring).

    Parameters
    ----------
    config
        Uses ``unet``, ``widths`` and ``time_dim``.
    n_in
        Input bands ``P`` (after any spectral projection).
    """

    def __init__(self, config: DiffSpectralNetConfig, n_in: int) -> None:
        super().__init__()
        self.kind = config.unet
        self.n_in = n_in
        w, n, td = config.widths, config.n_blocks, config.time_dim
        self.n_blocks = n
        self.spectral = padded_bands(n_in, n) if self.kind == "3d" else 0
        c_img = 1 if self.kind == "3d" else n_in
        self.time_mlp = nn.Sequential(SinusoidalEmbedding(td), nn.Linear(td, td), nn.ReLU())
        k = 1 if self.kind == "pixel" else 3
        self.conv0 = _conv(self.kind, c_img, w[0], k)
        self.downs = nn.ModuleList(
            _Block(w[i], w[i + 1], td, up=False, kind=self.kind) for i in range(n))
        self.ups = nn.ModuleList(
            _Block(w[n - i], w[n - i - 1], td, up=True, kind=self.kind) for i in range(n))
        self.output = _conv(self.kind, w[0], c_img, 1)

    def _to_volume(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, P, h, w)`` -> ``(N, 1, B', h, w)`` (3D) with zero bands split at both ends."""
        if self.kind != "3d":
            return x
        pad = self.spectral - self.n_in
        x = F.pad(x, (0, 0, 0, 0, pad // 2, pad - pad // 2))
        return x.unsqueeze(1)

    def _from_volume(self, y: torch.Tensor) -> torch.Tensor:
        if self.kind != "3d":
            return y
        lo = (self.spectral - self.n_in) // 2
        return y[:, 0, lo:lo + self.n_in]

    @staticmethod
    def _flat(h: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, h, w)`` -> ``(N, C*S, h, w)``; 2D maps pass through."""
        return h.flatten(1, 2) if h.dim() == 5 else h

    def run(self, x: torch.Tensor, t: torch.Tensor,
            taps: tuple[int, ...] = ()) -> tuple[torch.Tensor | None, dict[int, torch.Tensor]]:
        """Run the net, optionally stopping after the deepest tapped layer.

        Parameters
        ----------
        x
            ``(N, P, h, w)`` noisy input.
        t
            ``(N,)`` integer timesteps.
        taps
            Decoder layers to return (see :func:`receptive_radius`); when given, the net stops
            as soon as the deepest one is computed and the epsilon output is None.

        Returns
        -------
        eps, features
            ``(N, P, h, w)`` predicted noise (or None) and ``{layer: (N, ch, h, w)}``.
        """
        temb = self.time_mlp(t)  # (N, time_dim)
        h = self.conv0(self._to_volume(x))
        skips = []
        for down in self.downs:
            h = down(h, temb)
            skips.append(h)
        feats: dict[int, torch.Tensor] = {}
        last = max(taps) if taps else None
        for i, up in enumerate(self.ups):
            if i in taps:
                feats[i] = self._flat(h if i == 0 else torch.cat((h, skips[-1]), dim=1))
            if last is not None and i >= last:
                return None, feats
            h = up(torch.cat((h, skips.pop()), dim=1), temb)
        if self.n_blocks in taps:
            feats[self.n_blocks] = self._flat(h)
            return None, feats
        return self._from_volume(self.output(h)), feats

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predicted noise ``(N, P, h, w)`` for noisy input ``x`` at timesteps ``t``."""
        eps, _ = self.run(x, t)
        if eps is None:  # pragma: no cover - run() always returns eps without taps
            raise RuntimeError("U-Net produced no output")
        return eps
