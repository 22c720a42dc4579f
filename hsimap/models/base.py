"""The model interface that training, checkpoints and tiled prediction rely on.

A model kind (``spectral-mlp``, ``diffspectralnet``) is registered as a :class:`ModelSpec`:
a frozen config dataclass, named presets, a ``build`` function and a ``fit`` function.
A built model is an :class:`HsiModel`: a ``torch.nn.Module`` that maps a normalised cube
tile to class logits for every pixel of the tile, and says how far its context reaches
(``halo``) so that tiled prediction is exact.

Size (about 570 lines, over the ~400 of the style guide): it is the whole plugin contract
(progress events, training data, the model and spec types, config (de)serialisation and the
registry) that a new model kind reads in one place; splitting it would make a plugin author
open five files.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

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


# Rows and columns of a tile (slices with steps of 1): the part of it whose output is wanted.
Window = tuple[slice, slice]


def window_bounds(window: Window | None, h: int, w: int) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` of ``window`` in an ``h x w`` tile (None: all of it)."""
    if window is None:
        return 0, h, 0, w
    (r0, r1, rs), (c0, c1, cs) = window[0].indices(h), window[1].indices(w)
    if rs != 1 or cs != 1 or r1 <= r0 or c1 <= c0:
        raise ValueError(f"a window needs non-empty slices with step 1, got {window!r}")
    return r0, r1, c0, c1


def window_context(window: Window, radius: int, h: int,
                   w: int) -> tuple[tuple[int, int, int, int], Window]:
    """What a last stage that reads ``radius`` px around each output pixel needs to compute
    ``window`` of an ``h x w`` tile: the tile's region within ``radius`` of the window
    (``(row0, row1, col0, col1)``, clipped to the tile), and the window's rows and columns
    inside that region."""
    r0, r1, c0, c1 = window_bounds(window, h, w)
    a0, a1, b0, b1 = max(0, r0 - radius), min(h, r1 + radius), max(0, c0 - radius), \
        min(w, c1 + radius)
    return (a0, a1, b0, b1), (slice(r0 - a0, r1 - a0), slice(c0 - b0, c1 - b0))


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

    def fit_bytes_per_pixel(self) -> float:
        """Bytes per scene pixel ``fit`` keeps beyond the standardised cube (whole-scene
        feature maps), for train's memory check before the scene is read.

        Default: 4 bytes (float32) per channel of a ``features`` sub-module's ``out_dims``
        (DiffSpectralNet keeps its reduced feature map of the whole scene), else 0.
        """
        dims = getattr(getattr(self, "features", None), "out_dims", 0)
        return 4.0 * dims if isinstance(dims, int) else 0.0

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

    def forward_window(self, x: torch.Tensor, *, origin: tuple[int, int],
                       window: Window) -> torch.Tensor:
        """Class logits of the pixels of ``window`` only: ``forward_tile(x)[..., rows, cols]``.

        ``window`` (rows, columns of ``x``) is what tiled prediction writes: pixels at least
        ``halo`` from every tile edge that is not a scene edge. Models whose last stages mix
        neighbouring outputs (DiffSpectralNet, a smoothed ``svm``) override this to compute
        those stages only where the window needs them; the values are those of
        ``forward_tile``'s (up to float rounding). ``(1, K, h_window, w_window)``.
        """
        r0, r1, c0, c1 = window_bounds(window, *x.shape[2:])
        return self.forward_tile(x, origin=origin)[:, :, r0:r1, c0:c1]

    def config_dict(self) -> dict[str, Any]:
        """The model config as a JSON-able dict (stored in the checkpoint)."""
        raise NotImplementedError

    def inspect(self, x: torch.Tensor, *, origin: tuple[int, int],
                rgb_bands: tuple[int, int, int] | None = None) -> dict[str, np.ndarray]:
        """Diagnostic images ``(h, w, 3)`` in [0, 1] of what the model sees in a window.

        Empty for models with nothing to show; see DiffSpectralNet's timestep panels.
        """
        return {}


