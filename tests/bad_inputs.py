"""Builders for broken inputs (files a user could plausibly hand to hsimap) and CLI helpers.

Each builder writes one small file into a folder and returns its path. The helpers run the
CLI in-process and check the four things every failure must satisfy: a non-zero exit code, a
one-paragraph message naming the file, the problem and the fix, and no traceback.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import socket
import stat
import struct
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from click.testing import CliRunner, Result

from hsimap.cli.main import cli

from .fixtures import ORIGIN, TRANSFORM, UTM, halves_polygons, write_cube, write_polygons

QUICK_TOML = "[config]\nepochs = 2\n"


# --------------------------------------------------------------------------- running the CLI


@dataclass
class Snapshot:
    """Names and content hashes of every file under a folder (to prove nothing was written)."""

    files: dict[str, str]

    @classmethod
    def of(cls, *folders: Path) -> Snapshot:
        """Regular files by content hash and mtime; links by target; device nodes, FIFOs and
        sockets by kind and device number (never opened: a FIFO would block)."""
        files: dict[str, str] = {}
        for folder in folders:
            for p in sorted(folder.rglob("*")):
                st = os.lstat(p)
                if stat.S_ISLNK(st.st_mode):
                    files[str(p)] = f"link to {os.readlink(p)}"
                elif stat.S_ISREG(st.st_mode):
                    try:
                        digest = hashlib.sha256(p.read_bytes()).hexdigest()
                    except OSError:
                        digest = "unreadable"
                    files[str(p)] = f"{digest}:{st.st_mtime_ns}"
                elif not stat.S_ISDIR(st.st_mode):
                    files[str(p)] = f"special {stat.S_IFMT(st.st_mode):o} {st.st_rdev}"
        return cls(files)


def run_cli(args: Sequence[str | Path]) -> Result:
    """Invoke ``hsimap ARGS`` in-process (stdout and stderr together in ``.output``)."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_clean_failure(result: Result, *, words: Iterable[str], path: Path | str | None,
                         code: int | None = None) -> str:
    """Non-zero exit, every key word present (case-insensitive), the path named, no traceback.

    Returns the output for further checks.
    """
    out = result.output
    assert result.exit_code != 0, f"expected a failure, got exit 0:\n{out}"
    if code is not None:
        assert result.exit_code == code, out
    # An uncaught exception (a bug, not a user error) ends up in result.exception with no
    # message; click's usage errors and HsimapError both exit through SystemExit.
    assert isinstance(result.exception, SystemExit), (
        f"uncaught {type(result.exception).__name__}: {result.exception}\n{out}")
    assert "Traceback" not in out, out
    low = " ".join(out.lower().split())
    for word in words:
        assert word.lower() in low, f"{word!r} missing from:\n{out}"
    if path is not None:
        assert str(path) in " ".join(out.split()) or Path(path).name in out, \
            f"{path} not named in:\n{out}"
    return out


# --------------------------------------------------------------------------- good inputs


def quick_config(folder: Path, text: str = QUICK_TOML, name: str = "quick.toml") -> Path:
    """A TOML config for a 2-epoch spectral-MLP (fast)."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def train_args(cube: str | Path, labels: str | Path, model: Path, config: Path, *extra: str | Path
               ) -> list[str | Path]:
    """``hsimap train`` arguments for the fast baseline."""
    return ["train", "--cube", cube, "--labels", labels, "--model", model,
            "--model-type", "spectral-mlp", "--config", config, *extra]


# --------------------------------------------------------------------------- bad cubes


def text_as_tif(folder: Path) -> Path:
    """A text file with a raster's name."""
    path = folder / "notes.tif"
    path.write_text("this is not a raster\n", encoding="utf-8")
    return path


def rgb_image(folder: Path) -> Path:
    """A georeferenced 3-band uint8 image (a photo, not a hyperspectral cube)."""
    path = folder / "rgb.tif"
    data = np.random.default_rng(0).integers(0, 255, size=(3, 40, 36), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", height=40, width=36, count=3, dtype="uint8",
                       crs=UTM, transform=TRANSFORM) as dst:
        dst.write(data)
    return path


