"""Compare model kinds on one scene by spatially grouped k-fold cross-validation.

The labelled pixels are cut into spatial units (polygons, merged when closer than the guard
band, or square blocks for points and label rasters; :mod:`hsimap.split`) and the units dealt
into ``k`` folds, class by class, once per dataset: every model sees the same folds. For fold
``f`` the test pixels are the pixels of its units; the training pixels are all other labelled
pixels except those within ``guard`` pixels (Chebyshev) of a test pixel, so no window of a
model with a radius up to ``guard`` centred on a training pixel sees a test pixel. Each model
is fitted through its ``ModelSpec.fit`` on the training part (its early-stopping validation is
split off the training part only, with the same guard) and scored on the test part through the
same tiled inference ``predict`` uses. Every labelled pixel is tested exactly once.

Outputs (one folder): ``compare.json`` (every number), ``compare.csv`` (the summary table,
the same numbers), ``compare_folds.csv`` (per model and fold) and ``compare.html`` (a
self-contained page with the plot embedded).

Size (about 500 lines, over the ~450 of the style guide): folds, the fit/score loop and the
page are kept together while issue 14's GIS-workflow changes to this module land; the
page (``scores_png``, ``folds_png``, ``_html``) is the part to move next, beside
:mod:`hsimap.report`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import html
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from hsimap._files import atomic_write_text, make_output_folder
from hsimap._version import __version__
from hsimap.errors import ConfigError, TrainingError
from hsimap.labels import OnOverlap
from hsimap.models.base import ProgressCallback, ProgressEvent, no_progress
from hsimap.preflight import COMPARE_OUTPUTS as OUTPUT_NAMES
from hsimap.preflight import check_compare_dir as check_out_dir
from hsimap.split import MIN_UNITS, block_units, make_split, proximity_units

log = logging.getLogger(__name__)

METRICS = ("oa", "aa", "kappa")
SUMMARY_FIELDS = ("model", "preset", *(f"{m}_{s}" for m in METRICS
                                       for s in ("mean", "std", "diff", "diff_se")), "best")
FOLD_FIELDS = ("model", "fold", "oa", "aa", "kappa", "n_train", "n_test", "seconds")


@dataclass(frozen=True)
class ModelChoice:
    """One model to compare: its kind, preset (``None``: the kind's default on the device)
    and config overrides. ``name`` labels it in the results (default: the kind); two
    presets of one kind are two choices with different names (the CLI's ``svm:smooth``)."""

    kind: str
    preset: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None

    @property
    def label(self) -> str:
        """The model's name in the results."""
        return self.name or self.kind


@dataclass(frozen=True)
class CompareOptions:
    """How the comparison is run (everything besides the inputs and the models)."""

    folds: int = 5
    guard: int | None = None
    block_size: int | None = None
    val_fraction: float = 0.2
    class_field: str | None = None
    all_touched: bool = False
    on_overlap: OnOverlap = "error"
    seed: int = 0
    device: str = "auto"
    bad_bands: tuple[int, ...] = ()
    max_memory: int | None = None  # bytes; None: half the memory available now
    layer: str | None = None  # of a multi-layer labels file (as train --layer)
    classes_file: str | None = None  # codes, names, colours and order (as train --classes)
    mask: str | None = None  # area of interest: labels outside it are ignored (as train)
    mask_layer: str | None = None


@dataclass(frozen=True)
class Folds:
    """Spatial folds of the labelled pixels.

    ``fold`` is ``(H, W)`` int64: the fold whose test part holds the pixel, -1 unlabelled.
    """

    fold: np.ndarray
    k: int
    guard: int
    method: str
    n_units: int

    def test(self, f: int) -> np.ndarray:
        """``(H, W)`` bool test pixels of fold ``f``."""
        return np.asarray(self.fold == f)

    def train(self, f: int) -> np.ndarray:
        """``(H, W)`` bool training pixels of fold ``f``: other folds, minus the guard band."""
        test = self.test(f)
        near = ndimage.maximum_filter(test, size=2 * self.guard + 1) if self.guard else test
        return np.asarray((self.fold >= 0) & ~near)


@dataclass(frozen=True)
class CompareResult:
    """The comparison's numbers and where they were written."""

    best: str
    summary: list[dict[str, Any]]
    per_fold: list[dict[str, Any]]
    out_dir: Path
    files: dict[str, Path]
    best_model_path: Path | None = None


def make_folds(index: np.ndarray, groups: np.ndarray, *, k: int, guard: int, seed: int = 0,
               block_size: int | None = None) -> Folds:
    """Deal spatial units of the labelled pixels into ``k`` folds, balancing each class.

    Parameters
    ----------
    index
        ``(H, W)`` class index, -1 unlabelled.
    groups
        ``(H, W)`` polygon id, -1 none (points and label rasters have none: blocks are used).
    k
        Number of folds (>= 2).
    guard
        Guard band (px) between the training and test pixels of a fold; polygons closer than
        this are one unit.
    block_size
        Block side (px) for blocks (default ``max(16, 4 * guard)``).
    """
    if k < 2:
        raise ConfigError(f"--folds must be at least 2, got {k}")
    labelled = index >= 0
    block = block_size or max(16, 4 * guard)
    has_groups = bool((groups[labelled] >= 0).any())
    if has_groups:
        units = proximity_units(np.where(labelled, groups, -1), guard, block)
        method = "polygon" if len(np.unique(units[labelled])) >= MIN_UNITS else "polygon+block"
    else:
        units, method = block_units(index.shape, block), "block"
    units = np.where(labelled, units, -1)
    ids, inverse = np.unique(units[labelled], return_inverse=True)
    if len(ids) < k:
        raise TrainingError(
            f"the labels make only {len(ids)} spatial group(s) ({method} units, guard {guard} "
            f"px, blocks {block} px), too few for {k} folds",
            fix=f"use --folds {max(2, len(ids))} or fewer, a smaller --block-size or --guard, "
                "or add ground truth in more places")
    n_classes = int(index.max()) + 1
    counts = np.zeros((len(ids), n_classes), dtype=np.int64)
    np.add.at(counts, (inverse, index[labelled]), 1)
    totals = np.maximum(counts.sum(0), 1)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(ids)), -counts.sum(1)))  # big units first, ties random
    load = np.zeros((k, n_classes))
    assigned = np.empty(len(ids), dtype=np.int64)
    for u in order:
        share = counts[u] / totals
        score = load @ share + 1e-9 * load.sum(1)  # least loaded in the unit's classes
        f = int(np.argmin(score))
        assigned[u] = f
        load[f] += share
    fold = np.full(index.shape, -1, dtype=np.int64)
    fold[labelled] = assigned[inverse]
    return Folds(fold, k, guard, method, len(ids))


