"""hsimap.evaluate and the files hsimap.report writes: a generated map vs polygons, rasters."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import scipy.io
from rasterio.transform import from_origin
from shapely.geometry import box

from hsimap.classes import ClassTable
from hsimap.errors import InputFileError, LabelError, OutputError
from hsimap.evaluate import evaluate_map
from hsimap.plots import find_series
from hsimap.report import OUTPUT_NAMES
from tests.chromium import assert_images_render, needs_chromium

CLASSES = ClassTable.from_names(["water", "forest", "urban"])
H, W, PX = 45, 70, 30.0  # not multiples of the 16 px blocks: edge blocks are partial
X0, Y0 = 500_000.0, 4_000_000.0
CRS = "EPSG:32633"


def _map_array() -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[:, :25] = 1
    m[:, 25:50] = 2
    m[:, 50:] = 3
    m[:4, :6] = 0  # nodata corner
    return m


def _write_map(path: Path, data: np.ndarray, *, tags: bool = True) -> Path:
    profile = dict(driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
                   dtype="uint8", crs=CRS, transform=from_origin(X0, Y0, PX, PX), nodata=0,
                   tiled=True, blockxsize=16, blockysize=16, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        if tags:
            dst.update_tags(HSIMAP_CLASSES=CLASSES.to_json())
            dst.write_colormap(1, {0: (0, 0, 0, 0), **{c.value: (*c.rgb(), 255)
                                                       for c in CLASSES}})
    return path


def _px_box(col0: int, row0: int, col1: int, row1: int):
    return box(X0 + col0 * PX, Y0 - row1 * PX, X0 + col1 * PX, Y0 - row0 * PX)


def _make_scene(tmp_path: Path) -> dict[str, Path]:
    map_path = _write_map(tmp_path / "map.tif", _map_array())
    # water polygon over the nodata corner: rows 1..10 x cols 2..10 = 9 x 8 = 72 px, of
    # which rows 1..3 x cols 2..5 (3 x 4 = 12) are nodata -> 60 px compared, all correct.
    # forest polygon straddling map classes 1|2 at col 25: cols 20..30 x rows 20..30:
    # 5 cols mapped water, 5 forest -> 50 + 50. urban polygon cols 55..65 x rows 30..40 on
    # urban: 100 correct.
    frame = gpd.GeoDataFrame(
        {"class_name": ["water", "forest", "urban"]},
        geometry=[_px_box(2, 1, 10, 10), _px_box(20, 20, 30, 30), _px_box(55, 30, 65, 40)],
        crs=CRS)
    ref = tmp_path / "reference.gpkg"
    frame.to_file(ref, driver="GPKG")
    log = tmp_path / "training_log.json"
    log.write_text(json.dumps({
        "denoiser": {"loss": [1.0, 0.6, 0.4, 0.3]},
        "classifier": {"epochs": [{"epoch": i, "loss": 1 / i, "val_acc": 0.5 + 0.1 * i}
                                  for i in range(1, 5)]},
        "config": {"lr": 0.001, "name": "x"}}))
    return {"map": map_path, "ref": ref, "log": log, "dir": tmp_path}


@pytest.fixture()
def scene(tmp_path: Path) -> dict[str, Path]:
    return _make_scene(tmp_path)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """One evaluation with a training log, shared by the tests that only read its outputs."""
    scene = _make_scene(tmp_path_factory.mktemp("evaluated"))
    return evaluate_map(scene["map"], scene["ref"], training_log=scene["log"],
                        out_dir=scene["dir"] / "ev")


def test_evaluate_counts_and_outputs(evaluated):
    r = evaluated
    assert r.classes.names == ["water", "forest", "urban"]
    assert r.accuracy.confusion == ((60, 0, 0), (50, 50, 0), (0, 0, 100))
    assert r.n_reference_on_nodata == 12
    assert r.accuracy.overall_accuracy == pytest.approx(210 / 260)
    m = _map_array()
    assert r.area_adjusted.mapped_pixels == tuple(int((m == v).sum()) for v in (1, 2, 3))
    assert r.area_adjusted.area_unit == "ha"
    assert r.area_adjusted.pixel_area == pytest.approx(0.09)
    assert sorted(p.name for p in r.files.values()) == sorted(OUTPUT_NAMES)
    assert all(p.is_file() for p in r.files.values())


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _same(text: str, value) -> bool:
    """A CSV cell holds exactly the JSON value (numbers compared exactly, null = empty)."""
    if value is None:
        return text == ""
    if isinstance(value, bool) or isinstance(value, str):
        return text == str(value)
    if isinstance(value, int):
        return int(text) == value
    return float(text) == value


def test_json_matches_csv(evaluated):
    r = evaluated
    doc = json.loads(r.files["metrics.json"].read_text())
    rows = _csv_rows(r.files["per_class.csv"])
    assert len(rows) == len(doc["per_class"]) == 3
    for row, rec in zip(rows, doc["per_class"], strict=True):
        assert list(row) == list(rec)
        for key, value in rec.items():
            assert _same(row[key], value), (key, row[key], value)
    cm_rows = _csv_rows(r.files["confusion_matrix.csv"])
    counts = doc["confusion_matrix"]["counts"]
    classes = doc["confusion_matrix"]["classes"]
    for i, row in enumerate(cm_rows):
        assert int(row["reference_value"]) == classes[i]
        assert [int(row[f"map_{v}"]) for v in classes] == counts[i]
    # and the per-class numbers agree with the sections they are taken from
    area = doc["area_adjusted"]
    assert [rec["adjusted_area_ha"] for rec in doc["per_class"]] == area["area"]
    assert [rec["producer_accuracy"] for rec in doc["per_class"]] == pytest.approx(
        [1.0, 0.5, 1.0])
    assert doc["n_reference_pixels"] == 260
    assert "Olofsson" in doc["protocol"]


def test_default_out_dir_overwrite_refused_then_allowed(scene):
    r = evaluate_map(scene["map"], scene["ref"])
    assert r.out_dir == scene["dir"] / "map_evaluation"
    assert "Training curves" not in r.report_path.read_text()  # no log given
    with pytest.raises(OutputError, match="--overwrite"):
        evaluate_map(scene["map"], scene["ref"])
    before = r.files["metrics.json"].stat().st_mtime_ns
    evaluate_map(scene["map"], scene["ref"], overwrite=True)
    assert r.files["metrics.json"].stat().st_mtime_ns >= before


def test_raster_reference_same_grid_and_mismatch(scene):
    ref = np.zeros((H, W), np.uint8)
    ref[10:20, 20:30] = 2          # 5 cols mapped water, 5 forest
    ref[0:2, 0:3] = 1              # on map nodata
    ref[30:35, 60:62] = 4          # a class the map does not have
    ref_path = _write_map(scene["dir"] / "ref.tif", ref, tags=False)
    r = evaluate_map(scene["map"], ref_path, out_dir=scene["dir"] / "ev")
    assert r.classes.values == [1, 2, 3, 4]
    assert r.classes.names[:3] == ["water", "forest", "urban"]
    assert r.accuracy.matrix[1].tolist() == [50, 50, 0, 0]
    assert r.accuracy.matrix[3].tolist() == [0, 0, 10, 0]
    assert r.n_reference_on_nodata == 6
    other = scene["dir"] / "other.tif"
    with rasterio.open(other, "w", driver="GTiff", height=H, width=W - 1, count=1,
                       dtype="uint8", crs=CRS, transform=from_origin(X0, Y0, PX, PX)) as dst:
        dst.write(ref[:, :-1], 1)
    with pytest.raises(LabelError, match="differs from the map"):
        evaluate_map(scene["map"], other, out_dir=scene["dir"] / "ev2")


def test_bad_inputs_give_clear_errors(scene):
    with pytest.raises(InputFileError, match="not found"):
        evaluate_map(scene["dir"] / "nope.tif", scene["ref"], out_dir=scene["dir"] / "e")
    cube = scene["dir"] / "cube.tif"
    with rasterio.open(cube, "w", driver="GTiff", height=4, width=4, count=3,
                       dtype="float32", crs=CRS, transform=from_origin(X0, Y0, PX, PX)) as dst:
        dst.write(np.ones((3, 4, 4), np.float32))
    with pytest.raises(InputFileError, match="not a class map"):
        evaluate_map(cube, scene["ref"], out_dir=scene["dir"] / "e")
    bad_log = scene["dir"] / "log.json"
    bad_log.write_text("{not json")
    with pytest.raises(InputFileError, match="not valid JSON"):
        evaluate_map(scene["map"], scene["ref"], training_log=bad_log, out_dir=scene["dir"] / "e")


def test_find_series_is_tolerant():
    doc = {"denoiser": {"loss": [3, 2, 1], "steps": [1, 2, 3]},
           "classifier": {"epochs": [{"epoch": 1, "loss": 0.9, "val_acc": 0.4},
                                     {"epoch": 2, "loss": 0.5, "val_acc": 0.6},
                                     {"epoch": 3, "loss": 0.4}]},
           "flags": [True, False], "one": [1.0], "text": ["a", "b"], "n": 5}
    s = find_series(doc)
    assert s["denoiser.loss"] == [3.0, 2.0, 1.0]
    assert s["classifier.epochs[*].loss"] == [0.9, 0.5, 0.4]
    assert s["classifier.epochs[*].val_acc"][:2] == [0.4, 0.6]
    assert set(s) == {"denoiser.loss", "classifier.epochs[*].loss",
                      "classifier.epochs[*].val_acc"}
    assert find_series([1, 2, 3]) == {"series": [1.0, 2.0, 3.0]}
    assert find_series("junk") == {}


def test_html_is_self_contained(evaluated):
    r = evaluated
    text = r.report_path.read_text()
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == 3  # quick-look, confusion matrix, training curves
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in text and "http://" not in text and "https://" not in text
    for name in ("water", "forest", "urban", "Protocol", "Olofsson", "Training curves"):
        assert name in text


@needs_chromium
def test_html_renders_in_headless_chromium(evaluated, tmp_path):
    assert_images_render(evaluated.report_path, tmp_path, n_images=3)


SALINAS_A = Path(__file__).parent / "data" / "salinas_a"


@pytest.mark.skipif(not (SALINAS_A / "SalinasA_gt.mat").exists(), reason="Salinas-A missing")
def test_evaluate_salinas_a_ground_truth_map(tmp_path):
    """datasets convert -> a map written with hsimap.geotiff -> evaluate against the GPKG."""
    from hsimap.cube import Grid
    from hsimap.datasets import convert_mat
    from hsimap.geotiff import class_map_profile, tag_class_map

    conv = convert_mat(SALINAS_A / "SalinasA_corrected.mat", SALINAS_A / "SalinasA_gt.mat",
                       tmp_path / "scene")
    table = conv.dataset.class_table
    with rasterio.open(conv.image) as src:
        grid = Grid(src.height, src.width, src.transform, src.crs)
    gt = scipy.io.loadmat(SALINAS_A / "SalinasA_gt.mat")["salinasA_gt"].astype(np.uint8)
    predicted = gt.copy()
    predicted[predicted == 0] = 12  # unlabelled ground mapped as a class (counts for areas)
    band = slice(60, 70)
    predicted[band][gt[band] == 10] = 11  # a band of errors: Corn mapped as Lettuce 4wk
    map_path = tmp_path / "map.tif"
    with rasterio.open(map_path, "w", **class_map_profile(grid, table)) as dst:
        dst.write(predicted, 1)
        tag_class_map(dst, table)
    r = evaluate_map(map_path, conv.labels, out_dir=tmp_path / "ev")
    n_err = int((gt[band] == 10).sum())
    assert n_err > 0
    assert r.classes.values == [1, 10, 11, 12, 13, 14]
    assert r.classes.names == [c.name for c in conv.dataset.classes]
    assert r.accuracy.n_samples == 5348
    assert r.accuracy.matrix[1, 2] == n_err
    assert r.accuracy.overall_accuracy == pytest.approx((5348 - n_err) / 5348)
    assert sum(r.area_adjusted.mapped_pixels) == 83 * 86


def test_unsampled_map_class_is_reported_not_fatal(scene):
    only_water = gpd.GeoDataFrame({"class_name": ["water"]}, geometry=[_px_box(10, 10, 20, 20)],
                                  crs=CRS)
    ref = scene["dir"] / "water_only.gpkg"
    only_water.to_file(ref, driver="GPKG")
    r = evaluate_map(scene["map"], ref, out_dir=scene["dir"] / "ev")
    assert r.accuracy.overall_accuracy == 1.0
    doc = json.loads(r.files["metrics.json"].read_text())
    assert doc["area_adjusted"]["overall_accuracy"] is None  # forest/urban strata unsampled
    assert doc["per_class"][1]["producer_accuracy"] is None
    assert "have mapped area but no reference pixel" in r.report_path.read_text()
