"""Pieces shared by the models' supervised training loops."""

from __future__ import annotations

import numpy as np
import torch


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``(K,)``, mean 1 over training samples; absent classes 1.

    Only ratios matter to ``cross_entropy(weight=...)`` (its mean divides by the summed
    weights), so any normalisation gives the same loss.
    """
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.ones(n_classes)
    w[present] = len(labels) / (present.sum() * counts[present])
    return torch.tensor(w, dtype=torch.float32)


def epoch_order(n: int, *, batch: int, min_batches: int,
                gen: torch.Generator) -> torch.Tensor:
    """Sample order of one epoch: a shuffled pass, cycled (reshuffled each pass) when one
    pass makes fewer than ``min_batches`` batches, so that early-stopping checks stay that
    many optimizer steps apart however few the labelled pixels (1: always one pass)."""
    passes = 1
    if -(-n // batch) < min_batches:
        passes = -(-min_batches * batch // n)
    return torch.cat([torch.randperm(n, generator=gen) for _ in range(passes)])
