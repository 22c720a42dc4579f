"""Tests of hsimap.datasets: the registry and .mat -> GeoTIFF + GPKG conversion (Salinas-A,
and a 24 x 24 px crop of the 8-bit Indian Pines copy with its -1 = unlabelled ground truth)."""

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
    detect_dataset,
    get_dataset,
    mat_variables,
)
from hsimap.errors import InputFileError, LabelError, OutputError

DATA = Path(__file__).parent / "data" / "salinas_a"
CUBE = DATA / "SalinasA_corrected.mat"
GT = DATA / "SalinasA_gt.mat"
SALINAS_A_COUNTS = {1: 391, 10: 1343, 11: 616, 12: 1525, 13: 674, 14: 799}

IP8 = Path(__file__).parent / "data" / "indian_pines_8bit"
IP8_CUBE = IP8 / "IP_200_M.mat"
IP8_GT = IP8 / "Label_M_IP_16.mat"
# label_M[55:79, 16:40] of the full file (tests/data/indian_pines_8bit/README.md)
IP8_CROP_COUNTS = {4: 60, 5: 24, 7: 42, 8: 185, 10: 20, 11: 24, 12: 88}
IP8_CROP_UNLABELLED = 133
IP8_NAMES = ("Alfalfa", "Buildings-Grass-Trees-Drives", "Corn", "Corn-mintill", "Corn-notill",
             "Grass-pasture-mowed", "Grass-pasture", "Grass-trees", "Hay-windrowed", "Oats",
             "Soybean-clean", "Soybean-mintill", "Soybean-notill", "Stone-Steel-Towers", "Wheat",
             "Woods")

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


# ----------------------------------------------------------------- Indian Pines, 8-bit copy


@pytest.fixture(scope="module")
def ip8(tmp_path_factory):
    return convert_mat(IP8_CUBE, IP8_GT, tmp_path_factory.mktemp("ip8"))


def test_indian_pines_8bit_registry():
    ds = get_dataset("indian_pines_8bit")
    assert (ds.cube_file, ds.cube_key, ds.gt_file, ds.gt_key) == (
        "IP_200_M.mat", "data_M", "Label_M_IP_16.mat", "label_M")
    assert (ds.shape, ds.bands, ds.unlabelled) == ((145, 145), 200, -1)
    assert tuple(c.name for c in ds.classes) == IP8_NAMES
    assert [c.value for c in ds.classes] == list(range(1, 17))
    assert ds.labelled_pixels == 10_366
    assert "hszhaohs/SSGA" in ds.source and "f334299d149650303d8f22746bbbeebd819fc8f0" in ds.source
    assert "MIT" in ds.source
    # the same 16 classes as the EHU Indian Pines, numbered differently
    assert set(IP8_NAMES) == {c.name for c in get_dataset("indian_pines").classes}
    assert {c.name: c.value for c in get_dataset("indian_pines").classes}["Woods"] == 14
    assert {c.name: c.value for c in ds.classes}["Woods"] == 16


def test_indian_pines_8bit_detection():
    full = {"data_M": (145, 145, 200)}, {"label_M": (145, 145)}
    assert detect_dataset(*full).name == "indian_pines_8bit"
    assert detect_dataset({"data_M": (24, 24, 200)}, {"label_M": (24, 24)}).name == (
        "indian_pines_8bit")  # a crop of the scene
    assert detect_dataset({"data_M": (24, 24, 199)}, {"label_M": (24, 24)}) is None
    assert detect_dataset({"data_M": (24, 24, 200)}, {"label_M": (24, 23)}) is None
    assert detect_dataset({"data_M": (146, 145, 200)}, {"label_M": (146, 145)}) is None
    assert mat_variables(IP8_CUBE) == {"data_M": (24, 24, 200)}
    assert mat_variables(IP8_GT) == {"label_M": (24, 24)}


