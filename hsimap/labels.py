"""Ground truth from vectors (or a label raster) onto the cube's pixel grid.

Anything pyogrio reads is accepted (Shapefile, GeoPackage, GeoJSON, ...), polygons and
points. The class field holds names (strings) or integer codes and is auto-detected when one
column is the obvious candidate. Labels are reprojected to the cube's CRS (saying so) and
rasterized with :func:`rasterio.features.rasterize` (pixel centres by default,
``all_touched`` optional). Features outside the cube are counted; pixels claimed by
polygons of different classes are reported and either refused or dropped, never resolved
silently.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rasterio.features import rasterize

from hsimap._files import RASTER_SUFFIXES
from hsimap.classes import MAX_CLASS_VALUE, ClassTable, parse_color
from hsimap.classfile import ClassSpec, codes_for_names, table_from_specs
from hsimap.cube import (
    Grid,
    RasterPath,
    check_readable,
    gdal_not_found,
    gdal_path,
    is_virtual,
    path_suffix,
)
from hsimap.errors import CRSMismatchError, InputFileError, LabelError, LabelWarning

log = logging.getLogger(__name__)

OnOverlap = Literal["error", "drop"]

# Column names that usually hold the class, most specific first (case-insensitive).
CLASS_FIELD_NAMES = ("class_id", "classid", "class_name", "classname", "class", "label",
                     "label_id", "landcover", "land_cover", "lc", "category", "type", "code")


@dataclass(frozen=True)
class Labels:
    """Rasterized ground truth on a grid.

    Attributes
    ----------
    values
        ``(H, W)`` int32 class value per pixel (``classes`` values), 0 = unlabelled.
    groups
        ``(H, W)`` int32 id of the feature a pixel came from (for grouped splits), -1 none.
    classes
        The class table (values, names, colours).
    n_features, n_outside, n_conflict_pixels
        Counts for the report.
    reprojected_from
        The labels' original CRS when they were reprojected, else ``None``.
    """

    values: np.ndarray
    groups: np.ndarray
    classes: ClassTable
    class_field: str | None
    n_features: int
    n_outside: int
    n_conflict_pixels: int
    reprojected_from: str | None

    def pixel_counts(self) -> dict[int, int]:
        """Labelled pixels per class value."""
        return {v: int((self.values == v).sum()) for v in self.classes.values}

    def index(self) -> np.ndarray:
        """``(H, W)`` int64 model-output index ``0..K-1`` per pixel, -1 unlabelled."""
        # searchsorted over the sorted class values, never a table sized by the largest code
        values = np.asarray(self.classes.values, dtype=np.int64)
        order = np.argsort(values)
        ordered = values[order]
        pos = np.clip(np.searchsorted(ordered, self.values), 0, len(ordered) - 1)
        return np.where(ordered[pos] == self.values, order[pos], -1).astype(np.int64)


def read_labels(path: str | Path, *, grid: Grid, class_field: str | None = None,
                all_touched: bool = False, on_overlap: OnOverlap = "error",
                classes: ClassTable | None = None, color_field: str | None = None,
                class_specs: Sequence[ClassSpec] | None = None,
                layer: str | None = None) -> Labels:
    """Read ground truth and rasterize it onto ``grid``.

    Parameters
    ----------
    path
        Vector file (any OGR format) or a single-band label raster on the same grid.
    grid
        The cube's grid.
    class_field
        Column holding class names or integer codes; auto-detected when ``None``.
    all_touched
        Burn every pixel a feature touches instead of pixels whose centre it contains.
    on_overlap
        ``"error"``: refuse pixels claimed by different classes; ``"drop"``: leave them
        unlabelled and report how many.
    classes
        An existing class table to match names/codes against (evaluation of a map).
    color_field
        Column holding each class's colour (``#rrggbb``, ``rrggbb`` or ``r,g,b`` with 0..255
        integers); classes without one keep their default colour. Vector labels only;
        ignored when ``classes`` is given.
    class_specs
        The classes of a class file (:func:`hsimap.classfile.read_class_file`): they fix the
        codes, names, colours and order of the classes (a colour field still wins);
        ignored when ``classes`` is given.
    layer
        The layer of a multi-layer vector file (GeoPackage, ...); required when it has
        several.
    """
    path = gdal_path(path)  # a GDAL virtual path (/vsizip/...) stays a string; GDAL checks it
    check_readable(path, missing="labels file not found", fix="check the --labels path")
    if path_suffix(path) in RASTER_SUFFIXES:
        return _read_label_raster(path, grid=grid, classes=classes, class_specs=class_specs)
    frame = _read_vector(path, layer=layer)
    field = detect_class_field(frame, class_field, path=path)
    frame = frame[frame[field].notna() & frame.geometry.notna() & ~frame.geometry.is_empty]
    if len(frame) == 0:
        raise LabelError(f"no feature has both a geometry and a value in {field!r}", path=path)
    frame, reprojected = _to_grid_crs(frame, grid, path=path)
    table, codes = _class_codes(frame, field, classes, path=path,
                                class_specs=None if classes is not None else class_specs)
    if color_field is not None and classes is None:
        table = _colors_from_field(frame, color_field, table, codes, path=path)
    inside = frame.geometry.intersects(_grid_box(grid))
    n_outside = int((~inside).sum())
    if n_outside == len(frame):
        raise LabelError(
            f"none of the {len(frame)} features overlap the cube (cube bounds {grid.bounds})",
            path=path, fix="check that labels and cube show the same place and that the labels' "
                           "CRS is declared correctly (.prj)")
    if n_outside:
        warnings.warn(f"{path}: {n_outside} of {len(frame)} features lie outside the cube and "
                      "were ignored", LabelWarning, stacklevel=2)
    frame, codes = frame[inside.to_numpy()], codes[inside.to_numpy()]
    values, groups, n_conflict = _burn(frame, codes, table, grid, all_touched)
    if n_conflict and on_overlap == "error":
        raise LabelError(
            f"{n_conflict} pixel(s) are covered by features of different classes", path=path,
            fix="fix the overlapping polygons, or pass --on-overlap drop to leave those pixels "
                "unlabelled")
    if n_conflict:
        warnings.warn(f"{path}: {n_conflict} pixel(s) claimed by different classes were left "
                      "unlabelled", LabelWarning, stacklevel=2)
    if not (values > 0).any():
        raise LabelError("no labelled pixel falls on the cube grid (features smaller than a "
                         "pixel miss every pixel centre)", path=path,
                         fix="pass --all-touched, or use larger polygons")
    return Labels(values, groups, table, field, len(frame) + n_outside, n_outside, n_conflict,
                  reprojected)


def _read_vector(path: RasterPath, *, layer: str | None = None) -> Any:
    import geopandas as gpd
    import pyogrio

    try:
        layer = choose_layer(path, layer)
        frame = gpd.read_file(path, engine="pyogrio", layer=layer)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        if is_virtual(path) and gdal_not_found(exc):
            raise InputFileError(f"labels file not found ({exc})", path=path,
                                 fix="check the --labels path: for /vsizip/ the archive and "
                                     "the member inside it, for /vsicurl/ and /vsis3/ the "
                                     "URL") from exc
        raise InputFileError(
            f"not a vector file OGR can read ({exc})", path=path,
            fix="give a Shapefile, GeoPackage, GeoJSON or another OGR vector, or a label "
                "GeoTIFF on the cube's grid") from exc
    if len(frame) == 0:
        raise LabelError("the vector file has no features", path=path,
                         fix="draw or import ground-truth polygons or points first")
    return frame


def vector_layers(path: RasterPath) -> list[str]:
    """The layer names of a vector file (pyogrio), in the file's order."""
    import pyogrio

    return [str(name) for name, _ in pyogrio.list_layers(path)]