def cube_with_nonfinite(folder: Path, *, fraction: str = "some", value: float = np.nan
                        ) -> Path:
    """The synthetic cube with NaN/inf in a block of pixels (``some``) or everywhere (``all``)."""
    path = write_cube(folder / f"nonfinite_{fraction}.tif", nodata=None)
    with rasterio.open(path, "r+") as dst:
        data = dst.read()
        if fraction == "all":
            data[0] = value
        else:
            data[:, 10:14, 4:8] = value  # inside the left polygon
            data[2, 20, 25] = np.inf  # one band of one pixel in the right one
        dst.write(data)
    return path


def all_nodata_cube(folder: Path) -> Path:
    """A cube whose every pixel holds the nodata value."""
    path = write_cube(folder / "empty.tif")
    with rasterio.open(path, "r+") as dst:
        dst.write(np.full((dst.count, dst.height, dst.width), dst.nodata, dtype="float32"))
    return path


def mat_file(folder: Path) -> Path:
    """A MATLAB v5 file like the classic benchmarks (Indian Pines, Salinas)."""
    from scipy.io import savemat

    path = folder / "Indian_pines.mat"
    savemat(path, {"indian_pines": np.zeros((10, 10, 20), dtype=np.uint16)})
    return path


def shifted_wavelength_cube(folder: Path, *, shift_nm: float = 25.0) -> Path:
    """The synthetic cube with every wavelength tag moved by ``shift_nm``."""
    path = write_cube(folder / "shifted.tif")
    with rasterio.open(path, "r+") as dst:
        for i in range(dst.count):
            dst.update_tags(i + 1, wavelength=f"{400 + 10 * i + shift_nm:.2f}")
    return path


# --------------------------------------------------------------------------- bad labels


def polygons(folder: Path, name: str, rows: list[tuple[object, dict[str, object]]], *,
             crs: str | None = UTM, layer: str | None = None) -> Path:
    """A vector file of (geometry, attributes) rows."""
    import geopandas as gpd

    path = folder / name
    keys = list(rows[0][1]) if rows else []
    data = {k: [r[1][k] for r in rows] for k in keys}
    frame = gpd.GeoDataFrame(data, geometry=[r[0] for r in rows], crs=crs)
    frame.to_file(path, layer=layer) if layer else frame.to_file(path)
    return path


def halves(**fields: Sequence[object]) -> list[tuple[object, dict[str, object]]]:
    """The two half polygons of the synthetic cube with the given attribute values."""
    geoms = [g for g, _, _ in halves_polygons()]
    return [(g, {k: v[i] for k, v in fields.items()}) for i, g in enumerate(geoms)]


def labels_without_crs(folder: Path) -> Path:
    """The half polygons in UTM coordinates but with no .prj."""
    path = write_polygons(folder / "noprj.shp")
    for side in (".prj",):
        path.with_suffix(side).unlink()
    return path


def labels_far_away(folder: Path) -> Path:
    """Two polygons 100 km east of the cube."""
    from shapely.affinity import translate

    rows = [(translate(g, 100_000, 0), {"class_name": n}) for g, n, _ in halves_polygons()]
    return polygons(folder, "far.gpkg", rows)


def empty_gpkg(folder: Path) -> Path:
    """A GeoPackage whose polygon layer has a class field and no feature."""
    import geopandas as gpd

    path = folder / "empty.gpkg"
    frame = gpd.GeoDataFrame({"class_name": []}, geometry=gpd.GeoSeries([], crs=UTM),
                             crs=UTM)
    frame.to_file(path, layer="gt", driver="GPKG")
    return path


def single_class(folder: Path) -> Path:
    """Both halves labelled with the same class."""
    return polygons(folder, "one.gpkg", halves(class_name=["meadow", "meadow"]))


def one_pixel_class(folder: Path) -> Path:
    """The two halves plus a third class covering exactly one pixel centre."""
    from shapely.geometry import box

    x0, y0 = ORIGIN
    rows = halves(class_name=["meadow", "roof"])
    rows.append((box(x0 + 30 * 20 + 5, y0 - 30 * 21 + 5, x0 + 30 * 20 + 25, y0 - 30 * 20 - 5),
                 {"class_name": "pond"}))
    return polygons(folder, "tiny.gpkg", rows)


