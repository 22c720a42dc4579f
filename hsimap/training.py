"""Train a model on a scene: cube + labels -> split -> fit -> checkpoint, log and curves.

The cube's good bands are loaded into memory (training scenes are read whole; prediction is
what streams), standardised per band over valid pixels, the labels rasterized onto its grid
and split into training and validation pixels with a guard band. The model kind's ``fit``
does the rest; the final validation accuracy is measured through the same tiled inference
path that ``predict`` uses.

Size (about 600 lines, over the ~450 of the style guide): one stage read top-down, from
``train_model`` through the several-scene mosaic, the memory check and the split to the
metadata the checkpoint and log carry. The plots left for :mod:`hsimap.plots`; the next
cut is the several-scene reading and pooling (``_read_scenes`` .. ``_pool_scenes``) into a
module of its own, which waits for issue 14's multi-scene work to settle.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import platform
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsimap._files import check_output
from hsimap._version import __version__
from hsimap.checkpoint import DEFAULT_MODEL_PATH, Checkpoint, Normalisation, save_checkpoint
from hsimap.classes import ClassTable
from hsimap.classfile import read_class_file
from hsimap.cube import Cube, band_validity, open_cube, path_name, validity
from hsimap.device import fitting_threads, resolve_device
from hsimap.dry_run import INFERENCE_KEY
from hsimap.errors import ConfigError, CubeError, HsimapWarning, OutputError, TrainingError
from hsimap.labels import Labels, OnOverlap, read_labels
from hsimap.models import DEFAULT_MODEL
from hsimap.models.base import (
    AnySpec,
    HsiModel,
    ModelConfig,
    ProgressCallback,
    TrainData,
    check_config_for_scene,
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
from hsimap.resources import check_budget, default_budget
from hsimap.scenes import ScenePair
from hsimap.split import Split, make_split

log = logging.getLogger(__name__)

MIN_PIXELS_PER_CLASS = 2
# Label rasterisation (values, groups and claims int32, a uint8 per class burnt, the conflict
# mask), the int64 class index, the validity and split masks, the distance transform and the
# predicted training map: bytes per scene pixel.
LABEL_BYTES_PER_PIXEL = 48.0
# The key of the model kind in the stored options record (TrainOptions.kind was `model`).
RECORD_KIND_KEY = "model"


@dataclass(frozen=True)
class TrainOptions:
    """Everything ``hsimap train`` can be told besides the input and output paths.

    ``kind``: the model kind (``hsimap train --model-type``). The model file and the
    training log store these options as :meth:`record` (``meta["training"]["options"]``),
    where the kind is stored under its old name ``"model"`` (the file format is unchanged).
    """

    kind: str = DEFAULT_MODEL
    preset: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    class_field: str | None = None
    color_field: str | None = None
    classes_file: str | None = None  # a str, so the options stay JSON in the log
    layer: str | None = None
    mask: str | None = None  # area of interest: labels outside it are ignored
    mask_layer: str | None = None
    all_touched: bool = False
    on_overlap: OnOverlap = "error"
    validation: str = "polygon"
    val_fraction: float = 0.2
    guard: int | None = None
    block_size: int | None = None
    seed: int = 0
    device: str = "auto"
    bad_bands: tuple[int, ...] = ()
    max_memory: int | None = None  # bytes; None: resources.default_budget()
    refit: bool = True

    def record(self) -> dict[str, Any]:
        """The options as stored in the model file and the log (JSON-able): every field by
        its name, except ``kind``, stored as ``"model"`` like files written before the rename."""
        stored = json_safe(asdict(self))
        return {RECORD_KIND_KEY if k == "kind" else k: v for k, v in stored.items()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TrainOptions:
        """The options a model was trained with, from its stored :meth:`record` (old and new
        files alike; a ``"kind"`` key is read too). Unknown keys are ignored, missing ones
        take their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {("kind" if k == RECORD_KIND_KEY else k): v for k, v in record.items()}
        values = {k: v for k, v in values.items() if k in names}
        if isinstance(values.get("bad_bands"), list):
            values["bad_bands"] = tuple(values["bad_bands"])
        if isinstance(values.get("overrides"), Mapping):
            values["overrides"] = {k: tuple(v) if isinstance(v, list) else v
                                   for k, v in values["overrides"].items()}
        return cls(**values)


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
    scenes = _read_scenes(pairs, spec, config, options, device, class_specs)
    cube, labels, raw, valid, index, split, probe = _pool_scenes(scenes, spec, config, options)
    norm = fit_normalisation(raw, valid)
    cube_std = norm.apply(raw.copy(), valid)
    if probe.window_radius() > split.guard:
        log.warning("the guard band (%d px) is narrower than this model's window radius (%d px): "
                    "windows centred on training pixels reach validation pixels; pass --guard "
                    "%d for a clean validation", split.guard, probe.window_radius(),
                    probe.window_radius())
    _log_split(split, labels)
    data = TrainData(cube_std, valid, index, split.train, split.val, len(labels.classes))
    torch.manual_seed(options.seed)
    with fitting_threads(device):
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
    refitted = bool(options.refit and split.val.any() and spec.refit is not None)
    fitted_mask = split.train | split.val if refitted else split.train
    fitted = int(fitted_mask.sum())
    if refitted:
        assert spec.refit is not None
        everything = TrainData(cube_std, valid, index, fitted_mask, np.zeros_like(split.val),
                               len(labels.classes))
        log.info("refitting on all %d labelled pixels (training + validation) for the saved "
                 "model; the validation figure is that of the model fitted without them",
                 fitted)
        torch.manual_seed(options.seed)
        with fitting_threads(device):
            model, history["refit"] = spec.refit(
                model, everything, config, history, seed=options.seed, device=device,
                progress=lambda e: progress(dataclasses.replace(e, stage=f"refit {e.stage}")))
        ckpt = Checkpoint(model.eval(), norm, labels.classes, meta)
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


