"""Train a model on a scene: cube + labels -> split -> fit -> checkpoint, log and curves.

The cube's good bands are loaded into memory (training scenes are read whole; prediction is
what streams), standardised per band over valid pixels, the labels rasterized onto its grid
and split into training and validation pixels with a guard band. The model kind's ``fit``
does the rest; the final validation accuracy is measured through the same tiled inference
path that ``predict`` uses.

Reading, checking, labelling, splitting and pooling the scenes (what ``compare`` shares)
live in :mod:`hsimap.training_data`, with :class:`TrainOptions` (importable from here too);
this module fits, measures and writes the model file, the log and the figures.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsimap._files import check_output
from hsimap._version import __version__
from hsimap.checkpoint import DEFAULT_MODEL_PATH, Checkpoint, save_checkpoint
from hsimap.classfile import read_class_file
from hsimap.cube import Cube
from hsimap.device import fitting_threads, resolve_device
from hsimap.dry_run import INFERENCE_KEY
from hsimap.errors import OutputError
from hsimap.labels import Labels
from hsimap.models.base import (
    ProgressCallback,
    ProgressEvent,
    TrainData,
    get_spec,
    json_safe,
    no_progress,
)
from hsimap.plots import write_curves, write_inspection
from hsimap.predict import classify_array, inference_record
from hsimap.preflight import (  # torch-free; log_path_for kept importable here
    check_train_outputs,
    log_path_for,
    split_paths,
)
from hsimap.scenes import ScenePair
from hsimap.split import Split
from hsimap.training_data import (  # TrainOptions kept importable here
    TrainOptions,
    fit_normalisation,
    pool_scenes,
    read_scenes,
    split_distance,
)

__all__ = ["TrainOptions", "TrainResult", "log_path_for", "train_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Paths written and the headline numbers."""

    model_path: Path
    log_path: Path
    curves_path: Path | None
    split: dict[str, Any]
    val_accuracy: float | None
    train_accuracy: float
    seconds: float
    denoiser_eval: dict[str, Any] | None = None
    val_distance_px: int | None = None
    pixel_size: float | None = None
    split_path: Path | None = None
    fitted_pixels: int | None = None
    refitted: bool = False
    split_paths: tuple[Path, ...] = ()  # one per scene (split_path is the first)