def overlapping(folder: Path) -> Path:
    """The two halves plus a 'roof' polygon covering part of the 'meadow' one."""
    from shapely.geometry import box

    x0, y0 = ORIGIN
    rows = halves(class_name=["meadow", "roof"])
    rows.append((box(x0 + 30 * 5, y0 - 30 * 15, x0 + 30 * 10, y0 - 30 * 10),
                 {"class_name": "roof"}))
    return polygons(folder, "overlap.gpkg", rows)


def random_bytes_shp(folder: Path) -> Path:
    """Random bytes under a Shapefile's name."""
    path = folder / "gt.shp"
    path.write_bytes(np.random.default_rng(1).bytes(2048))
    return path


# --------------------------------------------------------------------------- bad checkpoints


def truncated(model: Path, folder: Path) -> Path:
    """The first half of a good model file."""
    path = folder / "cut.safetensors"
    data = model.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def future_version(model: Path, folder: Path, version: int = 99) -> Path:
    """A good model relabelled with a format version this hsimap does not know."""
    import json

    from safetensors.torch import load_file, save_file

    from hsimap.checkpoint import read_metadata

    meta = read_metadata(model)
    meta["format_version"] = version
    path = folder / "future.safetensors"
    save_file(load_file(str(model)), str(path), metadata={"hsimap": json.dumps(meta)})
    return path


