"""Open a hyperspectral cube: a Dask-chunked (band, y, x) array plus its band metadata.

Any raster GDAL opens is accepted (GeoTIFF, ENVI, VRT, ...). Wavelengths, FWHM and the
bad-band list are read from per-band GDAL metadata (``wavelength``/``fwhm``/``bbl`` as written
by ENVI and EnMAP-Box, or the ``IMAGERY`` domain's ``CENTRAL_WAVELENGTH_UM``/``FWHM_UM``) or
from the ENVI header's dataset-level lists. A pixel is valid when every good band is finite
and differs from the nodata value; bad bands (``bbl == 0`` or listed by the user) are ignored
for validity and left out of the model input. Nodata is read per band (a VRT may declare it
on some bands only). GDAL virtual paths (``/vsizip/``, ``/vsicurl/``, ``/vsis3/``, ...) are kept
as strings, never passed through :mod:`pathlib` (which would turn ``http://`` into ``http:/``),
and their existence is left to GDAL.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
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

# A local file as a Path; a GDAL virtual path (/vsizip/, /vsicurl/, /vsis3/, ...) as its string.
RasterPath = Path | str
# Nodata: one value for every band, or one per band (None: that band declares none).
Nodata = float | None | Sequence[float | None]
# pathlib collapses "//": "/vsicurl/http://host" becomes "/vsicurl/http:/host" and
# "/vsizip//vsicurl/..." becomes "/vsizip/vsicurl/...". Both are undone by gdal_path().
_MANGLED_URL = re.compile(r"(/vsicurl(?:_streaming)?/)([A-Za-z][A-Za-z0-9+.-]*):/(?!/)")
_MANGLED_CHAIN = re.compile(r"^(/vsi[a-z0-9_]+)/(?=vsi[a-z0-9_]+/)")
# An absolute archive path needs a second slash (/vsizip//data/a.zip/x.tif); a Path drops it,
# which is undone when the first component exists from / but not from the current folder.
_ARCHIVE = re.compile(r"^(/vsi(?:zip|tar|gzip|7z|rar)/)(?!/)(?!vsi)(.+)$")


def is_virtual(path: str | Path) -> bool:
    """Whether ``path`` is a GDAL virtual file system path (``/vsizip/...``, ``/vsis3/...``)."""
    return os.fspath(path).startswith("/vsi")


def gdal_path(path: str | Path) -> RasterPath:
    """``path`` as a :class:`Path`, or verbatim as a string when it is a GDAL virtual path.

    A virtual path that went through :mod:`pathlib` on the way here (``/vsicurl/http:/host``)
    gets its ``//`` back: a URL always has one, a Path never; so does an absolute archive
    path given as a Path (``/vsizip/data/a.zip/x.tif`` when ``data`` exists only as
    ``/data``).
    """
    text = os.fspath(path)
    if not is_virtual(text):
        return Path(text)
    text = _MANGLED_URL.sub(r"\1\2://", _MANGLED_CHAIN.sub(r"\1//", text))
    archive = _ARCHIVE.match(text)
    if archive and isinstance(path, Path):  # "/vsizip//abs/a.zip" came as "/vsizip/abs/a.zip"
        first = archive.group(2).split("/", 1)[0]
        if not Path(first).exists() and Path("/" + first).exists():
            text = f"{archive.group(1)}/{archive.group(2)}"
    return text


def path_name(path: RasterPath) -> str:
    """The file name part of a local or virtual path (for log lines)."""
    return PurePosixPath(os.fspath(path)).name if is_virtual(path) else Path(path).name


def path_suffix(path: RasterPath) -> str:
    """Lower-case suffix of a local or virtual path (``.tif``)."""
    return PurePosixPath(os.fspath(path)).suffix.lower()


def gdal_message(exc: BaseException) -> str:
    """GDAL's own words for a rasterio error (rasterio often says "see previous exception")."""
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    if "previous exception" in text and cause is not None and str(cause):
        cause_text = str(cause.args[-1]) if getattr(cause, "args", None) else str(cause)
        return cause_text
    return text


