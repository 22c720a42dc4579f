"""Several scenes (issue 14, item 7): train on (cube, labels) pairs, predict a batch.

The scenes are two windows cut from the bundled EnMAP sample (rasterio windows), each with
the sample polygons that touch it: scene A keeps the integer codes (class_id, with names),
scene B has the class names only, listed in reverse order, so its text classes must be
matched to A's codes by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window, bounds
from shapely.geometry import box

from hsimap.checkpoint import load_checkpoint
from hsimap.cli.main import cli
from hsimap.cube import open_cube
from hsimap.labels import read_labels

from .fixtures import write_cube, write_polygons

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
WINDOWS = {"a": Window(20, 20, 130, 64), "b": Window(20, 110, 130, 64)}


def _cut(src: rasterio.DatasetReader, win: Window, path: Path, *, bands: int | None = None,
         shift_nm: float = 0.0) -> Path:
    count = bands or src.count
    profile = src.profile | dict(height=win.height, width=win.width, count=count,
                                 transform=src.window_transform(win))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(src.read(list(range(1, count + 1)), window=win))
        for i in range(count):
            tags = src.tags(i + 1)
            tags["wavelength"] = f"{float(tags['wavelength']) + shift_nm:.3f}"
            dst.update_tags(i + 1, **tags)
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("scenes")
    gt = gpd.read_file(SAMPLE / "potsdam_landcover.shp")
    with rasterio.open(SAMPLE / "potsdam_enmap.tif") as src:
        for name, win in WINDOWS.items():
            _cut(src, win, d / f"{name}.tif")
            part = gt[gt.intersects(box(*bounds(win, src.transform)))]
            if name == "a":
                part[["class_id", "class_name", "geometry"]].to_file(d / "a.gpkg")
            else:  # names only, in reverse order of appearance
                part[["class_name", "geometry"]].iloc[::-1].to_file(d / "b.gpkg")
        _cut(src, WINDOWS["b"], d / "b_200bands.tif", bands=200)
        _cut(src, WINDOWS["b"], d / "b_shifted.tif", shift_nm=5.0)
    (d / "c.toml").write_text("[config]\nepochs = 3\n")
    return {"dir": d, "a": d / "a.tif", "b": d / "b.tif", "la": d / "a.gpkg",
            "lb": d / "b.gpkg", "config": d / "c.toml"}


def _train(scenes: dict[str, Path], model: Path, *scene_args: str) -> str:
    r = CliRunner().invoke(cli, ["train", *scene_args, "--model-type", "spectral-mlp",
                                 "--config", str(scenes["config"]), "--model", str(model)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def two_scene_model(scenes: dict[str, Path]) -> Path:
    model = scenes["dir"] / "m.safetensors"
    out = _train(scenes, model, "--cube", str(scenes["a"]), "--labels", str(scenes["la"]),
                 "--cube", str(scenes["b"]), "--labels", str(scenes["lb"]))
    assert "trained on 2 scenes" in out
    return model


def _counts_by_name(cube: Path, labels: Path) -> dict[str, int]:
    lab = read_labels(labels, grid=open_cube(cube).grid)
    return {c.name: n for c, n in zip(lab.classes, lab.pixel_counts().values(), strict=True)}


def test_two_scenes_pool_labels_classes_and_normalisation(scenes, two_scene_model: Path):
    log = json.loads(two_scene_model.with_name("m.log.json").read_text())
    training = log["meta"]["training"]
    assert [(s["cube"], s["labels"]) for s in training["scenes"]] == [
        (str(scenes["a"]), str(scenes["la"])), (str(scenes["b"]), str(scenes["lb"]))]
    # pooled pixel counts are the sum of each scene's own labels, matched by class name
    a, b = (_counts_by_name(scenes[c], scenes[lab]) for c, lab in (("a", "la"), ("b", "lb")))
    assert set(a) != set(b)  # water is only in scene B
    expected = {n: a.get(n, 0) + b.get(n, 0) for n in {*a, *b}}
    assert training["pixel_counts"] == expected
    # scene A's integer codes are kept; B's text classes take them by name
    ckpt = load_checkpoint(two_scene_model)
    codes = {c.name: c.value for c in ckpt.classes}
    frame = gpd.read_file(scenes["la"])
    assert all(codes[n] == v for n, v in zip(frame.class_name, frame.class_id, strict=True))
    assert "water" in codes and codes["water"] not in frame.class_id.tolist()
    # every scene is split on its own; the pooled split is their sum
    per_scene = [s["split"] for s in training["scenes"]]
    assert all(s["n_train"] > 0 and s["n_val"] > 0 for s in per_scene)
    assert log["meta"]["split"]["n_train"] == sum(s["n_train"] for s in per_scene)
    assert log["meta"]["split"]["n_val"] == sum(s["n_val"] for s in per_scene)
    assert isinstance(log["training_data"], list) and len(log["training_data"]) == 2
    # normalisation over the valid pixels of both scenes together
    bands = [b + 1 for b in log["meta"]["band_indices"]]
    pixels = []
    for name in ("a", "b"):
        with rasterio.open(scenes[name]) as src:
            values = src.read(bands).astype(np.float64)
            valid = (values != src.nodata).all(axis=0)
            pixels.append(values[:, valid])
    pooled = np.concatenate(pixels, axis=1)
    np.testing.assert_allclose(ckpt.norm.mean, pooled.mean(axis=1), rtol=1e-4)
    np.testing.assert_allclose(ckpt.norm.std, pooled.std(axis=1), rtol=1e-3)
    gap = training["mosaic"]["gap_px"]
    assert gap > 2 * ckpt.model.halo()


def test_scenes_file_csv_and_toml_list_the_same_scenes(scenes, two_scene_model: Path,
                                                       tmp_path: Path):
    d = scenes["dir"]
    (tmp_path / "scenes.csv").write_text(
        f"cube,labels\n{d / 'a.tif'},{d / 'a.gpkg'}\n# comment\n{d / 'b.tif'},{d / 'b.gpkg'}\n")
    # relative paths are taken from the file's folder
    (d / "scenes.toml").write_text('[[scene]]\ncube = "a.tif"\nlabels = "a.gpkg"\n\n'
                                   '[[scene]]\ncube = "b.tif"\nlabels = "b.gpkg"\n')
    reference = json.loads(two_scene_model.with_name("m.log.json").read_text())["meta"]
    for listing in (tmp_path / "scenes.csv", d / "scenes.toml"):
        model = tmp_path / f"{listing.suffix[1:]}.safetensors"
        _train(scenes, model, "--scenes", str(listing))
        meta = json.loads(model.with_name(model.stem + ".log.json").read_text())["meta"]
        assert [s["cube"] for s in meta["training"]["scenes"]] == [str(d / "a.tif"),
                                                                   str(d / "b.tif")]
        assert meta["training"]["pixel_counts"] == reference["training"]["pixel_counts"]
        assert meta["split"] == reference["split"]


@pytest.mark.parametrize("other, expected", [
    ("b_200bands.tif", "has 200 bands but the first training scene"),
    ("b_shifted.tif", "nm but band 1 of the first training scene"),
])
def test_scenes_with_other_bands_are_refused_naming_both(scenes, tmp_path: Path, other: str,
                                                         expected: str):
    r = CliRunner().invoke(cli, [
        "train", "--cube", str(scenes["a"]), "--labels", str(scenes["la"]),
        "--cube", str(scenes["dir"] / other), "--labels", str(scenes["lb"]),
        "--model-type", "spectral-mlp", "--model", str(tmp_path / "x.safetensors")])
    assert r.exit_code == 1, r.output
    assert expected in r.output
    assert str(scenes["dir"] / other) in r.output and str(scenes["a"]) in r.output
    assert "Traceback" not in r.output and not (tmp_path / "x.safetensors").exists()


def test_conflicting_codes_and_unpaired_options_are_refused(scenes, tmp_path: Path):
    frame = gpd.read_file(scenes["la"])
    frame["class_id"] = frame["class_id"].replace({1: 9})  # roof is 1 in a.gpkg
    frame.to_file(tmp_path / "recoded.gpkg")
    runner = CliRunner()
    r = runner.invoke(cli, ["train", "--cube", str(scenes["a"]), "--labels", str(scenes["la"]),
                            "--cube", str(scenes["b"]), "--labels",
                            str(tmp_path / "recoded.gpkg"), "--model-type", "spectral-mlp",
                            "--model", str(tmp_path / "x.safetensors")])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "class 'roof' has code 9 here but 1 in" in r.output
    assert str(scenes["la"]) in r.output and "recoded.gpkg" in r.output
    r = runner.invoke(cli, ["train", "--cube", str(scenes["a"]), "--labels", str(scenes["la"]),
                            "--cube", str(scenes["b"]), "--model-type", "spectral-mlp"])
    assert r.exit_code == 1 and "2 cube(s) but 1 --labels given" in r.output
    (tmp_path / "bad.csv").write_text("image,truth\na.tif,a.gpkg\n")
    r = runner.invoke(cli, ["train", "--scenes", str(tmp_path / "bad.csv")])
    assert r.exit_code == 1 and "has no `cube` and `labels` columns" in r.output
    assert "Traceback" not in r.output


def test_predict_batch_writes_one_map_per_scene(scenes, two_scene_model: Path,
                                                tmp_path: Path):
    runner = CliRunner()
    single = tmp_path / "single_b.tif"
    r = runner.invoke(cli, ["predict", str(scenes["b"]), "-o", str(single), "--model",
                            str(two_scene_model)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = tmp_path / "maps"
    r = runner.invoke(cli, ["predict", str(scenes["a"]), str(scenes["b"]), "-o", str(out),
                            "--model", str(two_scene_model)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("*.tif")) == ["a_map.tif", "b_map.tif"]
    assert (out / "a_map.qml").exists() and (out / "b_map.qml").exists()
    with rasterio.open(out / "b_map.tif") as m, rasterio.open(single) as s, \
            rasterio.open(scenes["b"]) as scene:
        np.testing.assert_array_equal(m.read(1), s.read(1))  # as if mapped alone
        assert m.transform == scene.transform and m.crs == scene.crs
        assert m.colormap(1)
    # a glob pattern, one map per match; an existing file as -o with several scenes refused
    r = runner.invoke(cli, ["predict", str(scenes["dir"] / "[ab].tif"), "-o",
                            str(tmp_path / "globbed"), "--model", str(two_scene_model)],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "globbed").glob("*.tif")) == ["a_map.tif",
                                                                          "b_map.tif"]
    r = runner.invoke(cli, ["predict", str(scenes["a"]), str(scenes["b"]), "-o", str(single),
                            "--model", str(two_scene_model)])
    assert r.exit_code == 1 and "with several scenes -o names the folder" in r.output
    r = runner.invoke(cli, ["predict", str(scenes["a"]), str(scenes["b"]), "-o", str(out),
                            "--model", str(two_scene_model)])
    assert r.exit_code == 1 and "already exists" in r.output and "Traceback" not in r.output
    # a scene with other bands is refused before any map of the batch is written
    r = runner.invoke(cli, ["predict", str(scenes["a"]), str(scenes["dir"] / "b_200bands.tif"),
                            "-o", str(tmp_path / "mixed"), "--model", str(two_scene_model)])
    assert r.exit_code == 1 and "b_200bands.tif: has 200 bands" in r.output
    assert not (tmp_path / "mixed").exists()


def test_mosaic_gap_keeps_a_spatial_model_inside_each_scene(tmp_path: Path):
    """DiffSpectralNet (tiny, a few iterations) trains on two scenes unchanged, and in the
    mosaic it trained on no output pixel of one scene depends on the other scene."""
    import torch

    a = write_cube(tmp_path / "a.tif", seed=1)
    b = write_cube(tmp_path / "b.tif", seed=2)
    labels = write_polygons(tmp_path / "gt.gpkg")
    (tmp_path / "c.toml").write_text('model = "diffspectralnet"\npreset = "tiny"\n[config]\n'
                                     "denoiser_iterations = 3\nclf_epochs = 1\n")
    model = tmp_path / "dsn.safetensors"
    r = CliRunner().invoke(cli, ["train", "--cube", str(a), "--labels", str(labels),
                                 "--cube", str(b), "--labels", str(labels), "--config",
                                 str(tmp_path / "c.toml"), "--guard", "3", "--no-refit",
                                 "--model", str(model)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    meta = json.loads(model.with_name("dsn.log.json").read_text())["meta"]
    col = meta["training"]["mosaic"]["columns"][1]
    ckpt = load_checkpoint(model)
    halo = ckpt.model.halo()
    assert col - 36 > 2 * halo > 0

    def logits(mosaic: np.ndarray) -> torch.Tensor:
        valid = np.isfinite(mosaic).all(axis=0)
        x = ckpt.norm.apply(np.nan_to_num(mosaic).copy(), valid)
        return ckpt.model.forward_tile(torch.from_numpy(x)[None], origin=(0, 0))[0]

    bands = [i + 1 for i in meta["band_indices"]]
    arrays = []
    for path in (a, b):
        with rasterio.open(path) as src:
            values = src.read(bands).astype(np.float32)
            values[values == src.nodata] = np.nan
            arrays.append(values)
    mosaic = np.full((len(bands), 40, col + 36), np.nan, np.float32)
    mosaic[:, :, :36], mosaic[:, :, col:] = arrays
    base = logits(mosaic)
    other = mosaic.copy()
    other[:, :, col:] = other[:, :, col:][:, ::-1, ::-1] * 1.5  # scene B replaced
    changed = logits(other)
    torch.testing.assert_close(changed[:, :, :36], base[:, :, :36], rtol=0, atol=0)
    assert not torch.equal(changed[:, :, col:], base[:, :, col:])
