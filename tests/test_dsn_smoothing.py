"""DiffSpectralNet's probability smoothing: the filter itself and its fitted spectral scale."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hsimap.models.smoothing import range_scale, smooth_probabilities


def probs(k: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(1, k, h, w, generator=g) * 2, 1)


def test_a_flat_guide_gives_the_gaussian_mean_of_the_valid_neighbours():
    p = probs(3, 9, 11)
    guide = torch.zeros(1, 4, 9, 11)
    valid = torch.ones(1, 1, 9, 11, dtype=torch.bool)
    valid[0, 0, 4, 6] = False
    out = smooth_probabilities(p, guide, valid, radius=1, range_sq=1.0)
    y, x = 4, 5  # a neighbour of the invalid pixel
    num, den = torch.zeros(3), 0.0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if (y + dy, x + dx) != (4, 6):
                wt = math.exp(-(dy * dy + dx * dx) / 0.5)  # sigma = radius / 2
                num += wt * p[0, :, y + dy, x + dx]
                den += wt
    assert torch.allclose(out[0, :, y, x], num / den, atol=1e-6)
    assert torch.equal(out[0, :, 4, 6], p[0, :, 4, 6])  # invalid: unchanged
    assert torch.allclose(out[0].sum(0), torch.ones(9, 11), atol=1e-6)
    assert torch.equal(smooth_probabilities(p, guide, valid, radius=0, range_sq=1.0), p)


def test_an_edge_in_the_guide_stops_the_smoothing():
    """Two fields with different spectra: a lone dissenting pixel inside a field is outvoted,
    but the probabilities on either side of the edge do not leak across it."""
    h, w = 8, 12
    guide = torch.zeros(1, 2, h, w)
    guide[0, 0, :, 6:] = 10.0  # right field looks different
    p = torch.zeros(1, 2, h, w)
    p[0, 0, :, :6], p[0, 1, :, 6:] = 0.9, 0.9
    p[0, 1, :, :6], p[0, 0, :, 6:] = 0.1, 0.1
    p[0, :, 3, 2] = torch.tensor([0.3, 0.7])  # one noisy pixel in the left field
    valid = torch.ones(1, 1, h, w, dtype=torch.bool)
    out = smooth_probabilities(p, guide, valid, radius=2, range_sq=1.0)
    assert out[0, :, 3, 2].argmax() == 0  # outvoted by its own field
    assert torch.allclose(out[0, 0, :, 5], torch.full((h,), 0.9), atol=0.05)  # edge kept
    assert torch.allclose(out[0, 1, :, 6], torch.full((h,), 0.9), atol=1e-6)
    blurred = smooth_probabilities(p, guide, valid, radius=2, range_sq=1e9)
    assert blurred[0, 0, 0, 5] < 0.8  # a plain blur would mix the two fields


def test_range_scale_is_the_median_neighbour_distance_of_valid_pixels():
    rng = np.random.default_rng(0)
    cube = torch.from_numpy(rng.normal(size=(3, 10, 10)).astype(np.float32))
    valid = np.ones((10, 10), bool)
    valid[:, 5:] = False
    cube[:, ~torch.from_numpy(valid)] = 0.0
    got = range_scale(cube, valid, radius=1, project=lambda t: t, rng=rng)
    want = []
    for y in range(10):
        for x in range(10):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    y2, x2 = y + dy, x + dx
                    if (dy or dx) and valid[y, x] and 0 <= y2 < 10 and 0 <= x2 < 10 \
                            and valid[y2, x2]:
                        want.append(float(((cube[:, y, x] - cube[:, y2, x2]) ** 2).mean()))
    assert got == pytest.approx(float(torch.tensor(want).median()), rel=1e-6)
    assert range_scale(cube, np.zeros((10, 10), bool), radius=1, project=lambda t: t,
                       rng=rng) == 1.0
