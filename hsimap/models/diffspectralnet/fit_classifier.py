"""Stage 2: fit the window classifier on labelled pixels of the frozen feature map."""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel

from hsimap.device import autocast
from hsimap.models.base import ProgressCallback, ProgressEvent
from hsimap.models.diffspectralnet.classifier import WindowClassifier, gather_patches
from hsimap.models.diffspectralnet.config import DiffSpectralNetConfig
from hsimap.models.fitting import class_weights, epoch_order

EVAL_CHUNK = 2048


def _spectra(cube: torch.Tensor | None, rows: torch.Tensor,
             cols: torch.Tensor) -> torch.Tensor | None:
    """``(n, C)`` input spectra at pixels, or None without a cube."""
    return None if cube is None else cube[:, rows, cols].T


@torch.no_grad()
def predict_pixels(clf: WindowClassifier, padded: torch.Tensor, rows: torch.Tensor,
                   cols: torch.Tensor, cube: torch.Tensor | None = None) -> torch.Tensor:
    """Eval-mode logits ``(n, K)`` of pixels via the training path (patch gathering)."""
    size = clf.k + 2
    out = []
    for i in range(0, len(rows), EVAL_CHUNK):
        r, c = rows[i:i + EVAL_CHUNK], cols[i:i + EVAL_CHUNK]
        out.append(clf.forward_patches(gather_patches(padded, r, c, size), _spectra(cube, r, c)))
    return torch.cat(out) if out else torch.zeros(0, 0)


def _evaluate(clf: WindowClassifier, padded: torch.Tensor, rows: torch.Tensor,
              cols: torch.Tensor, y: torch.Tensor,
              cube: torch.Tensor | None) -> tuple[float, float]:
    """Eval-mode (accuracy, mean cross-entropy) of pixels; NaNs when there are none."""
    if len(rows) == 0:
        return float("nan"), float("nan")
    was_training = clf.training
    clf.eval()
    logits = predict_pixels(clf, padded, rows, cols, cube).float()
    clf.train(was_training)
    return (float((logits.argmax(1) == y).float().mean()),
            float(F.cross_entropy(logits, y)))