def choose_layer(path: RasterPath, layer: str | None, *,
                 option: str = "--layer") -> str | None:
    """The layer to read: ``layer`` when the file has it, the only layer when it has one.

    Raises :class:`LabelError` listing the layers when ``layer`` is missing from a file with
    several, or names none of them. Errors of the file itself (not found, not a vector)
    come from pyogrio.
    """
    layers = vector_layers(path)
    listed = ", ".join(repr(n) for n in layers)
    if layer is None:
        if len(layers) > 1:
            raise LabelError(f"has {len(layers)} layers ({listed}) and no {option} says which "
                             "to read", path=path,
                             fix=f"pass {option} with one of them, e.g. {option} {layers[0]}")
        return layers[0] if layers else None
    if layer not in layers:
        raise LabelError(f"has no layer {layer!r}", path=path,
                         fix=f"its layers are {listed or '(none)'}; pass one of them as {option}")
    return layer


def detect_class_field(frame: Any, class_field: str | None, *, path: RasterPath) -> str:
    """Choose the class column: the given one, or the single obvious candidate."""
    columns = [c for c in frame.columns if c != frame.geometry.name]
    if class_field is not None:
        if class_field not in columns:
            raise LabelError(
                f"has no field {class_field!r}", path=path,
                fix=f"fields present: {', '.join(columns) or '(none)'}; pass one of them as "
                    "--class-field")
        return class_field
    by_lower = {c.lower(): c for c in columns}
    for name in CLASS_FIELD_NAMES:
        if name in by_lower:
            return by_lower[name]
    if len(columns) == 1:
        return str(columns[0])
    raise LabelError(
        "cannot tell which field holds the class", path=path,
        fix=f"pass --class-field with one of: {', '.join(columns) or '(no fields)'}")


