"""Small pieces of a GIS workflow (issue 14, item 8): GDAL creation options (--co), hectares
per class in predict's summary, and an area of interest (--mask) for predict and train."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin
from shapely.geometry import box

from hsimap.cli.main import cli
from hsimap.cube import open_cube
from hsimap.labels import read_labels

from .fixtures import ORIGIN, UTM, write_cube, write_polygons


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A spectral-MLP trained for 3 epochs on the two-halves fixture cube (40 x 36 px)."""
    d = tmp_path_factory.mktemp("opts")
    cube = write_cube(d / "cube.tif")
    labels = write_polygons(d / "gt.gpkg")
    (d / "c.toml").write_text("[config]\nepochs = 3\n")
    r = CliRunner().invoke(cli, ["train", "--cube", str(cube), "--labels", str(labels),
                                 "--model-type", "spectral-mlp", "--config", str(d / "c.toml"),
                                 "--guard", "1", "--model", str(d / "m.safetensors")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return {"dir": d, "cube": cube, "labels": labels, "model": d / "m.safetensors"}


def _predict(trained: dict[str, Path], out: Path, *extra: str) -> str:
    r = CliRunner().invoke(cli, ["predict", str(trained["cube"]), "-o", str(out), "--model",
                                 str(trained["model"]), *extra], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def test_co_sets_gdal_creation_options_and_bad_ones_are_refused(trained, tmp_path: Path):
    _predict(trained, tmp_path / "z.tif", "--co", "COMPRESS=ZSTD", "--co", "zstd_level=9",
             "--confidence", str(tmp_path / "zc.tif"))
    for name in ("z.tif", "zc.tif"):
        with rasterio.open(tmp_path / name) as src:
            assert src.profile["compress"] == "zstd"
    _predict(trained, tmp_path / "c.tif", "--cog", "--co", "COMPRESS=LZW")
    with rasterio.open(tmp_path / "c.tif") as src:
        assert src.profile["compress"] == "lzw"
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.colormap(1)  # the legend survives the options
    runner = CliRunner()
    base = ["predict", str(trained["cube"]), "-o", str(tmp_path / "bad.tif"), "--model",
            str(trained["model"])]
    r = runner.invoke(cli, [*base, "--co", "COMPRES=ZSTD"])
    assert r.exit_code == 1 and "does not support creation option COMPRES" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "bad.tif").exists()
    r = runner.invoke(cli, [*base, "--co", "COMPRESS=NOPE"])
    assert r.exit_code == 1 and "'NOPE' is an unexpected value for COMPRESS" in r.output
    r = runner.invoke(cli, [*base, "--co", "nodata=5"])
    assert r.exit_code == 1 and "not a creation option" in r.output
    r = runner.invoke(cli, [*base, "--co", "COMPRESS"])
    assert r.exit_code == 2 and "is not KEY=VALUE" in r.output


def test_summary_gives_pixels_hectares_and_share_per_class(trained, tmp_path: Path):
    output = _predict(trained, tmp_path / "m.tif")
    with rasterio.open(tmp_path / "m.tif") as src:
        data = src.read(1)
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^(meadow|roof|total)\s+([\d,]+)\s+([\d,.]+)\s+([\d.]+)%$", output, re.M)}
    assert set(rows) == {"meadow", "roof", "total"}, output
    for name, value in (("meadow", 3), ("roof", 7)):
        n = int((data == value).sum())
        pixels, hectares, share = rows[name]
        assert int(pixels.replace(",", "")) == n
        assert float(hectares.replace(",", "")) == pytest.approx(n * 0.09, abs=0.005)  # 30 m
        assert float(share) == pytest.approx(100 * n / (data > 0).sum(), abs=0.05)
    assert int(rows["total"][0].replace(",", "")) == int((data > 0).sum())


def test_predict_mask_vector_and_raster(trained, tmp_path: Path):
    _predict(trained, tmp_path / "full.tif", "--probabilities", str(tmp_path / "fp.tif"))
    aoi = tmp_path / "aoi.gpkg"  # columns 5..19, rows 10..29
    gpd.GeoDataFrame(geometry=[box(ORIGIN[0] + 5 * 30, ORIGIN[1] - 30 * 30, ORIGIN[0] + 20 * 30,
                                   ORIGIN[1] - 10 * 30)], crs=UTM).to_file(aoi, layer="aoi")
    gpd.GeoDataFrame(geometry=[box(*ORIGIN, ORIGIN[0] + 30, ORIGIN[1] - 30)],
                     crs=UTM).to_file(aoi, layer="other")
    r = CliRunner().invoke(cli, ["predict", str(trained["cube"]), "-o", str(tmp_path / "x.tif"),
                                 "--model", str(trained["model"]), "--mask", str(aoi)])
    assert r.exit_code == 1 and "--mask-layer" in r.output and "'aoi'" in r.output
    _predict(trained, tmp_path / "v.tif", "--mask", str(aoi), "--mask-layer", "aoi",
             "--probabilities", str(tmp_path / "vp.tif"))
    with rasterio.open(tmp_path / "full.tif") as a, rasterio.open(tmp_path / "v.tif") as b:
        full, masked = a.read(1), b.read(1)
    inside = np.zeros(full.shape, bool)
    inside[10:30, 5:20] = True
    np.testing.assert_array_equal(masked[inside], full[inside])  # same classes inside
    assert (masked[~inside] == 0).all() and (masked[inside] > 0).all()
    with rasterio.open(tmp_path / "fp.tif") as a, rasterio.open(tmp_path / "vp.tif") as b:
        fp, vp = a.read(), b.read()
        nodata = b.nodata
    assert (vp[:, ~inside] == nodata).all()
    np.testing.assert_array_equal(vp[:, inside], fp[:, inside])
    # a raster AOI on a coarser grid (60 m), resampled onto the scene's: the right 10 columns
    coarse = np.zeros((20, 18), np.uint8)
    coarse[:, 13:] = 1
    with rasterio.open(tmp_path / "aoi.tif", "w", driver="GTiff", height=20, width=18, count=1,
                       dtype="uint8", crs=UTM, transform=from_origin(*ORIGIN, 60, 60)) as dst:
        dst.write(coarse, 1)
    _predict(trained, tmp_path / "r.tif", "--mask", str(tmp_path / "aoi.tif"))
    with rasterio.open(tmp_path / "r.tif") as src:
        by_raster = src.read(1)
    assert (by_raster[:, :26] == 0).all()
    np.testing.assert_array_equal(by_raster[3:, 26:], full[3:, 26:])
    # a mask elsewhere on Earth is refused before any tile is computed
    far = tmp_path / "far.geojson"
    gpd.GeoDataFrame(geometry=[box(0, 0, 100, 100)], crs=UTM).to_file(far)
    r = CliRunner().invoke(cli, ["predict", str(trained["cube"]), "-o", str(tmp_path / "f.tif"),
                                 "--model", str(trained["model"]), "--mask", str(far)])
    assert r.exit_code == 1 and "the mask covers no pixel of the scene" in r.output
    assert "Traceback" not in r.output


def test_train_mask_ignores_labels_outside(trained, tmp_path: Path):
    # the AOI keeps the whole left polygon and the upper half of the right one
    aoi = tmp_path / "aoi.shp"
    gpd.GeoDataFrame(geometry=[box(ORIGIN[0], ORIGIN[1] - 22 * 30, ORIGIN[0] + 36 * 30,
                                   ORIGIN[1]), box(ORIGIN[0], ORIGIN[1] - 40 * 30,
                                                   ORIGIN[0] + 18 * 30, ORIGIN[1])],
                     crs=UTM).to_file(aoi)
    model = tmp_path / "masked.safetensors"
    r = CliRunner().invoke(cli, [
        "train", "--cube", str(trained["cube"]), "--labels", str(trained["labels"]),
        "--model-type", "spectral-mlp", "--config", str(trained["dir"] / "c.toml"),
        "--guard", "1", "--mask", str(aoi), "--model", str(model)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    labels = read_labels(trained["labels"], grid=open_cube(trained["cube"]).grid)
    counts = labels.pixel_counts()
    rows = np.arange(labels.values.shape[0])[:, None]
    roof_inside = int(((labels.values == 7) & (rows < 22)).sum())
    log = json.loads(model.with_name("masked.log.json").read_text())
    assert log["meta"]["training"]["pixel_counts"] == {"meadow": counts[3], "roof": roof_inside}
    assert 0 < roof_inside < counts[7]
    assert log["meta"]["training"]["options"]["mask"] == str(aoi)


@pytest.mark.parametrize("args", [
    ["predict", "missing.tif", "-o", "x.tif"],
    ["train", "--cube", "missing.tif", "--labels", "gone.shp"],
    ["evaluate", "missing.tif", "--labels", "gone.gpkg"],
    ["train", "missing.tif", "--labels", "gone.shp"],  # the argument style
    ["datasets", "convert", "missing.tif", "gone.mat", "-o", "out"],
])
def test_missing_paths_fail_fast_before_torch_is_imported(tmp_path: Path, args: list[str]):
    """A wrong path is reported (all of them at once) before any heavy import (issue 14,
    item 5): torch is never imported, and the command ends well within a second or two."""
    import subprocess
    import sys
    import time

    code = ("import sys\nfrom hsimap.cli.main import cli\n"
            f"rc = cli({args!r}, obj={{}}, standalone_mode=False)\n"
            "print('RC', rc, 'TORCH', 'torch' in sys.modules)\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    seconds = time.perf_counter() - start
    assert "RC 1 TORCH False" in done.stdout, done.stdout + done.stderr
    assert "input files are not found" in done.stderr and "missing.tif" in done.stderr
    assert "Traceback" not in done.stderr
    assert seconds < 3, seconds  # loose for CI; about 0.2 s on a quiet machine


def _run_isolated(args: list[str], cwd: Path, before: str = "") -> tuple[str, str, float]:
    """Run the CLI in a fresh interpreter; stdout ends with its return value and whether
    torch (needed to run any model) and rioxarray (hsimap's pixel reader) were imported."""
    import subprocess
    import sys
    import time

    code = (f"import sys\n{before}\nfrom hsimap.cli.main import cli\n"
            f"rc = cli({args!r}, obj={{}}, standalone_mode=False)\n"
            "print('RC', rc, 'TORCH', 'torch' in sys.modules, "
            "'XARRAY', 'rioxarray' in sys.modules)\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    return done.stdout, done.stderr, time.perf_counter() - start


def test_dry_run_neither_imports_torch_nor_reads_the_scene(tmp_path: Path, sample_cube: Path,
                                                           mlp_model: Path):
    """``predict --dry-run`` with a model that stores its speed (every model train writes
    now): the plan comes from the scene's header and the model's metadata; torch and
    rioxarray (the pixel reader) are never imported (issue 14, item 5: a dry run costs a
    small part of a real run; the seconds are in benchmarks, not here)."""
    out, err, _ = _run_isolated(["predict", str(sample_cube), "-o", "m.tif", "--model",
                                 str(mlp_model), "--device", "cpu", "--dry-run"], tmp_path)
    assert "RC None TORCH False XARRAY False" in out, out + err
    assert "tiles: " in out and "peak memory (estimate)" in out
    assert "run time (estimate from the model's speed measured when it was trained" in out
    assert not any(tmp_path.iterdir())


def test_dry_run_of_a_model_without_a_stored_speed_measures_it(tmp_path: Path,
                                                               sample_cube: Path,
                                                               mlp_model: Path):
    """A model written before hsimap stored its speed: the dry run loads it and times one
    small sample tile instead, with the same tile grid."""
    from safetensors.numpy import load_file, save_file

    from hsimap.dry_run import INFERENCE_KEY
    from hsimap.model_file import META_KEY, read_metadata

    meta = read_metadata(mlp_model)
    assert meta[INFERENCE_KEY]["device"] == "cpu" and meta[INFERENCE_KEY]["read_px_per_second"] > 0
    del meta[INFERENCE_KEY]
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(mlp_model)), str(old), metadata={META_KEY: json.dumps(meta)})
    plans = {}
    for model in (mlp_model, old):
        r = CliRunner().invoke(cli, ["predict", str(sample_cube), "-o", str(tmp_path / "m.tif"),
                                     "--model", str(model), "--tile-size", "64", "--device",
                                     "cpu", "--dry-run"], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        plans[model] = r.output
    assert "run time (estimate from 2 sample tile(s)" in plans[old]
    assert plans[old].splitlines()[:2] == plans[mlp_model].splitlines()[:2]  # scene, tiles


def test_several_problems_are_reported_together_before_torch(tmp_path: Path,
                                                             sample_labels: Path):
    """A missing cube, an existing model without --overwrite and a bad --max-memory: one
    message lists all three, without a traceback, before torch is imported, quickly."""
    (tmp_path / "model.safetensors").write_bytes(b"an older model")
    out, err, seconds = _run_isolated(
        ["train", "nope.tif", "--labels", str(sample_labels), "--model", "model.safetensors",
         "--max-memory", "12Q"], tmp_path)
    assert "RC 1 TORCH False" in out, out + err
    assert "3 problems, nothing was done" in err and "Traceback" not in err
    assert "nope.tif: file not found" in err
    assert "model.safetensors: output already exists" in err and "--overwrite" in err
    assert "'12Q' is not a memory size" in err
    assert seconds < 3, seconds  # loose for CI


@pytest.mark.parametrize("command", ["train", "compare"])
def test_unknown_preset_is_reported_with_the_other_problems(tmp_path: Path, command: str,
                                                            sample_labels: Path):
    """`--preset fsat` and an existing output: both in one message (it used to take two
    runs: first "output already exists", then "unknown preset")."""
    if command == "train":
        existing = tmp_path / "model.safetensors"
        args = ["train", "missing.tif", "--labels", str(sample_labels), "--preset", "fsat",
                "--model", str(existing)]
    else:
        existing = tmp_path / "cmp" / "compare.json"
        existing.parent.mkdir()
        args = ["compare", "missing.tif", "--labels", str(sample_labels), "--models", "svm",
                "--preset", "svm=fsat", "-o", str(existing.parent)]
    existing.write_text("{}")
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert "3 problems, nothing was done" in r.output, r.output
    assert "unknown preset 'fsat'" in r.output and "missing.tif: file not found" in r.output
    assert "already" in r.output and "--overwrite" in r.output


@pytest.mark.parametrize("command", ["train", "compare"])
def test_model_names_and_presets_are_checked_before_torch(tmp_path: Path, command: str,
                                                          sample_labels: Path):
    """A shipped kind's preset typo and a missing cube: one message, no torch, quickly
    (compare imported torch for its --models names before)."""
    args = (["train", "nope.tif", "--labels", str(sample_labels), "--model-type", "svm",
             "--preset", "thorugh"] if command == "train" else
            ["compare", "nope.tif", "--labels", str(sample_labels), "--models",
             "svm,diffspectralnet", "--preset", "svm=thorugh"])
    out, err, seconds = _run_isolated(args, tmp_path)
    assert "RC 1 TORCH False" in out, out + err
    assert "2 problems, nothing was done" in err and "Traceback" not in err
    assert "unknown preset 'thorugh' for model 'svm'" in err and "thorough" in err
    assert seconds < 3, seconds  # loose for CI


def test_the_torch_free_kind_table_is_the_registry():
    from hsimap.model_kinds import SHIPPED
    from hsimap.models import BUILTIN_MODULES, load_builtin_models
    from hsimap.models.base import get_spec

    load_builtin_models()
    kinds = {sys.modules[m].SPEC.kind for m in BUILTIN_MODULES}
    assert set(SHIPPED) == kinds
    for kind, (default, presets) in SHIPPED.items():
        spec = get_spec(kind)
        assert (spec.default_preset, set(presets)) == (default, set(spec.presets)), kind


def test_evaluate_refuses_an_existing_output_folder_before_reading(tmp_path: Path):
    """evaluate checks its output folder and --class-map before the map is opened: a map
    that is not even a raster is never read when the folder already holds an evaluation."""
    not_a_map = tmp_path / "map.tif"
    not_a_map.write_text("not a raster")
    reference = write_polygons(tmp_path / "ref.gpkg")
    folder = tmp_path / "ev"
    folder.mkdir()
    (folder / "metrics.json").write_text("{}")
    r = CliRunner().invoke(cli, ["evaluate", str(not_a_map), "--labels", str(reference), "-o",
                                 str(folder), "--class-map", "roof=impervious,water"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert "2 problems" in r.output and "already holds an evaluation" in r.output
    assert "'water' is not an old=new pair" in r.output
    assert "cannot open the map" not in r.output


def test_info_of_a_missing_file_fails_before_any_heavy_import(tmp_path: Path):
    out, err, seconds = _run_isolated(["info", "missing.tif"], tmp_path)
    assert "RC 1 TORCH False XARRAY False" in out, out + err
    assert "missing.tif: file not found" in err and "Traceback" not in err
    assert seconds < 3, seconds  # loose for CI


def test_train_takes_the_cube_as_argument_or_with_cube(tmp_path: Path):
    """Issue 14 item 8: `train CUBE --labels` (the style of predict/evaluate/info) and the
    older `train --cube CUBE` train the same model; mixing both spellings for several cubes
    is refused, since it would make their pairing with --labels unclear."""
    from hsimap.checkpoint import load_checkpoint

    cube = write_cube(tmp_path / "cube.tif")
    labels = write_polygons(tmp_path / "gt.shp")
    config = tmp_path / "quick.toml"
    config.write_text("[config]\nepochs = 2\n")
    common = ["--labels", str(labels), "--model-type", "spectral-mlp", "--config", str(config),
              "--device", "cpu"]
    weights = []
    for style in ([str(cube)], ["--cube", str(cube)]):
        model = tmp_path / f"m{len(weights)}.safetensors"
        r = CliRunner().invoke(cli, ["train", *style, *common, "--model", str(model)],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output
        weights.append(load_checkpoint(model).model.state_dict())
    for key, value in weights[0].items():
        np.testing.assert_array_equal(value.numpy(), weights[1][key].numpy())
    r = CliRunner().invoke(cli, ["train", str(cube), "--cube", str(cube), "--labels",
                                 str(labels), "--labels", str(labels), "--model",
                                 str(tmp_path / "mixed.safetensors")])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert "both as arguments and with --cube" in r.output