def dihedral(patches: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Each ``(D, s, s)`` patch of ``(n, D, s, s)`` turned by ``which % 4`` quarter turns and
    mirrored when ``which >= 4`` (one of the 8 symmetries of the square per sample)."""
    out = torch.empty_like(patches)
    for w in range(8):
        sel = (which == w).nonzero().flatten().to(patches.device)
        if len(sel):
            p = torch.rot90(patches[sel], w % 4, (2, 3))
            out[sel] = p.flip(-1) if w >= 4 else p
    return out


class PatchSampler:
    """Training batches of ``size x size`` patches of a zero-padded ``(D, H+2p, W+2p)`` map,
    each optionally turned by one of the 8 symmetries of the square.

    The same patches as ``dihedral(gather_patches(padded, rows, cols, size), which)``, from
    one gather of whole ``D``-vectors: the map is kept channels-last and each symmetry is a
    permutation of the patch's pixel offsets. On 2 CPU cores the channels-first gather and the
    eight masked copies of :func:`dihedral` were a third of a training step.
    """

    def __init__(self, padded: torch.Tensor, size: int) -> None:
        self.size = size
        self.hwc = padded.permute(1, 2, 0).contiguous()  # (H+2p, W+2p, D)
        grid = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size),
                                          indexing="ij"))[None]  # (1, 2, s, s): (row, col)
        offsets = dihedral(grid.expand(8, -1, -1, -1), torch.arange(8))  # (8, 2, s, s)
        self.rows_off = offsets[:, 0].to(padded.device)
        self.cols_off = offsets[:, 1].to(padded.device)

    def __call__(self, rows: torch.Tensor, cols: torch.Tensor,
                 which: torch.Tensor | None = None) -> torch.Tensor:
        """``(n, D, s, s)`` patches at pixels ``rows, cols``; symmetry ``which`` (``(n,)``
        in 0..7, see :func:`dihedral`) or none."""
        w = torch.zeros_like(rows) if which is None else which.to(rows.device)
        yy = rows[:, None, None] + self.rows_off[w]  # (n, s, s)
        xx = cols[:, None, None] + self.cols_off[w]
        return self.hwc[yy, xx].permute(0, 3, 1, 2)  # (n, D, s, s), channels-last strides


def _epoch(clf: WindowClassifier, opt: torch.optim.Optimizer, sampler: PatchSampler,
           rows: torch.Tensor, cols: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None,
           config: DiffSpectralNetConfig, gen: torch.Generator,
           spectra: torch.Tensor | None = None) -> tuple[float, float]:
    """One shuffled pass; returns (mean loss, train accuracy in train mode). ``spectra``:
    ``(n, C)`` input spectra of the training pixels, in the order of ``rows``."""
    clf.train()
    order = epoch_order(len(rows), batch=config.clf_batch, min_batches=config.clf_min_batches,
                        gen=gen).to(rows.device)
    total, correct, seen = 0.0, 0, 0
    for i in range(0, len(order), config.clf_batch):
        idx = order[i:i + config.clf_batch]
        if len(idx) < 2:  # BatchNorm needs two samples; a lone leftover waits for next epoch
            continue
        which = (torch.randint(0, 8, (len(idx),), generator=gen) if config.clf_augment
                 else None)
        patches = sampler(rows[idx], cols[idx], which)
        with autocast(rows.device):
            logits = clf.forward_patches(
                patches, None if spectra is None else spectra[idx]).float()
        loss = F.cross_entropy(logits, y[idx], weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clf.parameters(), config.clf_grad_clip)
        opt.step()
        total += float(loss.detach()) * len(idx)
        correct += int((logits.argmax(1) == y[idx]).sum())
        seen += len(idx)
    return total / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def refresh_bn(clf: WindowClassifier, sampler: PatchSampler, rows: torch.Tensor,
               cols: torch.Tensor, spectra: torch.Tensor | None, batch: int) -> None:
    """Recompute every batch-norm layer's running statistics as the average over the batches
    of one pass of the training windows (unturned) through ``clf`` in train mode: what
    ``torch.optim.swa_utils.update_bn`` does, which cannot pass the centre spectra."""
    norms = [m for m in clf.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or len(rows) < 2:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = clf.training
    clf.train()
    for i in range(0, len(rows), batch):
        r, c = rows[i:i + batch], cols[i:i + batch]
        if len(r) < 2:
            continue
        clf.forward_patches(sampler(r, c), None if spectra is None else spectra[i:i + batch])
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    clf.train(was_training)


def epoch_lr(config: DiffSpectralNetConfig, epoch: int) -> float:
    """Learning rate of 1-based ``epoch`` under ``config.clf_schedule``."""
    if config.clf_schedule == "constant":
        return float(config.clf_lr)
    return float(config.clf_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1)
                                                        / config.clf_epochs))


def _kept_note(*, has_val: bool, stopping: bool, averaged_from: int, last: int,
               best_epoch: int) -> str:
    """The history's sentence on which weights the fit kept."""
    info = f"; best validation epoch {best_epoch}, for information only" if has_val else ""
    if averaged_from:
        return (f"fixed schedule: kept the mean of the weights after epochs "
                f"{averaged_from}-{last} (weight averaging){info}")
    if not has_val:
        return "val_mask is empty: no early stopping, trained all epochs, kept the last state"
    if stopping:
        return f"kept the best validation epoch {best_epoch}"
    # a fixed schedule: picking an epoch by validation would bias the validation figure
    return f"fixed schedule (patience 0): kept the last epoch {last}{info}"


def train_classifier(clf: WindowClassifier, feats: torch.Tensor, labels: np.ndarray,
                     train_mask: np.ndarray, val_mask: np.ndarray,
                     config: DiffSpectralNetConfig, *, gen: torch.Generator,
                     progress: ProgressCallback,
                     cube: torch.Tensor | None = None) -> dict[str, Any]:
    """Fit ``clf`` with Adam (learning rate per epoch by ``config.clf_schedule``); with
    ``config.patience > 0``, early stopping on validation accuracy (best state kept), else a
    fixed schedule (last state kept).

    Parameters
    ----------
    clf
        The classifier, on the device of ``feats``; left in eval mode.
    feats
        ``(D, H, W)`` reduced feature map of the whole training scene.
    labels, train_mask, val_mask
        ``(H, W)`` class indices and masks (numpy).
    cube
        ``(C, H, W)`` standardised input on the device of ``feats``, for ``spectrum_path``.

    Returns
    -------
    dict
        JSON-able history: per-epoch metrics, best epoch, early-stopping note, seconds.
    """
    dev = feats.device
    p = clf.k // 2 + 1
    padded = F.pad(feats, (p, p, p, p))  # (D, H+2p, W+2p), zeros beyond the scene
    sampler = PatchSampler(padded, clf.k + 2)
    tr = np.nonzero(train_mask)
    va = np.nonzero(val_mask)
    rows, cols = (torch.as_tensor(a, device=dev) for a in tr)
    vrows, vcols = (torch.as_tensor(a, device=dev) for a in va)
    y = torch.as_tensor(labels[tr], device=dev)
    spectra = _spectra(cube, rows, cols)
    spectra = None if spectra is None else spectra.contiguous()
    vy = torch.as_tensor(labels[va], device=dev)
    weight = (class_weights(labels[tr], clf.n_classes).to(dev)
              if config.class_weighting else None)
    opt = torch.optim.Adam(clf.parameters(), lr=config.clf_lr,
                           weight_decay=config.clf_weight_decay)
    has_val = len(vrows) > 0
    epochs: list[dict[str, float]] = []
    best_acc, best_loss, best_epoch, best_state, stale = -1.0, math.inf, 0, None, 0
    start = time.perf_counter()
    average = AveragedModel(clf) if config.clf_average_from else None  # equal-weight mean
    for epoch in range(1, config.clf_epochs + 1):
        for group in opt.param_groups:
            group["lr"] = epoch_lr(config, epoch)
        loss, train_acc = _epoch(clf, opt, sampler, rows, cols, y, weight, config, gen,
                                 spectra)
        if average is not None and epoch >= config.clf_average_from:
            average.update_parameters(clf)
        val_acc, val_loss = _evaluate(clf, padded, vrows, vcols, vy, cube)
        epochs.append({"epoch": epoch, "loss": loss, "train_acc": train_acc,
                       "val_acc": val_acc if has_val else None,  # type: ignore[dict-item]
                       "val_loss": val_loss if has_val else None})  # type: ignore[dict-item]
        progress(ProgressEvent("classifier", epoch, config.clf_epochs,
                               {"loss": loss, "train_acc": train_acc,
                                **({"val_acc": val_acc} if has_val else {})}))
        if not has_val:
            continue
        # Best validation accuracy; ties (a small validation set saturates at 100 %) go to
        # the lower validation loss, not to the first epoch that reached it.
        if (val_acc, -val_loss) > (best_acc, -best_loss):
            best_acc, best_loss, best_epoch, stale = val_acc, val_loss, epoch, 0
            best_state = copy.deepcopy(clf.state_dict())
        else:
            stale += 1
            if config.patience and stale >= config.patience:
                break
    stopping = has_val and config.patience > 0
    if stopping and best_state is not None:
        clf.load_state_dict(best_state)
        early = (f"stopped early at epoch {len(epochs)} of {config.clf_epochs} (no better "
                 f"validation accuracy for {config.patience} epochs); "
                 if len(epochs) < config.clf_epochs else "")
        progress(ProgressEvent("classifier", len(epochs), config.clf_epochs, note=(
            f"{early}kept epoch {best_epoch} (best validation accuracy {best_acc:.4f})")))
    averaged: dict[str, Any] = {}
    if average is not None and int(average.n_averaged):
        with torch.no_grad():
            for param, mean in zip(clf.parameters(), average.module.parameters(),
                                   strict=True):
                param.copy_(mean)
        refresh_bn(clf, sampler, rows, cols, spectra, config.clf_batch)
        averaged = {"epochs": int(average.n_averaged), "from_epoch": config.clf_average_from}
        if has_val:
            averaged["val_acc"], averaged["val_loss"] = _evaluate(clf, padded, vrows, vcols,
                                                                  vy, cube)
    clf.eval()
    note = _kept_note(has_val=has_val, stopping=stopping, averaged_from=(
        config.clf_average_from if averaged else 0), last=len(epochs), best_epoch=best_epoch)
    return {"epochs": epochs, "best_epoch": best_epoch if stopping else len(epochs),
            "best_val_epoch": best_epoch if has_val else None,
            "best_val_acc": best_acc if has_val else None, "early_stopping": note,
            **({"weight_average": averaged} if averaged else {}),
            "n_train": int(len(rows)), "n_val": int(len(vrows)),
            "seconds": round(time.perf_counter() - start, 3)}