class ModelConfig(Protocol):
    """What every model kind's config is: a (frozen) dataclass instance
    (:func:`dataclasses.fields` and :func:`dataclasses.asdict` work on it)."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


#: A model kind's own config class (``SVMConfig``, ``DiffSpectralNetConfig``, ...).
ConfigT = TypeVar("ConfigT", bound=ModelConfig)
ConfigT_contra = TypeVar("ConfigT_contra", bound=ModelConfig, contravariant=True)


class BuildFn(Protocol[ConfigT_contra]):
    """Signature of ``ModelSpec.build``."""

    def __call__(self, config: ConfigT_contra, *, n_bands: int, n_classes: int) -> HsiModel: ...


class FitFn(Protocol[ConfigT_contra]):
    """Signature of ``ModelSpec.fit``: returns the trained model (eval mode) and a history."""

    def __call__(
        self,
        data: TrainData,
        config: ConfigT_contra,
        *,
        seed: int,
        device: torch.device,
        progress: ProgressCallback,
    ) -> tuple[HsiModel, dict[str, Any]]: ...


class RefitFn(Protocol[ConfigT_contra]):
    """Signature of ``ModelSpec.refit``: fit again on ``data`` (every labelled pixel in
    ``train_mask``, ``val_mask`` empty) with the schedule the validated fit used, reusing what
    of ``model`` is label-free. Returns the refitted model (eval mode) and its history."""

    def __call__(
        self,
        model: HsiModel,
        data: TrainData,
        config: ConfigT_contra,
        history: Mapping[str, Any],
        *,
        seed: int,
        device: torch.device,
        progress: ProgressCallback,
    ) -> tuple[HsiModel, dict[str, Any]]: ...


class FitAndRefitFn(Protocol[ConfigT_contra]):
    """Signature of ``ModelSpec.fit_and_refit``: ``fit`` on ``data``, then ``refit`` on
    ``everything``, with the same two results, in less time where the kind can overlap the
    two. ``progress`` gets the first fit's events and ``refit_progress`` the refit's (from
    worker threads, one call at a time). Returns ``((model, history), (refitted,
    refit_history))``."""

    def __call__(
        self,
        data: TrainData,
        everything: TrainData,
        config: ConfigT_contra,
        *,
        seed: int,
        device: torch.device,
        progress: ProgressCallback,
        refit_progress: ProgressCallback,
    ) -> tuple[tuple[HsiModel, dict[str, Any]], tuple[HsiModel, dict[str, Any]]]: ...


@dataclass(frozen=True)
class ModelSpec(Generic[ConfigT]):
    """A registered model kind, generic over its config class ``ConfigT``.

    ``refit`` (optional) fits the final model on every labelled pixel once validation is
    done (see :class:`RefitFn`); kinds without one keep the validated model.
    ``fit_and_refit`` (optional, with ``refit``) does both at once (:class:`FitAndRefitFn`).
    ``concurrent_fits(config, device)`` (optional): True where fits of this kind may run in
    threads at the same time, each giving what it gives alone (``compare`` then fits two
    folds at once).
    """

    kind: str
    config_cls: type[ConfigT]
    presets: Mapping[str, Mapping[str, Any]]
    default_preset: str
    build: BuildFn[ConfigT]
    fit: FitFn[ConfigT]
    description: str = ""
    gpu_preset: str | None = None
    refit: RefitFn[ConfigT] | None = None
    fit_and_refit: FitAndRefitFn[ConfigT] | None = None
    concurrent_fits: Callable[[ConfigT, torch.device], bool] | None = None

    def preset_for(self, device_type: str) -> str:
        """The default preset on a device type (``cuda`` may have its own)."""
        if device_type == "cuda" and self.gpu_preset:
            return self.gpu_preset
        return self.default_preset

    def make_config(self, preset: str | None = None,
                    overrides: Mapping[str, Any] | None = None) -> ConfigT:
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


# The largest step count a config may ask for (epochs, iterations): more is a typo (10**12
# denoiser iterations were an ETA of 8.5 million hours), never a plan.
MAX_STEPS = 10**7


@dataclass(frozen=True)
class Limit:
    """Allowed range of a numeric config field (or of each element of a tuple field).

    Bounds are inclusive unless ``low_open``/``high_open``; ``None`` leaves that side open.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the range."""
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or
                                         (self.high_open and value == self.high))

    def describe(self) -> str:
        """``in [0, 1)``, ``>= 1``, ``> 0`` ..."""
        low, high = _bound(self.low), _bound(self.high)
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{low}, {high}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {high}"
        return "any value"


def _bound(value: float | None) -> str:
    """A range bound as written: whole numbers in full (10000000, not 1e+07)."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# Ranges by field name, shared by every model kind (a config class's own ``LIMITS`` class
