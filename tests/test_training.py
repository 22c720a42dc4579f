"""train_model's options: the stored record keeps the file format of models written before
``TrainOptions.model`` became ``TrainOptions.kind``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from hsimap.training import TrainOptions

# meta["training"]["options"] exactly as hsimap 0.2.0 (TrainOptions.model) wrote it for
# `TrainOptions(model="diffspectralnet", preset="fast", device="cpu", overrides=...)`.
OLD_RECORD = {
    "model": "diffspectralnet", "preset": "fast",
    "overrides": {"denoiser_iterations": 3, "clf_epochs": 2, "timesteps": [5, 10]},
    "class_field": None, "color_field": None, "classes_file": None, "layer": None,
    "mask": None, "mask_layer": None, "all_touched": False, "on_overlap": "error",
    "validation": "polygon", "val_fraction": 0.2, "guard": None, "block_size": None,
    "seed": 0, "device": "cpu", "bad_bands": [3, 7], "max_memory": None, "refit": True,
}
OLD_OPTIONS = TrainOptions(kind="diffspectralnet", preset="fast", device="cpu",
                           overrides={"denoiser_iterations": 3, "clf_epochs": 2,
                                      "timesteps": (5, 10)}, bad_bands=(3, 7))


def test_the_stored_record_is_the_old_format() -> None:
    record = OLD_OPTIONS.record()
    assert record == OLD_RECORD and list(record) == list(OLD_RECORD)  # same keys, same order
    assert "kind" not in record
    json.dumps(record)


def test_a_record_reads_back_as_the_options_old_and_new_keys() -> None:
    assert TrainOptions.from_record(OLD_RECORD) == OLD_OPTIONS
    assert TrainOptions.from_record(OLD_OPTIONS.record()) == OLD_OPTIONS
    renamed = {("kind" if k == "model" else k): v for k, v in OLD_RECORD.items()}
    assert TrainOptions.from_record(renamed) == OLD_OPTIONS
    # a record from a later version with a field this one lacks, or one lacking a field
    assert TrainOptions.from_record({"model": "svm", "future_field": 1}) == TrainOptions(kind="svm")


def test_a_model_file_written_before_the_rename_loads_and_reads(mlp_model: Path,
                                                                tmp_path: Path) -> None:
    from hsimap.checkpoint import Checkpoint, load_checkpoint, read_metadata, save_checkpoint
    from hsimap.cli.main import cli
    from hsimap.training import log_path_for

    new = read_metadata(mlp_model)
    stored = new["training"]["options"]
    assert stored["model"] == "spectral-mlp" and "kind" not in stored  # format unchanged
    assert TrainOptions.from_record(stored).kind == "spectral-mlp"
    assert json.loads(log_path_for(mlp_model).read_text())["meta"]["training"]["options"] \
        == stored

    base = load_checkpoint(mlp_model)
    meta = dict(base.meta)
    meta["training"] = {**meta["training"], "options": {**OLD_RECORD, "model": "spectral-mlp"}}
    old = save_checkpoint(tmp_path / "old.safetensors",
                          Checkpoint(base.model, base.norm, base.classes, meta))
    log_path_for(old).write_text(json.dumps({"meta": meta, "history": {}}))
    loaded = load_checkpoint(old)
    assert loaded.classes == base.classes and loaded.band_indices == base.band_indices
    assert TrainOptions.from_record(loaded.meta["training"]["options"]) == TrainOptions(
        kind="spectral-mlp", preset="fast", device="cpu", bad_bands=(3, 7),
        overrides=OLD_OPTIONS.overrides)
    logged = json.loads(log_path_for(old).read_text())["meta"]["training"]["options"]
    assert TrainOptions.from_record(logged).kind == "spectral-mlp"
    info = CliRunner().invoke(cli, ["info", "--json", str(old)], catch_exceptions=False)
    assert info.exit_code == 0 and json.loads(info.output)["model"] == "spectral-mlp"