@dataclass
class _Scene:
    """One training scene once read: its arrays on its own grid, its split and its column
    in the mosaic."""

    pair: ScenePair
    cube: Cube
    labels: Labels
    raw: np.ndarray
    valid: np.ndarray
    index: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    split: Any = None  # the scene's Split, once drawn
    col: int = 0

    def describe(self) -> dict[str, Any]:
        """The scene's entry in the model metadata and the training log."""
        g = self.cube.grid
        return {"cube": str(self.pair.cube), "labels": str(self.pair.labels),
                "layer": self.pair.layer, "class_field": self.labels.class_field,
                "size": {"width": g.width, "height": g.height},
                "crs": None if g.crs is None else g.crs.to_string(),
                "pixel_counts": {c.name: n for c, n in zip(
                    self.labels.classes, self.labels.pixel_counts().values(), strict=True)},
                "split": self.split.summary(), "mosaic_column": self.col}


def _read_scenes(pairs: Sequence[ScenePair], spec: AnySpec, config: ModelConfig,
                 options: TrainOptions,
                 device: torch.device, class_specs: Any) -> list[_Scene]:
    """Open, check, label and read every scene (one band set, one class table)."""
    from hsimap.scenes import check_band_sets, merge_labels
    from hsimap.split_export import integer_field

    cubes = [open_cube(p.cube, bad_bands=options.bad_bands) for p in pairs]
    if len(cubes) > 1:
        check_band_sets(cubes)
        cubes = _common_bad_bands(cubes)
    probe = spec.build(config, n_bands=len(cubes[0].good_bands), n_classes=2)
    need = [check_scene_fits(c, probe, config, options, device) for c in cubes]
    if len(cubes) > 1:
        budget = options.max_memory if options.max_memory is not None else default_budget()
        check_budget(f"training on these {len(cubes)} scenes together",
                     [(f"scene {c.path}", n) for c, n in zip(cubes, need, strict=True)] +
                     [("the scenes' mosaic (a second copy)", float(sum(need)))], budget,
                     path=cubes[0].path,
                     fix="train on fewer scenes, crop them to the labelled areas, or raise "
                         "--max-memory if the machine has that much")
    labels = []
    for pair, cube in zip(pairs, cubes, strict=True):
        lab = read_labels(pair.labels, grid=cube.grid, class_field=options.class_field,
                          color_field=options.color_field, class_specs=class_specs,
                          layer=pair.layer, all_touched=options.all_touched,
                          on_overlap=options.on_overlap)
        if options.mask is not None:
            lab = labels_inside(lab, options.mask, options.mask_layer, cube.grid)
        labels.append(lab)
    if len(labels) > 1:
        labels = merge_labels(
            labels, [p.labels for p in pairs],
            [integer_field(p.labels, lab.class_field or "") for p, lab in
             zip(pairs, labels, strict=True)],
            recolor=options.color_field is None and class_specs is None,
            class_specs=class_specs)
    scenes = []
    for pair, cube, lab in zip(pairs, cubes, labels, strict=True):
        _log_labels(lab, pair.labels)
        cube, raw, valid = load_scene(cube)
        scenes.append(_Scene(pair, cube, lab, raw, valid))
    if len(scenes) > 1:
        _drop_empty_bands(scenes)
    for scene in scenes:
        scene.index = _index_on_valid(scene.labels, scene.valid, Path(str(scene.pair.labels)))
        scene.split = dataset_split(scene.index, scene.labels.groups, options)
        if len(scenes) > 1:
            s = scene.split.summary()
            log.info("scene %s: %d train / %d validation pixels (guard removed %d)",
                     path_name(scene.cube.path), s["n_train"], s["n_val"], s["n_guard_removed"])
    return scenes