def train_model(cube_path: str | Path, labels_path: str | Path, *,
                out: str | Path = DEFAULT_MODEL_PATH, options: TrainOptions = TrainOptions(),
                overwrite: bool = False, progress: ProgressCallback = no_progress,
                export_split: str | Path | None = None,
                more_scenes: Sequence[ScenePair] = ()) -> TrainResult:
    """Train a model and save it (with its training log and curves) to ``out``.

    ``more_scenes``: further ``(cube, labels, layer)`` scenes with the same band set (the
    first scene's layer is ``options.layer``); training pools
    their labelled pixels with those of the first (see :mod:`hsimap.scenes`: the scenes are
    laid side by side in one mosaic with a nodata gap no model window crosses), each scene
    split on its own, the normalisation drawn from every scene's valid pixels.

    The validation figures are those of a model fitted on the training part of the split;
    with ``options.refit`` (the default) the saved model is then fitted again on every
    labelled pixel (training + validation) with the same schedule, where the model kind
    can (``ModelSpec.refit``), so no label is withheld from the map.

    ``export_split``: a folder to write the training and validation pixels actually used to,
    as ``<model stem>_split.gpkg`` (see :func:`hsimap.split_export.export_split`).
    """
    start = time.perf_counter()
    pairs = [ScenePair(cube_path, labels_path, options.layer), *more_scenes]
    inputs = tuple(p for pair in pairs for p in (pair.cube, pair.labels))
    cubes = [pair.cube for pair in pairs]
    out = check_train_outputs(out, inputs=inputs, cubes=cubes, export_split=export_split,
                              overwrite=overwrite)
    split_files = split_paths(out, cubes, export_split)
    if export_split is not None:
        try:
            Path(export_split).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the folder for --export-split ({exc})",
                              path=export_split, fix="choose a folder you can write to") from exc
        for path in split_files:
            check_output(path, inputs=inputs, overwrite=overwrite)
    device = resolve_device(options.device)
    spec = get_spec(options.kind)
    preset = options.preset or spec.preset_for(device.type)
    log.info("model %s, preset %s%s, on %s", spec.kind, preset,
             "" if options.preset else " (default)", device)
    config = spec.make_config(preset, options.overrides)
    class_specs = None if options.classes_file is None else \
        read_class_file(options.classes_file)
    scenes = read_scenes(pairs, spec, config, options, device, class_specs)
    cube, labels, raw, valid, index, split, probe = pool_scenes(scenes, spec, config, options)
    norm = fit_normalisation(raw, valid)
    cube_std = norm.apply(raw.copy(), valid)
    if probe.window_radius() > split.guard:
        log.warning("the guard band (%d px) is narrower than this model's window radius (%d px): "
                    "windows centred on training pixels reach validation pixels; pass --guard "
                    "%d for a clean validation", split.guard, probe.window_radius(),
                    probe.window_radius())
    _log_split(split, labels)
    data = TrainData(cube_std, valid, index, split.train, split.val, len(labels.classes))
    refitted = bool(options.refit and split.val.any() and spec.refit is not None)
    fitted_mask = split.train | split.val if refitted else split.train
    fitted = int(fitted_mask.sum())
    everything = TrainData(cube_std, valid, index, fitted_mask, np.zeros_like(split.val),
                           len(labels.classes))

    def refit_progress(e: ProgressEvent) -> None:
        progress(dataclasses.replace(e, stage=f"refit {e.stage}"))

    final = None
    torch.manual_seed(options.seed)
    with fitting_threads(device):
        if refitted and spec.fit_and_refit is not None:
            _log_refit(fitted)
            (model, history), (final, history["refit"]) = spec.fit_and_refit(
                data, everything, config, seed=options.seed, device=device,
                progress=progress, refit_progress=refit_progress)
        else:
            model, history = spec.fit(data, config, seed=options.seed, device=device,
                                      progress=progress)
    meta = _metadata(cube, labels, split, options, cube_path, labels_path)
    if len(scenes) > 1:
        meta["training"]["scenes"] = [scene.describe() for scene in scenes]
        meta["training"]["mosaic"] = {"gap_px": scenes[1].col - scenes[0].cube.grid.width,
                                      "columns": [s.col for s in scenes]}
    ckpt = Checkpoint(model.eval(), norm, labels.classes, meta)
    clock = time.perf_counter()
    predicted = classify_array(ckpt, raw, valid, device=device)
    inference_seconds = time.perf_counter() - clock
    train_acc = float((predicted[split.train] == index[split.train]).mean())
    val_acc = float((predicted[split.val] == index[split.val]).mean()) if split.val.any() \
        else None
    distances = [d for d in (split_distance(s.split) for s in scenes) if d is not None]
    val_distance = min(distances) if distances else None
    if refitted and final is None:
        assert spec.refit is not None
        _log_refit(fitted)
        torch.manual_seed(options.seed)
        with fitting_threads(device):
            final, history["refit"] = spec.refit(
                model, everything, config, history, seed=options.seed, device=device,
                progress=refit_progress)
    if final is not None:
        ckpt = Checkpoint(final.eval(), norm, labels.classes, meta)
    # that pass's speed and the saved model's activations: `predict --dry-run` without torch
    meta[INFERENCE_KEY] = inference_record(ckpt, device, shape=raw.shape[1:],
                                           seconds=inference_seconds)
    meta["accuracy"] = {"train_oa": train_acc, "val_oa": val_acc,
                        "val_pixels": int(split.val.sum()), "val_distance_px": val_distance,
                        "refitted_on_all": refitted, "fitted_pixels": fitted}
    save_checkpoint(out, Checkpoint(ckpt.model.cpu(), norm, labels.classes, meta,
                                    extras={"split": torch.from_numpy(split.as_codes())}))
    log_path = log_path_for(out)
    seconds = time.perf_counter() - start
    den_eval = history.get("denoiser_eval")
    from hsimap.split_export import export_split as write_split
    from hsimap.split_export import training_record

    records = [training_record(s.pair.labels, s.split, s.cube.grid, refitted=refitted)
               for s in scenes]
    doc = {"meta": meta, **({"denoiser_eval": den_eval} if den_eval else {}),
           "training_data": records[0] if len(records) == 1 else records,
           "history": history, "seconds": seconds}
    log_path.write_text(json.dumps(json_safe(doc), indent=1, default=float))
    split_path = None
    if export_split is not None:
        for s, path in zip(scenes, split_files, strict=True):
            written = write_split(path, split=s.split, index=s.index, labels=s.labels,
                                  labels_path=s.pair.labels, grid=s.cube.grid)
            split_path = split_path or written
    curves = write_curves(history, out.with_name(out.stem + ".curves.png"))
    write_inspection(ckpt, raw, valid, index >= 0, _good_wavelengths(cube),
                     out.with_name(out.stem + ".inside.png"))
    return TrainResult(out, log_path, curves, split.summary(), val_acc, train_acc, seconds,
                       den_eval, val_distance, abs(cube.grid.transform.a), split_path,
                       fitted, refitted, tuple(split_files) if split_path else ())



def _log_refit(fitted: int) -> None:
    log.info("refitting on all %d labelled pixels (training + validation) for the saved "
             "model; the validation figure is that of the model fitted without them", fitted)


def _log_split(split: Split, labels: Labels) -> None:
    s = split.summary()
    log.info("validation: %s split, %d train / %d validation pixels, guard band %d px removed "
             "%d validation pixels", s["method"], s["n_train"], s["n_val"], s["guard_px"],
             s["n_guard_removed"])
    if split.classes_without_val:
        names = [labels.classes.names[c] for c in split.classes_without_val]
        log.warning("no validation pixels for class(es) %s (too few polygons or all within "
                    "the guard band)", ", ".join(names))


def _metadata(cube: Cube, labels: Labels, split: Split, options: TrainOptions,
              cube_path: str | Path, labels_path: str | Path) -> dict[str, Any]:
    return json_safe({
        "n_bands": cube.count,
        "band_indices": cube.good_bands,
        "wavelengths": None if cube.wavelengths is None else list(cube.wavelengths),
        "fwhm": None if cube.fwhm is None else list(cube.fwhm),
        "crs": None if cube.grid.crs is None else cube.grid.crs.to_string(),
        "resolution": [abs(cube.grid.transform.a), abs(cube.grid.transform.e)],
        "training": {"cube": str(cube_path), "labels": str(labels_path),
                     "class_field": labels.class_field, "options": options.record(),
                     "pixel_counts": {c.name: n for c, n in zip(
                         labels.classes, labels.pixel_counts().values(), strict=True)}},
        "split": split.summary(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": {"hsimap": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    })


def _good_wavelengths(cube: Cube) -> list[float] | None:
    if cube.wavelengths is None:
        return None
    return [cube.wavelengths[i] for i in cube.good_bands]