def compare_models(cube_path: str | Path, labels_path: str | Path, *,
                   models: Sequence[ModelChoice], options: CompareOptions = CompareOptions(),
                   out_dir: str | Path = "hsimap_compare", overwrite: bool = False,
                   train_best: str | Path | None = None,
                   progress: ProgressCallback = no_progress) -> CompareResult:
    """Cross-validate ``models`` on the same spatial folds and write the comparison.

    ``train_best``: also fit the best model (highest mean OA) on all labels to this model
    file, as ``hsimap train --model-type <best>`` with the same options would.
    """
    import torch

    from hsimap._files import check_output
    from hsimap.checkpoint import Checkpoint
    from hsimap.classfile import read_class_file
    from hsimap.cube import open_cube
    from hsimap.device import fitting_threads, resolve_device
    from hsimap.labels import read_labels
    from hsimap.models.base import TrainData, get_spec
    from hsimap.models.workers import Workers
    from hsimap.predict import classify_array
    from hsimap.preflight import log_path_for
    from hsimap.training_data import (
        TrainOptions,
        check_scene_fits,
        default_guard,
        fit_normalisation,
        labels_inside,
        labels_on_valid,
        load_scene,
    )

    if not models:
        raise ConfigError("no model to compare", fix="give --models, e.g. svm,random-forest")
    names = [m.label for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"a model is named twice in {','.join(names)}",
                          fix="name each model once (two presets of one kind: svm,svm:smooth)")
    device = resolve_device(options.device)
    specs = {m.label: get_spec(m.kind) for m in models}  # unknown names fail here
    presets = {m.label: m.preset or specs[m.label].preset_for(device.type) for m in models}
    configs = {m.label: specs[m.label].make_config(presets[m.label], m.overrides)
               for m in models}
    out = check_out_dir(out_dir, overwrite=overwrite)
    if train_best is not None:
        train_best = check_output(train_best, inputs=(cube_path, labels_path),
                                  overwrite=overwrite)
        check_output(log_path_for(train_best), inputs=(cube_path, labels_path),
                     overwrite=overwrite)
    guard = default_guard() if options.guard is None else options.guard
    cube = open_cube(cube_path, bad_bands=options.bad_bands)
    for m in models:  # every model's memory and scene bounds, before anything is read
        probe = specs[m.label].build(configs[m.label], n_bands=len(cube.good_bands),
                                     n_classes=2)
        check_scene_fits(cube, probe, configs[m.label],
                         TrainOptions(kind=m.kind, overrides=m.overrides,
                                      max_memory=options.max_memory), device)
    class_specs = None if options.classes_file is None else \
        read_class_file(options.classes_file)
    labels = read_labels(labels_path, grid=cube.grid, class_field=options.class_field,
                         class_specs=class_specs, layer=options.layer,
                         all_touched=options.all_touched, on_overlap=options.on_overlap)
    if options.mask is not None:
        labels = labels_inside(labels, options.mask, options.mask_layer, cube.grid)
    cube, raw, valid = load_scene(cube)
    norm = fit_normalisation(raw, valid)
    cube_std = norm.apply(raw.copy(), valid)
    index = labels_on_valid(labels, valid, Path(labels_path))
    folds = make_folds(index, labels.groups, k=options.folds, guard=guard, seed=options.seed,
                       block_size=options.block_size)
    n_classes = len(labels.classes)
    fold_info = _fold_info(folds, index, n_classes)
    log.info("%d folds (%s units: %d), guard %d px; test pixels per fold: %s", folds.k,
             folds.method, folds.n_units, guard, [f["n_test"] for f in fold_info])
    inner_method = "block" if folds.method == "block" else "polygon"
    rows: list[dict[str, Any]] = []
    # a fold's count is taken and reported under one lock, so that the counts reach the
    # display in order when two folds end at once (it takes a lower count for a restart)
    reporting = threading.Lock()
    for m in models:
        spec, name = specs[m.label], m.label
        config = configs[name]
        # Kinds whose fits may share the cores (spec.concurrent_fits: DiffSpectralNet on a
        # 2-core CPU) fit two folds at a time after the first, with the same scores.
        together = spec.concurrent_fits is not None and spec.concurrent_fits(config, device)
        finished = itertools.count(1)  # folds done so far, counted under ``reporting``

        def one_fold(f: int, progress: ProgressCallback, label_free: Mapping[str, Any],
                     spec: Any = spec, name: str = name, config: Any = config,
                     together: bool = together,
                     finished: Iterator[int] = finished) -> tuple[dict[str, Any], Any]:
            start = time.perf_counter()
            inner = make_split(np.where(folds.train(f), index, -1), labels.groups,
                               method=inner_method, val_fraction=options.val_fraction,
                               guard=guard, seed=options.seed, block_size=options.block_size)
            data = TrainData(cube_std, valid, index, inner.train, inner.val, n_classes)
            with contextlib.nullcontext() if together else fitting_threads(device):
                if not together:  # fits in threads seed themselves, under a lock
                    torch.manual_seed(options.seed)
                model, _ = spec.fit(data, config, seed=options.seed, device=device,
                                    progress=progress, **label_free)
            predicted = classify_array(Checkpoint(model.eval(), norm, labels.classes, {}),
                                       raw, valid, device=device)
            test = folds.test(f)
            scores = _scores(index[test], predicted[test], n_classes)
            log.info("%s fold %d/%d: OA %.4f, AA %.4f, kappa %.4f (%d test px)", name,
                     f + 1, folds.k, scores["oa"], scores["aa"], scores["kappa"], test.sum())
            with reporting:
                progress(ProgressEvent(f"{name} folds", next(finished), folds.k,
                                       {"oa": scores["oa"]}))
            return ({"model": name, "fold": f, **scores, "n_train": int(inner.train.sum()),
                     "n_test": int(test.sum()), "seconds": time.perf_counter() - start},
                    model)

        progress(ProgressEvent(f"{name} folds", 0, folds.k))
        with fitting_threads(device) if together else contextlib.nullcontext(), \
                Workers(2 if together else 0) as workers:
            row, first = one_fold(0, workers.progress(progress), {})
            # DiffSpectralNet's projection and denoiser see no labels: fitted on the first
            # fold, reused by the others (the same scene and settings give the same stages).
            label_free = {"init": first} if m.kind == "diffspectralnet" and getattr(
                config, "features", "") == "diffusion" else {}
            jobs = [workers.run(one_fold, f, workers.progress(progress), label_free)
                    for f in range(1, folds.k)]
            rows += [row, *(job.result()[0] for job in jobs)]
    summary = summarise(rows, names, presets)
    best = next(r["model"] for r in summary if r["best"])
    document = {
        "hsimap_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": {"cube": str(cube_path), "labels": str(labels_path), "layer": options.layer,
                   "mask": options.mask, "classes_file": options.classes_file,
                   "class_field": labels.class_field,
                   "classes": [c.name for c in labels.classes]},
        "folds": {"k": folds.k, "guard_px": guard, "method": folds.method,
                  "n_units": folds.n_units, "seed": options.seed, "per_fold": fold_info},
        "models": [{"model": m.label, "kind": m.kind, "preset": presets[m.label],
                    "overrides": dict(m.overrides)} for m in models],
        "summary": summary, "per_fold": rows, "best": best, "protocol": _protocol(folds),
    }
    files = _write_outputs(out, document, folds.fold)
    best_path = None
    if train_best is not None:
        best_path = _train_best(cube_path, labels_path, models[names.index(best)], options,
                                train_best, overwrite=overwrite, progress=progress)
    return CompareResult(best, summary, rows, out, files, best_path)


