"""Checkpoints: round trip, and files that must be refused without running their code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from hsimap.checkpoint import load_checkpoint, read_metadata
from hsimap.errors import CheckpointError


def test_round_trip_keeps_weights_classes_and_bands(mlp_model: Path) -> None:
    ckpt = load_checkpoint(mlp_model)
    meta = read_metadata(mlp_model)
    assert ckpt.classes.names[0] == "roof"
    assert ckpt.n_bands == 224 and len(ckpt.band_indices) == 218
    assert meta["wavelengths"][0] == pytest.approx(418.24)
    assert meta["split"]["method"] == "polygon"
    from safetensors.torch import load_file

    stored = load_file(str(mlp_model))
    for k, v in ckpt.model.state_dict().items():
        torch.testing.assert_close(v, stored[f"model.{k}"])


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["pickle", "torch"])
def test_pickle_payload_is_refused_and_never_runs(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(_Payload(str(marker))))
    else:
        torch.save({"x": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_checkpoint(tmp_path: Path, mlp_model: Path) -> None:
    data = mlp_model.read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(bad)


def test_unknown_format_version(tmp_path: Path, mlp_model: Path) -> None:
    import json

    from safetensors.torch import load_file, save_file

    tensors = load_file(str(mlp_model))
    meta = read_metadata(mlp_model)
    meta["format_version"] = 99
    path = tmp_path / "future.safetensors"
    save_file(tensors, str(path), metadata={"hsimap": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


def test_split_is_saved_with_the_model(mlp_model: Path) -> None:
    ckpt = load_checkpoint(mlp_model)
    codes = ckpt.extras["split"].numpy()
    assert codes.shape == (192, 160)
    assert int((codes == 1).sum()) == ckpt.meta["split"]["n_train"]
    assert int((codes == 2).sum()) == ckpt.meta["split"]["n_val"]


def test_older_config_without_new_fields_loads_with_dataclass_defaults(tmp_path: Path) -> None:
    """A model saved before a config field existed keeps its old behaviour on load."""
    import json

    import numpy as np
    from safetensors.torch import load_file, save_file

    from hsimap.checkpoint import Checkpoint, Normalisation, save_checkpoint
    from hsimap.classes import ClassTable
    from hsimap.models.base import get_spec

    spec = get_spec("diffspectralnet")
    config = spec.make_config("fast", {"with_spectra": False, "reducer": "pca",
                                       "spectral_weight": 0.0, "smooth_radius": 0})
    model = spec.build(config, n_bands=20, n_classes=3)
    meta = {"n_bands": 20, "band_indices": list(range(20)), "wavelengths": None}
    path = save_checkpoint(tmp_path / "old.safetensors", Checkpoint(
        model, Normalisation(np.zeros(20, np.float32), np.ones(20, np.float32)),
        ClassTable.from_names(["a", "b", "c"]), meta))
    stored = read_metadata(path)
    # as written before these fields existed
    for field in ("with_spectra", "features", "spectral_weight", "smooth_radius",
                  "smooth_range"):
        del stored["model_config"][field]
    save_file(load_file(str(path)), str(path), metadata={"hsimap": json.dumps(stored)})
    loaded = load_checkpoint(path)
    assert loaded.model.config.with_spectra is False
    assert loaded.model.config.features == "diffusion"
    assert loaded.model.config.spectral_weight == 0.0 and loaded.model.spectral is None
    assert loaded.model.config.smooth_radius == 0 and loaded.model.halo() == model.halo()


@pytest.mark.parametrize("stored", [{}, None, [1, 2]], ids=["empty", "null", "list"])
def test_edited_model_config_is_a_clear_checkpoint_error_or_defaults(
        tmp_path: Path, stored: object) -> None:
    """An emptied model_config takes the defaults (refused if the weights do not fit them);
    one that is not a table is refused: always a CheckpointError, never another exception."""
    import json

    import numpy as np
    from safetensors.torch import load_file, save_file

    from hsimap.checkpoint import Checkpoint, Normalisation, save_checkpoint
    from hsimap.classes import ClassTable
    from hsimap.errors import CheckpointError
    from hsimap.models.base import get_spec

    spec = get_spec("spectral-mlp")
    model = spec.build(spec.make_config(None, {"hidden": [7]}), n_bands=5, n_classes=2)
    meta = {"n_bands": 5, "band_indices": list(range(5)), "wavelengths": None}
    path = save_checkpoint(tmp_path / "m.safetensors", Checkpoint(
        model, Normalisation(np.zeros(5, np.float32), np.ones(5, np.float32)),
        ClassTable.from_names(["a", "b"]), meta))
    edited = read_metadata(path)
    edited["model_config"] = stored
    save_file(load_file(str(path)), str(path), metadata={"hsimap": json.dumps(edited)})
    with pytest.raises(CheckpointError) as err:  # 7 hidden units are not the default
        load_checkpoint(path)
    assert str(path) in err.value.format()
