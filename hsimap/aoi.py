"""Areas of interest (``--mask AOI``): which pixels of a scene's grid to map or to learn from.

An AOI is a vector file (polygons; a pixel is inside when its centre is, as for labels) or a
raster (a pixel is inside where the raster is non-zero, finite and not its nodata value). A
raster on another grid is resampled onto the scene's (nearest neighbour, through GDAL's warper)
window by window, so a mask never costs more memory than the tile it is asked about.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from hsimap._files import RASTER_SUFFIXES
from hsimap.cube import Grid, check_readable, gdal_path, path_suffix
from hsimap.errors import InputFileError, LabelError

log = logging.getLogger(__name__)



@dataclass
class AreaMask:
    """The pixels of ``grid`` inside an area of interest, asked for window by window.

    Build it with :meth:`open`; :meth:`window` answers for one window, :meth:`full` for the
    whole grid (training scenes are in memory anyway).
    """

    path: str
    grid: Grid
    geometries: list[Any] | None = None  # vector AOI, in the grid's CRS
    raster: Any = None  # open rasterio dataset or WarpedVRT on the grid (raster AOI)
    nodata: float | None = None
    _owned: tuple[Any, ...] = ()

    @classmethod
    def open(cls, path: str | Path, grid: Grid, *, layer: str | None = None) -> AreaMask:
        """Open an AOI file for ``grid``.

        Raises
        ------
        InputFileError
            The file is missing or neither a vector nor a raster GDAL reads.
        LabelError
            It covers no pixel of the grid, or is in another CRS than a CRS-less grid.
        """
        where = gdal_path(path)
        check_readable(where, missing="mask file not found", fix="check the --mask path")
        if path_suffix(where) in RASTER_SUFFIXES:
            mask = cls._open_raster(where, grid)
        else:
            mask = cls._open_vector(where, grid, layer)
        if not mask.full_any():
            mask.close()
            raise LabelError("the mask covers no pixel of the scene", path=where,
                             fix="check that the mask and the scene show the same place (and "
                                 "the mask's CRS), or leave --mask out")
        return mask

    @classmethod
    def _open_vector(cls, path: str | Path, grid: Grid, layer: str | None) -> AreaMask:
        import geopandas as gpd
        import pyogrio

        from hsimap.labels import choose_layer

        try:
            chosen = choose_layer(path, layer, option="--mask-layer")
            frame = gpd.read_file(path, engine="pyogrio", layer=chosen)
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
            raise InputFileError(f"not a vector or raster file GDAL can read ({exc})", path=path,
                                 fix="give polygons (Shapefile, GeoPackage, GeoJSON) or a mask "
                                     "raster (non-zero = inside)") from exc
        frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
        if len(frame) == 0:
            raise LabelError("the mask file has no geometry", path=path,
                             fix="draw the area of interest as one or more polygons")
        if frame.crs is not None and grid.crs is not None and frame.crs != grid.crs:
            log.info("reprojecting the mask to the scene's CRS")
            frame = frame.to_crs(grid.crs)
        elif (frame.crs is None) != (grid.crs is None):
            raise LabelError("the mask and the scene do not both have a CRS", path=path,
                             fix="declare the mask's CRS (its .prj), or georeference the scene")
        return cls(str(path), grid, geometries=list(frame.geometry))

    @classmethod
    def _open_raster(cls, path: str | Path, grid: Grid) -> AreaMask:
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.errors import RasterioIOError
        from rasterio.vrt import WarpedVRT

        try:
            src = rasterio.open(path)
        except RasterioIOError as exc:
            raise InputFileError(f"cannot open the mask raster ({exc})", path=path,
                                 fix="give a single-band mask raster (non-zero = inside) or "
                                     "polygons") from exc
        same = (src.height, src.width) == grid.shape and \
            src.transform.almost_equals(grid.transform) and \
            (src.crs is None or grid.crs is None or src.crs == grid.crs)
        if same:
            return cls(str(path), grid, raster=src, nodata=src.nodata, _owned=(src,))
        if src.crs is None or grid.crs is None:
            src.close()
            raise LabelError("the mask raster is on another grid than the scene and the two "
                             "cannot be matched without a CRS on both", path=path,
                             fix="give a mask on the scene's grid, or georeference both")
        vrt = WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width,
                        height=grid.height, resampling=Resampling.nearest)
        return cls(str(path), grid, raster=vrt, nodata=src.nodata, _owned=(vrt, src))

    def window(self, window: Window) -> np.ndarray:
        """``(h, w)`` bool, True inside the AOI, for ``window`` of the grid."""
        h, w = int(window.height), int(window.width)
        if self.geometries is not None:
            from rasterio.features import rasterize
            from rasterio.windows import transform as window_transform

            return rasterize(self.geometries, out_shape=(h, w), fill=0, default_value=1,
                             transform=window_transform(window, self.grid.transform),
                             dtype="uint8").astype(bool)
        data = self.raster.read(1, window=window, boundless=False)
        inside = np.isfinite(data) & (data != 0) if data.dtype.kind == "f" else data != 0
        if self.nodata is not None:
            inside &= data != self.nodata
        return np.asarray(inside)

    def full(self) -> np.ndarray:
        """``(H, W)`` bool over the whole grid."""
        return self.window(Window(0, 0, self.grid.width, self.grid.height))

    def full_any(self) -> bool:
        """Whether any pixel of the grid is inside (read in strips of rows)."""
        step = max(1, 4_000_000 // max(self.grid.width, 1))
        for row in range(0, self.grid.height, step):
            rows = min(step, self.grid.height - row)
            if self.window(Window(0, row, self.grid.width, rows)).any():
                return True
        return False

    def describe(self) -> dict[str, Any]:
        """What identifies the mask for a resumed run: its path, size and modification time."""
        info: dict[str, Any] = {"path": self.path}
        try:
            st = Path(self.path).stat()
            info.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
        except OSError:
            pass
        return info

    def close(self) -> None:
        """Close the raster it reads, if any."""
        for dataset in self._owned:
            dataset.close()
        self._owned = ()
