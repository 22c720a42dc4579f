"""Convert a benchmark scene's ``.mat`` pair to what hsimap works with: GeoTIFF + GPKG.

A rectangular crop of a registered scene (:mod:`hsimap.benchmark_scenes`; same variables
and band count, fewer rows or columns) is recognised as a sub-scene of it.
:func:`convert_mat` turns such a pair into a band-sequential tiled GeoTIFF and ground-truth
polygons in a GeoPackage, both placed on a **nominal** georeference (the scene's UTM zone,
its pixel size and a rounded origin near the site). That georeference is a convenience for
GIS software, not the scene's real position, and every output says so.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hsimap._files import atomic_write_text, refuse_special, sha256_file
from hsimap._version import __version__
from hsimap.benchmark_scenes import (
    CUSTOM_EPSG,
    CUSTOM_ORIGIN,
    DATASETS,
    GEOREFERENCE_TAG,
    NOMINAL_GEOREFERENCE_NOTE,
    BenchmarkDataset,
)
from hsimap.errors import InputFileError, LabelError, OutputError

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- .mat reading


def _is_v73(path: Path) -> bool:
    """MATLAB v7.3 files are HDF5 with a text header that says so."""
    with path.open("rb") as f:
        head = f.read(128)
    return head.startswith(b"MATLAB 7.3") or head.startswith(b"\x89HDF")


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise InputFileError(
            "is a MATLAB v7.3 (HDF5) file, which needs the h5py package",
            fix="install it with `pip install h5py` (in hsimap's environment) and run again, "
                "or re-save the file in MATLAB with save(..., '-v7')") from exc
    return h5py


def mat_variables(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Variable names and shapes of a ``.mat`` file (v4-v7 via scipy, v7.3 via h5py)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(".mat file not found", path=path, fix="check the path")
    if path.stat().st_size == 0:
        raise InputFileError("is empty (0 bytes), not a MATLAB .mat file", path=path,
                             fix="copy or download the file again (an interrupted download "
                                 "or a full disk leaves empty files)")
    import scipy.io

    try:
        if _is_v73(path):
            h5py = _h5py()
            with h5py.File(path, "r") as f:
                return {k: tuple(reversed(f[k].shape)) for k in f.keys()
                        if not k.startswith("#") and hasattr(f[k], "shape")}
        return {name: tuple(shape) for name, shape, _ in scipy.io.whosmat(str(path))}
    except InputFileError:
        raise
    except (ValueError, TypeError, OSError, NotImplementedError,
            scipy.io.matlab.MatReadError) as exc:
        raise _mat_error(path, exc) from exc


def read_mat_variable(path: str | Path, key: str) -> npt.NDArray[Any]:
    """One variable of a ``.mat`` file as a numpy array in MATLAB's (row, col, ...) order."""
    path = Path(path)
    import scipy.io

    try:
        if _is_v73(path):
            h5py = _h5py()
            with h5py.File(path, "r") as f:
                return np.asarray(f[key][()]).T  # HDF5 holds MATLAB's arrays reversed
        return np.asarray(scipy.io.loadmat(str(path), variable_names=[key])[key])
    except InputFileError:
        raise
    except (ValueError, TypeError, OSError, NotImplementedError,
            scipy.io.matlab.MatReadError) as exc:
        raise _mat_error(path, exc) from exc


def _mat_error(path: Path, exc: BaseException) -> InputFileError:
    return InputFileError(f"not a MATLAB .mat file scipy can read ({exc}); it may be "
                          "truncated or damaged", path=path,
                          fix="copy or download the .mat files again, as distributed with "
                              "the scene")


def detect_dataset(cube_vars: dict[str, tuple[int, ...]], gt_vars: dict[str, tuple[int, ...]],
                   ) -> BenchmarkDataset | None:
    """The registry entry whose keys and shape match the two files' variables, if any.

    A crop of a registered scene matches too: the same variable names and band count, the
    cube and ground truth of one ``(rows, cols)`` no larger than the published scene
    (:func:`is_sub_scene` tells the two apart). Full-size matches win.
    """
    crops = []
    for ds in DATASETS:
        if ds.cube_key not in cube_vars or ds.gt_key not in gt_vars:
            continue
        cube, gt = cube_vars[ds.cube_key], gt_vars[ds.gt_key]
        if cube == (*ds.shape, ds.bands) and gt == ds.shape:
            return ds
        if (len(cube) == 3 and cube[2] == ds.bands and gt == cube[:2]
                and 0 < gt[0] <= ds.shape[0] and 0 < gt[1] <= ds.shape[1]):
            crops.append(ds)
    return crops[0] if crops else None


