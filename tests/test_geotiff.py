"""A predicted map carries its legend: what GDAL and QGIS can read from the .tif alone and
from each combination of its sidecars, and never a class for nodata (value 0)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from hsimap.classes import ClassInfo, ClassTable
from hsimap.cli.main import cli
from hsimap.geotiff import CLASSES_TAG
from tests.gdalinfo import gdalinfo

NAMES = ["roof", "pavement", "low vegetation", "tree", "soil", "water"]


@pytest.fixture(scope="module")
def written_map(tmp_path_factory: pytest.TempPathFactory, sample_cube: Path,
                mlp_model: Path) -> Path:
    out = tmp_path_factory.mktemp("legend") / "map.tif"
    r = CliRunner().invoke(cli, ["predict", str(sample_cube), "-o", str(out), "--model",
                                 str(mlp_model)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def _copy(map_path: Path, dest: Path, *sidecars: str) -> Path:
    """The map alone in ``dest``, with the named sidecars (``aux``, ``qml``) beside it."""
    dest.mkdir()
    shutil.copy(map_path, dest / "map.tif")
    if "aux" in sidecars:
        shutil.copy(f"{map_path}.aux.xml", dest / "map.tif.aux.xml")
    if "qml" in sidecars:
        shutil.copy(map_path.with_suffix(".qml"), dest / "map.qml")
    return dest / "map.tif"


def _qml_classes(qml: Path) -> dict[int, tuple[str, str]]:
    return {int(v): (c, label) for v, c, label in re.findall(
        r'<paletteEntry value="(\d+)" color="(#[0-9a-f]{6})" alpha="255" label="([^"]*)"/>',
        qml.read_text())}


def _legend(path: Path) -> dict[int, str]:
    """Every class a GDAL/QGIS reader can name for the map as it lies on disk (value: name)."""
    info = gdalinfo(path)
    band = info["bands"][0]
    legend = {v: n for v, n in enumerate(band.get("categories", [])) if n}
    rat = info.get("rat") or band.get("rat")
    if rat:
        legend.update({int(row["f"][0]): str(row["f"][1]) for row in rat["row"]})
    with rasterio.open(path) as src:
        legend.update({int(k[6:]): v for k, v in src.tags(1).items() if k.startswith("CLASS_")})
    qml = path.with_suffix(".qml")
    if qml.exists():
        legend.update({v: label for v, (_, label) in _qml_classes(qml).items()})
    return legend


def _check_tif_itself(path: Path) -> ClassTable:
    """What the .tif holds by itself: nodata 0, colour table, class names as GDAL metadata."""
    with rasterio.open(path) as src:
        classes = ClassTable.from_json(src.tags()[CLASSES_TAG])  # the HSIMAP_CLASSES item
        assert classes.names == NAMES and 0 not in classes.values
        assert src.nodata == 0 and src.dtypes[0] == "uint8"
        cmap = src.colormap(1)
        assert cmap[0][3] == 0  # nodata: transparent
        for c in classes:
            assert cmap[c.value] == (*c.rgb(), 255)
        assert src.tags(1) == {f"CLASS_{c.value}": c.name for c in classes}
        values = set(np.unique(src.read(1)).tolist())
    assert 0 in values and values - {0} <= set(classes.values)
    info = gdalinfo(path)
    band = info["bands"][0]
    assert band["noDataValue"] == 0 and band["colorInterpretation"] == "Palette"
    assert band["colorTable"]["entries"][0] == [0, 0, 0, 0]
    assert band["metadata"][""]["CLASS_4"] == "tree"  # gdalinfo shows the names
    return classes


def test_tif_alone_names_its_classes_and_no_nodata_class(written_map: Path,
                                                        tmp_path: Path) -> None:
    path = _copy(written_map, tmp_path / "alone")
    info = gdalinfo(path)
    assert [Path(f).name for f in info["files"]] == ["map.tif"]  # no sidecar was read
    assert "categories" not in info["bands"][0] and not info.get("rat")
    classes = _check_tif_itself(path)
    assert _legend(path) == {c.value: c.name for c in classes}


def test_tif_with_aux_xml_has_categories_and_attribute_table_without_nodata(
        written_map: Path, tmp_path: Path) -> None:
    path = _copy(written_map, tmp_path / "aux", "aux")
    classes = _check_tif_itself(path)
    info = gdalinfo(path)
    assert sorted(Path(f).name for f in info["files"]) == ["map.tif", "map.tif.aux.xml"]
    band = info["bands"][0]
    assert band["categories"] == ["", *NAMES]  # indexed by value; 0 (nodata) has no name
    rat = info.get("rat") or band.get("rat")
    assert rat["tableType"] == "thematic"
    assert [(f["name"], f["usage"]) for f in rat["fieldDefn"]] == [
        ("Value", 5), ("Class", 2), ("Red", 6), ("Green", 7), ("Blue", 8), ("Alpha", 9)]
    rows = [row["f"] for row in rat["row"]]
    assert rows == [[c.value, c.name, *c.rgb(), 255] for c in classes]  # no row for 0
    assert _legend(path) == {c.value: c.name for c in classes}


def test_tif_with_qml_lists_classes_only(written_map: Path, tmp_path: Path) -> None:
    path = _copy(written_map, tmp_path / "qml", "qml")
    classes = _check_tif_itself(path)
    assert "categories" not in gdalinfo(path)["bands"][0]
    qml = _qml_classes(path.with_suffix(".qml"))
    assert qml == {c.value: (c.color, c.name) for c in classes}
    assert _legend(path) == {c.value: c.name for c in classes}


def test_map_as_written_with_both_sidecars_agrees_everywhere(written_map: Path) -> None:
    classes = _check_tif_itself(written_map)
    assert _legend(written_map) == {c.value: c.name for c in classes}
    assert gdalinfo(written_map)["bands"][0]["categories"][1:] == NAMES


def test_attribute_table_escapes_names_sorts_by_value_and_skips_gaps(tmp_path: Path) -> None:
    """Codes 2, 7 given out of order, a name with XML characters: GDAL reads them back."""
    from hsimap.geotiff import pam_aux_xml

    classes = ClassTable((ClassInfo(7, "water & <wet>", "#0064ff"),
                          ClassInfo(2, 'tree "T"', "#267300")))
    path = tmp_path / "m.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=2, count=1, dtype="uint8",
                       nodata=0, crs="EPSG:32633",
                       transform=from_origin(364095, 5809965, 30, 30)) as dst:
        dst.write(np.array([[0, 2, 7, 7], [2, 2, 0, 7]], np.uint8), 1)
    Path(f"{path}.aux.xml").write_text(pam_aux_xml(classes))
    band = gdalinfo(path)["bands"][0]
    assert band["categories"] == ["", "", 'tree "T"', "", "", "", "", "water & <wet>"]
    rat = gdalinfo(path).get("rat") or band.get("rat")
    assert [row["f"] for row in rat["row"]] == [[2, 'tree "T"', 0x26, 0x73, 0, 255],
                                                [7, "water & <wet>", 0, 0x64, 0xff, 255]]
