"""DiffSpectralNet: diffusion schedule arithmetic and position-keyed noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hsimap.models.diffspectralnet.noise import mix32, position_noise
from hsimap.models.diffspectralnet.schedule import (
    alpha_bar,
    cosine_betas,
    eps_loss,
    linear_betas,
    make_betas,
    q_sample,
)


def test_linear_alpha_bar_matches_spectraldiff_values():
    # t is a 0-based index: alpha_bar[t] = prod_{s<=t} (1 - beta_s), as in SpectralDiff.
    abar = alpha_bar(linear_betas(500, 1e-4, 0.02))
    expected = {5: 0.999, 10: 0.997, 50: 0.946, 100: 0.809, 200: 0.439, 400: 0.039}
    for t, value in expected.items():
        assert float(abar[t]) == pytest.approx(value, abs=1.5e-3), t
    assert float(linear_betas(500)[0]) == pytest.approx(1e-4)
    assert float(linear_betas(500)[-1]) == pytest.approx(0.02)


def test_cosine_schedule_is_monotone_and_bounded():
    betas = cosine_betas(1000)
    abar = alpha_bar(betas)
    assert betas.shape == (1000,)
    assert torch.all(betas > 0) and torch.all(betas <= 0.999)
    assert torch.all(abar[1:] < abar[:-1])
    assert float(abar[0]) > 0.999 and float(abar[-1]) < 1e-3
    assert torch.equal(make_betas("cosine", 1000, 1e-4, 0.02), betas)
    with pytest.raises(ValueError):
        make_betas("sigmoid", 10, 1e-4, 0.02)


def test_q_sample_shapes_and_limits():
    abar = alpha_bar(linear_betas(500))
    x0 = torch.randn(3, 4, 5, 6)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 250, 499])
    xt = q_sample(x0, t, noise, abar)
    assert xt.shape == x0.shape and xt.dtype == x0.dtype
    assert torch.allclose(xt[0], x0[0], atol=0.05)  # almost clean at t=0
    assert float(abar[499]) < 0.01  # almost pure noise at t=T-1
    assert torch.allclose(xt[2], noise[2], atol=0.1 * float(x0[2].abs().max()) + 0.01)
    mid = abar[250].sqrt() * x0[1] + (1 - abar[250]).sqrt() * noise[1]
    assert torch.allclose(xt[1], mid.float(), atol=1e-6)


def test_eps_loss_l1_l2_and_mask():
    pred = torch.zeros(1, 2, 2, 2)
    noise = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]], [[0.0, 0.0], [0.0, 4.0]]]])
    assert float(eps_loss(pred, noise, kind="l1")) == pytest.approx(10 / 8)
    assert float(eps_loss(pred, noise, kind="l2")) == pytest.approx(30 / 8)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # only pixel (0, 0), both channels
    assert float(eps_loss(pred, noise, mask, "l1")) == pytest.approx(0.5)
    assert float(eps_loss(pred, noise, mask, "l2")) == pytest.approx(0.5)


def test_mix32_stays_in_32_bits_and_is_injective_on_a_range():
    x = torch.arange(0, 1 << 16, dtype=torch.int64) * 65537
    h = mix32(x)
    assert int(h.min()) >= 0 and int(h.max()) < 2**32
    assert len(torch.unique(h)) == len(x)
    big = torch.tensor([2**32 - 1, 2**31, 0x9E3779B9], dtype=torch.int64)
    ref = []
    for v in big.tolist():  # pure-Python reference of the same lowbias32 mix
        v ^= v >> 16
        v = (v * 0x7FEB352D) & 0xFFFFFFFF
        v ^= v >> 15
        v = (v * 0x846CA68B) & 0xFFFFFFFF
        v ^= v >> 16
        ref.append(v)
    assert mix32(big).tolist() == ref


def test_position_noise_is_keyed_by_global_position():
    whole = position_noise((100, 200), (5, 40, 50), t=50, seed=3)
    part = position_noise((110, 230), (5, 12, 9), t=50, seed=3)
    assert torch.equal(part, whole[:, 10:22, 30:39])
    assert not torch.equal(position_noise((100, 200), (5, 40, 50), t=51, seed=3), whole)
    assert not torch.equal(position_noise((100, 200), (5, 40, 50), t=50, seed=4), whole)
    assert not torch.equal(whole[0], whole[1])


def test_position_noise_is_standard_normal():
    z = position_noise((0, 0), (16, 96, 96), t=5, seed=0).double()
    n = z.numel()
    assert abs(float(z.mean())) < 4 / np.sqrt(n)
    assert float(z.std()) == pytest.approx(1.0, abs=0.01)
    assert float(((z - z.mean()) ** 3).mean()) == pytest.approx(0.0, abs=0.05)
    assert float((z**4).mean()) == pytest.approx(3.0, abs=0.1)
    # neighbours (space, band) are uncorrelated
    for a, b in ((z[:, 1:], z[:, :-1]), (z[:, :, 1:], z[:, :, :-1]), (z[1:], z[:-1])):
        assert abs(float(torch.corrcoef(torch.stack((a.flatten(), b.flatten())))[0, 1])) < 0.02


def test_diffusion_object_noises_and_recovers_as_the_functions_do():
    from hsimap.models.base import get_spec
    from hsimap.models.diffspectralnet.schedule import Diffusion, alpha_bar, make_betas, q_sample

    config = get_spec("diffspectralnet").make_config("fast")
    d = Diffusion.from_config(config)
    assert torch.equal(d.abar, alpha_bar(make_betas("linear", 500, 1e-4, 0.02)))
    x0, noise = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    t = torch.tensor([50, 100, 50])
    assert torch.equal(d.q_sample(x0, t, noise), q_sample(x0, t, noise, d.abar))
    xt = d.noisy(x0[:1], 50, noise[:1])
    assert torch.allclose(xt, d.q_sample(x0[:1], t[:1], noise[:1]), atol=1e-6)
    assert torch.allclose(d.predict_x0(xt, 50, noise[:1]), x0[:1], atol=1e-5)
    assert torch.allclose(d.noise_of(xt, 50, x0[:1]), noise[:1], atol=1e-4)