def _common_bad_bands(cubes: list[Cube]) -> list[Cube]:
    """The cubes with one bad-band list: a band bad in one scene is left out of all."""
    bad = tuple(sorted(set().union(*(c.bad_bands for c in cubes))))
    for c in cubes:
        extra = sorted(set(bad) - set(c.bad_bands))
        if extra:
            log.info("%s: band(s) %s are bad in another training scene and are left out here "
                     "too", c.path, ",".join(str(b + 1) for b in extra))
    return [c if c.bad_bands == bad else c.with_bad_bands(bad) for c in cubes]


def _drop_empty_bands(scenes: list[_Scene]) -> None:
    """After reading: a band with no valid value in one scene is left out of every scene."""
    from hsimap.cube import validity

    common = set.intersection(*(set(s.cube.good_bands) for s in scenes))
    for s in scenes:
        if set(s.cube.good_bands) == common:
            continue
        keep = [i for i, b in enumerate(s.cube.good_bands) if b in common]
        gone = sorted(set(s.cube.good_bands) - common)
        log.info("%s: band(s) %s are empty in another training scene and are left out here "
                 "too", s.cube.path, ",".join(str(b + 1) for b in gone))
        s.cube = s.cube.with_bad_bands(s.cube.bad_bands + tuple(gone))
        s.raw = np.ascontiguousarray(s.raw[keep])
        s.valid = validity(s.raw, s.cube.good_nodata)


def _pool_scenes(scenes: list[_Scene], spec: AnySpec, config: ModelConfig, options: TrainOptions
                 ) -> tuple[Cube, Labels, np.ndarray, np.ndarray, np.ndarray, Split, HsiModel]:
    """The scenes as one training scene: the first cube (its metadata and grid), the pooled
    labels, raw values, validity, class index and split on the mosaic, and the model probe.

    One scene is returned as it is. Several are laid left to right with a nodata gap of
    :func:`hsimap.scenes.mosaic_gap` columns (more than twice the model's halo and window
    radius), so no window centred in one scene reaches another.
    """
    from hsimap.scenes import mosaic_gap, mosaic_offsets, paste

    first = scenes[0]
    probe = spec.build(config, n_bands=first.raw.shape[0], n_classes=len(first.labels.classes))
    if len(scenes) == 1:
        _check_classes(first.index, first.labels, first.pair.labels)
        return (first.cube, first.labels, first.raw, first.valid, first.index, first.split,
                probe)
    gap = mosaic_gap(probe.halo(), probe.window_radius())
    offsets, width = mosaic_offsets([s.cube.grid.width for s in scenes], gap, probe.stride())
    for s, col in zip(scenes, offsets, strict=True):
        s.col = col
    group_base, groups = 0, []
    for s in scenes:
        groups.append(np.where(s.labels.groups >= 0, s.labels.groups + group_base, -1))
        group_base += int(s.labels.groups.max()) + 1
    index = paste([s.index for s in scenes], offsets, width, -1)
    labels = dataclasses.replace(
        first.labels, values=paste([s.labels.values for s in scenes], offsets, width, 0),
        groups=paste(groups, offsets, width, -1),
        n_features=sum(s.labels.n_features for s in scenes),
        n_outside=sum(s.labels.n_outside for s in scenes),
        n_conflict_pixels=sum(s.labels.n_conflict_pixels for s in scenes),
        reprojected_from=next((s.labels.reprojected_from for s in scenes
                               if s.labels.reprojected_from), None))
    _check_classes(index, labels, None, files=[s.pair.labels for s in scenes])
    train = paste([s.split.train for s in scenes], offsets, width, False)
    val = paste([s.split.val for s in scenes], offsets, width, False)
    without = [c for c in range(len(labels.classes))
               if (index == c).any() and not (val & (index == c)).any()]
    s0 = first.split
    split = Split(train, val, s0.method, s0.guard, s0.val_fraction, s0.seed,
                  sum(s.split.n_guard_removed for s in scenes), without)
    raw = paste([s.raw for s in scenes], offsets, width, 0.0)
    valid = paste([s.valid for s in scenes], offsets, width, False)
    log.info("%d scenes pooled side by side (%d x %d px mosaic, %d nodata columns between "
             "scenes, more than twice the model's %d px halo)", len(scenes), width,
             raw.shape[1], gap, probe.halo())
    return first.cube, labels, raw, valid, index, split, probe


