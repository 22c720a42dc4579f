"""One-file model checkpoints: safetensors weights + JSON metadata, never pickle.

A checkpoint holds every weight and buffer of the model (``model.*``), the input
normalisation (``norm.mean``/``norm.std``) and a JSON document with the model kind and
config, the training config, the class table, the band count, the bands used, wavelengths,
the receptive field and the hsimap version. Loading parses the safetensors header and
rebuilds the model from its config: no code in the file is ever executed.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsimap._version import __version__
from hsimap.classes import ClassTable
from hsimap.errors import CheckpointError, HsimapError, OutputError
from hsimap.model_file import (  # torch-free, so --dry-run and info need no torch
    FORMAT,
    FORMAT_VERSION,
    META_KEY,
    read_metadata,
)
from hsimap.models.base import HsiModel, config_from_dict, get_spec

DEFAULT_MODEL_PATH = Path("hsimap_model.safetensors")


@dataclass(frozen=True)
class Normalisation:
    """Per-band standardisation: ``(x - mean) / std`` over the bands used."""

    mean: np.ndarray
    std: np.ndarray

    def apply(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Standardise ``(C, h, w)`` values in place; invalid pixels become 0."""
        values -= self.mean[:, None, None]
        values /= self.std[:, None, None]
        values[:, ~valid] = 0.0
        return values


@dataclass(frozen=True)
class Checkpoint:
    """A loaded model with everything needed to apply it to a new scene."""

    model: HsiModel
    norm: Normalisation
    classes: ClassTable
    meta: dict[str, Any]
    path: Path | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def n_bands(self) -> int:
        """Band count of the scene the model was trained on (file bands, bad ones included)."""
        return int(self.meta["n_bands"])

    @property
    def band_indices(self) -> list[int]:
        """0-based bands of the scene fed to the model."""
        return list(self.meta["band_indices"])

    @property
    def wavelengths(self) -> list[float] | None:
        """Wavelengths (nm) of all file bands, when known."""
        w = self.meta.get("wavelengths")
        return None if w is None else list(w)


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write a checkpoint atomically (temporary name, then rename)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone()
               for k, v in ckpt.model.state_dict().items()}
    tensors["norm.mean"] = torch.from_numpy(np.ascontiguousarray(ckpt.norm.mean, np.float32))
    tensors["norm.std"] = torch.from_numpy(np.ascontiguousarray(ckpt.norm.std, np.float32))
    tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in ckpt.extras.items()})
    meta = dict(ckpt.meta)
    meta.update(format=FORMAT, format_version=FORMAT_VERSION, hsimap_version=__version__,
                model_kind=ckpt.model.kind, model_config=ckpt.model.config_dict(),
                classes=json.loads(ckpt.classes.to_json()), halo=ckpt.model.halo(),
                stride=ckpt.model.stride())
    tmp = path.with_name(f".{path.name}.partial")
    try:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, SafetensorError)):
            raise OutputError(f"the model file cannot be written ({exc})", path=path,
                              fix="check that the folder is writable and the disk not full"
                              ) from exc
        raise
    return path


def _normalisation(tensors: dict[str, torch.Tensor], n_used: int, path: Path) -> Normalisation:
    """The stored per-band standardisation, checked against the bands the model uses."""
    arrays = []
    for key in ("norm.mean", "norm.std"):
        t = tensors.get(key)
        if t is None:
            raise CheckpointError(f"has no {key} tensor", path=path,
                                  fix="the file is damaged or was edited; retrain")
        a = t.to(torch.float32).numpy() if t.is_floating_point() else None
        if a is None or a.shape != (n_used,) or not np.isfinite(a).all():
            raise CheckpointError(
                f"{key} holds {tuple(t.shape)} {str(t.dtype).replace('torch.', '')} values; "
                f"the model uses {n_used} bands, so it needs {n_used} finite numbers",
                path=path, fix="the file is damaged or was edited; copy it again or retrain")
        arrays.append(a)
    if (arrays[1] <= 0).any():
        raise CheckpointError("norm.std holds zero or negative values", path=path,
                              fix="the file is damaged or was edited; copy it again or retrain")
    return Normalisation(arrays[0], arrays[1])


def load_checkpoint(path: str | Path, *, device: torch.device | str = "cpu") -> Checkpoint:
    """Load a checkpoint and rebuild its model in eval mode on ``device``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"is damaged ({exc})", path=path) from exc
    try:
        spec = get_spec(meta["model_kind"])
        # Fields missing from an older file take the dataclass defaults (which keep the old
        # behaviour), never a preset's current values.
        stored = meta["model_config"]
        if not isinstance(stored, dict):
            raise CheckpointError(f"its model_config is {type(stored).__name__}, not a table",
                                  path=path, fix="the file is damaged or was edited; retrain")
        # Fields missing (an empty table included) take the dataclass defaults; weights that
        # do not fit them are refused below.
        config = config_from_dict(spec.config_cls, stored)
        model = spec.build(config, n_bands=len(meta["band_indices"]),
                           n_classes=len(meta["classes"]))
    except KeyError as exc:
        raise CheckpointError(f"metadata lacks the entry {exc}", path=path,
                              fix="the file is damaged or was edited; retrain") from exc
    except CheckpointError:
        raise
    except HsimapError as exc:
        raise CheckpointError(
            f"cannot rebuild its {meta.get('model_kind')!r} model: {exc.format()}", path=path,
            fix="use the hsimap version that wrote it, or retrain") from exc
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit the stored config ({exc})", path=path,
                              fix="the file is damaged or was edited; retrain") from exc
    model.to(device).eval()
    norm = _normalisation(tensors, len(meta["band_indices"]), path)
    classes = ClassTable.from_json(json.dumps(meta["classes"]))
    extras = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
    return Checkpoint(model, norm, classes, meta, path, extras)