def is_sub_scene(ds: BenchmarkDataset, shape: tuple[int, ...]) -> bool:
    """Whether a ``(rows, cols)`` ground truth of a registered scene is a crop of it."""
    return bool(ds.classes) and tuple(shape[:2]) != ds.shape


def _describe(variables: dict[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in variables.items()) or "(none)"


# ----------------------------------------------------------------------------- conversion


@dataclass(frozen=True)
class ConversionResult:
    """Files written by :func:`convert_mat`."""

    dataset: BenchmarkDataset
    image: Path
    labels: Path
    provenance: Path
    readme: Path
    n_polygons: int
    shape: tuple[int, int]
    """``(rows, cols)`` of the converted scene (smaller than the registry's for a crop)."""
    sub_scene: bool = False
    """The input is a crop of the registered scene (fewer rows or columns)."""
    unlabelled_pixels: int = 0
    """Pixels without a class (0 or the scene's unlabelled value) in the ground truth."""

    @property
    def files(self) -> tuple[Path, ...]:
        """All outputs."""
        return self.image, self.labels, self.provenance, self.readme


def output_paths(out_dir: Path, name: str) -> dict[str, Path]:
    """The files :func:`convert_mat` writes for a scene called ``name``."""
    return {"image": out_dir / f"{name}.tif", "labels": out_dir / f"{name}_gt.gpkg",
            "provenance": out_dir / f"{name}_provenance.json",
            "readme": out_dir / f"{name}_README.txt"}


def convert_mat(
    cube_path: str | Path,
    gt_path: str | Path,
    out_dir: str | Path,
    *,
    cube_key: str | None = None,
    gt_key: str | None = None,
    name: str | None = None,
    gsd: float | None = None,
    overwrite: bool = False,
) -> ConversionResult:
    """Convert a benchmark ``.mat`` pair to ``<name>.tif`` + ``<name>_gt.gpkg`` + sidecars.

    Parameters
    ----------
    cube_path, gt_path
        The cube (``rows x cols x bands``) and ground-truth (``rows x cols``) ``.mat`` files.
    out_dir
        Output folder (created if missing).
    cube_key, gt_key
        Variable names, for files the registry does not know (auto-detected otherwise).
    name
        Output base name (default: the registry name, else the cube file's stem).
    gsd
        Pixel size in metres for unregistered scenes (default 1.0; registered scenes use
        the published value).
    overwrite
        Replace existing outputs.

    Returns
    -------
    ConversionResult
    """
    cube_path, gt_path, out_dir = Path(cube_path), Path(gt_path), Path(out_dir)
    cube_vars, gt_vars = mat_variables(cube_path), mat_variables(gt_path)
    dataset = _resolve_dataset(cube_path, gt_path, cube_vars, gt_vars, cube_key=cube_key,
                               gt_key=gt_key, name=name, gsd=gsd)
    base = name or dataset.name
    paths = output_paths(out_dir, base)
    _check_outputs(out_dir, paths, cube_path, gt_path, overwrite=overwrite)
    cube = read_mat_variable(cube_path, dataset.cube_key)
    gt = read_mat_variable(gt_path, dataset.gt_key)
    gt = _check_arrays(cube, gt, dataset, cube_path=cube_path, gt_path=gt_path)
    sub_scene = is_sub_scene(dataset, gt.shape)
    if sub_scene:
        log.info("%s: a %d x %d px crop of %s (%d x %d px); the registry's sha256 sums and "
                 "pixel counts are those of the full scene", cube_path, *gt.shape,
                 dataset.title, *dataset.shape)
    out_dir.mkdir(parents=True, exist_ok=True)
    transform = _nominal_transform(dataset)
    source = {"cube": _file_record(cube_path, dataset.cube_key, dataset.cube_sha256,
                                   sub_scene=sub_scene),
              "gt": _file_record(gt_path, dataset.gt_key, dataset.gt_sha256,
                                 sub_scene=sub_scene)}
    _write_image(paths["image"], cube, dataset, transform, source)
    n_polygons = _write_polygons(paths["labels"], gt, dataset, transform)
    prov = _provenance(dataset, source, paths, n_polygons, gt, sub_scene=sub_scene)
    atomic_write_text(paths["provenance"], json.dumps(prov, indent=2) + "\n")
    atomic_write_text(paths["readme"], _readme(dataset, prov))
    log.info("wrote %s and %s (%s)", paths["image"], paths["labels"], NOMINAL_GEOREFERENCE_NOTE)
    return ConversionResult(dataset, paths["image"], paths["labels"], paths["provenance"],
                            paths["readme"], n_polygons, (gt.shape[0], gt.shape[1]),
                            sub_scene=sub_scene,
                            unlabelled_pixels=int(np.count_nonzero(gt == 0)))


def _resolve_dataset(cube_path: Path, gt_path: Path, cube_vars: dict[str, tuple[int, ...]],
                     gt_vars: dict[str, tuple[int, ...]], *, cube_key: str | None,
                     gt_key: str | None, name: str | None, gsd: float | None,
                     ) -> BenchmarkDataset:
    """Registry entry for the files, or an ad-hoc one built from the given keys."""
    found = detect_dataset(cube_vars, gt_vars)
    if found is not None and cube_key in (None, found.cube_key) and gt_key in (None,
                                                                               found.gt_key):
        return found
    swapped = detect_dataset(gt_vars, cube_vars)
    if swapped is not None and cube_key is None and gt_key is None:
        raise InputFileError(
            f"looks like the {swapped.title} files given in the wrong order", path=cube_path,
            fix="give the cube file first and the ground-truth file second")
    if cube_key is None or gt_key is None:
        near = [d for d in DATASETS if d.cube_key in cube_vars or d.gt_key in gt_vars]
        hint = (f" The keys look like {near[0].title} but the shapes differ from the "
                f"published {near[0].shape[0]} x {near[0].shape[1]} x {near[0].bands}."
                if near else "")
        raise InputFileError(
            f"not a known benchmark scene: cube file holds {_describe(cube_vars)}; "
            f"ground-truth file {gt_path} holds {_describe(gt_vars)}.{hint}",
            path=cube_path,
            fix="pass --cube-key NAME and --gt-key NAME to say which variables hold the "
                "(rows x cols x bands) cube and the (rows x cols) class ids "
                "(and --gsd for the pixel size)")
    for key, variables, path in ((cube_key, cube_vars, cube_path), (gt_key, gt_vars, gt_path)):
        if key not in variables:
            raise InputFileError(f"has no variable {key!r} (it holds {_describe(variables)})",
                                 path=path, fix="pass one of the names listed")
    shape = cube_vars[cube_key]
    if len(shape) != 3:
        raise InputFileError(f"variable {cube_key!r} has shape {shape}, expected "
                             "(rows, cols, bands)", path=cube_path,
                             fix="pass the 3-D variable as --cube-key")
    return BenchmarkDataset(
        name=name or _slug(cube_path.stem), title=f"{cube_path.name} (unregistered)",
        cube_file=cube_path.name, gt_file=gt_path.name, cube_key=cube_key, gt_key=gt_key,
        shape=(shape[0], shape[1]), bands=shape[2], sensor="unknown",
        gsd=float(gsd) if gsd else 1.0, location="unknown", classes=(), cube_sha256=None,
        gt_sha256=None, nominal_epsg=CUSTOM_EPSG, nominal_origin=CUSTOM_ORIGIN)


def _slug(text: str) -> str:
    out = "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")
    return out or "scene"


