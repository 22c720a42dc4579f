"""Evaluate a class map against reference data and write the accuracy report.

:func:`evaluate_map` streams the map block by block (counting the mapped pixels of every
class for the area weights and pairing map and reference values), computes the sample
accuracy and the Olofsson et al. (2014) area-adjusted estimates (:mod:`hsimap.metrics`) and
writes into one folder:

* ``metrics.json``: every number, machine readable (undefined values are ``null``);
* ``confusion_matrix.csv`` and ``per_class.csv``: the same numbers as the JSON, as tables;
* ``report.html``: a self-contained page (images embedded as data URIs) with a quick-look
  of the map, the confusion-matrix heatmap, the tables, the protocol and, when a training log
  is given, the training curves.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import io
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from hsimap._files import RASTER_SUFFIXES, atomic_write_text, make_output_folder, sha256_file
from hsimap._version import __version__
from hsimap.classes import DEFAULT_PALETTE, ClassInfo, ClassTable
from hsimap.classmap import apply_lut, merge_map_classes
from hsimap.errors import InputFileError, LabelError, OutputError
from hsimap.geotiff import CLASSES_TAG
from hsimap.metrics import (
    AccuracyMetrics,
    AreaAdjustedAccuracy,
    accuracy_metrics,
    area_adjusted_accuracy,
)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(done, total)`` callback, called once per map block."""

