"""The training data: from the input files to the arrays a fit takes.

:class:`TrainOptions` (what ``hsimap train`` is told besides its paths; mostly how to read,
label and split the scenes) and the steps ``train`` and ``compare`` share before any model
is fitted: each scene opened, checked against the memory budget and the config, read whole
(:func:`load_scene`), labelled on its valid pixels, split with a guard band
(:func:`dataset_split`), several scenes pooled side by side in one mosaic
(:func:`read_scenes`, :func:`pool_scenes`), and the per-band normalisation.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsimap.checkpoint import Normalisation
from hsimap.classes import ClassTable
from hsimap.cube import Cube, band_validity, open_cube, path_name, validity
from hsimap.errors import ConfigError, CubeError, HsimapWarning, TrainingError
from hsimap.labels import Labels, OnOverlap, read_labels
from hsimap.models import DEFAULT_MODEL
from hsimap.models.base import AnySpec, HsiModel, ModelConfig, check_config_for_scene, json_safe
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



@dataclass
class TrainingScene:
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


def read_scenes(pairs: Sequence[ScenePair], spec: AnySpec, config: ModelConfig,
                 options: TrainOptions,
                 device: torch.device, class_specs: Any) -> list[TrainingScene]:
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
        scenes.append(TrainingScene(pair, cube, lab, raw, valid))
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


def _drop_empty_bands(scenes: list[TrainingScene]) -> None:
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


def pool_scenes(scenes: list[TrainingScene], spec: AnySpec, config: ModelConfig,
                options: TrainOptions
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