# attribute adds to and overrides these). For a tuple field the range applies to each element.
COMMON_LIMITS: Mapping[str, Limit] = {
    **{name: Limit(1, MAX_STEPS) for name in ("epochs", "clf_epochs", "denoiser_iterations")},
    **{name: Limit(0, 1, high_open=True) for name in ("dropout", "feature_dropout")},
    **{name: Limit(0) for name in ("weight_decay", "clf_weight_decay", "patience")},
    **{name: Limit(0, low_open=True) for name in ("lr", "clf_lr")},
    **{name: Limit(1) for name in ("batch_size", "batch", "clf_batch", "min_batches",
                                   "clf_min_batches")},
}

# Fields bounded by the scene, by name (every model kind): a spatial size in pixels at most the
# scene's smaller side, or a band count at most the bands used. Checked by
# :func:`check_config_for_scene` once the scene is known.
SCENE_SIDE_FIELDS = ("window", "crop")
SCENE_BAND_FIELDS = ("proj_bands",)


def config_limits(cls: type) -> dict[str, Limit]:
    """The numeric ranges of ``cls``'s fields: :data:`COMMON_LIMITS` plus ``cls.LIMITS``."""
    names = {f.name for f in dataclasses.fields(cls)}
    limits = {k: v for k, v in COMMON_LIMITS.items() if k in names}
    limits.update(getattr(cls, "LIMITS", {}))
    return limits


def _type_words(tp: Any) -> str:
    """What a value of type ``tp`` is, in the words of a TOML file."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_words(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is ...:
            plural = {int: "whole numbers", float: "numbers", str: "texts in quotes"}
            return f"a list of {plural.get(args[0], _type_words(args[0]))}"
        return f"a list of {len(args)} values"
    return {bool: "true or false", int: "a whole number", float: "a number",
            str: "a text in quotes", type(None): "nothing"}.get(tp, str(tp))


class _Mismatch(Exception):
    """A value that does not have its field's type."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        value == value and value not in (float("inf"), float("-inf"))


