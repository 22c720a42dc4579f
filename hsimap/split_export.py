"""What training used, kept for later checks: the split as a vector file, the log's record.

:func:`export_split` writes the training and validation pixels of a split as polygons (one
per connected patch of pixels of one class and side, pixel edges exactly, so rasterizing
them onto the cube grid gives the same pixels back) with a ``split`` field (``train`` or
``val``) and the class field of the input. :func:`training_record` is the part of the training
log that ``hsimap evaluate`` reads to warn when a reference is not independent of training
(:func:`training_overlap`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from hsimap._files import sha256_file
from hsimap.cube import Grid
from hsimap.errors import OutputError
from hsimap.labels import Labels
from hsimap.split import Split

SPLIT_NAMES = {1: "train", 2: "val"}


def export_split(path: Path, *, split: Split, index: np.ndarray, labels: Labels,
                 labels_path: str | Path, grid: Grid) -> Path:
    """Write ``split``'s training and validation pixels to a GeoPackage at ``path``.

    The class field keeps the input's name and kind: integer codes stay codes (and a
    ``class_name`` field is added), names stay names.
    """
    import geopandas as gpd
    from rasterio.features import shapes
    from shapely.geometry import shape

    k = len(labels.classes)
    codes = np.zeros(index.shape, dtype=np.int32)
    for side, mask in ((1, split.train), (2, split.val)):
        codes[mask] = side * (k + 1) + index[mask] + 1
    table = list(labels.classes)
    geoms, sides, classes = [], [], []
    for geom, value in shapes(codes, mask=codes > 0, connectivity=4, transform=grid.transform):
        side, cls = divmod(int(value), k + 1)
        geoms.append(shape(geom))
        sides.append(SPLIT_NAMES[side])
        classes.append(table[cls - 1])
    field = labels.class_field or "class_id"
    names = [c.name for c in classes]
    data: dict[str, Any] = {"split": sides}
    if integer_field(labels_path, field):
        data[field] = [c.value for c in classes]
        if field != "class_name":
            data["class_name"] = names
    else:
        data[field] = names
    frame = gpd.GeoDataFrame(data, geometry=geoms, crs=grid.crs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_file(path, driver="GPKG", layer="split")
    except OSError as exc:
        raise OutputError(f"cannot write the split ({exc})", path=path,
                          fix="choose a folder you can write to with --export-split") from exc
    return path


def integer_field(labels_path: str | Path, field: str) -> bool:
    """Whether the labels' ``field`` holds integers (True for label rasters): class codes
    the user gave, not numbers hsimap gave text classes."""
    try:
        import pyogrio

        info = pyogrio.read_info(labels_path)
    except Exception:  # a label raster, or a file OGR cannot describe: codes
        return True
    fields = list(info["fields"])
    if field not in fields:
        return True
    return np.dtype(info["dtypes"][fields.index(field)]).kind in "iu"


def _sha256(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def training_record(labels_path: str | Path, split: Split, grid: Grid, *,
                    refitted: bool = False) -> dict[str, Any]:
    """The log's ``training_data``: the labels file and the pixels the saved model was fitted
    on (run-length coded flat indices on the cube grid; with ``refitted``, the validation
    pixels too), for :func:`training_overlap`."""
    fitted = split.train | split.val if refitted else split.train
    flat = np.flatnonzero(fitted.reshape(-1))
    runs: list[int] = []
    if len(flat):
        breaks = np.flatnonzero(np.diff(flat) != 1)
        starts = np.concatenate([[flat[0]], flat[breaks + 1]])
        ends = np.concatenate([flat[breaks], [flat[-1]]])
        runs = np.stack([starts, ends - starts + 1], axis=1).reshape(-1).tolist()
    path = Path(labels_path)
    return {"labels": os.path.abspath(path), "labels_sha256": _sha256(path),
            "grid": {"height": grid.height, "width": grid.width,
                     "transform": list(grid.transform)[:6],
                     "crs": None if grid.crs is None else grid.crs.to_wkt()},
            "train_pixel_runs": runs}


def training_overlap(record: dict[str, Any], reference_path: Path, reference: np.ndarray,
                     grid: Grid) -> list[str]:
    """Warnings (sentences) when the reference is the training labels file, or holds pixels
    that trained the model; ``reference`` is ``(H, W)`` on ``grid``, > 0 labelled."""
    notes = []
    labels = Path(str(record.get("labels", "")))
    same = False
    try:
        same = labels.exists() and os.path.samefile(labels, reference_path)
    except OSError:
        pass
    digest = record.get("labels_sha256")
    if same or (digest is not None and digest == _sha256(reference_path)):
        notes.append(f"the reference {reference_path} is the file the model was trained on "
                     f"({labels}): its accuracy is not an independent estimate; evaluate on "
                     "reference data held out of training (train --export-split writes the "
                     "validation part)")
    g = record.get("grid") or {}
    runs = record.get("train_pixel_runs")
    if runs is None or not _same_grid(g, grid):
        return notes
    train = np.zeros(grid.height * grid.width, dtype=bool)
    for start, length in zip(runs[::2], runs[1::2], strict=True):
        train[int(start):int(start) + int(length)] = True
    labelled = reference.reshape(-1) > 0
    shared = int((labelled & train).sum())
    if shared:
        notes.append(f"{shared} of {int(labelled.sum())} reference pixels "
                     f"({100 * shared / max(1, int(labelled.sum())):.1f} %) were training pixels "
                     "of the model: accuracy on them is optimistic; remove them from the "
                     "reference")
    return notes


def _same_grid(record: dict[str, Any], grid: Grid) -> bool:
    from rasterio.crs import CRS

    if (record.get("height"), record.get("width")) != (grid.height, grid.width):
        return False
    if not Affine(*record.get("transform", [0] * 6)).almost_equals(grid.transform):
        return False
    crs = record.get("crs")
    if crs is None or grid.crs is None:
        return crs is None and grid.crs is None
    return bool(CRS.from_wkt(crs) == grid.crs)
