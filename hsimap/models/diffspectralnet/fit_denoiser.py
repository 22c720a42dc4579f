"""Stage 1: train the denoising U-Net on random crops of the (projected) scene, no labels."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from hsimap.errors import TrainingError
from hsimap.models.base import ProgressCallback, ProgressEvent
from hsimap.models.diffspectralnet.config import DiffSpectralNetConfig
from hsimap.models.diffspectralnet.noise import position_noise
from hsimap.models.diffspectralnet.schedule import Diffusion
from hsimap.models.diffspectralnet.unet import DenoisingUNet, receptive_radius

MIN_VALID_FRACTION = 0.5  # crops are drawn from windows at least this valid
MAX_HISTORY = 1000  # loss entries kept in the history (binned means beyond that)
HOLDOUT_FRACTION = 0.1  # share of crop-sized blocks kept out of denoiser training
MAX_HOLDOUT_BLOCKS = 16  # cap, so the held-out check stays cheap on large scenes
EVAL_NOISE_SEED = 7919  # noise of the held-out check (not the feature-extraction noise)


def _window_counts(mask: np.ndarray, size: int) -> np.ndarray:
    """``(H-s+1, W-s+1)`` count of True pixels in every ``size x size`` window."""
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    s = size
    return integral[s:, s:] - integral[:-s, s:] - integral[s:, :-s] + integral[:-s, :-s]


def crop_origins(valid: np.ndarray, size: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Top-left corners ``(n, 2)`` of ``size x size`` windows that are mostly valid.

    Windows with a valid fraction of at least :data:`MIN_VALID_FRACTION` qualify; if none
    does, the windows with the highest valid fraction are used. Windows touching an
    ``exclude`` pixel (the held-out blocks) are left out, unless that leaves none.
    """
    frac = _window_counts(valid, size) / float(size * size)
    if frac.max() <= 0:
        raise TrainingError("the training scene has no valid pixels",
                            fix="check the cube's nodata value and the valid mask")
    if exclude is not None and exclude.any():
        clear = _window_counts(exclude, size) == 0
        if (clear & (frac > 0)).any():
            frac = np.where(clear, frac, 0.0)
    ok = frac >= min(MIN_VALID_FRACTION, float(frac.max()))
    return np.argwhere(ok)


