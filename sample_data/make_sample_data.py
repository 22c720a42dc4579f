"""Rebuild the bundled Potsdam EnMAP sample data from the shared EnMAP-Box test tiles.

Reads ``<shared-data>/enmap_potsdam_tiles/`` (18 EnMAP L2A tiles of 32 x 32 x 224 px plus
their label tiles and the level-3 QGIS style) and writes into ``--out``:

* ``potsdam_enmap.tif``: the tiles mosaicked onto their union grid (holes = nodata), int16,
  tiled, DEFLATE + horizontal predictor, band metadata (wavelength, fwhm, bbl) kept;
* ``potsdam_landcover.shp``: the label tiles polygonised (one polygon per 4-connected region)
  with fields ``class_name``, ``class_id`` and ``poly_id``.

Run from the repository root: ``python sample_data/make_sample_data.py``.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.features import rasterize, shapes
from rasterio.profiles import Profile
from rasterio.transform import Affine
from shapely.geometry import shape

HERE = Path(__file__).resolve().parent
NODATA = -32768
BAND_TAGS = ("wavelength", "fwhm", "bbl", "wavelength_units")
SOURCE = (
    "EnMAP-Box/enmap-box@f9e8f486c9614813410cc9d715bb056e6ad3cfd5 "
    "tests/testdata/external/specdeepmap/test_requierments/images/enmap_potsdam_tile_*.tif"
)
PROVENANCE = (
    "Mosaic of the 18 SpecDeepMap test tiles (32x32 px) cut from the EnMAP-Box example "
    "enmap_potsdam.tif (EnMAP L2A ENMAP01-____L2A-DT0000001867_20220724T104526Z_008_"
    "V010302_20230628T165614Z, acquired 2022-07-24, data provider DLR), source: "
    + SOURCE
    + ". Values copied unchanged (integer-valued float32 -> int16); pixels outside the "
    "tiles and the 6 bad bands (bbl=0) are nodata -32768. Made by "
    "sample_data/make_sample_data.py."
)


def read_classes(tile_dir: Path, n_classes: int) -> dict[int, tuple[str, str]]:
    """Return ``{class_id: (name, '#rrggbb')}`` from the level QML with ``n_classes`` classes.

    The QML files are categorised vector styles on a string field; the raster ids are the
    1-based positions of the non-empty categories (roof=1 ... water=6 for level 3).
    """
    for qml in sorted(tile_dir.glob("landcover_potsdam_polygon.level_*.qml")):
        renderer = ET.parse(qml).getroot().find("renderer-v2")
        assert renderer is not None, qml
        symbols = {s.get("name"): s for s in renderer.findall("symbols/symbol")}
        cats = [c for c in renderer.iter("category") if c.get("value")]
        if len(cats) != n_classes:
            continue
        classes = {}
        for class_id, cat in enumerate(cats, start=1):
            opts = {
                o.get("name"): o.get("value")
                for o in symbols[cat.get("symbol")].iterfind("layer//Option")
            }
            r, g, b = (int(v) for v in opts["color"].split(",")[:3])
            classes[class_id] = (str(cat.get("label")), f"#{r:02x}{g:02x}{b:02x}")
        print(f"classes from {qml.name}: {classes}")
        return classes
    raise SystemExit(f"no level QML with {n_classes} classes in {tile_dir}")


def mosaic(paths: list[Path]) -> tuple[np.ndarray, Affine, Profile]:
    """Place same-grid tiles into their union bounding box; uncovered pixels are nodata."""
    srcs = [rasterio.open(p) for p in paths]
    try:
        first = srcs[0]
        res = first.transform.a
        left = min(s.bounds.left for s in srcs)
        top = max(s.bounds.top for s in srcs)
        width = round((max(s.bounds.right for s in srcs) - left) / res)
        height = round((top - min(s.bounds.bottom for s in srcs)) / res)
        transform = Affine(res, 0.0, left, 0.0, -res, top)
        fill = first.nodata if first.nodata is not None else 0
        out = np.full((first.count, height, width), fill, dtype=first.dtypes[0])
        for s in srcs:
            assert s.crs == first.crs and s.transform.a == res and s.transform.e == -res
            col, row = ~transform * (s.transform.c, s.transform.f)
            assert col == int(col) and row == int(row), f"{s.name} is off the grid"
            out[:, int(row) : int(row) + s.height, int(col) : int(col) + s.width] = s.read()
        return out, transform, first.profile
    finally:
        for s in srcs:
            s.close()


def write_image(tiles: list[Path], dst: Path) -> np.ndarray:
    """Mosaic the image tiles and write the int16 GeoTIFF; return the mosaic."""
    data, transform, profile = mosaic(tiles)
    valid = data != NODATA
    assert np.array_equal(data[valid], np.round(data[valid])), "values are not integers"
    assert data[valid].min() > NODATA and data[valid].max() <= np.iinfo(np.int16).max
    with rasterio.open(tiles[0]) as ref:
        band_tags = [ref.tags(b) for b in range(1, ref.count + 1)]
        descriptions, dataset_tags = ref.descriptions, ref.tags()
        for path in tiles[1:]:
            with rasterio.open(path) as other:
                assert other.descriptions == descriptions
                assert [other.tags(b) for b in range(1, other.count + 1)] == band_tags
    profile.update(
        dtype="int16",
        nodata=NODATA,
        transform=transform,
        width=data.shape[2],
        height=data.shape[1],
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        predictor=2,
        zlevel=9,
        interleave="pixel",
    )
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data.astype(np.int16))
        out.update_tags(
            start_time=dataset_tags.get("start_time", ""), SOURCE=SOURCE, PROVENANCE=PROVENANCE
        )
        for b, (tags, desc) in enumerate(zip(band_tags, descriptions, strict=True), start=1):
            out.update_tags(b, **{k: tags[k] for k in BAND_TAGS})
            out.set_band_description(b, desc)
    bad = [b + 1 for b in range(data.shape[0]) if band_tags[b]["bbl"] == "0"]
    holes = (~valid).all(axis=0)
    print(f"image grid {data.shape} (bands, rows, cols), transform {tuple(transform)[:6]}")
    print(
        f"value range {data[valid].min()}..{data[valid].max()}, bad bands (bbl=0): {bad}, "
        f"all-nodata bands: {[b + 1 for b in range(data.shape[0]) if not valid[b].any()]}"
    )
    print(f"nodata pixels (all bands): {holes.sum()} of {holes.size} ({holes.mean():.1%})")
    return data


def write_labels(label_tiles: list[Path], tile_dir: Path, dst: Path, image: np.ndarray) -> None:
    """Polygonise the mosaicked label tiles, check the round trip and write the shapefile."""
    labels, transform, profile = mosaic(label_tiles)
    labels = labels.astype(np.uint8)[0]
    with rasterio.open(tile_dir / "enmap_landcover_unstyled.tif") as full:
        col, row = ~full.transform * (transform.c, transform.f)
        crop = full.read(1)[
            int(row) : int(row) + labels.shape[0], int(col) : int(col) + labels.shape[1]
        ]
    covered = (image != NODATA).any(axis=0)
    assert np.array_equal(labels[covered], crop[covered]), "label tiles != unstyled raster"
    print(
        f"label tiles agree with enmap_landcover_unstyled.tif on all {covered.sum()} tile px; "
        f"{int((crop[~covered] > 0).sum())} labelled px outside the tiles are dropped"
    )
    ids = sorted(int(v) for v in np.unique(labels) if v > 0)
    classes = read_classes(tile_dir, len(ids))
    assert ids == sorted(classes)
    geoms, values = [], []
    for geom, value in shapes(labels, mask=labels > 0, connectivity=4, transform=transform):
        geoms.append(shape(geom))
        values.append(int(value))
    gdf = gpd.GeoDataFrame(
        {
            "class_name": [classes[v][0] for v in values],
            "class_id": np.array(values, dtype=np.int32),
            "poly_id": np.arange(1, len(values) + 1, dtype=np.int32),
        },
        geometry=geoms,
        crs=profile["crs"],
    )
    assert gdf.is_valid.all()
    back = rasterize(
        zip(gdf.geometry, gdf.class_id, strict=True),
        out_shape=labels.shape,
        transform=transform,
        fill=0,
        all_touched=False,
        dtype="uint8",
    )
    assert np.array_equal(back, labels), "rasterized polygons differ from the label raster"
    gdf.to_file(dst, driver="ESRI Shapefile", engine="pyogrio", encoding="UTF-8")
    print(f"{len(gdf)} polygons; rasterize(polygons) == label raster: OK")
    print("id  name             colour   pixels polygons")
    for cid, (name, colour) in classes.items():
        print(
            f"{cid:>2}  {name:<16} {colour} {int((labels == cid).sum()):>6} "
            f"{int((gdf.class_id == cid).sum()):>8}"
        )
    print(f"unlabelled (0): {int((labels == 0).sum())} px")


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and rebuild ``potsdam_enmap.tif`` and ``potsdam_landcover.shp``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared-data",
        type=Path,
        default=HERE.parent.parent / "shared" / "data",
        help="folder holding enmap_potsdam_tiles/ (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=HERE, help="output folder (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    tile_dir = args.shared_data / "enmap_potsdam_tiles"
    images = sorted((tile_dir / "images").glob("enmap_potsdam_tile_*.tif"))
    labels = [tile_dir / "labels" / p.name for p in images]
    if len(images) != 18 or not all(p.exists() for p in labels):
        raise SystemExit(f"expected 18 image tiles with label tiles in {tile_dir}")
    args.out.mkdir(parents=True, exist_ok=True)
    image = write_image(images, args.out / "potsdam_enmap.tif")
    write_labels(labels, tile_dir, args.out / "potsdam_landcover.shp", image)
    for path in sorted(args.out.glob("potsdam_*")):
        print(f"wrote {path} ({path.stat().st_size:,} B)")


if __name__ == "__main__":
    main()