def _to_grid_crs(frame: Any, grid: Grid, *, path: RasterPath) -> tuple[Any, str | None]:
    if frame.crs is None and grid.crs is not None:
        raise CRSMismatchError(
            "the labels have no coordinate reference system (missing .prj?)", path=path,
            fix=f"declare it (the cube is {_crs_name(grid.crs)}), e.g. in QGIS 'Assign "
                "projection' or geopandas .set_crs()")
    if frame.crs is not None and grid.crs is None:
        raise CRSMismatchError(
            f"the labels are in {_crs_name(frame.crs)} but the cube has no CRS", path=path,
            fix="georeference the cube, or give labels in the cube's pixel/map coordinates "
                "without a CRS")
    if frame.crs is None or frame.crs == grid.crs:
        return frame, None
    source = _crs_name(frame.crs)
    log.info("reprojecting labels from %s to the cube's %s", source, _crs_name(grid.crs))
    return frame.to_crs(grid.crs), source


def _crs_name(crs: Any) -> str:
    epsg = crs.to_epsg() if crs is not None else None
    return f"EPSG:{epsg}" if epsg else str(getattr(crs, "name", crs))


def _class_codes(frame: Any, field: str, classes: ClassTable | None, *, path: RasterPath,
                 class_specs: Sequence[ClassSpec] | None = None
                 ) -> tuple[ClassTable, np.ndarray]:
    """The class table and each feature's class value.

    Text classes are numbered 1..K in their order of first appearance in the file, unless
    ``class_specs`` (a class file) gives their codes and order."""
    column = frame[field]
    if column.dtype.kind in "fcmM" and not _is_integer_like(column):
        examples = ", ".join(str(v) for v in column.drop_duplicates().head(3))
        others = [c for c in frame.columns if c not in (field, frame.geometry.name)]
        raise LabelError(
            f"field {field!r} holds {_kind_name(column.dtype.kind)} ({examples}, ...), not "
            "class codes or class names", path=path,
            fix="pass --class-field with a field of whole-number codes or class names"
                + (f"; other fields: {', '.join(map(str, others))}" if others else ""))
    if _is_integer_like(column):
        _check_code_range(column.to_numpy(), where=f"field {field!r}", path=path)
        codes = column.to_numpy().astype(np.int64)
        if (codes < 1).any():
            raise LabelError(
                f"field {field!r} holds values < 1 ({sorted(set(codes[codes < 1].tolist()))[:5]})",
                path=path, fix="class codes must be positive integers (0 means unlabelled); "
                               "renumber them or use a field with class names")
        if classes is not None:
            return classes, codes
        names = _names_for_codes(frame, field, codes)
        if class_specs is not None:
            return table_from_specs(class_specs, set(codes.tolist()), names=names,
                                    path=path), codes
        return ClassTable.from_pairs(sorted(names.items())), codes
    names = column.astype(str).str.strip().to_numpy()
    if classes is None and class_specs is not None:
        by_name = codes_for_names(class_specs, names.tolist(), path=path)
        codes = np.array([by_name[n] for n in names], dtype=np.int64)
        return table_from_specs(class_specs, set(codes.tolist()), path=path), codes
    table = classes or ClassTable.from_names(list(dict.fromkeys(names.tolist())))
    lookup = {c.name: c.value for c in table}
    unknown = sorted(set(names) - set(lookup))
    if unknown:
        raise LabelError(f"class name(s) {unknown[:5]} are not in the model's classes "
                         f"{table.names}", path=path)
    return table, np.array([lookup[n] for n in names], dtype=np.int64)


