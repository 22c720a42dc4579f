"""Pieces shared by the scikit-learn model kinds (``svm``, ``random-forest``).

Those kinds are *fitted* with scikit-learn but *stored* as plain tensors (support vectors,
tree node arrays) and *applied* by torch code: a model file never holds code, and predict
does not need scikit-learn. The shapes of the stored tensors come from fitting (how many
support vectors, how many tree nodes), so :class:`FittedTensorsModel` accepts any shape on
load and checks the tensors' consistency before anything uses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Generic

import numpy as np
import torch

from hsimap.models.base import ConfigT, HsiModel, TrainData, config_to_dict

#: Pixels per chunk of the heavy steps: bounds their working memory whatever the tile size.
PIXEL_CHUNK = 4096
#: Floor of a probability before its logarithm (keeps logits finite; softmax unchanged).
MIN_PROB = 1e-30


class FittedTensorsModel(HsiModel, Generic[ConfigT]):
    """A per-pixel model made of tensors whose shapes are set by fitting.

    Subclasses list their stored tensors in :attr:`stored` (name -> dtype and number of
    dimensions), check a complete set in :meth:`check_tensors` and derive what inference
    needs in :meth:`prepare` (non-persistent buffers, so they follow ``.to(device)``).
    """

    stored: ClassVar[Mapping[str, tuple[torch.dtype, int]]]

    def __init__(self, config: ConfigT, *, n_bands: int, n_classes: int) -> None:
        super().__init__()
        self.config = config
        self.n_bands = n_bands
        self.n_classes = n_classes
        for name, (dtype, ndim) in self.stored.items():
            self.register_buffer(name, torch.zeros((0,) * ndim, dtype=dtype))
        self.fitted = False

    def halo(self) -> int:
        """No spatial context: every pixel is classified from its own spectrum."""
        return 0

    def config_dict(self) -> dict[str, Any]:
        """JSON-able config."""
        return config_to_dict(self.config)

    def set_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Install freshly fitted tensors (same checks as loading a file)."""
        problem = self._check(tensors)
        if problem:
            raise ValueError(f"fitted {self.kind} tensors are inconsistent: {problem}")
        for name in self.stored:
            self._buffers[name] = tensors[name].detach().clone()
        self.prepare()
        self.fitted = True

    def check_tensors(self, tensors: Mapping[str, torch.Tensor]) -> str | None:
        """A sentence saying what is wrong with a complete set of stored tensors, or None."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Derive inference buffers from the stored tensors."""
        raise NotImplementedError

    def forward_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` float32 spectra -> ``(N, K)`` float64 class probabilities."""
        raise NotImplementedError

    def tile_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """``(1, C, h, w)`` -> ``(1, K, h, w)`` float64 class probabilities, pixel by pixel.

        Computed in float32/float64 whatever autocast the caller has on (bfloat16 would
        wreck kernel sums and threshold comparisons); ``forward_pixels`` works through the
        pixels in chunks, so that memory does not grow much with the tile.
        """
        if not self.fitted:
            raise RuntimeError(f"this {self.kind} model has not been fitted or loaded")
        _, c, h, w = x.shape
        spectra = x[0].reshape(c, h * w).T.float().contiguous()  # (h*w, C)
        with torch.autocast(x.device.type, enabled=False):
            p = self.forward_pixels(spectra)  # (h*w, K) float64
        return p.T.reshape(1, self.n_classes, h, w)

    def forward_tile(self, x: torch.Tensor, *, origin: tuple[int, int]) -> torch.Tensor:
        """``(1, C, h, w)`` -> ``(1, K, h, w)`` float32 log-probabilities (argmax: the
        class) of :meth:`tile_probabilities`."""
        return self.tile_probabilities(x).clamp_min_(MIN_PROB).log_().float()

    def _check(self, tensors: Mapping[str, torch.Tensor]) -> str | None:
        for name, (dtype, ndim) in self.stored.items():
            t = tensors.get(name)
            if t is None:
                return f"tensor {name!r} is missing"
            if t.dtype != dtype or t.dim() != ndim:
                return (f"tensor {name!r} is {t.dtype} with {t.dim()} dimension(s), expected "
                        f"{dtype} with {ndim}")
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return f"tensor {name!r} holds NaN or infinite values"
        return self.check_tensors(tensors)

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str,
                              local_metadata: Any, strict: bool, missing_keys: list[str],
                              unexpected_keys: list[str], error_msgs: list[str]) -> None:
        incoming = {n: state_dict[prefix + n] for n in self.stored if prefix + n in state_dict}
        if len(incoming) == len(self.stored):
            problem = self._check(incoming)
            if problem:
                error_msgs.append(f"{self.kind} model: {problem}")
                return
            for name, t in incoming.items():  # take the file's shapes
                self._buffers[name] = torch.empty_like(t, device=buffer(self, name).device)
        n_errors = len(error_msgs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if len(incoming) == len(self.stored) and len(error_msgs) == n_errors:
            self.prepare()
            self.fitted = True


def buffer(model: torch.nn.Module, name: str) -> torch.Tensor:
    """A buffer of ``model`` by name, typed (``nn.Module.__getattr__`` is untyped)."""
    value = model._buffers[name]
    assert value is not None
    return value


def training_pixels(data: TrainData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices ``(N,)``, spectra ``(N, C)`` float32 and class indices ``(N,)`` of the
    training pixels."""
    flat = np.flatnonzero(data.train_mask.reshape(-1))
    spectra = data.cube.reshape(data.n_bands, -1)[:, flat].T
    return flat, np.ascontiguousarray(spectra, dtype=np.float32), \
        data.labels.reshape(-1)[flat].astype(np.int64)


def stratified_subsample(labels: np.ndarray, limit: int, *, seed: int) -> np.ndarray:
    """Sorted positions of at most ``limit`` samples keeping each class's share (every class
    keeps at least one sample); all of them when there are no more than ``limit``."""
    n = len(labels)
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts * (limit / n)).astype(np.int64))
    # hand the rounding remainder to the classes with the largest fractional parts
    spare = limit - int(quota.sum())
    if spare > 0:
        frac = counts * (limit / n) - np.floor(counts * (limit / n))
        for i in np.argsort(-frac, kind="stable")[:spare]:
            quota[i] = min(counts[i], quota[i] + 1)
    keep = [rng.choice(np.flatnonzero(labels == c), size=int(q), replace=False)
            for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(keep))


def block_groups(flat: np.ndarray, width: int, block: int) -> np.ndarray:
    """Group id of each flat pixel index: the ``block`` x ``block`` px square it falls in."""
    rows, cols = flat // width, flat % width
    return (rows // block) * (-(-width // block)) + cols // block


def class_counts(labels: np.ndarray, n_classes: int) -> list[int]:
    """Pixels per class index (JSON-able)."""
    return [int(v) for v in np.bincount(labels, minlength=n_classes)]