OUTPUT_NAMES = ("metrics.json", "confusion_matrix.csv", "per_class.csv", "report.html")
QUICKLOOK_MAX_SIDE = 800
MAX_CURVES = 12
# Keys whose series are the x axis of a training log, not something to plot.
_X_KEYS = {"epoch", "epochs", "step", "steps", "iteration", "iterations", "iter", "time"}
# Parts of a training log that are settings or one-off measurements, never training curves
# (band indices, wavelengths, timesteps, the held-out denoiser check, the training pixels).
_NOT_SERIES = {"meta", "config", "denoiser_eval", "eval", "timings", "training_data"}


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate_map` computed and where it wrote it.

    Attributes
    ----------
    classes
        The classes of the matrix (map classes plus any reference-only classes).
    accuracy
        Sample accuracy (OA, AA, kappa, per-class).
    area_adjusted
        Olofsson et al. (2014) area-adjusted estimates.
    out_dir
        Folder holding the outputs.
    files
        Output name -> path (``metrics.json``, ``confusion_matrix.csv``, ...).
    n_reference_pixels
        Reference pixels compared (labelled and mapped).
    n_reference_on_nodata
        Reference pixels left out because the map has no class there.
    """

    classes: ClassTable
    accuracy: AccuracyMetrics
    area_adjusted: AreaAdjustedAccuracy
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    n_reference_pixels: int = 0
    n_reference_on_nodata: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def report_path(self) -> Path:
        """The HTML report."""
        return self.files["report.html"]


@dataclass
class _Counts:
    """Accumulators filled while streaming the map."""

    mapped: dict[int, int] = field(default_factory=dict)
    pairs: dict[tuple[int, int], int] = field(default_factory=dict)
    on_nodata: int = 0


def evaluate_map(
    map_path: str | Path,
    reference_path: str | Path,
    *,
    class_field: str | None = None,
    all_touched: bool = False,
    on_overlap: Literal["error", "drop"] = "error",
    training_log: str | Path | None = None,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    layer: str | None = None,
    class_map: Sequence[tuple[str, str]] | None = None,
) -> EvaluationResult:
    """Compare a class map with reference data and write the accuracy report.

    Parameters
    ----------
    map_path
        Single-band integer class map (as written by ``hsimap predict``); 0 and the map's
        nodata value mean "no class" and are left out.
    reference_path
        Reference polygons/points (any OGR vector, rasterized onto the map grid) or a label
        raster on exactly the map's grid (0/nodata = unlabelled).
    class_field
        Field of the vector holding class names or codes (auto-detected when ``None``).
    all_touched
        Rasterize every pixel a polygon touches instead of pixel centres inside it.
    on_overlap
        Pixels claimed by polygons of different classes: ``"error"`` or ``"drop"``.
    training_log
        Optional training-log JSON; numeric per-epoch/iteration series are plotted.
    out_dir
        Output folder; default ``<map stem>_evaluation`` beside the map.
    overwrite
        Replace existing report files in ``out_dir``.
    progress
        Optional ``progress(done, total)`` callback, once per map block.
    layer
        Layer of a multi-layer reference vector file.
    class_map
        ``(old, new)`` pairs merging map classes into coarser reference classes
        (:func:`hsimap.classmap.parse_class_map`); the report is in the merged classes.

    Returns
    -------
    EvaluationResult
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    map_path = Path(map_path)
    reference_path = Path(reference_path)
    out = check_out_dir(map_path, out_dir, overwrite=overwrite)
    log_series = _read_training_log(Path(training_log)) if training_log is not None else None
    if not map_path.exists():
        raise InputFileError("map file not found", path=map_path, fix="check the MAP path")
    try:
        src = rasterio.open(map_path)
    except RasterioIOError as exc:
        raise InputFileError(f"cannot open the map as a raster ({exc})", path=map_path,
                             fix="give a class-map GeoTIFF written by `hsimap predict`") from exc
    with src:
        _check_map(src, map_path)
        map_table = _map_classes(src)
        lut: dict[int, int] = {}
        if class_map:
            map_table, lut = merge_map_classes(map_table, class_map)
        reference, ref_table, ref_info = _read_reference(
            reference_path, src, class_field=class_field, all_touched=all_touched,
            on_overlap=on_overlap, classes=map_table, layer=layer)
        notes = _independence_notes(training_log, reference_path, reference, src)
        counts = _stream_counts(src, reference, progress=progress, lut=lut)
        pixel_area, area_unit = _pixel_area(src)
        quicklook = apply_lut(_read_quicklook(src), lut)
        map_tags = {k: v for k, v in src.tags().items() if k != CLASSES_TAG}
        grid_text = f"{src.height} x {src.width} px, CRS {_crs_text(src.crs)}"
    del reference
    table = _merge_classes(map_table, ref_table, counts)
    values = table.values
    k = len(values)
    index = {v: i for i, v in enumerate(values)}
    cm = np.zeros((k, k), dtype=np.int64)
    for (ref_v, map_v), n in counts.pairs.items():
        cm[index[ref_v], index[map_v]] += n
    if cm.sum() == 0:
        raise LabelError(
            "no reference pixel falls on a mapped pixel of the map", path=reference_path,
            fix="check that the reference data covers the mapped area (and not only nodata)")
    accuracy = accuracy_metrics(cm, classes=values)
    mapped = [counts.mapped.get(v, 0) for v in values]
    area = area_adjusted_accuracy(cm, classes=values, mapped_pixels=mapped,
                                  pixel_area=pixel_area, area_unit=area_unit)
    info = {
        "map": str(map_path), "reference": str(reference_path), "grid": grid_text,
        "map_sha256": _sha256_if_file(map_path),
        "reference_sha256": _sha256_if_file(reference_path),
        "map_tags": map_tags, "training_log": None if training_log is None else str(training_log),
        "n_reference_on_nodata": counts.on_nodata, **ref_info, "warnings": notes,
        "class_map": None if not class_map else [list(p) for p in class_map],
    }
    document = _metrics_document(table, accuracy, area, info)
    files = _write_outputs(out, document, table, accuracy, area, quicklook=quicklook,
                           log_series=log_series)
    return EvaluationResult(table, accuracy, area, out, files, accuracy.n_samples,
                            counts.on_nodata, notes)


def _independence_notes(training_log: str | Path | None, reference_path: Path,
                        reference: npt.NDArray[np.int64], src: Any) -> list[str]:
    """Warn (and return the sentences) when the reference is not independent of training:
    the training labels file itself, or pixels that trained the model (from the log)."""
    import warnings

    from hsimap.cube import Grid
    from hsimap.errors import HsimapWarning
    from hsimap.split_export import training_overlap

    if training_log is None:
        return []
    try:
        doc = json.loads(Path(training_log).read_text())
    except (OSError, ValueError):
        return []
    record = doc.get("training_data") if isinstance(doc, dict) else None
    records = [r for r in record if isinstance(r, dict)] if isinstance(record, list) else \
        [record] if isinstance(record, dict) else []  # a list: one per training scene
    if not records:
        meta = doc.get("meta", {}) if isinstance(doc, dict) else {}
        labels = meta.get("training", {}).get("labels") if isinstance(meta, dict) else None
        if not labels:
            return []
        records = [{"labels": labels}]  # an older log: the file check only
    grid = Grid(src.height, src.width, src.transform, src.crs)
    notes = [note for r in records
             for note in training_overlap(r, reference_path, reference > 0, grid)]
    for note in notes:
        warnings.warn(note, HsimapWarning, stacklevel=3)
    return notes


# ----------------------------------------------------------------------------- inputs


def check_out_dir(map_path: str | Path, out_dir: str | Path | None, *,
                  overwrite: bool) -> Path:
    """The evaluation folder (default ``<map stem>_evaluation``), refused when it is a file or
    already holds an evaluation and ``overwrite`` is not given; nothing is created."""
    map_path = Path(map_path)
    out = Path(out_dir) if out_dir is not None else map_path.with_name(
        f"{map_path.stem}_evaluation")
    if out.exists() and not out.is_dir():
        raise OutputError("output path exists and is not a folder", path=out,
                          fix="give a folder name with -o")
    existing = [n for n in OUTPUT_NAMES if (out / n).exists()]
    if existing and not overwrite:
        raise OutputError(f"folder already holds an evaluation ({', '.join(existing)})", path=out,
                          fix="pass --overwrite to replace it, or choose another folder with -o")
    return out


def _check_map(src: Any, path: Path) -> None:
    if src.count != 1 or np.dtype(src.dtypes[0]).kind not in "iu":
        raise InputFileError(
            f"not a class map: {src.count} band(s) of {src.dtypes[0]}", path=path,
            fix="give a single-band integer class map (the output of `hsimap predict`), "
                "not the hyperspectral cube")


def _map_classes(src: Any) -> ClassTable | None:
    """The class table stored in the map: the JSON tag, else ``CLASS_<v>`` band tags."""
    text = src.tags().get(CLASSES_TAG)
    if text:
        try:
            return ClassTable.from_json(text)
        except (ValueError, KeyError, TypeError):
            log.warning("%s: ignoring an unreadable %s tag", src.name, CLASSES_TAG)
    band_tags = src.tags(1)
    pairs = [(int(k[6:]), v) for k, v in band_tags.items()
             if k.startswith("CLASS_") and k[6:].isdigit() and int(k[6:]) > 0]
    if not pairs:
        return None
    table = ClassTable.from_pairs(pairs)
    try:
        cmap = src.colormap(1)
    except ValueError:
        return table
    return ClassTable(tuple(
        ClassInfo(c.value, c.name, "#{:02x}{:02x}{:02x}".format(*cmap[c.value][:3]))
        if c.value in cmap else c for c in table))


def _read_reference(path: Path, src: Any, *, class_field: str | None, all_touched: bool,
                    on_overlap: Literal["error", "drop"], classes: ClassTable | None,
                    layer: str | None = None,
                    ) -> tuple[npt.NDArray[np.int64], ClassTable | None, dict[str, Any]]:
    """``(H, W)`` reference values on the map grid (0 = unlabelled), its classes, notes."""
    if not path.exists():
        raise InputFileError("reference file not found", path=path,
                             fix="check the --labels path")
    if path.suffix.lower() in RASTER_SUFFIXES:
        values, table = _read_reference_raster(path, src)
        return values, table, {"reference_kind": "raster", "class_field": None,
                               "all_touched": None}
    from hsimap.cube import Grid
    from hsimap.labels import read_labels

    grid = Grid(src.height, src.width, src.transform, src.crs)
    labels = read_labels(path, grid=grid, class_field=class_field, all_touched=all_touched,
                         on_overlap=on_overlap, classes=classes, layer=layer)
    info = {"reference_kind": "vector", "class_field": labels.class_field,
            "all_touched": all_touched, "n_features": labels.n_features,
            "n_features_outside": labels.n_outside,
            "n_conflict_pixels": labels.n_conflict_pixels,
            "reprojected_from": labels.reprojected_from}
    return np.asarray(labels.values, dtype=np.int64), labels.classes, info


def _read_reference_raster(path: Path, src: Any,
                           ) -> tuple[npt.NDArray[np.int64], ClassTable | None]:
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        ref = rasterio.open(path)
    except RasterioIOError as exc:
        raise InputFileError(f"cannot open the reference raster ({exc})", path=path) from exc
    with ref:
        same = ((ref.height, ref.width) == (src.height, src.width)
                and ref.crs == src.crs and ref.transform.almost_equals(src.transform))
        if not same:
            raise LabelError(
                f"reference raster grid ({ref.height} x {ref.width}, {_crs_text(ref.crs)}, "
                f"transform {tuple(ref.transform)[:6]}) differs from the map's "
                f"({src.height} x {src.width}, {_crs_text(src.crs)}, "
                f"transform {tuple(src.transform)[:6]})", path=path,
                fix="resample the reference onto the map grid (gdalwarp -r near with the map's "
                    "-te/-tr/-t_srs) or give reference polygons instead")
        if ref.count != 1:
            raise LabelError(f"reference raster has {ref.count} bands, expected 1", path=path)
        data = ref.read(1)
        table = _map_classes(ref)
        nodata = ref.nodata
    values = np.where(np.isfinite(data), data, 0).astype(np.int64)
    if nodata is not None:
        values[data == nodata] = 0
    values[values < 0] = 0
    if not (values > 0).any():
        raise LabelError("the reference raster has no labelled pixel (all 0 or nodata)",
                         path=path)
    return values, table


def _stream_counts(src: Any, reference: npt.NDArray[np.int64], *,
                   progress: Progress | None, lut: dict[int, int] | None = None) -> _Counts:
    """Count mapped pixels per class and (reference, map) pairs, one map block at a time;
    ``lut`` merges map values first (``--class-map``)."""
    counts = _Counts()
    nodata = src.nodata
    windows = [w for _, w in src.block_windows(1)]
    for done, window in enumerate(windows, start=1):
        block = src.read(1, window=window).astype(np.int64)
        valid = block > 0
        if nodata is not None:
            valid &= block != nodata
        if lut:
            block = np.where(valid, apply_lut(block, lut), 0)
        vals, ns = np.unique(block[valid], return_counts=True)
        for v, n in zip(vals.tolist(), ns.tolist(), strict=True):
            counts.mapped[v] = counts.mapped.get(v, 0) + n
        r0, c0 = int(window.row_off), int(window.col_off)
        ref = reference[r0:r0 + int(window.height), c0:c0 + int(window.width)]
        labelled = ref > 0
        counts.on_nodata += int((labelled & ~valid).sum())
        both = labelled & valid
        if both.any():
            pair_codes = np.stack([ref[both], block[both]])
            uniq, ns = np.unique(pair_codes, axis=1, return_counts=True)
            for (rv, mv), n in zip(uniq.T.tolist(), ns.tolist(), strict=True):
                counts.pairs[(rv, mv)] = counts.pairs.get((rv, mv), 0) + n
        if progress is not None:
            progress(done, len(windows))
    return counts


def _merge_classes(map_table: ClassTable | None, ref_table: ClassTable | None,
                   counts: _Counts) -> ClassTable:
    """Map classes first (their names and colours), then reference-only and unknown values."""
    infos: dict[int, ClassInfo] = {}
    for table in (map_table, ref_table):
        for c in table or ():
            infos.setdefault(c.value, c)
    seen = set(counts.mapped) | {v for pair in counts.pairs for v in pair}
    for v in sorted(seen - set(infos)):
        infos[v] = ClassInfo(v, f"class {v}", DEFAULT_PALETTE[len(infos) % len(DEFAULT_PALETTE)])
    used = set(map_table.values if map_table else ()) | seen
    return ClassTable(tuple(infos[v] for v in sorted(infos) if v in used))


def _pixel_area(src: Any) -> tuple[float, str]:
    """Area of one pixel in hectares for metric CRSs, else ``(1, "pixels")``."""
    from hsimap.geotiff import pixel_hectares

    area = pixel_hectares(src.crs, src.transform)
    return (1.0, "pixels") if area is None else (area, "ha")


def _read_quicklook(src: Any) -> npt.NDArray[np.int64]:
    """A nearest-neighbour overview of the map, at most ``QUICKLOOK_MAX_SIDE`` pixels wide."""
    from rasterio.enums import Resampling

    scale = max(1.0, max(src.height, src.width) / QUICKLOOK_MAX_SIDE)
    shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
    data = src.read(1, out_shape=shape, resampling=Resampling.nearest).astype(np.int64)
    if src.nodata is not None:
        data[data == src.nodata] = 0
    return np.asarray(data)


def _read_training_log(path: Path) -> dict[str, list[float]]:
    if not path.exists():
        raise InputFileError("training log not found", path=path, fix="check the --log path")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"training log is not valid JSON ({exc})", path=path,
                             fix="give the JSON log written by `hsimap train`") from exc
    series = find_series(doc)
    if not series:
        log.warning("%s: no numeric per-epoch series found; no training curves", path)
    return series


def find_series(doc: Any, prefix: str = "") -> dict[str, list[float]]:
    """Numeric series in a training log, by dotted path.

    Lists of two or more numbers become one series (``denoiser.loss``); lists of records
    become one series per numeric key (``classifier.epochs[*].val_acc``). Keys that look
    like an x axis (``epoch``, ``step``, ...) are skipped. Anything else is ignored.
    """
    out: dict[str, list[float]] = {}
    if isinstance(doc, dict):
        for key, value in doc.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            is_axis = isinstance(value, list) and all(_is_number(x) for x in value)
            if str(key) in _NOT_SERIES:
                continue
            if not (is_axis and str(key).lower() in _X_KEYS):
                out.update(find_series(value, name))
    elif isinstance(doc, list) and len(doc) >= 2:
        if all(_is_number(x) for x in doc):
            out[prefix or "series"] = [float(x) for x in doc]
        elif all(isinstance(x, dict) for x in doc):
            keys = dict.fromkeys(k for rec in doc for k, v in rec.items() if _is_number(v))
            for key in keys:
                if str(key).lower() in _X_KEYS:
                    continue
                ys = [float(r[key]) if _is_number(r.get(key)) else math.nan for r in doc]
                if sum(math.isfinite(y) for y in ys) >= 2:
                    out[f"{prefix}[*].{key}"] = ys
    return out


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _sha256_if_file(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def _crs_text(crs: Any) -> str:
    if crs is None:
        return "none"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else str(crs.to_string())[:80]


# ----------------------------------------------------------------------------- tables


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def per_class_rows(table: ClassTable, accuracy: AccuracyMetrics,
                   area: AreaAdjustedAccuracy) -> list[dict[str, Any]]:
    """One record per class: the rows of ``per_class.csv`` and ``metrics.json``'s ``per_class``."""
    unit = area.area_unit
    rows = []
    for i, c in enumerate(table):
        rows.append({
            "value": c.value, "name": c.name,
            "reference_pixels": accuracy.reference_counts[i],
            "predicted_pixels": accuracy.predicted_counts[i],
            "producer_accuracy": _num(accuracy.producer_accuracy[i]),
            "user_accuracy": _num(accuracy.user_accuracy[i]),
            "f1": _num(accuracy.f1[i]),
            "mapped_pixels": area.mapped_pixels[i],
            "map_weight": _num(area.weights[i]),
            "adjusted_user_accuracy": _num(area.user_accuracy[i]),
            "adjusted_user_accuracy_ci95": _num(area.user_accuracy_ci[i]),
            "adjusted_producer_accuracy": _num(area.producer_accuracy[i]),
            "adjusted_producer_accuracy_ci95": _num(area.producer_accuracy_ci[i]),
            f"mapped_area_{unit}": _num(area.mapped_area[i]),
            f"adjusted_area_{unit}": _num(area.area[i]),
            f"adjusted_area_se_{unit}": _num(area.area_se[i]),
            f"adjusted_area_ci95_{unit}": _num(area.area_ci[i]),
        })
    return rows


PROTOCOL = (
    "Reference pixels are the pixels of the reference data on the map grid ({rule}); pixels "
    "where the map has no class (0 or nodata) are left out ({on_nodata} reference pixel(s)). "
    "Sample accuracy: overall accuracy (OA) = correct / all reference pixels; average accuracy "
    "(AA) = mean producer's accuracy over the classes present in the reference; Cohen's kappa; "
    "producer's accuracy = recall, user's accuracy = precision. Area-adjusted accuracy and "
    "error-adjusted class areas follow Olofsson et al. (2014, Remote Sensing of Environment "
    "148:42-57, eqs. 2-10) with the map classes as strata, weighted by mapped area over the "
    "whole map; confidence intervals are +-1.96 standard errors (95%). These estimators assume "
    "the reference pixels are a stratified random sample of each map class. Reference polygons "
    "drawn by hand are not a probability sample and their pixels are spatially correlated, so "
    "treat the area-adjusted numbers and especially their intervals as indicative only; "
    "reference pixels that were also used for training make every number optimistic."
)


def _metrics_document(table: ClassTable, accuracy: AccuracyMetrics, area: AreaAdjustedAccuracy,
                      info: dict[str, Any]) -> dict[str, Any]:
    if info.get("reference_kind") == "raster":
        rule = "a label raster on the map grid"
    else:
        rule = ("every pixel a feature touches" if info.get("all_touched")
                else "pixels whose centre lies inside a feature")
    return {
        "hsimap_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": info,
        "protocol": PROTOCOL.format(rule=rule, on_nodata=info["n_reference_on_nodata"]),
        "classes": [{"value": c.value, "name": c.name, "color": c.color} for c in table],
        "n_reference_pixels": accuracy.n_samples,
        "overall_accuracy": _num(accuracy.overall_accuracy),
        "average_accuracy": _num(accuracy.average_accuracy),
        "kappa": _num(accuracy.kappa),
        "confusion_matrix": {"rows": "reference", "columns": "map", "classes": table.values,
                             "counts": [list(r) for r in accuracy.confusion]},
        "per_class": per_class_rows(table, accuracy, area),
        "area_adjusted": area.to_dict(),
    }


def _csv_cell(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return repr(x)  # the same shortest round-trip text json.dumps writes
    return str(x)


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_csv_cell(x) for x in row])
    return buf.getvalue()


def _write_outputs(out: Path, document: dict[str, Any], table: ClassTable,
                   accuracy: AccuracyMetrics, area: AreaAdjustedAccuracy, *,
                   quicklook: npt.NDArray[np.int64],
                   log_series: dict[str, list[float]] | None) -> dict[str, Path]:
    make_output_folder(out)
    files = {name: out / name for name in OUTPUT_NAMES}
    atomic_write_text(files["metrics.json"], json.dumps(document, indent=2, allow_nan=False) + "\n")
    cm_header = ["reference_value", "reference_name"] + [f"map_{v}" for v in table.values]
    cm_rows = [[c.value, c.name, *accuracy.confusion[i]] for i, c in enumerate(table)]
    atomic_write_text(files["confusion_matrix.csv"], csv_text(cm_header, cm_rows))
    records = document["per_class"]
    header = list(records[0]) if records else []
    atomic_write_text(files["per_class.csv"],
                      csv_text(header, [list(r.values()) for r in records]))
    atomic_write_text(files["report.html"], _html_report(
        document, table, accuracy, area, quicklook=quicklook, log_series=log_series))
    return files


# ----------------------------------------------------------------------------- figures


def _denoiser_table(training_log: str | None) -> str:
    """HTML table of the log's ``denoiser_eval`` (held-out noise error per timestep), or ''."""
    try:
        doc = json.loads(Path(training_log).read_text()) if training_log else {}
    except (OSError, ValueError):
        return ""
    ev = doc.get("denoiser_eval") if isinstance(doc, dict) else None
    if not isinstance(ev, dict) or not ev.get("timesteps"):
        return ""
    try:
        rows = "".join(
            f"<tr><td>{int(t)}</td><td>{float(e):.3f}</td><td>{float(z):.3f}</td>"
            f"<td>{float(e) / float(z):.2f}</td></tr>"
            for t, e, z in zip(ev["timesteps"], ev["eps_l1"], ev["zero_l1"], strict=True))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return ""
    return ("<h2>Denoiser check</h2><p class=note>Noise-prediction error (mean absolute, eval "
            f"mode) on {int(ev.get('n_pixels', 0))} pixels held out of denoiser training, at "
            "each feature timestep, beside the error of predicting zero noise. A ratio near 1 "
            "means the denoiser learned nothing at that timestep.</p><table><tr><th>timestep"
            "</th><th>denoiser L1</th><th>predict-zero L1</th><th>ratio</th></tr>"
            f"{rows}</table>")


def split_facts(training_log: str | None) -> list[tuple[str, str]]:
    """How the model was validated and what it was fitted on, from the log's ``meta``:
    ``(fact, value)`` rows (empty for a log without them)."""
    try:
        doc = json.loads(Path(training_log).read_text()) if training_log else {}
    except (OSError, ValueError):
        return []
    meta = doc.get("meta") if isinstance(doc, dict) else None
    if not isinstance(meta, dict):
        return []
    def table(key: str) -> dict[str, Any]:
        value = meta.get(key)
        return value if isinstance(value, dict) else {}

    split, acc, training = table("split"), table("accuracy"), table("training")
    res = meta.get("resolution")
    pixel = float(res[0]) if isinstance(res, list) and res and _is_number(res[0]) else None
    rows: list[tuple[str, str]] = []
    scenes = training.get("scenes")
    if isinstance(scenes, list) and scenes:
        rows.append(("training scenes", "; ".join(
            f"{s.get('cube')} + {s.get('labels')}" for s in scenes if isinstance(s, dict))))
    elif training.get("cube"):
        rows.append(("training scene", f"{training.get('cube')} + {training.get('labels')}"))
    if split:
        rows.append(("validation split", f"{split.get('method')}, {split.get('val_fraction')} "
                                         f"of each class held out, seed {split.get('seed')}"))
        rows.append(("training / validation pixels",
                     f"{split.get('n_train')} / {split.get('n_val')}"))
        rows.append(("guard band", f"{split.get('guard_px')} px; it removed "
                                   f"{split.get('n_guard_removed')} validation pixels"))
    distance = acc.get("val_distance_px")
    if isinstance(distance, int | float) and _is_number(distance):
        metres = f" ({distance * pixel:g} m)" if pixel else ""
        rows.append(("closest validation pixel to a training pixel", f"{distance} px{metres}"))
    if _is_number(acc.get("val_oa")):
        rows.append(("validation accuracy at training",
                     f"{float(acc['val_oa']):.4f} on {acc.get('val_pixels')} pixels"))
    if "refitted_on_all" in acc:
        rows.append(("saved model", (
            f"refitted on all {acc.get('fitted_pixels')} labelled pixels (training + "
            "validation): the validation pixels trained the saved model, so only reference "
            "data outside the training labels is an independent test")
            if acc.get("refitted_on_all") else
            f"fitted on the {acc.get('fitted_pixels')} training pixels only (--no-refit): the "
            "validation pixels are independent of it"))
    return rows


def _split_table(training_log: str | None) -> str:
    rows = split_facts(training_log)
    if not rows:
        return ""
    body = "".join(f"<tr><th class=name>{html.escape(k)}</th><td class=name>{html.escape(v)}"
                   "</td></tr>" for k, v in rows)
    return ("<h2>How the model was validated</h2><p class=note>From the training log: the "
            "split of the labels into training and validation pixels, the guard band between "
            "them, and whether the saved model was refitted on the validation pixels.</p>"
            f"<table>{body}</table>")


def _inside_figure(training_log: str | None) -> str | None:
    """Data URI of the ``<model>.inside.png`` written beside ``<model>.log.json``, if any."""
    if not training_log or not training_log.endswith(".log.json"):
        return None
    png = Path(training_log[: -len(".log.json")] + ".inside.png")
    if not png.exists():
        return None
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def png_data_uri(fig: Any, *, tight: bool = True) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI, bbox_inches="tight" if tight else None)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure(width: float, height: float, *,
            layout: Literal["constrained"] | None = None) -> Any:
    """A matplotlib figure on the Agg canvas (no display, no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def quicklook_png(data: npt.NDArray[np.int64], table: ClassTable) -> str:
    """PNG data URI of a class map with a legend of class colours and names."""
    from matplotlib.patches import Patch

    rgba = np.zeros((*data.shape, 4), dtype=np.uint8)  # no class: transparent
    for c in table:
        rgba[data == c.value] = (*c.rgb(), 255)
    aspect = data.shape[0] / max(data.shape[1], 1)
    fig = figure(7.5, max(2.5, min(12.0, 5.0 * aspect)))
    ax = fig.add_subplot()
    ax.imshow(rgba, interpolation="nearest")
    ax.set_axis_off()
    handles = [Patch(facecolor=c.color, edgecolor="black", linewidth=0.3,
                     label=f"{c.value} {c.name}") for c in table]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
              frameon=False)
    return png_data_uri(fig)


# The report's page is at most 1100 px wide (PAGE_CSS); a figure drawn narrower than this at
# FIGURE_DPI is shown at its own size, never scaled down, in a 1400 px wide window.
FIGURE_DPI = 100
CONFUSION_MAX_PX = 1040
MIN_TEXT_PX = 10.0  # smallest number height (px at 100 % zoom) the report draws
MIN_CELL_IN = 0.34  # holds a four-character count (1.2M) at MIN_TEXT_PX


@dataclass(frozen=True)
class ConfusionLayout:
    """Size of the confusion-matrix figure and of its numbers, from the class count."""

    cell_in: float  # side of one matrix cell, inches
    width_in: float
    height_in: float
    number_pt: float  # font size of the counts in the cells
    label_pt: float  # font size of the class names
    compact: bool  # counts written as 12k / 1.2M to fit the cells
    numbers: bool  # whether counts are written at all (else: confusion_matrix.csv)

    def px(self, points: float) -> float:
        """Pixels of ``points`` at the figure's resolution."""
        return points * FIGURE_DPI / 72.0


def confusion_layout(k: int, largest: int) -> ConfusionLayout:
    """Cells as large as the page allows (1.1 in at most; at least ``MIN_CELL_IN``, so that
    many classes make a figure wider than the page, which the report scrolls instead of
    shrinking), numbers as large as a cell holds (never under ``MIN_TEXT_PX``; counts of
    four digits or more become 12k / 1.2M when that is what fits), class names with them."""
    margin_in = 3.4  # class names, axis labels and the colour bar
    cell = float(np.clip((CONFUSION_MAX_PX / FIGURE_DPI - margin_in) / max(k, 1),
                         MIN_CELL_IN, 1.1))
    digits = len(str(max(int(largest), 1)))
    compact = False

    def fitting(n_chars: int) -> float:
        return min(16.0, 0.8 * cell * 72.0 / (0.62 * n_chars), cell * 72.0 * 0.45)

    number = fitting(digits)
    if number * FIGURE_DPI / 72.0 < MIN_TEXT_PX and digits > 3:
        compact, number = True, fitting(4)  # 12k, 1.2M
    numbers = number * FIGURE_DPI / 72.0 >= MIN_TEXT_PX
    label = float(np.clip(cell * 72.0 * 0.32, 8.0, 12.0))
    side = cell * k
    return ConfusionLayout(cell, side + margin_in, side + margin_in - 0.8, number, label,
                           compact, numbers)


def _count_text(n: int, compact: bool) -> str:
    if not compact or n < 1000:
        return str(n)
    for div, unit in ((1_000_000, "M"), (1_000, "k")):
        if n >= div:
            v = n / div
            return f"{v:.1f}{unit}" if v < 10 else f"{v:.0f}{unit}"
    return str(n)


def confusion_png(accuracy: AccuracyMetrics, table: ClassTable) -> str:
    """PNG data URI of the confusion matrix: colour = row share, text = counts, sized by
    :func:`confusion_layout` so the numbers read at 100 % zoom in a 1400 px wide window."""
    cm = accuracy.matrix.astype(np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(table)
    lay = confusion_layout(k, int(cm.max()) if cm.size else 0)
    fig = figure(lay.width_in, lay.height_in, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label("share of reference row", fontsize=lay.label_pt)
    bar.ax.tick_params(labelsize=lay.label_pt)
    labels = [f"{c.value} {c.name}"[:28] for c in table]
    ax.set_xticks(range(k), labels, rotation=60, ha="right", fontsize=lay.label_pt)
    ax.set_yticks(range(k), labels, fontsize=lay.label_pt)
    ax.set_xlabel("map class", fontsize=lay.label_pt + 1)
    ax.set_ylabel("reference class", fontsize=lay.label_pt + 1)
    if lay.numbers:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, _count_text(int(cm[i, j]), lay.compact), ha="center",
                            va="center", fontsize=lay.number_pt,
                            color="white" if share[i, j] > 0.5 else "black")
    return png_data_uri(fig, tight=False)


def curves_png(series: dict[str, list[float]]) -> str:
    """PNG data URI with one small panel per training-log series."""
    from matplotlib.ticker import MaxNLocator

    names = list(series)[:MAX_CURVES]
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = figure(4.0 * ncols, 2.8 * nrows, layout="constrained")
    for i, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ys = series[name]
        ax.plot(range(1, len(ys) + 1), ys, marker="." if len(ys) < 60 else None, linewidth=1)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("epoch / step", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return png_data_uri(fig, tight=False)


# ----------------------------------------------------------------------------- HTML

PAGE_CSS = """
.warn{background:#fff3cd;border-left:4px solid #d39e00;padding:0.5em 0.8em}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td.name,th.name{text-align:left}
.swatch{display:inline-block;width:0.9em;height:0.9em;border:1px solid #555;
margin-right:0.4em;vertical-align:middle}
.kpi{display:inline-block;margin:0 2em 1em 0}.kpi b{font-size:1.6em;display:block}
img{max-width:100%;height:auto}p.note{color:#555;font-size:0.9em;max-width:60em}
code{background:#f4f4f4;padding:0 3px}
.scroll{overflow-x:auto}img.natural{max-width:none}
"""


def _fmt(x: float | None, digits: int = 4) -> str:
    return "&ndash;" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _fmt_pm(x: float | None, ci: float | None, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "&ndash;"
    if ci is None or not math.isfinite(ci):
        return f"{x:.{digits}f}"
    return f"{x:.{digits}f} &plusmn; {ci:.{digits}f}"


def _name_cell(c: ClassInfo) -> str:
    return (f'<td class="name"><span class="swatch" style="background:{html.escape(c.color)}">'
            f"</span>{c.value} {html.escape(c.name)}</td>")


def _per_class_table(table: ClassTable, accuracy: AccuracyMetrics) -> str:
    head = ("<tr><th class=name>class</th><th>reference px</th><th>mapped as (in reference)</th>"
            "<th>producer's acc.</th><th>user's acc.</th><th>F1</th></tr>")
    body = "".join(
        f"<tr>{_name_cell(c)}<td>{accuracy.reference_counts[i]}</td>"
        f"<td>{accuracy.predicted_counts[i]}</td><td>{_fmt(accuracy.producer_accuracy[i])}</td>"
        f"<td>{_fmt(accuracy.user_accuracy[i])}</td><td>{_fmt(accuracy.f1[i])}</td></tr>"
        for i, c in enumerate(table))
    return f"<table>{head}{body}</table>"


def _area_table(table: ClassTable, area: AreaAdjustedAccuracy) -> str:
    u = html.escape(area.area_unit)
    head = (f"<tr><th class=name>class</th><th>mapped px</th><th>weight W<sub>i</sub></th>"
            f"<th>user's acc. &plusmn; 95% CI</th><th>producer's acc. &plusmn; 95% CI</th>"
            f"<th>mapped area ({u})</th><th>adjusted area &plusmn; 95% CI ({u})</th></tr>")
    digits = 2 if area.area_unit == "ha" else 0
    body = "".join(
        f"<tr>{_name_cell(c)}<td>{area.mapped_pixels[i]}</td><td>{_fmt(area.weights[i])}</td>"
        f"<td>{_fmt_pm(area.user_accuracy[i], area.user_accuracy_ci[i])}</td>"
        f"<td>{_fmt_pm(area.producer_accuracy[i], area.producer_accuracy_ci[i])}</td>"
        f"<td>{_fmt(area.mapped_area[i], digits)}</td>"
        f"<td>{_fmt_pm(area.area[i], area.area_ci[i], digits)}</td></tr>"
        for i, c in enumerate(table))
    oa = _fmt_pm(area.overall_accuracy, area.overall_accuracy_ci)
    unsampled = [c for i, c in enumerate(table)
                 if area.mapped_pixels[i] > 0 and area.weights[i] > 0
                 and not math.isfinite(area.user_accuracy[i])]
    note = ""
    if unsampled:
        names = ", ".join(html.escape(f"{c.value} {c.name}") for c in unsampled)
        note = (f"<p class=note>Map class(es) {names} have mapped area but no reference pixel, "
                "so their accuracy, and every estimate that needs it, is undefined "
                "(&ndash;). Add reference data inside those classes.</p>")
    return (f"<p>Area-adjusted overall accuracy: <b>{oa}</b></p>{note}"
            f"<table>{head}{body}</table>")


def _inputs_table(info: dict[str, Any]) -> str:
    rows = []
    for key, value in info.items():
        if key == "map_tags":
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or None
        if value is None or value == []:
            continue
        text = html.escape(str(value))
        rows.append(f"<tr><th class=name>{html.escape(key)}</th><td class=name><code>{text}"
                    "</code></td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _html_report(document: dict[str, Any], table: ClassTable, accuracy: AccuracyMetrics,
                 area: AreaAdjustedAccuracy, *, quicklook: npt.NDArray[np.int64],
                 log_series: dict[str, list[float]] | None) -> str:
    info = document["inputs"]
    title = f"hsimap evaluation: {Path(info['map']).name}"
    kpis = "".join(
        f'<div class="kpi">{label}<b>{_fmt(document[key])}</b></div>'
        for label, key in (("Overall accuracy", "overall_accuracy"),
                           ("Average accuracy", "average_accuracy"), ("Cohen's kappa", "kappa")))
    kpis += f'<div class="kpi">Reference pixels<b>{accuracy.n_samples}</b></div>'
    parts = [
        f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{PAGE_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=note>Created {html.escape(document['created'])} by hsimap "
        f"{html.escape(document['hsimap_version'])}. All numbers are also in "
        "<code>metrics.json</code>, <code>confusion_matrix.csv</code> and "
        "<code>per_class.csv</code>.</p>",
        *(f'<p class="warn"><b>Warning:</b> {html.escape(n)}</p>'
          for n in info.get("warnings", [])),
        f"<h2>Summary</h2>{kpis}",
        "<h2>Map</h2>",
        f'<img alt="quick-look of the class map" src="{quicklook_png(quicklook, table)}">',
        "<h2>Confusion matrix</h2><p class=note>Rows: reference class; columns: map class. "
        "Colour: share of the reference row; numbers: pixel counts.</p>",
        '<div class="scroll"><img class="natural" alt="confusion matrix" '
        f'src="{confusion_png(accuracy, table)}"></div>',
        f"<h2>Per-class accuracy</h2>{_per_class_table(table, accuracy)}",
        "<h2>Area-adjusted accuracy and class areas</h2>",
        _area_table(table, area),
    ]
    if log_series is not None:
        parts.append("<h2>Training curves</h2>")
        if log_series:
            parts.append(f'<img alt="training curves" src="{curves_png(log_series)}">')
        else:
            parts.append("<p class=note>The training log holds no numeric series.</p>")
        parts.append(_split_table(document["inputs"].get("training_log")))
        parts.append(_denoiser_table(document["inputs"].get("training_log")))
        inside = _inside_figure(document["inputs"].get("training_log"))
        if inside:
            parts.append("<h2>Inside the model</h2><p class=note>For the most-labelled windows "
                         "of the training scene: the input, its noised versions at the feature "
                         "timesteps, the denoiser's reconstruction, and the first three "
                         "principal components of each timestep's features.</p>")
            parts.append(f'<img alt="inside the model" src="{inside}">')
    parts += [
        f"<h2>Protocol</h2><p class=note>{html.escape(document['protocol'])}</p>",
        f"<h2>Provenance</h2>{_inputs_table(info)}",
        "</body></html>\n",
    ]
    return "\n".join(parts)