class _Payload:
    """Unpickling this calls ``os.system('touch MARKER')``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def pickle_payload(folder: Path, marker: Path, *, writer: str = "torch") -> Path:
    """A model file that creates ``marker`` if anyone unpickles it."""
    path = folder / f"evil_{writer}.safetensors"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(_Payload(str(marker))))
    elif writer == "torch":
        import torch

        torch.save({"x": _Payload(str(marker))}, path)
    else:  # a pickle behind a plausible safetensors header length
        body = pickle.dumps(_Payload(str(marker)))
        path.write_bytes(struct.pack("<Q", len(body)) + body)
    return path


# --------------------------------------------------------------------------- bad outputs


def special_file(folder: Path, kind: str) -> Path:
    """A non-regular file a user might name as an output.

    ``chardev``: a character device node like ``/dev/full`` (1, 7; needs root); ``fifo``: a
    named pipe; ``socket``: a Unix socket; ``folder``; ``link-to-device``: a symbolic link to
    a character device (to a FIFO when not root).
    """
    path = folder / f"{kind}.tif"
    if kind == "chardev":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 7))
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
        finally:
            sock.close()
    elif kind == "folder":
        path.mkdir()
    elif kind == "link-to-device":
        target = special_file(folder, "chardev" if os.geteuid() == 0 else "fifo")
        path.symlink_to(target)
    else:
        raise ValueError(kind)
    return path


# --------------------------------------------------------------------------- more bad cubes


def vrt_of(source: Path, path: Path, *, drop_nodata_of_band: int | None = None) -> Path:
    """A VRT over ``source`` (GDAL's own CreateCopy), optionally without one band's nodata."""
    import re

    from rasterio.shutil import copy

    copy(source, path, driver="VRT")
    if drop_nodata_of_band is not None:
        text = path.read_text(encoding="utf-8")
        band = re.compile(rf'(<VRTRasterBand [^>]*band="{drop_nodata_of_band}".*?)'
                          r"\s*<NoDataValue>[^<]*</NoDataValue>", re.S)
        text, n = band.subn(r"\1", text, count=1)
        assert n == 1, "the VRT had no NoDataValue to drop"
        path.write_text(text, encoding="utf-8")
    return path


def vrt_with_missing_source(cube: Path, folder: Path) -> tuple[Path, Path]:
    """A VRT whose source GeoTIFF was deleted; returns (vrt, the missing source)."""
    source = folder / "delivery_part1.tif"
    shutil.copy(cube, source)
    vrt = vrt_of(source, folder / "mosaic.vrt")
    source.unlink()
    return vrt, source


def damaged_blocks(cube: Path, folder: Path) -> Path:
    """A tiled, deflate-compressed GeoTIFF whose header opens but whose blocks are garbage."""
    path = folder / "damaged.tif"
    with rasterio.open(cube) as src:
        profile, data = src.profile, src.read()
        tags = [src.tags(i + 1) for i in range(src.count)]
    profile.update(compress="deflate", tiled=True, blockxsize=16, blockysize=16)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, t in enumerate(tags):
            dst.update_tags(i + 1, **t)
    raw = bytearray(path.read_bytes())
    raw[2000:len(raw) // 2] = b"\x55" * (len(raw) // 2 - 2000)
    path.write_bytes(bytes(raw))
    return path


def complex_cube(folder: Path) -> Path:
    """The synthetic cube as complex64 (a radar-like product, not reflectance)."""
    path = folder / "slc.tif"
    write_cube(path, dtype="complex64")
    return path


def cube_with_an_empty_band(cube: Path, folder: Path, band: int) -> Path:
    """A copy of ``cube`` whose 1-based ``band`` holds only the nodata value."""
    path = folder / f"band{band}_empty.tif"
    shutil.copy(cube, path)
    with rasterio.open(path, "r+") as dst:
        dst.write(np.full((dst.height, dst.width), dst.nodata, dtype="float32"), band)
    return path


def zipped(folder: Path, name: str, files: Iterable[Path]) -> Path:
    """A ZIP archive holding ``files`` (with their companions: .shp's .dbf, .shx, .prj)."""
    path = folder / name
    with zipfile.ZipFile(path, "w") as zf:
        for f in files:
            for part in sorted(f.parent.glob(f.stem + ".*")):
                if part.suffix != ".zip":
                    zf.write(part, part.name)
    return path


# --------------------------------------------------------------------------- resources, codes


def huge_vrt(cube: Path, folder: Path, *, size: int = 70000) -> Path:
    """A VRT whose header says ``size`` x ``size`` px, all of it over the small ``cube``
    (its pixels in the top-left corner, nothing elsewhere): opens in milliseconds, would
    take hundreds of GB to read whole."""
    with rasterio.open(cube) as src:
        count, height, width, nodata = src.count, src.height, src.width, src.nodata
        crs, transform = src.crs.to_wkt(), src.transform
    bands = "".join(
        f'<VRTRasterBand dataType="Float32" band="{b}"><NoDataValue>{nodata}</NoDataValue>'
        f'<SimpleSource><SourceFilename relativeToVRT="0">{cube}</SourceFilename>'
        f"<SourceBand>{b}</SourceBand>"
        f'<SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>'
        f'<DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/></SimpleSource>'
        "</VRTRasterBand>" for b in range(1, count + 1))
    geo = ", ".join(repr(v) for v in transform.to_gdal())
    path = folder / "huge.vrt"
    path.write_text(f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>{crs}</SRS>'
                    f"<GeoTransform>{geo}</GeoTransform>{bands}</VRTDataset>\n",
                    encoding="utf-8")
    return path


def edited_model(model: Path, folder: Path, name: str, *, meta_edit=None,
                 tensor_edit=None) -> Path:
    """A copy of a good model whose JSON metadata and/or tensors were edited by hand
    (``meta_edit(meta)`` and ``tensor_edit(tensors)`` change their argument in place)."""
    import json

    from safetensors.torch import load_file, save_file

    from hsimap.checkpoint import META_KEY, read_metadata

    meta = read_metadata(model)
    tensors = load_file(str(model))
    if meta_edit is not None:
        meta_edit(meta)
    if tensor_edit is not None:
        tensor_edit(tensors)
    path = folder / f"{name}.safetensors"
    save_file(tensors, str(path), metadata={META_KEY: json.dumps(meta)})
    return path


def label_raster(folder: Path, values: np.ndarray, *, name: str = "labels.tif",
                 dtype: str = "uint32") -> Path:
    """A single-band class raster on the synthetic cube's grid (0 = unlabelled)."""
    path = folder / name
    with rasterio.open(path, "w", driver="GTiff", height=values.shape[0],
                       width=values.shape[1], count=1, dtype=dtype, crs=UTM,
                       transform=TRANSFORM, nodata=0) as dst:
        dst.write(values.astype(dtype), 1)
    return path
