"""Open a hyperspectral cube: a Dask-chunked (band, y, x) array plus its band metadata.

Any raster GDAL opens is accepted (GeoTIFF, ENVI, VRT, ...). Wavelengths, FWHM and the
bad-band list are read from per-band GDAL metadata (``wavelength``/``fwhm``/``bbl`` as written
by ENVI and EnMAP-Box, or the ``IMAGERY`` domain's ``CENTRAL_WAVELENGTH_UM``/``FWHM_UM``) or
from the ENVI header's dataset-level lists. A pixel is valid when every good band is finite
and differs from the nodata value; bad bands (``bbl == 0`` or listed by the user) are ignored
for validity and left out of the model input.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError

from hsimap.errors import CubeError, InputFileError, NoCRSWarning

log = logging.getLogger(__name__)

MIN_BANDS = 5  # fewer bands than this is an RGB/multispectral image, not a cube
DEFAULT_CHUNK = 256


@dataclass(frozen=True)
class Grid:
    """A raster grid: size, affine transform and CRS (``None`` for pixel coordinates)."""

    height: int
    width: int
    transform: Affine
    crs: CRS | None

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.height, self.width

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in CRS units."""
        return rasterio.transform.array_bounds(self.height, self.width, self.transform)[::1]


@dataclass(frozen=True)
class Cube:
    """A hyperspectral cube on disk, opened lazily.

    Attributes
    ----------
    path
        The file.
    data
        ``xarray.DataArray`` with dims ``(band, y, x)``, Dask-chunked, raw values.
    grid
        Size, transform and CRS.
    nodata
        Nodata value of the file, or ``None``.
    wavelengths, fwhm
        Per-band centre wavelength and FWHM in nanometres, or ``None`` when unknown.
    bad_bands
        0-based indices of bands excluded from validity and from the model input.
    """

    path: Path
    data: Any
    grid: Grid
    nodata: float | None
    wavelengths: tuple[float, ...] | None
    fwhm: tuple[float, ...] | None
    bad_bands: tuple[int, ...]
    dtype: str

    @property
    def count(self) -> int:
        """Number of bands in the file."""
        return int(self.data.sizes["band"])

    @property
    def good_bands(self) -> list[int]:
        """0-based indices of the bands used as model input."""
        bad = set(self.bad_bands)
        return [i for i in range(self.count) if i not in bad]

    def with_bad_bands(self, bad_bands: tuple[int, ...]) -> Cube:
        """The same cube with another bad-band list."""
        return Cube(self.path, self.data, self.grid, self.nodata, self.wavelengths, self.fwhm,
                    tuple(sorted(set(bad_bands))), self.dtype)

    def read(self, rows: tuple[int, int], cols: tuple[int, int], *,
             bands: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read a window of the good bands (or ``bands``) and its validity mask.

        Returns
        -------
        values
            ``(C, h, w)`` float32.
        valid
            ``(h, w)`` bool: every selected band finite and not nodata.
        """
        idx = self.good_bands if bands is None else bands
        window = self.data.isel(band=idx, y=slice(*rows), x=slice(*cols))
        try:
            values = np.asarray(window.values, dtype=np.float32)
        except RasterioIOError as exc:
            raise CubeError(
                f"pixel data of rows {rows[0]}..{rows[1]}, columns {cols[0]}..{cols[1]} cannot "
                f"be read ({exc}); the file is damaged or incomplete", path=self.path,
                fix="copy or download the file again (check it with gdalinfo -checksum)",
            ) from exc
        return values, validity(values, self.nodata)


def validity(values: np.ndarray, nodata: float | None) -> np.ndarray:
    """``(h, w)`` mask of pixels whose bands are all finite and differ from ``nodata``."""
    ok = np.isfinite(values).all(axis=0)
    if nodata is not None and np.isfinite(nodata):
        ok &= (values != np.float32(nodata)).all(axis=0)
    return np.asarray(ok)


def open_cube(path: str | Path, *, chunks: int = DEFAULT_CHUNK,
              bad_bands: tuple[int, ...] = ()) -> Cube:
    """Open a hyperspectral raster lazily.

    Parameters
    ----------
    path
        Any raster GDAL can open.
    chunks
        Spatial Dask chunk size in pixels (all bands in one chunk).
    bad_bands
        Extra 0-based band indices to exclude, on top of the file's ``bbl`` metadata.
    """
    import rioxarray  # noqa: F401  (registers .rio; slow import, so done here)

    path = Path(path)
    if not path.exists():
        raise InputFileError("file not found", path=path,
                             fix="check the path (relative paths start from the current folder)")
    if path.is_dir() and path.suffix.lower() not in {".zarr"}:
        raise InputFileError("is a folder, not a raster file", path=path,
                             fix="give the raster file itself (for ENVI, the data file next to "
                                 "the .hdr)")
    if not os.access(path, os.R_OK):
        raise InputFileError("cannot be read: permission denied", path=path,
                             fix="make it readable (chmod u+r) or copy it to a folder you own")
    if path.suffix.lower() == ".mat":
        raise InputFileError(
            "is a MATLAB .mat file, which has no georeferencing", path=path,
            fix="convert it to a GeoTIFF first with `hsimap datasets convert CUBE.mat GT.mat "
                "-o FOLDER` (see `hsimap datasets list`)")
    try:
        with rasterio.open(path) as src:
            meta = _band_metadata(src)
            grid = Grid(src.height, src.width, src.transform, src.crs)
            nodata, count, dtype = src.nodata, src.count, src.dtypes[0]
    except RasterioIOError as exc:
        raise InputFileError(
            f"not a raster GDAL can read ({exc})", path=path,
            fix="give a GeoTIFF, ENVI (.hdr + data), VRT or another GDAL raster; for the classic "
                ".mat benchmarks run `hsimap datasets convert` first",
        ) from exc
    if count < MIN_BANDS:
        raise CubeError(
            f"has {count} band(s); a hyperspectral cube needs at least {MIN_BANDS}", path=path,
            fix="give the hyperspectral image (e.g. EnMAP, PRISMA, AVIRIS), not an RGB or "
                "single-band raster",
        )
    if grid.crs is None:
        warnings.warn(f"{path}: the cube has no CRS; labels must then be in its pixel/map "
                      "coordinates too", NoCRSWarning, stacklevel=2)
    import rioxarray as rxr

    data = rxr.open_rasterio(path, chunks={"band": -1, "y": chunks, "x": chunks},
                             masked=False, cache=False, lock=False)
    bad = {i for i, b in enumerate(meta["bbl"] or []) if b == 0} | set(bad_bands)
    out_of_range = sorted(b + 1 for b in bad if not 0 <= b < count)
    if out_of_range:
        raise CubeError(f"bad band(s) {out_of_range} do not exist: the cube has bands 1..{count}",
                        path=path, fix=f"give --bad-bands as 1-based numbers from 1 to {count}")
    cube = Cube(path, data, grid, nodata, meta["wavelength"], meta["fwhm"],
                tuple(sorted(bad)), dtype)
    if not cube.good_bands:
        raise CubeError(f"all {count} bands are bad bands (--bad-bands plus the file's bbl "
                        "metadata), so none is left as model input", path=path,
                        fix="shorten --bad-bands, or correct the bbl list in the file's metadata")
    return cube


_NUMBER = re.compile(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?")


def _parse_list(text: str) -> list[float]:
    return [float(x) for x in _NUMBER.findall(text)]


def _band_metadata(src: Any) -> dict[str, tuple[float, ...] | None]:
    """Wavelength/FWHM (nm) and bbl per band from GDAL band or ENVI metadata."""
    n = src.count
    out: dict[str, tuple[float, ...] | None] = {"wavelength": None, "fwhm": None, "bbl": None}
    band_tags = [{k.lower(): v for k, v in src.tags(i + 1).items()} for i in range(n)]
    imagery = [{k.upper(): v for k, v in src.tags(i + 1, ns="IMAGERY").items()}
               for i in range(n)]
    env = {k.lower(): v for k, v in src.tags(ns="ENVI").items()}
    units = (band_tags[0].get("wavelength_units") or env.get("wavelength_units") or "").lower()
    scale = _unit_scale(units)
    for key, img_key in (("wavelength", "CENTRAL_WAVELENGTH_UM"), ("fwhm", "FWHM_UM"),
                         ("bbl", None)):
        if all(key in t for t in band_tags):
            vals = [float(_parse_list(t[key])[0]) for t in band_tags]
        elif img_key and all(img_key in t for t in imagery):
            vals = [float(t[img_key]) * 1000.0 for t in imagery]  # um -> nm
            out[key] = tuple(vals)
            continue
        elif key in env and len(_parse_list(env[key])) == n:
            vals = _parse_list(env[key])
        else:
            continue
        out[key] = tuple(v * scale for v in vals) if key != "bbl" else tuple(vals)
    if out["wavelength"] is not None and not units and max(out["wavelength"]) < 30:
        out["wavelength"] = tuple(w * 1000.0 for w in out["wavelength"])  # bare micrometres
        if out["fwhm"] is not None:
            out["fwhm"] = tuple(w * 1000.0 for w in out["fwhm"])
    return out


def _unit_scale(units: str) -> float:
    """Factor from the stated wavelength unit to nanometres."""
    if units.startswith(("micro", "um", "µm")):
        return 1000.0
    if units.startswith(("milli", "mm")):
        return 1e6
    return 1.0