def _check_outputs(out_dir: Path, paths: dict[str, Path], *inputs: Path,
                   overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError("output path exists and is not a folder", path=out_dir,
                          fix="give a folder with -o")
    resolved_inputs = {p.resolve() for p in inputs}
    for p in paths.values():
        if p.resolve() in resolved_inputs:
            raise OutputError("output would replace an input file", path=p,
                              fix="choose another output folder with -o")
        refuse_special(p)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise OutputError(f"output already exists: {', '.join(existing)}", path=out_dir,
                          fix="pass --overwrite to replace, or choose another folder with -o")


def _check_arrays(cube: npt.NDArray[Any], gt: npt.NDArray[Any], ds: BenchmarkDataset, *,
                  cube_path: Path, gt_path: Path) -> npt.NDArray[np.int32]:
    if cube.ndim != 3:
        raise InputFileError(f"{ds.cube_key!r} has shape {cube.shape}, expected "
                             "(rows, cols, bands)", path=cube_path)
    if gt.ndim != 2 or gt.shape != cube.shape[:2]:
        raise LabelError(f"ground truth {ds.gt_key!r} has shape {gt.shape}, the cube "
                         f"{cube.shape[:2]}", path=gt_path,
                         fix="give the ground-truth file that belongs to this cube")
    if gt.dtype.kind not in "iub" and not np.all(gt == np.round(gt)):
        raise LabelError("ground truth holds non-integer values", path=gt_path)
    ids = gt.astype(np.int64)
    if ds.unlabelled != 0:  # e.g. -1 in the 8-bit Indian Pines copy: no class, never a class
        ids[ids == ds.unlabelled] = 0
    if ids.min() < 0 or ids.max() > np.iinfo(np.int32).max:
        what = "" if ds.unlabelled == 0 else f" (after {ds.unlabelled} = unlabelled)"
        raise LabelError(f"ground-truth ids outside 0..2^31{what} ({ids.min()}..{ids.max()})",
                         path=gt_path, fix="give the ground-truth file that belongs to this "
                                           "cube (0 = unlabelled, classes 1, 2, ...)")
    known = {c.value for c in ds.classes}
    unknown = sorted(set(np.unique(ids).tolist()) - known - {0})
    if known and unknown:
        raise LabelError(f"ground truth holds ids {unknown} that {ds.title} does not have",
                         path=gt_path, fix="check that the files belong to the same scene")
    return ids.astype(np.int32)


def _nominal_transform(ds: BenchmarkDataset) -> Any:
    from rasterio.transform import from_origin

    return from_origin(ds.nominal_origin[0], ds.nominal_origin[1], ds.gsd, ds.gsd)


def _file_record(path: Path, key: str, expected: str | None, *,
                 sub_scene: bool = False) -> dict[str, Any]:
    """sha256 of an input and its comparison with the registry (not made for a crop)."""
    digest = sha256_file(path)
    if expected is not None and digest != expected and not sub_scene:
        log.warning("%s: sha256 %s differs from the registry's %s (another copy of the "
                    "scene?)", path, digest, expected)
    compare = expected is not None and not sub_scene
    return {"file": path.name, "key": key, "sha256": digest, "registry_sha256": expected,
            "sha256_matches_registry": digest == expected if compare else None}


def _write_image(out: Path, cube: npt.NDArray[Any], ds: BenchmarkDataset, transform: Any,
                 source: dict[str, Any]) -> None:
    import rasterio
    from rasterio.crs import CRS

    data = np.ascontiguousarray(np.moveaxis(cube, -1, 0))  # (rows, cols, bands) -> (band, y, x)
    if data.dtype.kind == "f":
        data = data.astype(np.float32, copy=False)
    elif data.dtype == np.int64 or data.dtype == np.uint64:
        raise InputFileError(f"cube dtype {data.dtype} is not supported", path=ds.cube_file)
    bands, rows, cols = data.shape
    block = min(256, 16 * -(-max(rows, cols) // 16))
    profile = dict(driver="GTiff", height=rows, width=cols, count=bands, dtype=data.dtype.name,
                   crs=CRS.from_epsg(ds.nominal_epsg), transform=transform, tiled=True,
                   blockxsize=block, blockysize=block, interleave="band", compress="deflate",
                   predictor=3 if data.dtype.kind == "f" else 2)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            origin = {"HSIMAP_ORIGIN": ds.source} if ds.source else {}
            dst.update_tags(**{GEOREFERENCE_TAG: NOMINAL_GEOREFERENCE_NOTE,
                               "HSIMAP_DATASET": ds.name,
                               "HSIMAP_SOURCE": json.dumps(source), **origin},
                            TIFFTAG_IMAGEDESCRIPTION=f"{ds.title}; {NOMINAL_GEOREFERENCE_NOTE}")
            for i in range(bands):
                dst.set_band_description(i + 1, f"band {i + 1}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _write_polygons(out: Path, gt: npt.NDArray[np.int32], ds: BenchmarkDataset,
                    transform: Any) -> int:
    import geopandas as gpd
    from rasterio.features import shapes
    from shapely.geometry import shape

    names = {c.value: c.name for c in ds.classes}
    records = []
    for geom, value in shapes(gt, mask=gt > 0, connectivity=4, transform=transform):
        v = int(value)
        records.append((v, names.get(v, f"class {v}"), shape(geom)))
    frame = gpd.GeoDataFrame(
        {"class_id": np.array([r[0] for r in records], dtype=np.int32),
         "class_name": [r[1] for r in records],
         "poly_id": np.arange(1, len(records) + 1, dtype=np.int32)},
        geometry=[r[2] for r in records], crs=f"EPSG:{ds.nominal_epsg}")
    tmp = out.with_name(f".{out.name}.partial.gpkg")
    try:
        frame.to_file(tmp, driver="GPKG", layer=f"{ds.name}_gt", engine="pyogrio")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return len(records)


def _provenance(ds: BenchmarkDataset, source: dict[str, Any], paths: dict[str, Path],
                n_polygons: int, gt: npt.NDArray[np.int32], *, sub_scene: bool = False,
                ) -> dict[str, Any]:
    values, counts = np.unique(gt[gt > 0], return_counts=True)
    unlabelled = [0] if ds.unlabelled == 0 else [ds.unlabelled, 0]
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hsimap_version": __version__,
        "dataset": ds.to_dict(),
        "source_files": source,
        "origin_of_files": ds.source or None,
        "sub_scene": ({"shape": list(gt.shape), "of": list(ds.shape),
                       "size": {"width": gt.shape[1], "height": gt.shape[0]},
                       "note": "a crop of the registered scene; its position in the scene "
                               "is not known, so the nominal origin is the scene's"}
                      if sub_scene else None),
        "outputs": {k: p.name for k, p in paths.items()},
        "georeference": {"note": NOMINAL_GEOREFERENCE_NOTE, "crs": f"EPSG:{ds.nominal_epsg}",
                         "upper_left": list(ds.nominal_origin), "pixel_size_m": ds.gsd},
        "image_layout": "band-sequential (band, y, x), tiled, deflate; values unchanged "
                        "(float64 sources stored as float32)",
        "ground_truth": {"polygons": n_polygons, "connectivity": 4,
                         "fields": ["class_id", "class_name", "poly_id"],
                         "unlabelled_source_values": unlabelled,
                         "unlabelled_pixels": int(np.count_nonzero(gt == 0)),
                         "pixels_per_class": {str(v): int(n) for v, n in
                                              zip(values.tolist(), counts.tolist(), strict=True)}},
    }


def _readme(ds: BenchmarkDataset, prov: dict[str, Any]) -> str:
    src = prov["source_files"]
    return (
        f"{ds.title}\n{'=' * len(ds.title)}\n\n"
        f"Converted by hsimap {__version__} from {src['cube']['file']} (variable "
        f"{src['cube']['key']}, sha256 {src['cube']['sha256']}) and {src['gt']['file']} "
        f"(variable {src['gt']['key']}, sha256 {src['gt']['sha256']}).\n\n"
        + (f"Origin of the files: {ds.source}\n\n" if ds.source else "")
        + (f"Sub-scene: a {prov['sub_scene']['shape'][1]} x {prov['sub_scene']['shape'][0]} "
           f"px crop of the {ds.shape[1]} x {ds.shape[0]} px scene (width x height).\n\n"
           if prov["sub_scene"] else "")
        + f"Sensor: {ds.sensor}; pixel size {ds.gsd} m; location: {ds.location}.\n\n"
        f"GEOREFERENCE: {NOMINAL_GEOREFERENCE_NOTE} CRS EPSG:{ds.nominal_epsg}, upper-left "
        f"corner {ds.nominal_origin}.\n\n"
        f"{prov['outputs']['image']}: {ds.bands}-band image, {prov['image_layout']}.\n"
        f"{prov['outputs']['labels']}: {prov['ground_truth']['polygons']} ground-truth "
        "polygons (class_id, class_name, poly_id), one per 4-connected region of a class; "
        f"{prov['ground_truth']['unlabelled_pixels']} unlabelled pixels (source value(s) "
        f"{', '.join(map(str, prov['ground_truth']['unlabelled_source_values']))}) have "
        "none.\n"
        f"{prov['outputs']['provenance']}: all of this, machine readable.\n\n"
        f"{ds.notes}\nCite the original providers of the scene when publishing results.\n"
    )
