"""Write class maps as georeferenced GeoTIFFs that QGIS shows with names and colours.

A map is written window by window into a tiled, compressed GeoTIFF under a temporary name
beside the final path and renamed into place only when complete (so a crash never leaves a
complete-looking map). The class table travels with the map in three forms:

- inside the ``.tif``: the colour table (entry 0, nodata, transparent) and, in the
  ``GDAL_METADATA`` TIFF tag, a JSON dataset item ``HSIMAP_CLASSES`` and band-1 items
  ``CLASS_<value>=<name>`` (``gdalinfo``, rasterio ``tags()``), the most GDAL's GeoTIFF driver
  keeps in the file itself;
- ``<map>.tif.aux.xml``: GDAL category names and a thematic raster attribute table (value,
  class, RGBA; no row for nodata), which the GeoTIFF driver keeps only in this PAM sidecar;
- ``<map>.qml``: a QGIS paletted style (classes only) loaded by default with the map.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import rasterio
from rasterio.windows import Window as RioWindow

from hsimap._files import atomic_write_text
from hsimap.classes import ClassInfo, ClassTable
from hsimap.cube import Grid
from hsimap.errors import OutputError
from hsimap.tiling import Window

CLASSES_TAG = "HSIMAP_CLASSES"
PROBS_TAG = "HSIMAP_PROBABILITY_SCALE"
CONFIDENCE_TAG = "HSIMAP_CONFIDENCE_KIND"
MAP_NODATA = 0
BLOCK = 256

log = logging.getLogger(__name__)


def class_map_profile(grid: Grid, classes: ClassTable, *, block: int = BLOCK) -> dict[str, Any]:
    """GTiff creation profile of a class map on ``grid``."""
    profile: dict[str, Any] = dict(
        driver="GTiff", height=grid.height, width=grid.width, count=1,
        dtype=classes.map_dtype, nodata=MAP_NODATA, crs=grid.crs, transform=grid.transform,
        compress="deflate", predictor=2, zlevel=6, BIGTIFF="IF_SAFER",
    )
    if grid.height > block and grid.width > block:  # GTiff wants blocks smaller than the image
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    return profile


def pixel_hectares(crs: Any, transform: Any) -> float | None:
    """Area of one pixel in hectares, or ``None`` when the CRS is missing, geographic or has
    no linear unit (pixel areas in degrees are not areas)."""
    if crs is None or not crs.is_projected:
        return None
    try:
        _, factor = crs.linear_units_factor
    except Exception:  # noqa: BLE001  (CRSs without a linear unit)
        return None
    t = transform
    return float(abs(t.a * t.e - t.b * t.d) * factor * factor / 10_000.0)


def write_window(dst: Any, data: np.ndarray, window: Window) -> None:
    """Write ``(h, w)`` or ``(bands, h, w)`` data into a pixel window of an open dataset."""
    rio_window = RioWindow(window.col0, window.row0, window.width, window.height)
    if data.ndim == 2:
        dst.write(data, 1, window=rio_window)
    else:
        dst.write(data, window=rio_window)


def tag_class_map(dst: Any, classes: ClassTable) -> None:
    """Colour table, band description and class tags on an open class map."""
    colormap = {MAP_NODATA: (0, 0, 0, 0)}
    colormap.update({c.value: (*c.rgb(), 255) for c in classes})
    # GTiff keeps colour tables for 8- and 16-bit data, so a uint16 map (class values above
    # 255) keeps its colours in the file too (65536 entries, unused ones black).
    dst.write_colormap(1, colormap)
    dst.set_band_description(1, "class")
    dst.update_tags(**{CLASSES_TAG: classes.to_json()})
    dst.update_tags(1, **{f"CLASS_{c.value}": c.name for c in classes})


def tag_probabilities(dst: Any, classes: ClassTable, *, scale: int) -> None:
    """Band names, class values and scale of an open probability raster (one band a class).

    Values are integers; ``value / scale`` is the probability (GDAL scale ``1 / scale``).
    """
    for i, c in enumerate(classes, start=1):
        dst.set_band_description(i, c.name)
        dst.update_tags(i, CLASS_VALUE=str(c.value))
    dst.update_tags(**{PROBS_TAG: str(scale), CLASSES_TAG: classes.to_json()})
    _set_scale(dst, scale)


def tag_confidence(dst: Any, kind: str, *, scale: int) -> None:
    """Band name, confidence kind (``max``/``margin``) and scale of an open confidence raster."""
    dst.set_band_description(1, f"confidence ({kind})")
    dst.update_tags(**{PROBS_TAG: str(scale), CONFIDENCE_TAG: kind})
    _set_scale(dst, scale)


def _set_scale(dst: Any, scale: int) -> None:
    dst.scales = (1.0 / scale,) * dst.count
    dst.offsets = (0.0,) * dst.count


def read_map_classes(src: Any) -> ClassTable | None:
    """The class table of an open class map: the ``HSIMAP_CLASSES`` JSON tag, else the band's
    ``CLASS_<value>`` tags with the colour table's colours; ``None`` when it has neither."""
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