def holdout_blocks(valid: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``(H, W)`` bool: valid pixels of a few ``size x size`` grid blocks kept out of training.

    About :data:`HOLDOUT_FRACTION` of the blocks with valid pixels (at least one, at most
    :data:`MAX_HOLDOUT_BLOCKS`), drawn with ``seed``; none when the scene has one block only.
    """
    h, w = valid.shape
    ids = (np.arange(h)[:, None] // size) * (-(-w // size)) + np.arange(w)[None, :] // size
    candidates = np.unique(ids[valid])
    if len(candidates) < 2:
        return np.zeros_like(valid)
    n = int(np.clip(round(HOLDOUT_FRACTION * len(candidates)), 1, MAX_HOLDOUT_BLOCKS))
    chosen = np.random.default_rng(seed).choice(candidates, size=n, replace=False)
    return np.isin(ids, chosen) & valid


def _timesteps(config: DiffSpectralNetConfig, n: int, gen: torch.Generator) -> torch.Tensor:
    """``(n,)`` training timesteps drawn as ``config.t_sampling`` says."""
    t = torch.randint(0, config.diffusion_steps, (n,), generator=gen)
    if config.t_sampling == "uniform":
        return t
    feat = torch.tensor(config.timesteps, dtype=torch.int64)
    pick = feat[torch.randint(0, len(feat), (n,), generator=gen)]
    return torch.where(torch.rand(n, generator=gen) < 0.5, pick, t)


@torch.no_grad()
def evaluate_denoiser(unet: DenoisingUNet, xp: torch.Tensor, mask: np.ndarray,
                      config: DiffSpectralNetConfig, *,
                      device: torch.device) -> dict[str, Any]:
    """Eval-mode noise-prediction L1 error on ``mask`` pixels at every feature timestep.

    Each masked pixel is predicted from its full receptive field (windows of the scene
    around the masked blocks), with fixed position-keyed noise, so the number is the same
    every time it is measured. ``zero_l1`` is the error of predicting zero noise (the mean
    absolute noise) on the same pixels: a denoiser that learned nothing scores about that.

    Returns ``{"timesteps", "eps_l1", "zero_l1", "ratio", "n_pixels"}`` (JSON-able).
    """
    was_training = unet.training
    unet.eval()
    diffusion = Diffusion.from_config(config)
    r = max(receptive_radius(config, i) for i in range(config.n_blocks + 1))
    _, h, w = xp.shape
    ys, xs = np.nonzero(mask)
    ts = list(config.timesteps)
    err = np.zeros(len(ts))
    zero = np.zeros(len(ts))
    n_pix = 0
    if len(ys):
        step = max(config.crop, 16)
        for y0 in range(int(ys.min()), int(ys.max()) + 1, step):
            for x0 in range(int(xs.min()), int(xs.max()) + 1, step):
                core = mask[y0:y0 + step, x0:x0 + step]
                if not core.any():
                    continue
                py0, px0 = max(0, y0 - r), max(0, x0 - r)
                py1, px1 = min(h, y0 + step + r), min(w, x0 + step + r)
                x0_ = xp[None, :, py0:py1, px0:px1].to(device)
                sel = torch.zeros(py1 - py0, px1 - px0, dtype=torch.bool)
                sel[y0 - py0:y0 - py0 + core.shape[0],
                    x0 - px0:x0 - px0 + core.shape[1]] = torch.from_numpy(core)
                sel = sel.to(device)
                for k, t in enumerate(ts):
                    eps = position_noise((py0, px0), tuple(x0_.shape[1:]), t,  # type: ignore[arg-type]
                                         EVAL_NOISE_SEED, device=device)[None]
                    tt = torch.full((1,), t, dtype=torch.int64, device=device)
                    pred = unet(diffusion.q_sample(x0_, tt, eps), tt)
                    err[k] += float((pred.float() - eps).abs()[..., sel].sum())
                    zero[k] += float(eps.abs()[..., sel].sum())
                n_pix += int(core.sum())
    unet.train(was_training)
    n_val = max(n_pix * xp.shape[0], 1)
    eps_l1 = [float(v / n_val) for v in err]
    zero_l1 = [float(v / n_val) for v in zero]
    return {"timesteps": ts, "eps_l1": eps_l1, "zero_l1": zero_l1,
            "ratio": [e / z if z > 0 else None for e, z in zip(eps_l1, zero_l1, strict=True)],
            "n_pixels": n_pix}


def _mean_ratio(ev: dict[str, Any]) -> float:
    """Mean eps/zero ratio of a :func:`evaluate_denoiser` result (inf when empty)."""
    vals = [v for v in ev["ratio"] if v is not None]
    return float(np.mean(vals)) if vals else float("inf")


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
        JSON-able history: binned losses, crop size, the held-out checks, the final
        held-out evaluation (``eval``, see :func:`evaluate_denoiser`), seconds.
    """
    size = min(config.crop, xp.shape[1], xp.shape[2])
    held = holdout_blocks(valid.numpy(), size, seed=int(rng.integers(2**31)))
    origins = crop_origins(valid.numpy(), size, exclude=held)
    eval_mask = held if held.any() else valid.numpy()
    diffusion = Diffusion.from_config(config)
    opt = torch.optim.Adam(unet.parameters(), lr=config.lr)
    unet.train()
    losses: list[float] = []
    checks: list[dict[str, float]] = []
    stopped = None
    start = time.perf_counter()
    for it in range(config.denoiser_iterations):
        x0, mask = _batch(xp, valid, origins, size, config.batch, rng)
        t = _timesteps(config, config.batch, gen)
        noise = torch.randn(x0.shape, generator=gen)
        x0, mask, t, noise = (v.to(device) for v in (x0, mask, t, noise))
        loss = diffusion.loss(unet, x0, t, noise, mask, config.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        progress(ProgressEvent("denoiser", it + 1, config.denoiser_iterations,
                               {"loss": losses[-1]}))
        every_n = config.denoiser_check_every
        if every_n and (it + 1) % every_n == 0 and it + 1 < config.denoiser_iterations:
            ratio = _mean_ratio(evaluate_denoiser(unet, xp, eval_mask, config, device=device))
            checks.append({"iteration": it + 1, "mean_ratio": ratio})
            if len(checks) > 1 and ratio > checks[-2]["mean_ratio"] * (
                    1.0 - config.denoiser_min_gain):
                stopped = (f"held-out error plateaued at iteration {it + 1} (mean ratio "
                           f"{ratio:.3f}, previous {checks[-2]['mean_ratio']:.3f})")
                progress(ProgressEvent(  # the stage ends here, not "unfinished"
                    "denoiser", it + 1, config.denoiser_iterations,
                    note=f"stopped early at iteration {it + 1} of "
                         f"{config.denoiser_iterations}: {stopped}"))
                break
    unet.eval()
    unet.requires_grad_(False)
    final = evaluate_denoiser(unet, xp, eval_mask, config, device=device)
    final["held_out"] = bool(held.any())
    binned, every = _binned(losses)
    return {"loss": binned, "loss_every": every, "crop": size, "windows": int(len(origins)),
            "iterations": len(losses), "checks": checks,
            "stopped": stopped or f"ran all {len(losses)} iterations",
            "final_loss": float(np.mean(losses[-20:])) if losses else None,
            "eval": final, "seconds": round(time.perf_counter() - start, 3)}
