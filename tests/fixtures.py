"""Small synthetic rasters and vectors for tests, written into a folder on demand.

Real files through the real libraries (rasterio, geopandas): a 30 m UTM 33N grid near
Potsdam, a fixed seed, a few kB each.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from affine import Affine

if TYPE_CHECKING:  # torch is imported by the tests that use round_trip, not here
    import torch

UTM = "EPSG:32633"
ORIGIN = (366015.0, 5809965.0)
TRANSFORM = Affine(30.0, 0.0, ORIGIN[0], 0.0, -30.0, ORIGIN[1])


def write_cube(path: Path, *, bands: int = 12, height: int = 40, width: int = 36,
               crs: str | None = UTM, nodata: float | None = -9999.0, seed: int = 0,
               wavelengths: bool = True, dtype: str = "float32",
               transform: Affine = TRANSFORM) -> Path:
    """A cube with two spectrally distinct halves (left: class A, right: class B)."""
    rng = np.random.default_rng(seed)
    data = rng.normal(1000, 50, size=(bands, height, width)).astype(dtype)
    data[:, :, width // 2:] += np.linspace(0, 800, bands, dtype=dtype)[:, None, None]
    if nodata is not None:
        data[:, :3, :3] = nodata  # a nodata corner
    profile = dict(driver="GTiff", height=height, width=width, count=bands, dtype=dtype,
                   crs=crs, transform=transform, nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if wavelengths:
            for i in range(bands):
                dst.update_tags(i + 1, wavelength=f"{400 + 10 * i:.2f}",
                                wavelength_units="Nanometers", fwhm="10.0", bbl="1")
    return path


def halves_polygons(height: int = 40, width: int = 36) -> list[tuple[object, str, int]]:
    """Two polygons (left/right half, inset by 2 px) as (shapely geometry, name, id)."""
    from shapely.geometry import box

    x0, y0 = ORIGIN
    left = box(x0 + 2 * 30, y0 - (height - 2) * 30, x0 + (width // 2 - 2) * 30, y0 - 4 * 30)
    right = box(x0 + (width // 2 + 2) * 30, y0 - (height - 2) * 30, x0 + (width - 2) * 30,
                y0 - 4 * 30)
    return [(left, "meadow", 3), (right, "roof", 7)]


def write_polygons(path: Path, *, crs: str | None = UTM, to_crs: str | None = None,
                   fields: tuple[str, ...] = ("class_name", "class_id")) -> Path:
    """The two half polygons with the requested fields, optionally reprojected."""
    import geopandas as gpd

    rows = halves_polygons()
    data = {}
    if "class_name" in fields:
        data["class_name"] = [r[1] for r in rows]
    if "class_id" in fields:
        data["class_id"] = [r[2] for r in rows]
    if "other" in fields:
        data["other"] = ["x", "y"]
    frame = gpd.GeoDataFrame(data, geometry=[r[0] for r in rows], crs=crs)
    if to_crs is not None:
        frame = frame.to_crs(to_crs)
    frame.to_file(path)
    return path


def round_trip(model: torch.nn.Module, n_bands: int, folder: Path) -> torch.nn.Module:
    """``model`` saved to a model file in ``folder`` (identity normalisation, classes
    "class 0", ...) and loaded back."""
    from hsimap.checkpoint import Checkpoint, Normalisation, load_checkpoint, save_checkpoint
    from hsimap.classes import ClassTable

    names = [f"class {i}" for i in range(model.n_classes)]  # type: ignore[attr-defined]
    meta = {"n_bands": n_bands, "band_indices": list(range(n_bands)), "wavelengths": None}
    path = save_checkpoint(folder / f"{model.kind}.safetensors", Checkpoint(  # type: ignore
        model, Normalisation(np.zeros(n_bands, np.float32), np.ones(n_bands, np.float32)),
        ClassTable.from_names(names), meta))
    return load_checkpoint(path).model