def test_indian_pines_8bit_crop_is_the_documented_one():
    cube = scipy.io.loadmat(IP8_CUBE)["data_M"]
    gt = scipy.io.loadmat(IP8_GT)["label_M"]
    assert (cube.shape, cube.dtype, gt.shape, gt.dtype) == (
        (24, 24, 200), np.uint8, (24, 24), np.int16)
    values, counts = np.unique(gt, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == {
        -1: IP8_CROP_UNLABELLED, **IP8_CROP_COUNTS}
    readme = (IP8 / "README.md").read_text()
    assert "f334299d149650303d8f22746bbbeebd819fc8f0" in readme
    assert (IP8 / "LICENSE.SSGA").read_text().startswith("MIT License")


def test_convert_indian_pines_8bit_image(ip8):
    assert ip8.dataset.name == "indian_pines_8bit" and ip8.sub_scene
    assert ip8.image.name == "indian_pines_8bit.tif"
    source = scipy.io.loadmat(IP8_CUBE)["data_M"]
    with rasterio.open(ip8.image) as src:
        assert (src.count, src.height, src.width) == (200, 24, 24)
        assert set(src.dtypes) == {"uint8"}
        assert src.crs.to_epsg() == 32616
        assert src.transform.a == 20.0 and src.transform.e == -20.0
        tags = src.tags()
        assert "nominal georeference, not real coordinates" in tags[GEOREFERENCE_TAG]
        assert tags["HSIMAP_DATASET"] == "indian_pines_8bit"
        assert "hszhaohs/SSGA" in tags["HSIMAP_ORIGIN"]
        data = src.read()
    np.testing.assert_array_equal(data, np.moveaxis(source, -1, 0))


def test_convert_indian_pines_8bit_minus_one_is_unlabelled(ip8):
    gt = scipy.io.loadmat(IP8_GT)["label_M"]
    frame = gpd.read_file(ip8.labels)
    assert frame.crs.to_epsg() == 32616
    assert len(frame) == ip8.n_polygons == 8
    assert (frame["class_id"] > 0).all()
    names = dict(zip(frame["class_id"], frame["class_name"], strict=True))
    assert names == {v: IP8_NAMES[v - 1] for v in IP8_CROP_COUNTS}
    assert names[10] == "Oats" and names[12] == "Soybean-mintill"
    with rasterio.open(ip8.image) as src:
        back = rasterize(zip(frame.geometry, frame["class_id"], strict=True),
                         out_shape=(src.height, src.width), transform=src.transform, fill=0,
                         dtype="int32")
    np.testing.assert_array_equal(back, np.where(gt == -1, 0, gt))  # -1 -> no polygon
    assert ip8.unlabelled_pixels == IP8_CROP_UNLABELLED


def test_convert_indian_pines_8bit_sidecars(ip8):
    prov = json.loads(ip8.provenance.read_text())
    assert prov["dataset"]["name"] == "indian_pines_8bit"
    assert prov["dataset"]["unlabelled_value"] == -1
    assert "f334299d149650303d8f22746bbbeebd819fc8f0" in prov["origin_of_files"]
    assert prov["sub_scene"]["shape"] == [24, 24] and prov["sub_scene"]["of"] == [145, 145]
    for record in prov["source_files"].values():  # a crop: no comparison with the full files
        assert record["sha256_matches_registry"] is None
        assert record["registry_sha256"] is not None
    assert prov["ground_truth"]["unlabelled_source_values"] == [-1, 0]
    assert prov["ground_truth"]["unlabelled_pixels"] == IP8_CROP_UNLABELLED
    assert prov["ground_truth"]["pixels_per_class"] == {str(k): v
                                                       for k, v in IP8_CROP_COUNTS.items()}
    assert "not real coordinates" in prov["georeference"]["note"]
    readme = ip8.readme.read_text()
    assert "not real coordinates" in readme and "24 x 24 px crop" in readme
    assert "hszhaohs/SSGA" in readme and "133 unlabelled pixels" in readme


def test_convert_indian_pines_8bit_labels_read_as_training_input(ip8):
    from hsimap.cube import open_cube
    from hsimap.labels import read_labels

    labels = read_labels(ip8.labels, grid=open_cube(ip8.image).grid)
    assert labels.pixel_counts() == IP8_CROP_COUNTS
    assert {c.value: c.name for c in labels.classes} == {v: IP8_NAMES[v - 1]
                                                         for v in IP8_CROP_COUNTS}
    gt = scipy.io.loadmat(IP8_GT)["label_M"]
    assert (labels.values[gt == -1] == 0).all() and (labels.values[gt > 0] > 0).all()


def test_indian_pines_8bit_bad_ground_truth(tmp_path):
    gt = scipy.io.loadmat(IP8_GT)["label_M"].copy()
    gt[0, 0] = -2  # neither unlabelled (-1) nor a class
    bad = tmp_path / "Label_M_IP_16.mat"
    scipy.io.savemat(bad, {"label_M": gt})
    with pytest.raises(LabelError, match=r"after -1 = unlabelled.*-2"):
        convert_mat(IP8_CUBE, bad, tmp_path / "out")
    gt[0, 0] = 17  # not one of the 16 classes
    scipy.io.savemat(bad, {"label_M": gt})
    with pytest.raises(LabelError, match=r"ids \[17\]"):
        convert_mat(IP8_CUBE, bad, tmp_path / "out")