def _train_best(cube_path: str | Path, labels_path: str | Path, choice: ModelChoice,
                options: CompareOptions, out: Path, *, overwrite: bool,
                progress: ProgressCallback) -> Path:
    """Fit the winner on all labels, as ``hsimap train --model-type <winner>`` would."""
    from hsimap.training import TrainOptions, train_model

    log.info("training the best model, %s, on all labels", choice.kind)
    result = train_model(cube_path, labels_path, out=out, overwrite=overwrite, progress=progress,
                         options=TrainOptions(
                             kind=choice.kind, preset=choice.preset, overrides=choice.overrides,
                             class_field=options.class_field, all_touched=options.all_touched,
                             layer=options.layer, classes_file=options.classes_file,
                             mask=options.mask, mask_layer=options.mask_layer,
                             on_overlap=options.on_overlap, val_fraction=options.val_fraction,
                             guard=options.guard, block_size=options.block_size,
                             seed=options.seed, device=options.device,
                             bad_bands=options.bad_bands))
    return result.model_path


def _scores(ref: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, float]:
    from hsimap.metrics import accuracy_metrics

    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    ok = pred >= 0
    np.add.at(cm, (ref[ok], pred[ok]), 1)
    acc = accuracy_metrics(cm, classes=list(range(n_classes)))
    return {"oa": acc.overall_accuracy, "aa": acc.average_accuracy, "kappa": acc.kappa}


