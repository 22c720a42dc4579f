"""Position-keyed Gaussian noise: a counter-based hash in torch integer ops.

The noise added at timestep ``t`` to band ``c`` of the pixel at global ``(row, col)`` is a
pure function of ``(row, col, c, t, seed)``, so overlapping tiles see identical noise and a
tiled prediction equals the whole-scene one. All arithmetic is int64 with explicit
``& 0xFFFFFFFF`` masking; 32-bit products are split into 16-bit halves so nothing relies on
integer overflow.
"""

from __future__ import annotations

import math

import torch

_MASK = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mulmod32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2**32`` for ``0 <= x < 2**32`` without int64 overflow."""
    lo = (x & 0xFFFF) * c  # < 2**48
    hi = ((x >> 16) * c) & 0xFFFF  # only the low 16 bits survive the shift by 16
    return (lo + (hi << 16)) & _MASK


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit avalanche mix (the "lowbias32" finaliser) on int64 tensors."""
    x = x & _MASK
    x = x ^ (x >> 16)
    x = _mulmod32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mulmod32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _combine(h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Hash of ``(h, v)``: ``mix32(h + golden * v)``, all mod 2**32."""
    return mix32(h + _mulmod32(v & _MASK, _GOLDEN))


def position_noise(origin: tuple[int, int], shape: tuple[int, int, int], t: int, seed: int,
                   device: torch.device | None = None) -> torch.Tensor:
    """Standard normal noise keyed by global position, band, timestep and seed.

    Parameters
    ----------
    origin
        Global ``(row, col)`` of the tile's top-left pixel.
    shape
        ``(bands, h, w)``.
    t, seed
        Timestep and noise seed.

    Returns
    -------
    torch.Tensor
        ``(bands, h, w)`` float32, approximately N(0, 1) and independent across keys.
    """
    bands, h, w = shape
    i64 = torch.int64
    base = _combine(mix32(torch.tensor(seed, dtype=i64, device=device)),
                    torch.tensor(t, dtype=i64, device=device))
    band_key = _combine(base, torch.arange(bands, dtype=i64, device=device))  # (B,)
    rows = torch.arange(origin[0], origin[0] + h, dtype=i64, device=device)
    cols = torch.arange(origin[1], origin[1] + w, dtype=i64, device=device)
    row_key = _combine(band_key[:, None], rows[None, :])  # (B, h)
    col_term = _mulmod32(cols & _MASK, _GOLDEN)  # (w,)
    out = torch.empty(shape, dtype=torch.float32, device=device)
    step = max(1, _CHUNK // max(h * w, 1))  # bands per chunk: keep temporaries in cache
    for b0 in range(0, bands, step):
        key = mix32(row_key[b0:b0 + step, :, None] + col_term)  # (b, h, w) in [0, 2**32)
        out[b0:b0 + step] = _box_muller(key, mix32(key))
    return out


_CHUNK = 1 << 16  # elements per chunk of the int64 pipeline


def _box_muller(bits1: torch.Tensor, bits2: torch.Tensor) -> torch.Tensor:
    """Standard normals from two 32-bit integer tensors (top 24 bits of each, float32)."""
    u1 = ((bits1 >> 8) + 1).to(torch.float32) * (1.0 / 16777216.0)  # (0, 1]
    u2 = (bits2 >> 8).to(torch.float32) * (1.0 / 16777216.0)  # [0, 1)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