def check_scene_fits(cube: Cube, probe: HsiModel, config: ModelConfig, options: TrainOptions,
                     device: torch.device) -> int:
    """Refuse, before any large allocation, a config the scene cannot honour (a window, crop
    or projection larger than the scene, for the fields the user set) and a scene whose
    training would need more memory than ``options.max_memory``. Returns the estimate."""
    h, w = cube.grid.shape
    n_bands = len(cube.good_bands)
    try:
        check_config_for_scene(config, n_bands=n_bands, height=h, width=w,
                               fields=options.overrides)
    except ConfigError as exc:
        raise ConfigError(exc.message, path=cube.path, fix=exc.fix) from exc
    pixels = float(h) * float(w)
    features = probe.fit_bytes_per_pixel() if device.type == "cpu" else 0.0
    parts = [
        (f"the scene read into memory ({w} x {h} px x {n_bands} bands, float32, raw and "
         "standardised)", 8.0 * n_bands * pixels),
        ("per-band statistics over the valid pixels (float64)", 8.0 * n_bands * pixels),
        ("the labels rasterised on the full grid, split masks and the training map",
         LABEL_BYTES_PER_PIXEL * pixels),
        ("the model's whole-scene feature maps", features * pixels),
    ]
    budget = options.max_memory if options.max_memory is not None else default_budget()
    return check_budget(
        "training on this scene", parts, budget, path=cube.path,
        fix="crop the scene to the labelled area first (gdal_translate -projwin ULX ULY LRX LRY "
            "scene.tif crop.tif, or QGIS Clip Raster by Extent), leave bands out with "
            "--bad-bands, or raise --max-memory (e.g. --max-memory 64G) if the machine has "
            "that much")


def labels_inside(labels: Labels, mask: str, layer: str | None, grid: Any) -> Labels:
    """``labels`` without the pixels outside the area of interest ``mask``."""
    from hsimap.aoi import AreaMask
    from hsimap.errors import LabelError

    aoi = AreaMask.open(mask, grid, layer=layer)
    try:
        inside = aoi.full()
    finally:
        aoi.close()
    outside = (labels.values > 0) & ~inside
    kept = int(((labels.values > 0) & inside).sum())
    if kept == 0:
        raise LabelError("no labelled pixel lies inside the mask", path=mask,
                         fix="check that the mask covers the labels, or leave --mask out")
    log.info("mask %s: %d labelled pixels outside it are ignored, %d kept", mask,
             int(outside.sum()), kept)
    values = np.where(outside, 0, labels.values).astype(labels.values.dtype)
    groups = np.where(outside, -1, labels.groups).astype(labels.groups.dtype)
    present = {int(v) for v in np.unique(values) if v > 0}
    classes = ClassTable(tuple(c for c in labels.classes if c.value in present))
    if len(classes) < len(labels.classes):
        gone = [c.name for c in labels.classes if c.value not in present]
        log.warning("class(es) %s have no labelled pixel inside the mask and are left out",
                    ", ".join(gone))
    return dataclasses.replace(labels, values=values, groups=groups, classes=classes)


def split_distance(split: Split) -> int | None:
    """Least Chebyshev distance (px) from a validation pixel to a training pixel, or None."""
    from scipy import ndimage

    if not split.val.any() or not split.train.any():
        return None
    dist = ndimage.distance_transform_cdt(~split.train, metric="chessboard")
    return int(dist[split.val].min())


def default_guard() -> int:
    """The guard band used when none is given: the widest window radius of the shipped models."""
    from hsimap.models import widest_window_radius

    return widest_window_radius()


def dataset_split(index: np.ndarray, groups: np.ndarray, options: TrainOptions) -> Split:
    """The validation split of a dataset: from the labels and the split options alone.

    The model kind, preset and config overrides play no part, so two models trained with the
    same options are validated on the same pixels.
    """
    guard = default_guard() if options.guard is None else options.guard
    return make_split(index, groups, method=options.validation,
                      val_fraction=options.val_fraction, guard=guard, seed=options.seed,
                      block_size=options.block_size)