def summarise(rows: Sequence[Mapping[str, Any]], kinds: Sequence[str],
              presets: Mapping[str, str]) -> list[dict[str, Any]]:
    """Mean and standard deviation over folds per model and metric, and the paired difference
    to the best model (highest mean OA) with its standard error (``std(d) / sqrt(k)``)."""
    per = {k: {m: np.array([r[m] for r in rows if r["model"] == k], dtype=np.float64)
               for m in METRICS} for k in kinds}
    means = {k: float(np.nanmean(per[k]["oa"])) for k in kinds}
    best = max(kinds, key=lambda k: (means[k], float(np.nanmean(per[k]["kappa"]))))
    out = []
    for k in kinds:
        row: dict[str, Any] = {"model": k, "preset": presets[k]}
        for m in METRICS:
            x, d = per[k][m], per[k][m] - per[best][m]
            row[f"{m}_mean"] = _num(np.nanmean(x))
            row[f"{m}_std"] = _num(np.nanstd(x, ddof=1)) if len(x) > 1 else None
            row[f"{m}_diff"] = _num(np.nanmean(d))
            row[f"{m}_diff_se"] = (_num(np.nanstd(d, ddof=1) / math.sqrt(len(d)))
                                   if len(d) > 1 else None)
        row["best"] = k == best
        out.append(row)
    return out


