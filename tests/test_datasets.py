"""Tests of hsimap.datasets: the registry and .mat -> GeoTIFF + GPKG conversion (Salinas-A)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import scipy.io
from rasterio.features import rasterize

from hsimap.datasets import (
    DATASETS,
    GEOREFERENCE_TAG,
    convert_mat,
    get_dataset,
    mat_variables,
)
from hsimap.errors import InputFileError, LabelError, OutputError

DATA = Path(__file__).parent / "data" / "salinas_a"
CUBE = DATA / "SalinasA_corrected.mat"
GT = DATA / "SalinasA_gt.mat"
SALINAS_A_COUNTS = {1: 391, 10: 1343, 11: 616, 12: 1525, 13: 674, 14: 799}

needs_salinas = pytest.mark.skipif(not (CUBE.exists() and GT.exists()),
                                   reason="tests/data/salinas_a/*.mat missing")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("salinas_a")
    if not (CUBE.exists() and GT.exists()):
        pytest.skip("tests/data/salinas_a/*.mat missing")
    return convert_mat(CUBE, GT, out)


def test_registry_is_consistent():
    names = [d.name for d in DATASETS]
    assert len(set(names)) == len(names)
    for ds in DATASETS:
        assert len({c.value for c in ds.classes}) == len(ds.classes)
        assert len(ds.class_table) == len(ds.classes)  # valid: positive, unique values
        assert ds.gsd > 0 and ds.bands > 0
        assert ds.cube_sha256 is None or len(ds.cube_sha256) == 64
    assert len(get_dataset("indian_pines").classes) == 16
    assert get_dataset("indian_pines").classes[1].name == "Corn-notill"
    assert get_dataset("indian_pines").labelled_pixels == 10_249
    assert [c.name for c in get_dataset("pavia_university").classes] == [
        "Asphalt", "Meadows", "Gravel", "Trees", "Painted metal sheets", "Bare Soil", "Bitumen",
        "Self-Blocking Bricks", "Shadows"]
    assert get_dataset("pavia_university").labelled_pixels == 42_776
    assert get_dataset("salinas").labelled_pixels == 54_129
    assert get_dataset("salinas").classes[0].name == "Brocoli_green_weeds_1"
    assert len(get_dataset("ksc").classes) == 13 and get_dataset("ksc").labelled_pixels == 5_211
    assert len(get_dataset("botswana").classes) == 14
    assert get_dataset("botswana").labelled_pixels == 3_248
    sa = get_dataset("SALINAS_A")
    assert {c.value: c.pixels for c in sa.classes} == SALINAS_A_COUNTS
    salinas_names = {c.value: c.name for c in get_dataset("salinas").classes}
    assert all(salinas_names[c.value] == c.name for c in sa.classes)  # global Salinas ids
    with pytest.raises(LabelError, match="known: indian_pines"):
        get_dataset("houston")


@needs_salinas
def test_mat_variables():
    assert mat_variables(CUBE) == {"salinasA_corrected": (83, 86, 204)}
    assert mat_variables(GT) == {"salinasA_gt": (83, 86)}


def test_convert_salinas_a_image(converted):
    assert converted.dataset.name == "salinas_a"
    assert converted.image.name == "salinas_a.tif"
    source = scipy.io.loadmat(CUBE)["salinasA_corrected"]
    with rasterio.open(converted.image) as src:
        assert (src.count, src.height, src.width) == (204, 83, 86)
        assert src.dtypes[0] == "int16"
        assert src.interleaving.name == "band"
        assert src.profile["tiled"] and src.compression.name == "deflate"
        assert src.crs.to_epsg() == 32610
        assert src.transform.a == pytest.approx(3.7) and src.transform.e == pytest.approx(-3.7)
        assert "nominal georeference, not real coordinates" in src.tags()[GEOREFERENCE_TAG]
        data = src.read()
    np.testing.assert_array_equal(data, np.moveaxis(source, -1, 0))


def test_convert_salinas_a_polygons_rasterize_back(converted):
    frame = gpd.read_file(converted.labels)
    assert {"class_id", "class_name", "poly_id"} <= set(frame.columns)
    assert frame.crs.to_epsg() == 32610
    assert sorted(frame["poly_id"]) == list(range(1, len(frame) + 1))
    assert len(frame) == converted.n_polygons
    names = dict(zip(frame["class_id"], frame["class_name"], strict=True))
    assert names == {1: "Brocoli_green_weeds_1", 10: "Corn_senesced_green_weeds",
                     11: "Lettuce_romaine_4wk", 12: "Lettuce_romaine_5wk",
                     13: "Lettuce_romaine_6wk", 14: "Lettuce_romaine_7wk"}
    with rasterio.open(converted.image) as src:
        back = rasterize(zip(frame.geometry, frame["class_id"], strict=True),
                         out_shape=(src.height, src.width), transform=src.transform, fill=0,
                         dtype="int32")
    values, counts = np.unique(back[back > 0], return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == SALINAS_A_COUNTS
    np.testing.assert_array_equal(back, scipy.io.loadmat(GT)["salinasA_gt"])


def test_convert_sidecars(converted):
    prov = json.loads(converted.provenance.read_text())
    assert prov["dataset"]["name"] == "salinas_a"
    assert prov["source_files"]["cube"]["sha256_matches_registry"] is True
    assert prov["source_files"]["gt"]["sha256_matches_registry"] is True
    assert "not real coordinates" in prov["georeference"]["note"]
    assert prov["ground_truth"]["pixels_per_class"] == {str(k): v
                                                       for k, v in SALINAS_A_COUNTS.items()}
    assert "not real coordinates" in converted.readme.read_text()


def test_convert_refuses_to_overwrite(converted):
    out = converted.image.parent
    with pytest.raises(OutputError, match="--overwrite"):
        convert_mat(CUBE, GT, out)


def test_unknown_mat_lists_keys_and_custom_keys_work(tmp_path):
    rng = np.random.default_rng(0)
    cube, gt = tmp_path / "scene.mat", tmp_path / "scene_gt.mat"
    scipy.io.savemat(cube, {"foo": rng.random((6, 5, 7)), "meta": np.arange(3)})
    labels = np.zeros((6, 5), np.uint8)
    labels[1:3, 1:3] = 2
    labels[4:, :] = 5
    scipy.io.savemat(gt, {"bar": labels})
    with pytest.raises(InputFileError) as info:
        convert_mat(cube, gt, tmp_path / "out")
    message = str(info.value)
    assert "foo 6x5x7" in message and "bar 6x5" in message
    assert "--cube-key" in message and "--gt-key" in message
    with pytest.raises(InputFileError, match="has no variable 'nope'"):
        convert_mat(cube, gt, tmp_path / "out", cube_key="nope", gt_key="bar")
    r = convert_mat(cube, gt, tmp_path / "out", cube_key="foo", gt_key="bar", gsd=2.0)
    assert r.image.name == "scene.tif"
    with rasterio.open(r.image) as src:
        assert (src.count, src.height, src.width, src.dtypes[0]) == (7, 6, 5, "float32")
        assert src.transform.a == 2.0
    frame = gpd.read_file(r.labels)
    assert sorted(set(frame["class_name"])) == ["class 2", "class 5"]


@needs_salinas
def test_swapped_files_and_v73_without_h5py(tmp_path, monkeypatch):
    with pytest.raises(InputFileError, match="wrong order"):
        convert_mat(GT, CUBE, tmp_path / "out")
    fake = tmp_path / "v73.mat"
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5"
    fake.write_bytes(header.ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + bytes(64))
    monkeypatch.setitem(sys.modules, "h5py", None)  # an environment without h5py
    with pytest.raises(InputFileError, match="pip install h5py"):
        convert_mat(fake, GT, tmp_path / "out")


def test_not_a_mat_file(tmp_path):
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"hello world" * 20)
    with pytest.raises(InputFileError, match="not a MATLAB"):
        mat_variables(junk)
    with pytest.raises(InputFileError, match="not found"):
        mat_variables(tmp_path / "missing.mat")


@needs_salinas
def test_v73_file_read_with_h5py(tmp_path):
    h5py = pytest.importorskip("h5py")
    cube = scipy.io.loadmat(CUBE)["salinasA_corrected"]
    path = tmp_path / "SalinasA_corrected_v73.mat"
    with h5py.File(path, "w", userblock_size=512) as f:  # MATLAB layout: HDF5 + 512 B header
        f.create_dataset("salinasA_corrected", data=cube.T)  # column-major -> reversed axes
    with path.open("r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116, b" "))
    assert mat_variables(path) == {"salinasA_corrected": (83, 86, 204)}
    r = convert_mat(path, GT, tmp_path / "out")
    with rasterio.open(r.image) as src:
        np.testing.assert_array_equal(src.read(), np.moveaxis(cube, -1, 0))