def sidecar_paths(out: Path) -> dict[str, Path]:
    """The sidecars written next to a class map, by what they are."""
    out = Path(out)
    return {"GDAL category names sidecar (.aux.xml)": out.with_name(out.name + ".aux.xml"),
            "QGIS style sidecar (.qml)": out.with_suffix(".qml")}


def write_sidecars(out: Path, classes: ClassTable) -> None:
    """Write ``<map>.aux.xml`` (GDAL PAM) and ``<map>.qml`` (QGIS paletted style).

    Each is written under a temporary name and renamed into place, so an existing file (or
    the target of a symbolic link) is replaced as a whole, never written into.
    """
    aux_path, qml_path = sidecar_paths(out).values()
    atomic_write_text(aux_path, pam_aux_xml(classes))
    atomic_write_text(qml_path, qml_style(classes))


# GDAL raster attribute table codes (gdal.h: GDALRATFieldType, GDALRATFieldUsage).
_GFT_INTEGER, _GFT_STRING = 0, 2
_RAT_FIELDS = (("Value", _GFT_INTEGER, 5), ("Class", _GFT_STRING, 2), ("Red", _GFT_INTEGER, 6),
               ("Green", _GFT_INTEGER, 7), ("Blue", _GFT_INTEGER, 8), ("Alpha", _GFT_INTEGER, 9))


def pam_aux_xml(classes: ClassTable) -> str:
    """The ``.aux.xml`` of a class map: GDAL category names and a raster attribute table.

    GDAL's GeoTIFF driver keeps both only in this sidecar (its ``GDAL_METADATA`` TIFF tag
    holds metadata items, band descriptions, offset/scale and units, not categories). Category
    names are indexed by pixel value, so value 0 (nodata) gets an empty name; the attribute
    table (thematic; value, class name, RGBA) has one row per class and none for nodata.
    """
    names = [""] * (max(classes.values) + 1)
    for c in classes:
        names[c.value] = c.name
    cats = "".join(f"<Category>{_xml_text(n)}</Category>" for n in names)
    fields = "".join(
        f'      <FieldDefn index="{i}"><Name>{name}</Name><Type>{kind}</Type>'
        f"<Usage>{usage}</Usage></FieldDefn>\n"
        for i, (name, kind, usage) in enumerate(_RAT_FIELDS))
    rows = "".join(
        f'      <Row index="{i}"><F>{c.value}</F><F>{_xml_text(c.name)}</F>'
        + "".join(f"<F>{v}</F>" for v in (*c.rgb(), 255)) + "</Row>\n"
        for i, c in enumerate(sorted(classes, key=lambda c: c.value)))
    return (f'<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>{cats}</CategoryNames>\n'
            f'    <GDALRasterAttributeTable tableType="thematic">\n{fields}{rows}'
            "    </GDALRasterAttributeTable>\n  </PAMRasterBand>\n</PAMDataset>\n")


def qml_style(classes: ClassTable) -> str:
    """A QGIS paletted-renderer style for a class map."""
    entries = "\n".join(
        f"        <paletteEntry value=\"{c.value}\" color=\"{c.color}\" alpha=\"255\" "
        f"label={quoteattr(c.name)}/>" for c in classes)
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.16" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --------------------------------------------------------------------------- COG, creation options