def _check_code_range(codes: np.ndarray, *, where: str, path: RasterPath) -> None:
    """Refuse class codes a class map cannot store (before any cast could wrap them)."""
    too_big = codes[codes > MAX_CLASS_VALUE]
    if too_big.size:
        shown = ", ".join(f"{v:.0f}" if isinstance(v, float) else str(v)
                          for v in np.unique(too_big)[:3].tolist())
        raise LabelError(
            f"{where} holds class code(s) above {MAX_CLASS_VALUE} ({shown}), the largest a "
            "class map (uint16) can store", path=path,
            fix=f"renumber the classes from 1 to at most {MAX_CLASS_VALUE}, or use a field with "
                "class names")


def _colors_from_field(frame: Any, color_field: str, table: ClassTable, codes: np.ndarray, *,
                       path: RasterPath) -> ClassTable:
    """``table`` with each class's colour taken from ``color_field`` (one colour per class)."""
    columns = [c for c in frame.columns if c != frame.geometry.name]
    if color_field not in columns:
        raise LabelError(f"has no field {color_field!r}", path=path,
                         fix=f"fields present: {', '.join(map(str, columns))}; pass one of "
                             "them as --color-field")
    found: dict[int, set[str]] = {}
    for code, raw in zip(codes.tolist(), frame[color_field], strict=True):
        if raw is None or (isinstance(raw, float) and raw != raw) or not str(raw).strip():
            continue
        found.setdefault(int(code), set()).add(parse_color(str(raw), field=color_field,
                                                           path=path))
    names = {c.value: c.name for c in table}
    mixed = {v: sorted(cs) for v, cs in found.items() if len(cs) > 1}
    if mixed:
        v, cs = next(iter(sorted(mixed.items())))
        raise LabelError(f"field {color_field!r} gives class {names[v]!r} several colours "
                         f"({', '.join(cs)})", path=path,
                         fix="give every feature of a class the same colour")
    return ClassTable(tuple(replace(c, color=next(iter(found[c.value]))) if c.value in found
                            else c for c in table))


def _kind_name(kind: str) -> str:
    return {"f": "decimal numbers", "c": "complex numbers"}.get(kind, "dates/times")


def _is_integer_like(column: Any) -> bool:
    kind = column.dtype.kind
    if kind in "iu":
        return True
    if kind == "f":
        values = column.to_numpy()
        return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))
    return False


def _names_for_codes(frame: Any, field: str, codes: np.ndarray) -> dict[int, str]:
    """Names for integer codes from a text column in 1:1 correspondence, else ``class N``."""
    for col in frame.columns:
        if col in (field, frame.geometry.name) or frame[col].dtype.kind not in "OUT":
            continue
        pairs = {(int(c), str(n)) for c, n in zip(codes, frame[col], strict=True)}
        if len(pairs) == len({c for c, _ in pairs}) == len({n for _, n in pairs}):
            return dict(pairs)
    return {int(c): f"class {int(c)}" for c in sorted(set(codes))}


def _grid_box(grid: Grid) -> Any:
    from shapely.geometry import box

    left, bottom, right, top = grid.bounds
    return box(left, bottom, right, top)


