"""Evaluate a class map against reference data: sample and area-adjusted accuracy.

:func:`evaluate_map` streams the map block by block (counting the mapped pixels of every
class for the area weights and pairing map and reference values), computes the sample
accuracy and the Olofsson et al. (2014) area-adjusted estimates (:mod:`hsimap.metrics`) and
the machine-readable document of every number, then has :func:`hsimap.report.write_report`
write them into one folder (``metrics.json``, two CSV tables, ``report.html``).

Size (about 470 lines, just over the ~450 of the style guide): reading the map and the
reference, streaming the counts and building the metrics document are one computation; the
writing and the figures already live in :mod:`hsimap.report` and :mod:`hsimap.plots`.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from hsimap._files import RASTER_SUFFIXES, sha256_file
from hsimap._version import __version__
from hsimap.classes import DEFAULT_PALETTE, ClassInfo, ClassTable
from hsimap.classmap import apply_lut, merge_map_classes
from hsimap.errors import InputFileError, LabelError, OutputError
from hsimap.geotiff import CLASSES_TAG, pixel_hectares, read_map_classes
from hsimap.metrics import (
    AccuracyMetrics,
    AreaAdjustedAccuracy,
    accuracy_metrics,
    area_adjusted_accuracy,
)
from hsimap.plots import read_training_log
from hsimap.report import OUTPUT_NAMES, write_report

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(done, total)`` callback, called once per map block."""

QUICKLOOK_MAX_SIDE = 800


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
    log_series = read_training_log(Path(training_log)) if training_log is not None else None
    if not map_path.exists():
        raise InputFileError("map file not found", path=map_path, fix="check the MAP path")
    try:
        src = rasterio.open(map_path)
    except RasterioIOError as exc:
        raise InputFileError(f"cannot open the map as a raster ({exc})", path=map_path,
                             fix="give a class-map GeoTIFF written by `hsimap predict`") from exc
    with src:
        _check_map(src, map_path)
        map_table = read_map_classes(src)
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
    files = write_report(out, document, table, accuracy, area, quicklook=quicklook,
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
        table = read_map_classes(ref)
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