def gdal_not_found(exc: BaseException) -> bool:
    """Whether a GDAL open error says the file does not exist."""
    low = f"{exc} {gdal_message(exc)}".lower()
    return "does not exist" in low or "no such file" in low


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
    band_nodata
        Nodata value of each band (``None`` where a band declares none); ``nodata`` is the
        first declared one, for display.
    """

    path: RasterPath
    data: Any
    grid: Grid
    nodata: float | None
    wavelengths: tuple[float, ...] | None
    fwhm: tuple[float, ...] | None
    bad_bands: tuple[int, ...]
    dtype: str
    band_nodata: tuple[float | None, ...] = ()

    @property
    def count(self) -> int:
        """Number of bands in the file."""
        return int(self.data.sizes["band"])

    @property
    def good_bands(self) -> list[int]:
        """0-based indices of the bands used as model input."""
        bad = set(self.bad_bands)
        return [i for i in range(self.count) if i not in bad]

    def nodata_of(self, bands: Sequence[int]) -> Nodata:
        """Nodata of the 0-based ``bands``: one value when they share it, else one per band."""
        if not self.band_nodata:
            return self.nodata
        values = tuple(self.band_nodata[b] for b in bands)
        if len(set(values)) <= 1 and not any(v is not None and v != v for v in values):
            return values[0] if values else None
        return values

    @property
    def good_nodata(self) -> Nodata:
        """Nodata of the good bands (see :meth:`nodata_of`)."""
        return self.nodata_of(self.good_bands)

    def with_bad_bands(self, bad_bands: tuple[int, ...]) -> Cube:
        """The same cube with another bad-band list."""
        return Cube(self.path, self.data, self.grid, self.nodata, self.wavelengths, self.fwhm,
                    tuple(sorted(set(bad_bands))), self.dtype, self.band_nodata)

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
            raise unreadable_pixels(self.path, rows, cols, exc) from exc
        return values, validity(values, self.nodata_of(idx))


def unreadable_pixels(path: RasterPath, rows: tuple[int, int], cols: tuple[int, int],
                      exc: BaseException) -> CubeError:
    """The error for pixel data GDAL cannot read (damaged blocks, a missing VRT source)."""
    return CubeError(
        f"pixel data of rows {rows[0]}..{rows[1]}, columns {cols[0]}..{cols[1]} cannot "
        f"be read ({gdal_message(exc)}); the file is damaged or incomplete", path=path,
        fix="copy or download the file again (check it with gdalinfo -checksum)")


def _nodata_column(nodata: Sequence[float | None]) -> np.ndarray:
    """``(C, 1, 1)`` float32 nodata per band, NaN where none (NaN never equals a value)."""
    return np.array([np.nan if v is None else v for v in nodata],
                    dtype=np.float32)[:, None, None]


def band_validity(values: np.ndarray, nodata: Nodata) -> np.ndarray:
    """``(C, h, w)`` mask of values that are finite and differ from their band's nodata."""
    ok = np.isfinite(values)
    if isinstance(nodata, Sequence):
        if len(nodata) != values.shape[0]:
            raise ValueError(f"{len(nodata)} nodata values for {values.shape[0]} bands")
        ok &= values != _nodata_column(nodata)
    elif nodata is not None and np.isfinite(nodata):
        ok &= values != np.float32(nodata)
    return np.asarray(ok)


def validity(values: np.ndarray, nodata: Nodata) -> np.ndarray:
    """``(h, w)`` mask of pixels whose bands are all finite and differ from ``nodata``.

    ``nodata`` is one value for every band or one per band of ``values`` (``None``: none).
    """
    ok = np.isfinite(values).all(axis=0)
    if isinstance(nodata, Sequence):
        if len(nodata) != values.shape[0]:
            raise ValueError(f"{len(nodata)} nodata values for {values.shape[0]} bands")
        ok &= (values != _nodata_column(nodata)).all(axis=0)
    elif nodata is not None and np.isfinite(nodata):
        ok &= (values != np.float32(nodata)).all(axis=0)
    return np.asarray(ok)