def _num(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def _fold_info(folds: Folds, index: np.ndarray, n_classes: int) -> list[dict[str, Any]]:
    info = []
    for f in range(folds.k):
        test, train = folds.test(f), folds.train(f)
        others = (folds.fold >= 0) & ~test
        missing = [c for c in range(n_classes)
                   if (index == c).any() and not (train & (index == c)).any()]
        if missing:
            log.warning("fold %d: no training pixel of class index(es) %s (all in the test "
                        "part or the guard band): models cannot learn them in this fold",
                        f + 1, missing)
        info.append({"fold": f, "n_test": int(test.sum()), "n_train": int(train.sum()),
                     "n_guard_removed": int((others & ~train).sum()),
                     "classes_missing_from_training": missing})
    return info


def _protocol(folds: Folds) -> str:
    return (f"{folds.k}-fold spatially grouped cross-validation: the labelled pixels are cut "
            f"into {folds.n_units} {folds.method} units (polygons closer than the guard band "
            "merged; blocks where polygons are too few or too large) dealt into folds, class by "
            "class; the same folds for every model. Per fold, each model is fitted on the other "
            f"folds minus a {folds.guard} px guard band (Chebyshev) around the test pixels; its "
            "early-stopping validation is split off that training part only. Scores on the "
            "test part of each fold; mean and sample standard deviation over folds; 'diff' is "
            "the mean paired difference to the best model (highest mean OA), with its "
            "standard error std/sqrt(k).")


# ----------------------------------------------------------------------------- outputs


def _write_outputs(out: Path, document: dict[str, Any], fold: np.ndarray) -> dict[str, Path]:
    from hsimap.report import csv_text

    make_output_folder(out)
    files = {name: out / name for name in OUTPUT_NAMES}
    document = json.loads(json.dumps(document, default=_json_default))
    atomic_write_text(files["compare.json"], json.dumps(document, indent=2, allow_nan=False) + "\n")
    atomic_write_text(files["compare.csv"], csv_text(
        SUMMARY_FIELDS, [[r[k] for k in SUMMARY_FIELDS] for r in document["summary"]]))
    atomic_write_text(files["compare_folds.csv"], csv_text(
        FOLD_FIELDS, [[r[k] for k in FOLD_FIELDS] for r in document["per_fold"]]))
    atomic_write_text(files["compare.html"], _html(document, fold))
    return files


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"not JSON-able: {x!r}")