def write_cog(src: Path, dst: Path, *, resampling: str,
              creation_options: tuple[tuple[str, str], ...] = ()) -> None:
    """Cloud-Optimized GeoTIFF copy of ``src`` (GDAL's COG driver: deflate, overviews).

    GDAL's ``CreateCopy`` keeps the colour table, nodata, band descriptions, scale/offset and
    every metadata tag; ``resampling`` (``mode`` for classes, ``average`` for probabilities)
    builds the overviews, which skip nodata pixels.
    """
    from rasterio.shutil import copy as rio_copy

    with rasterio.open(src) as s:
        side = max(s.height, s.width)
    block = 512  # smaller blocks for small rasters, so they still get overviews
    while block > 64 and side < 2 * block:
        block //= 2
    options = with_creation_options(
        dict(COMPRESS="DEFLATE", PREDICTOR="YES", BLOCKSIZE=block,
             OVERVIEW_RESAMPLING=resampling.upper(), BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS"),
        creation_options)
    rio_copy(src, dst, driver="COG", **options)


# Profile keys that are not creation options: --co may not set them.
_NOT_CREATION_OPTIONS = {"driver", "width", "height", "count", "dtype", "nodata", "crs",
                         "transform"}


def with_creation_options(profile: Mapping[str, Any],
                          options: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``profile`` with the GDAL creation ``options`` set, replacing its own spelling of the
    same key (GDAL keys are case-insensitive: ``compress`` and ``COMPRESS`` are one)."""
    out = dict(profile)
    for key, value in options:
        for k in [k for k in out if k.lower() == key.lower()]:
            del out[k]
        out[key.upper()] = value
    return out


def check_creation_options(options: tuple[tuple[str, str], ...], *, cog: bool) -> None:
    """Refuse creation options GDAL would ignore or reject, before anything is computed: a
    1 x 1 raster is written in memory with them, and any GDAL complaint is the error.

    Raises :class:`OutputError` naming the options and GDAL's words.
    """
    from rasterio.errors import RasterioError
    from rasterio.io import MemoryFile

    if not options:
        return
    structural = [k for k, _ in options if k.lower() in _NOT_CREATION_OPTIONS]
    if structural:
        raise OutputError(f"--co {structural[0]}=... is not a creation option",
                          fix="--co sets GDAL creation options such as COMPRESS=ZSTD, "
                              "ZSTD_LEVEL=9, BLOCKXSIZE=512; size, bands, type, nodata and "
                              "georeference come from the scene and the model")
    complaints: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            complaints.append(record.getMessage())

    handler = _Collect(logging.WARNING)
    gdal_log = logging.getLogger("rasterio._env")
    gdal_log.addHandler(handler)
    driver = "COG" if cog else "GTiff"
    try:
        with rasterio.Env(), MemoryFile() as mem, MemoryFile() as copy:
            base = dict(driver="GTiff", width=16, height=16, count=1, dtype="uint8",
                        crs="EPSG:32633", transform=rasterio.Affine(30, 0, 0, 0, -30, 480))
            with mem.open(**(base if cog else with_creation_options(base, options))) as dst:
                dst.write(np.zeros((1, 16, 16), np.uint8))
            if cog:
                from rasterio.shutil import copy as rio_copy

                rio_copy(mem.name, copy.name, driver="COG", **dict(options))
    except RasterioError as exc:
        complaints.append(str(exc))
    finally:
        gdal_log.removeHandler(handler)
    if complaints:
        given = " ".join(f"{k}={v}" for k, v in options)
        words = "; ".join(c.removeprefix("CPLE_NotSupported in ").removeprefix(
            "CPLE_IllegalArg in ").rstrip(". ") for c in dict.fromkeys(complaints))
        raise OutputError(f"GDAL's {driver} driver does not accept the creation options "
                          f"{given}: {words}",
                          fix=f"give creation options of the {driver} driver (see "
                              f"https://gdal.org/drivers/raster/{driver.lower()}.html), "
                              "as --co KEY=VALUE")