def _burn(frame: Any, codes: np.ndarray, table: ClassTable, grid: Grid,
          all_touched: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Rasterize values and feature ids; count pixels claimed by more than one class."""
    shape = grid.shape
    geoms = list(frame.geometry)
    claims = np.zeros(shape, dtype=np.int32)
    for value in table.values:
        mine = [g for g, c in zip(geoms, codes, strict=True) if c == value]
        if mine:
            claims += rasterize(mine, out_shape=shape, transform=grid.transform, fill=0,
                                default_value=1, all_touched=all_touched, dtype="uint8")
    values = rasterize(zip(geoms, codes.tolist(), strict=True), out_shape=shape,
                       transform=grid.transform, fill=0, all_touched=all_touched,
                       dtype="int32")
    groups = rasterize(zip(geoms, range(len(geoms)), strict=True), out_shape=shape,
                       transform=grid.transform, fill=-1, all_touched=all_touched,
                       dtype="int32")
    conflict = claims > 1
    values[conflict] = 0
    groups[conflict] = -1
    return values, groups, int(conflict.sum())


def _read_label_raster(path: RasterPath, *, grid: Grid, classes: ClassTable | None,
                       class_specs: Sequence[ClassSpec] | None = None) -> Labels:
    """A single-band label raster on the cube's grid (0 or nodata = unlabelled)."""
    import rasterio
    from rasterio.errors import RasterioIOError
    from scipy import ndimage

    try:
        with rasterio.open(path) as src:
            if src.count != 1:
                raise LabelError(
                    f"label raster has {src.count} bands; it needs exactly one band of integer "
                    "class codes", path=path,
                    fix="give a single-band class raster on the cube's grid, or polygons "
                        "(Shapefile, GeoPackage, GeoJSON)")
            other_crs = grid.crs is not None and src.crs != grid.crs
            if (src.height, src.width) != grid.shape or other_crs or \
                    not src.transform.almost_equals(grid.transform):
                raise LabelError(
                    f"label raster grid {src.height}x{src.width} {src.transform[:6]} differs "
                    f"from the cube's {grid.height}x{grid.width} {grid.transform[:6]}",
                    path=path, fix="resample the label raster onto the cube grid "
                                   "(gdalwarp -tr/-te, nearest neighbour) or give polygons")
            data = src.read(1)
            nodata = src.nodata
    except RasterioIOError as exc:
        if is_virtual(path) and gdal_not_found(exc):
            raise InputFileError(f"labels file not found ({exc})", path=path,
                                 fix="check the --labels path inside the virtual file "
                                     "system") from exc
        raise InputFileError(f"cannot read label raster ({exc})", path=path) from exc
    finite = np.where(np.isfinite(data), data, 0)
    if data.dtype.kind == "f" and not np.array_equal(finite, np.round(finite)):
        raise LabelError("label raster holds decimal values, not integer class codes",
                         path=path, fix="give a raster of whole-number class codes (0 = "
                                        "unlabelled), e.g. gdal_translate -ot UInt16")
    labelled = finite if nodata is None else np.where(data == nodata, 0, finite)
    _check_code_range(labelled, where="the label raster", path=path)
    values = finite.astype(np.int64)
    if nodata is not None:
        values[data == nodata] = 0
    values[values < 0] = 0
    present = sorted(int(v) for v in np.unique(values) if v > 0)
    if not present:
        raise LabelError("the label raster has no labelled pixel (all 0 or nodata)", path=path)
    if classes is None and class_specs is not None:
        table = table_from_specs(class_specs, present, path=path)
    else:
        table = classes or ClassTable.from_pairs([(v, f"class {v}") for v in present])
    values[~np.isin(values, table.values)] = 0
    groups = np.full(values.shape, -1, dtype=np.int32)
    n_groups = 0
    for value in table.values:  # connected regions of one class play the part of polygons
        regions, n = ndimage.label(values == value)
        groups[regions > 0] = regions[regions > 0] - 1 + n_groups
        n_groups += n
    return Labels(values.astype(np.int32), groups, table, None, n_groups, 0, 0, None)
