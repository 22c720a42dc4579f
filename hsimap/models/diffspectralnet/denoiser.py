"""Stage 1: train the denoising U-Net on random crops of the (projected) scene, no labels."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
import torch

from hsimap.errors import TrainingError
from hsimap.models.base import ProgressCallback, ProgressEvent
from hsimap.models.diffspectralnet.config import DiffSpectralNetConfig
from hsimap.models.diffspectralnet.schedule import alpha_bar, eps_loss, make_betas, q_sample
from hsimap.models.diffspectralnet.unet import DenoisingUNet

MIN_VALID_FRACTION = 0.5  # crops are drawn from windows at least this valid
MAX_HISTORY = 1000  # loss entries kept in the history (binned means beyond that)


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA only (bf16 is emulated and very slow on CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def crop_origins(valid: np.ndarray, size: int) -> np.ndarray:
    """Top-left corners ``(n, 2)`` of ``size x size`` windows that are mostly valid.

    Windows with a valid fraction of at least :data:`MIN_VALID_FRACTION` qualify; if none
    does, the windows with the highest valid fraction are used.
    """
    integral = np.pad(valid.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    s = size
    counts = (integral[s:, s:] - integral[:-s, s:] - integral[s:, :-s]
              + integral[:-s, :-s])  # (H-s+1, W-s+1) valid pixels per window
    frac = counts / float(s * s)
    if frac.max() <= 0:
        raise TrainingError("the training scene has no valid pixels",
                            fix="check the cube's nodata value and the valid mask")
    ok = frac >= min(MIN_VALID_FRACTION, float(frac.max()))
    return np.argwhere(ok)


def _batch(xp: torch.Tensor, valid: torch.Tensor, origins: np.ndarray, size: int,
           batch: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random augmented crops ``(batch, P, s, s)`` and masks ``(batch, 1, s, s)``."""
    picks = origins[rng.integers(0, len(origins), size=batch)]
    rots = rng.integers(0, 4, size=batch)
    flips = rng.integers(0, 2, size=batch)
    xs, ms = [], []
    for (y, x), k, f in zip(picks, rots, flips, strict=True):
        c = xp[:, y:y + size, x:x + size]
        m = valid[None, y:y + size, x:x + size]
        c, m = torch.rot90(c, int(k), (1, 2)), torch.rot90(m, int(k), (1, 2))
        if f:
            c, m = c.flip(-1), m.flip(-1)
        xs.append(c)
        ms.append(m)
    return torch.stack(xs), torch.stack(ms)


def _binned(values: list[float]) -> tuple[list[float], int]:
    """Losses binned to at most :data:`MAX_HISTORY` means, with the bin size."""
    every = max(1, -(-len(values) // MAX_HISTORY))
    arr = np.asarray(values, dtype=np.float64)
    means = [float(arr[i:i + every].mean()) for i in range(0, len(arr), every)]
    return means, every


def train_denoiser(unet: DenoisingUNet, xp: torch.Tensor, valid: torch.Tensor,
                   config: DiffSpectralNetConfig, *, rng: np.random.Generator,
                   gen: torch.Generator, device: torch.device,
                   progress: ProgressCallback) -> dict[str, Any]:
    """Fit ``unet`` to predict epsilon on crops of ``xp``; loss masked to valid pixels.

    Parameters
    ----------
    unet
        The U-Net, already on ``device``; left in eval mode with gradients disabled.
    xp, valid
        ``(P, H, W)`` projected scene and ``(H, W)`` bool mask (CPU tensors).
    rng, gen
        Crop/augmentation generator and the CPU torch generator for timesteps and noise.

    Returns
    -------
    dict
        JSON-able history: binned losses, crop size, seconds.
    """
    size = min(config.crop, xp.shape[1], xp.shape[2])
    origins = crop_origins(valid.numpy(), size)
    abar = alpha_bar(make_betas(config.schedule, config.diffusion_steps, config.beta_start,
                                config.beta_end))
    opt = torch.optim.Adam(unet.parameters(), lr=config.lr)
    unet.train()
    losses: list[float] = []
    start = time.perf_counter()
    for it in range(config.denoiser_iterations):
        x0, mask = _batch(xp, valid, origins, size, config.batch, rng)
        t = torch.randint(0, config.diffusion_steps, (config.batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        x0, mask, t, noise = (v.to(device) for v in (x0, mask, t, noise))
        xt = q_sample(x0, t, noise, abar)
        with autocast(device):
            pred = unet(xt, t)
        loss = eps_loss(pred.float(), noise, mask, config.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        progress(ProgressEvent("denoiser", it + 1, config.denoiser_iterations,
                               {"loss": losses[-1]}))
    unet.eval()
    unet.requires_grad_(False)
    binned, every = _binned(losses)
    return {"loss": binned, "loss_every": every, "crop": size, "windows": int(len(origins)),
            "final_loss": float(np.mean(losses[-20:])) if losses else None,
            "seconds": round(time.perf_counter() - start, 3)}
