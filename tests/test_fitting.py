"""Shared training pieces: epoch sample order and class weights, and spectral-mlp's use of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hsimap.errors import ConfigError
from hsimap.models.base import TrainData, get_spec
from hsimap.models.fitting import class_weights, epoch_order


def test_epoch_order_cycles_small_sets_and_keeps_one_pass_otherwise():
    gen = torch.Generator().manual_seed(0)
    order = epoch_order(6, batch=4, min_batches=5, gen=gen)
    assert len(order) == 24  # 4 passes of 6 >= 5 batches of 4
    assert all(sorted(order[i:i + 6].tolist()) == list(range(6)) for i in range(0, 24, 6))
    assert len(epoch_order(6, batch=64, min_batches=1, gen=gen)) == 6
    assert len(epoch_order(300, batch=64, min_batches=3, gen=gen)) == 300


def test_class_weights_balance_the_loss_whatever_the_counts():
    labels = np.array([0] * 90 + [1] * 10)
    w = class_weights(labels, 3)
    assert w[2] == 1.0  # absent class
    assert torch.isclose(w[1] / w[0], torch.tensor(9.0))
    assert torch.isclose((w[torch.as_tensor(labels)]).mean(), torch.tensor(1.0))
    # Each class contributes equally to a weighted mean cross-entropy.
    logits = torch.zeros(100, 3)
    loss = F.cross_entropy(logits, torch.as_tensor(labels), weight=w, reduction="none")
    assert torch.isclose(loss[:90].sum(), loss[90:].sum())


def test_spectral_mlp_takes_min_batches_steps_per_epoch_on_few_pixels(monkeypatch):
    rng = np.random.default_rng(0)
    h, w, bands = 10, 12, 5
    labels = (np.arange(w)[None, :].repeat(h, 0) >= w // 2).astype(np.int64)
    cube = (labels[None] * 2.0 + rng.normal(size=(bands, h, w))).astype(np.float32)
    train = np.zeros((h, w), bool)
    train[::3, ::3] = True  # 16 pixels: one batch of 256
    data = TrainData(cube, np.ones((h, w), bool), labels, train, ~train, 2)
    spec = get_spec("spectral-mlp")
    config = spec.make_config(None, {"epochs": 2, "min_batches": 8})
    steps: list[int] = []
    original = torch.optim.Adam.step

    def counting(self, *a, **k):
        steps.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", counting)
    _, history = spec.fit(data, config, seed=0, device=torch.device("cpu"),
                          progress=lambda e: None)
    assert len(history["classifier"]["epochs"]) == 2
    assert len(steps) == 2 * 8


def test_spectral_mlp_refuses_min_batches_below_one():
    with pytest.raises(ConfigError, match="min_batches"):
        get_spec("spectral-mlp").make_config(None, {"min_batches": 0})