def open_cube(path: str | Path, *, chunks: int = DEFAULT_CHUNK,
              bad_bands: tuple[int, ...] = ()) -> Cube:
    """Open a hyperspectral raster lazily.

    Parameters
    ----------
    path
        Any raster GDAL can open, local or a GDAL virtual path (``/vsizip/...``).
    chunks
        Spatial Dask chunk size in pixels (all bands in one chunk).
    bad_bands
        Extra 0-based band indices to exclude, on top of the file's ``bbl`` metadata.
    """
    import rioxarray as rxr  # registers .rio; slow import, so done here

    path, meta, grid, band_nodata, dtypes = _checked_header(path)
    count = len(dtypes)
    data = rxr.open_rasterio(path, chunks={"band": -1, "y": chunks, "x": chunks},
                             masked=False, cache=False, lock=False)
    bad = {i for i, b in enumerate(meta["bbl"] or []) if b == 0} | set(bad_bands)
    out_of_range = sorted(b + 1 for b in bad if not 0 <= b < count)
    if out_of_range:
        raise CubeError(f"bad band(s) {out_of_range} do not exist: the cube has bands 1..{count}",
                        path=path, fix=f"give --bad-bands as 1-based numbers from 1 to {count}")
    nodata = next((v for v in band_nodata if v is not None), None)
    cube = Cube(path, data, grid, nodata, meta["wavelength"], meta["fwhm"],
                tuple(sorted(bad)), dtypes[0], band_nodata)
    if not cube.good_bands:
        raise CubeError(f"all {count} bands are bad bands (--bad-bands plus the file's bbl "
                        "metadata), so none is left as model input", path=path,
                        fix="shorten --bad-bands, or correct the bbl list in the file's metadata")
    return cube


@dataclass(frozen=True)
class CubeHeader:
    """What :func:`read_cube_header` reads: no pixels, no xarray."""

    path: RasterPath
    grid: Grid
    count: int
    wavelengths: tuple[float, ...] | None


def read_cube_header(path: str | Path) -> CubeHeader:
    """The checks of :func:`open_cube` and the facts a plan needs, from the header only and
    without importing rioxarray (``predict --dry-run``)."""
    path, meta, grid, _, dtypes = _checked_header(path)
    return CubeHeader(path, grid, len(dtypes), meta["wavelength"])


def _checked_header(path: str | Path) -> tuple[RasterPath, dict[str, tuple[float, ...] | None],
                                               Grid, tuple[float | None, ...],
                                               tuple[str, ...]]:
    path = gdal_path(path)
    if isinstance(path, Path):
        _check_local_file(path)
    if path_suffix(path) == ".mat":
        raise InputFileError(
            "is a MATLAB .mat file, which has no georeferencing", path=path,
            fix="convert it to a GeoTIFF first with `hsimap datasets convert CUBE.mat GT.mat "
                "-o FOLDER` (see `hsimap datasets list`)")
    meta, grid, band_nodata, dtypes = _read_header(path)
    _check_values(path, len(dtypes), dtypes)
    if grid.crs is None:
        warnings.warn(f"{path}: the cube has no CRS; labels must then be in its pixel/map "
                      "coordinates too", NoCRSWarning, stacklevel=3)
    return path, meta, grid, band_nodata, dtypes


def check_readable(path: RasterPath, *, missing: str, fix: str) -> None:
    """A local input path (not a GDAL virtual path) must exist and be readable: else an
    :class:`InputFileError` with ``missing`` (and ``fix``) or the permission problem."""
    if not isinstance(path, Path):
        return
    if not path.exists():
        raise InputFileError(missing, path=path, fix=fix)
    if not os.access(path, os.R_OK):
        raise InputFileError("cannot be read: permission denied", path=path,
                             fix="make it readable (chmod u+r) or copy it to a folder you own")