# Scalar types: (test, conversion). An int given for a float field becomes a float; a bool is
# never a number, a float never an int (``epochs = 2.5``, ``window = 5.0`` are refused).
_SCALARS: Mapping[Any, tuple[Callable[[Any], bool], Callable[[Any], Any]]] = {
    bool: (lambda v: isinstance(v, bool), lambda v: v),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), lambda v: v),
    float: (_is_number, float),
    str: (lambda v: isinstance(v, str), lambda v: v),
    type(None): (lambda v: v is None, lambda v: v),
}


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` as a value of type ``tp`` (an int for a float field becomes a float), or
    :class:`_Mismatch`. Types this does not know pass unchanged."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _Mismatch
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            try:
                return _coerce(value, arm)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if len(args) == 2 and args[1] is ...:
            return tuple(_coerce(v, args[0]) for v in value)
        if len(args) != len(value):
            raise _Mismatch
        return tuple(_coerce(v, a) for v, a in zip(value, args, strict=True))
    if tp in _SCALARS:
        test, convert = _SCALARS[tp]
        if not test(value):
            raise _Mismatch
        return convert(value)
    return value


def _numbers(value: Any) -> list[float]:
    """The numbers in a (possibly tuple) config value, for range checks."""
    items = value if isinstance(value, tuple) else (value,)
    return [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]


def check_config_values(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check every value against its dataclass field's type and range; return them coerced.

    One validation for every model kind, from the field types (``int``, ``float``, ``bool``,
    ``str``, ``Literal``, unions, ``tuple[int, ...]``) and :func:`config_limits`: a
    :class:`ConfigError` names the field, the value and what is allowed.
    """
    hints = typing.get_type_hints(cls)
    limits = config_limits(cls)
    out: dict[str, Any] = {}
    for name, value in values.items():
        tp = hints.get(name, Any)
        try:
            fixed = _coerce(value, tp)
        except _Mismatch:
            hint = ""
            if isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    number = None
                if number is not None:
                    hint = f" (a text in quotes: write {name} = {value.strip()} without quotes)"
            raise ConfigError(f"config field {name} must be {_type_words(tp)}, got "
                              f"{value!r}{hint}") from None
        limit = limits.get(name)
        bad = [v for v in _numbers(fixed) if limit is not None and not limit.contains(v)]
        if limit is not None and bad:
            raise ConfigError(
                f"config field {name} must be {limit.describe()}"
                f"{' (each value)' if isinstance(fixed, tuple) else ''}, got {value!r}")
        out[name] = fixed
    return out


def check_config_for_scene(config: ModelConfig, *, n_bands: int, height: int, width: int,
                           fields: Iterable[str] | None = None) -> None:
    """Refuse config values the scene cannot honour: a window or crop larger than the scene,
    a projection to more bands than it has (:data:`SCENE_SIDE_FIELDS`,
    :data:`SCENE_BAND_FIELDS`). ``fields``: only these (the ones the user set), default all.
    """
    chosen = None if fields is None else set(fields)
    side = min(height, width)
    for f in dataclasses.fields(config):
        if chosen is not None and f.name not in chosen:
            continue
        value = getattr(config, f.name)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        if f.name in SCENE_SIDE_FIELDS and value > side:
            raise ConfigError(
                f"config field {f.name} = {value} px is larger than the scene "
                f"({width} x {height} px)",
                fix=f"give {f.name} at most {side} px (the scene's smaller side), or a larger "
                    "scene")
        if f.name in SCENE_BAND_FIELDS and value > n_bands:
            raise ConfigError(
                f"config field {f.name} = {value} asks for more bands than the scene's "
                f"{n_bands} used bands",
                fix=f"give {f.name} at most {n_bands} (0 keeps every band)")


def config_from_dict(cls: type[ConfigT], values: Mapping[str, Any]) -> ConfigT:
    """Build a frozen config dataclass, naming unknown keys instead of failing obscurely.

    Every value is checked against its field's type and range first
    (:func:`check_config_values`), then the class's own ``__post_init__`` checks run.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"unknown config field(s) {unknown} for {cls.__name__}",
            fix=f"valid fields: {', '.join(sorted(names))}",
        )
    fixed = check_config_values(cls, values)
    try:
        return cls(**fixed)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {cls.__name__}: {exc}") from exc


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """JSON-able dict of a config dataclass (tuples become lists)."""
    return json_safe(dataclasses.asdict(config))


def json_safe(value: Any) -> Any:
    """Recursively turn tuples into lists so ``json.dumps`` round-trips."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


#: A spec looked up by name: its config class is known at run time only, so it is typed
#: as taking any model config (pass it back only what its own ``make_config`` made).
AnySpec = ModelSpec[ModelConfig]

_REGISTRY: dict[str, AnySpec] = {}


def register(spec: ModelSpec[ConfigT]) -> ModelSpec[ConfigT]:
    """Add a model kind to the registry."""
    _REGISTRY[spec.kind] = cast(AnySpec, spec)
    return spec


def get_spec(kind: str) -> AnySpec:
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
