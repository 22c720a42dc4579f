"""``gdalinfo -json`` through the GDAL library rasterio is linked with (ctypes; no osgeo needed).

What GDAL itself reports for a file (category names, raster attribute table, colour table,
the files it read) is what QGIS and other GDAL programs see; rasterio exposes only part of it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from pathlib import Path
from typing import Any

import pytest
import rasterio


def _library() -> ctypes.CDLL | None:
    bundled = sorted((Path(rasterio.__file__).parent.parent / "rasterio.libs").glob("libgdal*.so*"))
    name = str(bundled[0]) if bundled else ctypes.util.find_library("gdal")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.GDALAllRegister()
    lib.GDALOpen.restype = ctypes.c_void_p
    lib.GDALOpen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.GDALClose.argtypes = [ctypes.c_void_p]
    lib.GDALInfoOptionsNew.restype = ctypes.c_void_p
    lib.GDALInfoOptionsNew.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p]
    lib.GDALInfoOptionsFree.argtypes = [ctypes.c_void_p]
    lib.GDALInfo.restype = ctypes.c_void_p
    lib.GDALInfo.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.VSIFree.argtypes = [ctypes.c_void_p]
    return lib


_LIB = _library()


def gdalinfo(path: str | Path) -> dict[str, Any]:
    """``gdalinfo -json PATH`` as a dict (skips the test when no GDAL library is found)."""
    if _LIB is None:
        pytest.skip("no GDAL shared library found for ctypes")
    with rasterio.Env():  # the same GDAL configuration rasterio uses
        ds = _LIB.GDALOpen(str(path).encode(), 0)
        assert ds, f"GDAL cannot open {path}"
        argv = (ctypes.c_char_p * 2)(b"-json", None)
        options = _LIB.GDALInfoOptionsNew(argv, None)
        try:
            text_p = _LIB.GDALInfo(ds, options)
            text = ctypes.string_at(text_p).decode("utf-8")
            _LIB.VSIFree(text_p)
        finally:
            _LIB.GDALInfoOptionsFree(options)
            _LIB.GDALClose(ds)
    info: dict[str, Any] = json.loads(text)
    return info