def load_scene(cube: Cube) -> tuple[Cube, np.ndarray, np.ndarray]:
    """Read the whole cube; bands with no valid value at all become bad bands (with a warning).

    Returns the (possibly updated) cube, the raw ``(C, H, W)`` float32 good bands and the
    ``(H, W)`` validity mask.
    """
    values, _ = cube.read((0, cube.grid.height), (0, cube.grid.width))
    per_band_ok = band_validity(values, cube.good_nodata)
    empty = [cube.good_bands[i] for i in np.flatnonzero(~per_band_ok.any(axis=(1, 2)))]
    if empty and len(empty) < len(cube.good_bands):
        warnings.warn(f"{cube.path}: band(s) {[b + 1 for b in empty]} hold no valid value and "
                      "are treated as bad bands", HsimapWarning, stacklevel=2)
        keep = [i for i, b in enumerate(cube.good_bands) if b not in empty]
        cube = cube.with_bad_bands(cube.bad_bands + tuple(empty))
        values = np.ascontiguousarray(values[keep])
    valid = validity(values, cube.good_nodata)
    if not valid.any():
        raise CubeError("has no valid pixel: every pixel is nodata, NaN or inf in some band",
                        path=cube.path, fix="check the nodata value and the band list "
                                            "(--bad-bands), or give another scene")
    n_bad = int((~valid).sum())
    if n_bad:
        log.info("%d of %d pixels are nodata/NaN/inf and are ignored", n_bad, valid.size)
    return cube, values, valid


def fit_normalisation(values: np.ndarray, valid: np.ndarray) -> Normalisation:
    pixels = values[:, valid].astype(np.float64)
    mean = pixels.mean(axis=1)
    std = pixels.std(axis=1)
    std[std == 0] = 1.0
    return Normalisation(mean.astype(np.float32), std.astype(np.float32))


def labels_on_valid(labels: Labels, valid: np.ndarray, path: Path) -> np.ndarray:
    index = _index_on_valid(labels, valid, path, stacklevel=4)
    _check_classes(index, labels, path)
    return index


def _index_on_valid(labels: Labels, valid: np.ndarray, path: Path, *,
                    stacklevel: int = 3) -> np.ndarray:
    """The labels' class index with labelled pixels on nodata dropped (with a warning)."""
    index = labels.index()
    dropped = int(((index >= 0) & ~valid).sum())
    if dropped:
        warnings.warn(f"{path}: {dropped} labelled pixel(s) fall on nodata and are ignored",
                      HsimapWarning, stacklevel=stacklevel)
    index[~valid] = -1
    return index


def _check_classes(index: np.ndarray, labels: Labels, path: str | Path | None, *,
                   files: Sequence[str | Path] = ()) -> None:
    """Refuse fewer than two classes, or a class with fewer than ``MIN_PIXELS_PER_CLASS``
    labelled valid pixels (over every scene; ``files`` names them when there are several)."""
    where = "" if not files else f" of all {len(files)} scenes ({', '.join(map(str, files))})"
    counts = np.bincount(index[index >= 0], minlength=len(labels.classes))
    present = [c for c, n in zip(labels.classes, counts, strict=True) if n > 0]
    if len(present) < 2:
        raise TrainingError(
            f"the labels{where} hold only {len(present)} class(es) on valid pixels "
            f"({', '.join(c.name for c in present) or 'none'})", path=path,
            fix="a classifier needs at least two classes; add ground truth for other classes")
    small = [f"{c.name!r} ({n} px)" for c, n in zip(labels.classes, counts, strict=True)
             if n < MIN_PIXELS_PER_CLASS]
    if small:
        listed = ", ".join(small[:5]) + (f" and {len(small) - 5} more" if len(small) > 5 else "")
        raise TrainingError(
            f"class(es) {listed} have fewer than {MIN_PIXELS_PER_CLASS} labelled "
            f"valid pixels{where}", path=path,
            fix="add ground truth for them, merge them into another class, or remove them")


def _log_labels(labels: Labels, path: str | Path) -> None:
    counts = labels.pixel_counts()
    log.info("labels %s: %d features, field %r, %d classes: %s", Path(path).name,
             labels.n_features, labels.class_field, len(labels.classes),
             ", ".join(f"{c.name}={counts[c.value]}" for c in labels.classes))
    if labels.reprojected_from:
        log.info("labels were reprojected from %s to the cube's CRS", labels.reprojected_from)


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