def scores_png(document: Mapping[str, Any]) -> str:
    """PNG data URI: per-fold scores (dots) and their mean (bar) per model and metric."""
    from hsimap.plots import figure, png_data_uri

    kinds = [r["model"] for r in document["summary"]]
    fig = figure(3.2 * len(METRICS), 0.5 * len(kinds) + 1.6, layout="constrained")
    axes = fig.subplots(1, len(METRICS), sharey=True, squeeze=False)[0]
    for ax, metric in zip(axes, METRICS, strict=True):
        for y, kind in enumerate(kinds):
            xs = [r[metric] for r in document["per_fold"]
                  if r["model"] == kind and r[metric] is not None]
            mean = next(r[f"{metric}_mean"] for r in document["summary"] if r["model"] == kind)
            if mean is not None:
                ax.barh(y, mean, color="#9ecae1", height=0.6)
            ax.scatter(xs, [y] * len(xs), color="#08519c", s=14, zorder=3)
        ax.set_title({"oa": "overall accuracy", "aa": "average accuracy",
                      "kappa": "Cohen's kappa"}[metric], fontsize=9)
        ax.set_xlim(min(0.0, ax.get_xlim()[0]), 1.0)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(kinds)), kinds)
    axes[0].invert_yaxis()
    return png_data_uri(fig)


def folds_png(fold: np.ndarray) -> str:
    """PNG data URI: the fold of every labelled pixel (its test fold)."""
    from matplotlib import colormaps

    from hsimap.plots import figure, png_data_uri

    k = int(fold.max()) + 1
    h, w = fold.shape
    scale = 5.0 / max(h, w)
    fig = figure(max(2.5, w * scale) + 1.2, max(2.5, h * scale))
    ax = fig.subplots()
    rgba = np.zeros((h, w, 4))
    colours = colormaps["tab10"]
    for f in range(k):
        rgba[fold == f] = colours(f % 10)
    ax.imshow(rgba, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=colours(f % 10), label=f"fold {f + 1}") for f in range(k)],
              loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    return png_data_uri(fig)


def _cell(x: float | None, se: float | None = None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    text = f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}"
    return text + ("" if se is None else f" &plusmn; {100 * se:.2f}")


def _html(document: Mapping[str, Any], fold: np.ndarray) -> str:
    from hsimap.report import PAGE_CSS

    title = f"hsimap compare: {Path(document['inputs']['labels']).name}"
    head = "".join(f"<th>{h}</th>" for h in (
        "model", "preset", "OA % (mean &plusmn; sd)", "OA diff to best", "AA %", "AA diff",
        "kappa x100", "kappa diff"))
    rows = []
    for r in document["summary"]:
        cells = [f"<b>{html.escape(r['model'])}</b>" + (" (best)" if r["best"] else ""),
                 html.escape(str(r["preset"]))]
        for m in METRICS:
            cells += [_cell(r[f"{m}_mean"], r[f"{m}_std"]),
                      _cell(r[f"{m}_diff"], r[f"{m}_diff_se"], signed=True)]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    fi = document["folds"]
    fold_rows = "".join(
        f"<tr><td>{f['fold'] + 1}</td><td>{f['n_train']}</td><td>{f['n_test']}</td>"
        f"<td>{f['n_guard_removed']}</td></tr>" for f in fi["per_fold"])
    parts = [
        f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{PAGE_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=note>Created {html.escape(document['created'])} by hsimap "
        f"{html.escape(document['hsimap_version'])} on {html.escape(document['inputs']['cube'])}"
        ". All numbers are also in <code>compare.json</code>, <code>compare.csv</code> and "
        "<code>compare_folds.csv</code>.</p>",
        f"<h2>Best model: {html.escape(document['best'])}</h2>",
        f"<table><tr>{head}</tr>{''.join(rows)}</table>",
        "<p class=note>diff: mean paired difference to the best model over the folds, "
        "&plusmn; its standard error; a difference within about two standard errors of 0 "
        "is not a clear difference.</p>",
        "<h2>Scores per fold</h2>",
        f'<img alt="scores per fold" src="{scores_png(document)}">',
        f"<h2>Folds</h2><p class=note>{fi['k']} folds of {fi['n_units']} {fi['method']} units, "
        f"guard band {fi['guard_px']} px.</p>",
        f'<img alt="folds" src="{folds_png(fold)}">',
        "<table><tr><th>fold</th><th>training px</th><th>test px</th><th>removed by the guard"
        f"</th></tr>{fold_rows}</table>",
        f"<h2>Protocol</h2><p class=note>{html.escape(document['protocol'])}</p>",
        "</body></html>\n",
    ]
    return "\n".join(parts)
