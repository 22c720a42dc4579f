"""``spectral-mlp``: a per-pixel multilayer perceptron on the spectrum (the baseline).

No spatial context (halo 0): each pixel is classified from its own standardised spectrum.
It is fast and a useful yardstick for what the diffusion features add.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from hsimap.errors import ConfigError
from hsimap.models.base import (
    HsiModel,
    Limit,
    ModelSpec,
    ProgressCallback,
    ProgressEvent,
    TrainData,
    config_to_dict,
    register,
)
from hsimap.models.fitting import class_weights, epoch_order


@dataclass(frozen=True)
class SpectralMLPConfig:
    """Hyperparameters of the per-pixel MLP.

    ``min_batches``: least optimizer steps per epoch; a training set that makes fewer batches
    in one pass is cycled (without it, 30 pixels per class were one step per epoch and early
    stopping came after a few dozen steps).
    """

    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 15
    class_weights: bool = True
    min_batches: int = 16

    # On top of base.COMMON_LIMITS (epochs, dropout, weight_decay, lr, batch_size, ...).
    LIMITS: ClassVar[Mapping[str, Limit]] = {"hidden": Limit(1, 2**16)}

    def __post_init__(self) -> None:
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden layer sizes must be positive, got {self.hidden}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.min_batches < 1:
            raise ConfigError("epochs, batch_size, lr and min_batches must be positive")


class SpectralMLP(HsiModel):
    """Per-pixel MLP applied as 1x1 convolutions over a tile."""

    kind = "spectral-mlp"

    def __init__(self, config: SpectralMLPConfig, *, n_bands: int, n_classes: int) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = n_bands
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(config.dropout)]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def halo(self) -> int:
        """No spatial context."""
        return 0

    def forward(self, spectra: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` spectra -> ``(N, K)`` logits."""
        return self.net(spectra)

    def forward_tile(self, x: torch.Tensor, *, origin: tuple[int, int]) -> torch.Tensor:
        """``(1, C, h, w)`` -> ``(1, K, h, w)`` logits."""
        _, c, h, w = x.shape
        logits = self(x[0].reshape(c, h * w).T)  # (h*w, K)
        return logits.T.reshape(1, -1, h, w)

    def config_dict(self) -> dict[str, Any]:
        """JSON-able config."""
        return config_to_dict(self.config)


def build(config: SpectralMLPConfig, *, n_bands: int, n_classes: int) -> SpectralMLP:
    """A fresh, untrained model."""
    return SpectralMLP(config, n_bands=n_bands, n_classes=n_classes)


def fit(data: TrainData, config: SpectralMLPConfig, *, seed: int, device: torch.device,
        progress: ProgressCallback) -> tuple[SpectralMLP, dict[str, Any]]:
    """Train on ``train_mask`` pixels, early-stop on ``val_mask`` accuracy."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    spectra = data.cube.reshape(data.n_bands, -1).T  # (H*W, C)
    flat_labels = data.labels.reshape(-1)
    tr = np.flatnonzero(data.train_mask.reshape(-1))
    va = np.flatnonzero(data.val_mask.reshape(-1))
    x_tr = torch.from_numpy(spectra[tr]).to(device)
    y_tr = torch.from_numpy(flat_labels[tr]).to(device)
    x_va = torch.from_numpy(spectra[va]).to(device)
    y_va = torch.from_numpy(flat_labels[va]).to(device)
    model = build(config, n_bands=data.n_bands, n_classes=data.n_classes).to(device)
    weights = class_weights(flat_labels[tr], data.n_classes).to(device) \
        if config.class_weights else None
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: dict[str, Any] = {"classifier": {"epochs": []}}
    best: tuple[float, int, dict[str, torch.Tensor]] = (float("-inf"), 0, {})
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = epoch_order(len(tr), batch=config.batch_size, min_batches=config.min_batches,
                            gen=gen).to(device)
        total = 0.0
        for i in range(0, len(order), config.batch_size):
            idx = order[i:i + config.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            train_acc = float((model(x_tr).argmax(1) == y_tr).float().mean())
            val_acc = float((model(x_va).argmax(1) == y_va).float().mean()) if len(va) else \
                float("nan")
        row = {"epoch": epoch, "loss": total / len(order), "train_acc": train_acc,
               "val_acc": val_acc}
        history["classifier"]["epochs"].append(row)
        progress(ProgressEvent("classifier", epoch, config.epochs, row))
        score = val_acc if len(va) else -total
        if score > best[0]:
            best = (score, epoch, copy.deepcopy(model.state_dict()))
        elif len(va) and epoch - best[1] >= config.patience:
            break
    model.load_state_dict(best[2])
    if len(va):
        early = (f"stopped early at epoch {epoch} of {config.epochs} (no better validation "
                 f"accuracy for {config.patience} epochs); " if epoch < config.epochs else "")
        progress(ProgressEvent("classifier", epoch, config.epochs, note=(
            f"{early}kept epoch {best[1]} (best validation accuracy {best[0]:.4f})")))
    history["classifier"].update(best_epoch=best[1], seconds=time.perf_counter() - start,
                                 early_stopping=bool(len(va)))
    return model.eval(), history


def refit(model: Any, data: TrainData, config: SpectralMLPConfig, history: Mapping[str, Any],
          *, seed: int, device: torch.device,
          progress: ProgressCallback) -> tuple[SpectralMLP, dict[str, Any]]:
    """Fit again on every labelled pixel for the epochs early stopping kept."""
    kept = int(history.get("classifier", {}).get("best_epoch") or config.epochs)
    new, history = fit(data, dataclasses.replace(config, epochs=max(1, kept)), seed=seed,
                       device=device, progress=progress)
    new.config = config  # the checkpoint keeps the config asked for; the log, the epochs run
    return new, history


SPEC = register(ModelSpec(
    kind=SpectralMLP.kind,
    config_cls=SpectralMLPConfig,
    presets={"default": {}, "fast": {"epochs": 30}},
    default_preset="default",
    build=build,
    fit=fit,
    refit=refit,
    description="per-pixel MLP on the spectrum (baseline, no spatial context)",
))
