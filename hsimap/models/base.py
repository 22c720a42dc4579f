"""The model interface that training, checkpoints and tiled prediction rely on.

A model kind (``spectral-mlp``, ``diffspectralnet``) is registered as a :class:`ModelSpec`:
a frozen config dataclass, named presets, a ``build`` function and a ``fit`` function.
A built model is an :class:`HsiModel`: a ``torch.nn.Module`` that maps a normalised cube
tile to class logits for every pixel of the tile, and says how far its context reaches
(``halo``) so that tiled prediction is exact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from hsimap.errors import ConfigError


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report from a long-running library call.

    ``stage`` names the loop (``"denoiser"``, ``"classifier"``, ``"predict"``), ``done`` and
    ``total`` count its steps, ``metrics`` carries numbers worth showing (loss, accuracy).
    A stage ends when ``done`` reaches ``total``; ``note`` closes it with a remark, e.g.
    early stopping (``stopped early at epoch 15 of 40; kept epoch 7 ...``).
    """

    stage: str
    done: int
    total: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    note: str | None = None


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """Progress callback that ignores every event."""


@dataclass(frozen=True)
class TrainData:
    """Everything a model's ``fit`` gets: the scene in memory and the labelled pixels.

    Attributes
    ----------
    cube
        ``(C, H, W)`` float32, per-band standardised (zero mean, unit variance over valid
        pixels); invalid pixels are 0.
    valid
        ``(H, W)`` bool, True where the input pixel is valid.
    labels
        ``(H, W)`` int64 class *index* ``0..K-1`` (model output order), ``-1`` unlabelled.
    train_mask, val_mask
        ``(H, W)`` bool: labelled pixels to fit on / to select the model on (early stopping).
        Disjoint; the split keeps a guard band between them.
    n_classes
        ``K``.
    """

    cube: np.ndarray
    valid: np.ndarray
    labels: np.ndarray
    train_mask: np.ndarray
    val_mask: np.ndarray
    n_classes: int

    @property
    def n_bands(self) -> int:
        """Number of input bands ``C``."""
        return int(self.cube.shape[0])


class HsiModel(nn.Module):
    """Base class of every trained model: normalised tile in, per-pixel class logits out."""

    kind: ClassVar[str]

    def halo(self) -> int:
        """Radius in pixels of the context one output pixel depends on.

        Tiled prediction reads this many extra pixels around every tile; changing an input
        pixel farther away than ``halo`` must not change the output pixel.
        """
        raise NotImplementedError

    def window_radius(self) -> int:
        """Radius of the classifier's neighbourhood window: the default validation guard band."""
        return self.halo()

    def stride(self) -> int:
        """Tile origins must be multiples of this (total spatial down-sampling); default 1."""
        return 1

    def forward_tile(self, x: torch.Tensor, *, origin: tuple[int, int]) -> torch.Tensor:
        """Class logits for every pixel of a tile.

        Parameters
        ----------
        x
            ``(1, C, h, w)`` normalised cube window (invalid pixels 0).
        origin
            Global ``(row, col)`` of ``x[..., 0, 0]`` in the scene, so that any
            position-keyed randomness agrees between overlapping tiles.

        Returns
        -------
        torch.Tensor
            ``(1, K, h, w)`` logits. Only pixels at least ``halo`` away from a tile edge that
            is not a scene edge are exact.
        """
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        """The model config as a JSON-able dict (stored in the checkpoint)."""
        raise NotImplementedError

    def inspect(self, x: torch.Tensor, *, origin: tuple[int, int],
                rgb_bands: tuple[int, int, int] | None = None) -> dict[str, np.ndarray]:
        """Diagnostic images ``(h, w, 3)`` in [0, 1] of what the model sees in a window.

        Empty for models with nothing to show; see DiffSpectralNet's timestep panels.
        """
        return {}


class BuildFn(Protocol):
    """Signature of ``ModelSpec.build``."""

    def __call__(self, config: Any, *, n_bands: int, n_classes: int) -> HsiModel: ...


class FitFn(Protocol):
    """Signature of ``ModelSpec.fit``: returns the trained model (eval mode) and a history."""

    def __call__(
        self,
        data: TrainData,
        config: Any,
        *,
        seed: int,
        device: torch.device,
        progress: ProgressCallback,
    ) -> tuple[HsiModel, dict[str, Any]]: ...


class RefitFn(Protocol):
    """Signature of ``ModelSpec.refit``: fit again on ``data`` (every labelled pixel in
    ``train_mask``, ``val_mask`` empty) with the schedule the validated fit used, reusing what
    of ``model`` is label-free. Returns the refitted model (eval mode) and its history."""

    def __call__(
        self,
        model: HsiModel,
        data: TrainData,
        config: Any,
        history: Mapping[str, Any],
        *,
        seed: int,
        device: torch.device,
        progress: ProgressCallback,
    ) -> tuple[HsiModel, dict[str, Any]]: ...


@dataclass(frozen=True)
class ModelSpec:
    """A registered model kind.

    ``refit`` (optional) fits the final model on every labelled pixel once validation is
    done (see :class:`RefitFn`); kinds without one keep the validated model.
    """

    kind: str
    config_cls: type
    presets: Mapping[str, Mapping[str, Any]]
    default_preset: str
    build: BuildFn
    fit: FitFn
    description: str = ""
    gpu_preset: str | None = None
    refit: RefitFn | None = None

    def preset_for(self, device_type: str) -> str:
        """The default preset on a device type (``cuda`` may have its own)."""
        if device_type == "cuda" and self.gpu_preset:
            return self.gpu_preset
        return self.default_preset

    def make_config(self, preset: str | None = None,
                    overrides: Mapping[str, Any] | None = None) -> Any:
        """Config from a named preset plus field overrides (e.g. from a TOML file)."""
        name = preset or self.default_preset
        if name not in self.presets:
            raise ConfigError(
                f"unknown preset {name!r} for model {self.kind!r}",
                fix=f"choose one of: {', '.join(sorted(self.presets))}",
            )
        values = dict(self.presets[name])
        values.update(overrides or {})
        return config_from_dict(self.config_cls, values)


def config_from_dict(cls: type, values: Mapping[str, Any]) -> Any:
    """Build a frozen config dataclass, naming unknown keys instead of failing obscurely."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"unknown config field(s) {unknown} for {cls.__name__}",
            fix=f"valid fields: {', '.join(sorted(names))}",
        )
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**fixed)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {cls.__name__}: {exc}") from exc


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-able dict of a config dataclass (tuples become lists)."""
    return json_safe(dataclasses.asdict(config))


def json_safe(value: Any) -> Any:
    """Recursively turn tuples into lists so ``json.dumps`` round-trips."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model kind to the registry."""
    _REGISTRY[spec.kind] = spec
    return spec


def get_spec(kind: str) -> ModelSpec:
    """Look up a registered model kind (importing the built-in kinds first)."""
    from hsimap.models import load_builtin_models

    load_builtin_models()
    if kind not in _REGISTRY:
        raise ConfigError(
            f"unknown model {kind!r}", fix=f"choose one of: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[kind]


def available_models() -> list[str]:
    """Names of the registered model kinds."""
    from hsimap.models import load_builtin_models

    load_builtin_models()
    return sorted(_REGISTRY)
