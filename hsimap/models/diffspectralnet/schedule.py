"""The DDPM forward process as pure functions (no parameters, kept apart from the network).

Timestep convention: ``t`` is a 0-based index into the schedule, ``alpha_bar[t] =
prod_{s <= t} (1 - beta_s)`` (as in SpectralDiff's code). With the linear schedule
(T=500, 1e-4..0.02) ``alpha_bar`` at t = 5, 10, 50, 100, 200, 400 is 0.999, 0.997, 0.946,
0.809, 0.439, 0.039.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hsimap.device import autocast

if TYPE_CHECKING:
    from hsimap.models.diffspectralnet.config import DiffSpectralNetConfig


def linear_betas(steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Linear beta schedule (DDPM, SpectralDiff), ``(steps,)`` float64."""
    return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)


def cosine_betas(steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule of Nichol & Dhariwal (2021), ``(steps,)`` float64."""
    grid = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((grid + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


def make_betas(kind: str, steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Named beta schedule (``"linear"`` or ``"cosine"``), ``(steps,)`` float64."""
    if kind == "linear":
        return linear_betas(steps, beta_start, beta_end)
    if kind == "cosine":
        return cosine_betas(steps)
    raise ValueError(f"unknown schedule {kind!r}")


def alpha_bar(betas: torch.Tensor) -> torch.Tensor:
    """Cumulative product of ``1 - beta``: ``alpha_bar[t]`` includes step ``t``."""
    return torch.cumprod(1.0 - betas, dim=0)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
             abar: torch.Tensor) -> torch.Tensor:
    """Noisy sample ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``.

    Parameters
    ----------
    x0, noise
        ``(N, ...)`` clean data and standard normal noise of the same shape.
    t
        ``(N,)`` integer timesteps.
    abar
        ``(T,)`` cumulative alphas (any float dtype; cast to ``x0``'s).
    """
    a = abar.to(device=x0.device, dtype=torch.float64)[t.to(x0.device)]
    shape = (-1,) + (1,) * (x0.dim() - 1)
    s1 = a.sqrt().to(x0.dtype).view(shape)
    s2 = (1 - a).sqrt().to(x0.dtype).view(shape)
    return s1 * x0 + s2 * noise


class Diffusion:
    """The forward (noising) process of one config in one object, as improved-diffusion's
    ``GaussianDiffusion``: the schedule, ``q_sample``, the clean signal recovered from a
    noise prediction, and the training loss. The network is an argument, never a member, so
    the denoiser's training, the feature extractor and the inspection panels share one
    definition of ``alpha_bar`` and of the noising formulas."""

    def __init__(self, betas: torch.Tensor) -> None:
        self.betas = betas  # (T,) float64
        self.abar = alpha_bar(betas)  # (T,) float64, on the CPU

    @classmethod
    def from_config(cls, config: DiffSpectralNetConfig) -> Diffusion:
        """The schedule named by a config (``schedule``, ``diffusion_steps``, ``beta_*``)."""
        return cls(make_betas(config.schedule, config.diffusion_steps, config.beta_start,
                              config.beta_end))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t`` for a batch of integer timesteps ``t`` (see :func:`q_sample`)."""
        return q_sample(x0, t, noise, self.abar)

    def scales(self, t: int) -> tuple[float, float]:
        """``(sqrt(abar_t), sqrt(1 - abar_t))`` of one timestep."""
        a = float(self.abar[t])
        return a ** 0.5, (1.0 - a) ** 0.5

    def noisy(self, x0: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` at one timestep."""
        s1, s2 = self.scales(t)
        return s1 * x0 + s2 * noise

    def predict_x0(self, xt: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
        """The clean signal implied by a noise prediction ``eps`` at one timestep."""
        s1, s2 = self.scales(t)
        return (xt - s2 * eps) / s1

    def noise_of(self, xt: torch.Tensor, t: int, x0: torch.Tensor) -> torch.Tensor:
        """The noise that turned ``x0`` into ``xt`` at one timestep."""
        s1, s2 = self.scales(t)
        return (xt - s1 * x0) / s2

    def loss(self, unet: Any, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
             mask: torch.Tensor | None, kind: str) -> torch.Tensor:
        """The epsilon-prediction loss of ``unet`` on ``x0`` noised at ``t`` (bf16 autocast
        on CUDA; see :func:`eps_loss`)."""
        xt = self.q_sample(x0, t, noise)
        with autocast(x0.device):
            pred = unet(xt, t)
        return eps_loss(pred.float(), noise, mask, kind)


def eps_loss(pred: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor | None = None,
             kind: str = "l1") -> torch.Tensor:
    """Epsilon-prediction loss, averaged over masked elements.

    Parameters
    ----------
    pred, noise
        ``(N, ..., h, w)`` predicted and true noise.
    mask
        ``(N, 1, ..., h, w)``-broadcastable 0/1 weights (valid pixels), or None for all.
    kind
        ``"l1"`` (SpectralDiff) or ``"l2"`` (DDPM's simple loss).
    """
    diff = pred - noise
    err = diff.abs() if kind == "l1" else diff.square()
    if mask is None:
        return err.mean()
    weight = mask.to(err.dtype).expand_as(err)
    return (err * weight).sum() / weight.sum().clamp(min=1.0)


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of integer timesteps: ``(N,) -> (N, dim)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        scale = math.log(10000) / max(half - 1, 1)
        freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -scale)
        args = t.to(torch.float32)[:, None] * freqs[None, :]  # (N, half)
        return torch.cat((args.sin(), args.cos()), dim=-1)  # (N, dim)