def _check_local_file(path: Path) -> None:
    """A local cube path must be an existing, readable file (or a .zarr folder)."""
    if path.is_dir() and path.suffix.lower() not in {".zarr"}:
        raise InputFileError("is a folder, not a raster file", path=path,
                             fix="give the raster file itself (for ENVI, the data file next to "
                                 "the .hdr)")
    check_readable(path, missing="file not found",
                   fix="check the path (relative paths start from the current folder)")


def _read_header(path: RasterPath) -> tuple[dict[str, tuple[float, ...] | None], Grid,
                                            tuple[float | None, ...], tuple[str, ...]]:
    """Band metadata, grid, per-band nodata and dtypes; GDAL judges existence and format."""
    try:
        with rasterio.open(path) as src:
            meta = _band_metadata(src)
            grid = Grid(src.height, src.width, src.transform, src.crs)
            nodata = tuple(None if v is None else float(v) for v in src.nodatavals)
            dtypes = tuple(str(d) for d in src.dtypes)
            files = [f for f in src.files[1:] if not is_virtual(f)]
    except RasterioIOError as exc:
        raise _open_error(path, exc) from exc
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise InputFileError(
            f"refers to {missing[0]}, which does not exist"
            + (f" ({len(missing)} missing files)" if len(missing) > 1 else ""), path=path,
            fix="restore that file, or correct its path in the VRT (a relative source path "
                "starts from the VRT's folder)")
    return meta, grid, nodata, dtypes


def _open_error(path: RasterPath, exc: RasterioIOError) -> InputFileError:
    detail = gdal_message(exc)
    if is_virtual(path) and gdal_not_found(exc):
        return InputFileError(
            f"file not found ({detail})", path=path,
            fix="check the path: for /vsizip/ the archive and the member inside it, for "
                "/vsicurl/ and /vsis3/ the URL (and credentials such as AWS_* variables)")
    if is_virtual(path) and "supported file format" not in detail:
        return InputFileError(
            f"cannot be opened through GDAL's virtual file system ({detail})", path=path,
            fix="check the URL or archive path, the network and any credentials (AWS_* "
                "variables for /vsis3/), or give a local copy")
    return InputFileError(
        f"not a raster GDAL can read ({detail})", path=path,
        fix="give a GeoTIFF, ENVI (.hdr + data), VRT or another GDAL raster; for the classic "
            ".mat benchmarks run `hsimap datasets convert` first")


def _check_values(path: RasterPath, count: int, dtypes: tuple[str, ...]) -> None:
    complex_bands = [i + 1 for i, d in enumerate(dtypes) if d.startswith("complex")]
    if complex_bands:
        raise CubeError(
            f"holds complex numbers ({dtypes[complex_bands[0] - 1]}, band(s) "
            f"{_ranges(complex_bands)}); hsimap classifies real-valued radiance or reflectance "
            "and will not silently drop the imaginary part", path=path,
            fix="convert the cube to real values first (e.g. its magnitude, or the real part "
                "with gdal_translate -ot Float32)")
    if count < MIN_BANDS:
        raise CubeError(
            f"has {count} band(s); a hyperspectral cube needs at least {MIN_BANDS}", path=path,
            fix="give the hyperspectral image (e.g. EnMAP, PRISMA, AVIRIS), not an RGB or "
                "single-band raster",
        )


def _ranges(bands: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``1-3,7`` (1-based band numbers for messages)."""
    parts: list[str] = []
    start = prev = bands[0]
    for b in [*bands[1:], None]:
        if b is not None and b == prev + 1:
            prev = b
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if b is not None:
            start = prev = b
    return ",".join(parts)


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
