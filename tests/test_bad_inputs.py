"""A catalogue of bad inputs: every one ends in a clear message, and nothing is lost.

Each test runs the real CLI on a file a user could plausibly give it and checks that the
command fails (non-zero exit), that the message names the file, the problem and the fix
(key words), that there is no traceback, that no output file is left behind and that no
input file changed (names, content hashes and mtimes of every file under the test folders).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio

from . import bad_inputs as bad
from .bad_inputs import Snapshot, assert_clean_failure, run_cli, train_args
from .fixtures import write_cube, write_polygons

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch spectral-MLP trained through the CLI on the 12-band synthetic cube."""
    folder = tmp_path_factory.mktemp("trained")
    cube = write_cube(folder / "cube.tif")
    labels = write_polygons(folder / "gt.shp")
    model = folder / "model.safetensors"
    result = run_cli(train_args(cube, labels, model, bad.quick_config(folder)))
    assert result.exit_code == 0, result.output
    return model


@dataclass
class Env:
    """A test folder: good inputs under ``inp``, an empty ``out`` folder for outputs."""

    inp: Path
    out: Path
    cube: Path
    labels: Path
    config: Path
    model: Path

    def train(self, *extra: str | Path, cube: Path | None = None, labels: Path | None = None,
              model: Path | None = None, config: Path | None = None) -> list[str | Path]:
        return train_args(cube or self.cube, labels or self.labels,
                          model or self.out / "model.safetensors", config or self.config, *extra)

    def predict(self, *extra: str | Path, scene: Path | None = None, model: Path | None = None,
                out: Path | None = None) -> list[str | Path]:
        return ["predict", scene or self.cube, "-o", out or self.out / "map.tif",
                "--model", model or self.model, *extra]

    def fails(self, args: list[str | Path], *, words: tuple[str, ...], path: Path | str | None,
              code: int | None = None) -> str:
        """Run, check the failure is clean, that inputs are untouched and ``out`` is empty."""
        before = Snapshot.of(self.inp)
        result = run_cli(args)
        text = assert_clean_failure(result, words=words, path=path, code=code)
        assert Snapshot.of(self.inp) == before, "an input file was changed or a file added"
        left = sorted(p.name for p in self.out.rglob("*"))
        assert not left, f"files left behind: {left}"
        return text


@pytest.fixture()
def env(tmp_path: Path, trained: Path) -> Env:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    model = inp / "model.safetensors"
    shutil.copy(trained, model)
    return Env(inp, out, write_cube(inp / "cube.tif"), write_polygons(inp / "gt.shp"),
               bad.quick_config(inp), model)


# --------------------------------------------------------------------------- the cube


def test_missing_cube(env: Env) -> None:
    cube = env.inp / "scene_2023.tif"
    env.fails(env.train(cube=cube), words=("not found", "check the path"), path=cube)


def test_missing_scene_at_predict(env: Env) -> None:
    scene = env.inp / "scene_2024.tif"
    env.fails(env.predict(scene=scene), words=("not found", "check the path"), path=scene)


@pytest.mark.skipif(ROOT_USER, reason="root reads files whatever their permissions")
def test_unreadable_cube(env: Env) -> None:
    env.cube.chmod(0)
    try:
        env.fails(env.train(), words=("permission denied", "chmod"), path=env.cube)
    finally:
        env.cube.chmod(0o644)


def test_text_file_named_tif(env: Env) -> None:
    path = bad.text_as_tif(env.inp)
    env.fails(env.train(cube=path), words=("not a raster", "geotiff"), path=path)


def test_rgb_image_as_cube(env: Env) -> None:
    path = bad.rgb_image(env.inp)
    env.fails(env.train(cube=path), words=("3 band", "at least 5", "hyperspectral image"),
              path=path)


def test_mat_file_as_cube_points_to_datasets_convert(env: Env) -> None:
    path = bad.mat_file(env.inp)
    env.fails(env.train(cube=path), words=(".mat", "hsimap datasets convert"), path=path)
    env.fails(env.predict(scene=path), words=(".mat", "hsimap datasets convert"), path=path)


def test_folder_as_cube(env: Env) -> None:
    folder = env.inp / "scene.SAFE"
    folder.mkdir()
    env.fails(env.train(cube=folder), words=("is a folder", "raster file itself"), path=folder)


def test_damaged_pixel_data(env: Env) -> None:
    """A GeoTIFF whose header opens but whose compressed blocks are garbage."""
    path = env.inp / "damaged.tif"
    with rasterio.open(env.cube) as src:
        profile, data = src.profile, src.read()
    profile.update(compress="deflate", tiled=True, blockxsize=16, blockysize=16)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    raw = bytearray(path.read_bytes())
    raw[2000:len(raw) // 2] = b"\x55" * (len(raw) // 2 - 2000)
    path.write_bytes(bytes(raw))
    env.fails(env.train(cube=path), words=("cannot be read", "damaged", "copy"), path=path)


def test_cube_without_crs_against_labels_with_one(env: Env) -> None:
    cube = write_cube(env.inp / "nocrs.tif", crs=None)
    text = env.fails(env.train(cube=cube), words=("EPSG:32633", "cube has no CRS",
                                                  "georeference the cube"), path=env.labels)
    assert "Warning: " in text and "nocrs.tif" in text  # the cube's own warning, one line
    assert "warnings.warn" not in text and ".py:" not in text


def test_labels_without_crs_against_a_cube_with_one(env: Env) -> None:
    labels = bad.labels_without_crs(env.inp)
    env.fails(env.train(labels=labels), words=("no coordinate reference system", ".prj",
                                               "EPSG:32633", "assign projection"), path=labels)


def test_all_cube_bands_nonfinite(env: Env) -> None:
    cube = env.inp / "nan.tif"
    shutil.copy(env.cube, cube)
    with rasterio.open(cube, "r+") as dst:
        dst.nodata = None
        dst.write(np.full((dst.count, dst.height, dst.width), np.nan, dtype="float32"))
    env.fails(env.train(cube=cube), words=("no valid pixel", "NaN", "nodata value"), path=cube)


def test_all_nodata_cube(env: Env) -> None:
    cube = bad.all_nodata_cube(env.inp)
    env.fails(env.train(cube=cube), words=("no valid pixel", "nodata", "another scene"),
              path=cube)


def test_nan_and_inf_in_some_pixels_are_ignored_and_logged(env: Env) -> None:
    cube = bad.cube_with_nonfinite(env.inp)
    before = Snapshot.of(env.inp)
    result = run_cli(env.train(cube=cube))
    assert result.exit_code == 0, result.output
    assert Snapshot.of(env.inp) == before
    # 16 NaN pixels + 1 inf pixel, no nodata value in this file
    assert "17 of 1440 pixels are nodata/NaN/inf and are ignored" in result.output
    assert "labelled pixel(s) fall on nodata and are ignored" in result.output
    assert (env.out / "model.safetensors").exists()


# --------------------------------------------------------------------------- the labels


def test_missing_labels(env: Env) -> None:
    labels = env.inp / "gt_final.shp"
    env.fails(env.train(labels=labels), words=("labels file not found", "--labels"),
              path=labels)


def test_labels_that_are_not_a_vector(env: Env) -> None:
    labels = bad.random_bytes_shp(env.inp)
    env.fails(env.train(labels=labels), words=("not a vector file", "shapefile, geopackage"),
              path=labels)


def test_multiband_raster_as_labels(env: Env) -> None:
    labels = bad.rgb_image(env.inp)
    env.fails(env.train(labels=labels), words=("3 bands", "exactly one band",
                                               "single-band class raster"), path=labels)


def test_labels_entirely_outside_the_cube(env: Env) -> None:
    labels = bad.labels_far_away(env.inp)
    env.fails(env.train(labels=labels), words=("none of the 2 features overlap the cube",
                                               "same place", "crs"), path=labels)


def test_empty_vector_layer(env: Env) -> None:
    labels = bad.empty_gpkg(env.inp)
    env.fails(env.train(labels=labels), words=("no features", "polygons"), path=labels)


def test_missing_class_field_lists_the_fields(env: Env) -> None:
    env.fails(env.train("--class-field", "klasse"),
              words=("no field 'klasse'", "class_name, class_id", "--class-field"),
              path=env.labels)


def test_class_field_of_decimal_numbers(env: Env) -> None:
    labels = bad.polygons(env.inp, "area.gpkg", bad.halves(area_ha=[1.25, 3.5],
                                                           name=["meadow", "roof"]))
    env.fails(env.train("--class-field", "area_ha", labels=labels),
              words=("decimal numbers", "1.25", "--class-field", "name"), path=labels)


def test_class_codes_below_one(env: Env) -> None:
    labels = bad.polygons(env.inp, "zero.gpkg", bad.halves(class_id=[0, 1]))
    env.fails(env.train(labels=labels), words=("values < 1 ([0])", "positive integers",
                                               "renumber"), path=labels)


def test_a_single_class(env: Env) -> None:
    labels = bad.single_class(env.inp)
    env.fails(env.train(labels=labels), words=("only 1 class", "meadow", "at least two classes"),
              path=labels)


def test_a_class_with_one_pixel(env: Env) -> None:
    from shapely.geometry import box

    from .fixtures import ORIGIN

    x0, y0 = ORIGIN  # a 20 m square around the centre of pixel (row 2, col 18)
    rows = bad.halves(class_name=["meadow", "roof"])
    rows.append((box(x0 + 545, y0 - 85, x0 + 565, y0 - 65), {"class_name": "pond"}))
    labels = bad.polygons(env.inp, "tiny.gpkg", rows)
    env.fails(env.train(labels=labels), words=("'pond' (1 px)", "fewer than 2",
                                               "add ground truth", "merge"), path=labels)


def test_overlapping_polygons_of_different_classes(env: Env) -> None:
    labels = bad.overlapping(env.inp)
    env.fails(env.train(labels=labels), words=("25 pixel(s)", "different classes",
                                               "--on-overlap drop"), path=labels)


# --------------------------------------------------------------------------- the model file


def test_missing_model(env: Env) -> None:
    model = env.inp / "hsimap_model.safetensors"
    env.fails(env.predict(model=model), words=("model file not found", "hsimap train"),
              path=model)


def test_truncated_model(env: Env) -> None:
    model = bad.truncated(env.model, env.inp)
    env.fails(env.predict(model=model), words=("truncated", "copy the file again", "retrain"),
              path=model)


def test_model_from_an_unknown_format_version(env: Env) -> None:
    model = bad.future_version(env.model, env.inp)
    env.fails(env.predict(model=model), words=("format version 99", "reads version 1",
                                               "retrain"), path=model)


@pytest.mark.parametrize("writer", ["pickle", "torch", "header"])
def test_pickle_payload_is_never_run(env: Env, writer: str) -> None:
    marker = env.out.parent / "pwned"
    model = bad.pickle_payload(env.inp, marker, writer=writer)
    words = ("never unpickles", "hsimap train") if writer != "header" else (
        "damaged", "retrain")
    env.fails(env.predict(model=model), words=words, path=model)
    assert not marker.exists(), "the pickle payload ran"


def test_model_given_a_scene_with_another_band_count(env: Env) -> None:
    scene = write_cube(env.inp / "b20.tif", bands=20)
    env.fails(env.predict(scene=scene), words=("20 bands", "trained on 12", "same sensor"),
              path=scene)


def test_model_given_a_scene_with_other_wavelengths(env: Env) -> None:
    scene = bad.shifted_wavelength_cube(env.inp)
    env.fails(env.predict(scene=scene), words=("425.00 nm", "400.00 nm", "resample"),
              path=scene)


# --------------------------------------------------------------------------- outputs


def test_output_folder_missing(env: Env) -> None:
    target = env.out / "maps" / "map.tif"
    env.fails(env.predict(out=target), words=("does not exist", "mkdir -p"), path=target)
    model = env.out / "models" / "m.safetensors"
    env.fails(env.train(model=model), words=("does not exist", "mkdir -p"), path=model)


@pytest.mark.parametrize("command", ["train", "predict"])
def test_output_folder_is_a_file(env: Env, command: str) -> None:
    """The root-proof way to get an unwritable output folder: its 'folder' is a file."""
    blocker = env.inp / "somefile.txt"
    blocker.write_text("not a folder\n")
    target = blocker / ("m.safetensors" if command == "train" else "map.tif")
    args = env.train(model=target) if command == "train" else env.predict(out=target)
    env.fails(args, words=("is a file", "not a folder"), path=target)


@pytest.mark.skipif(ROOT_USER, reason="root may write into read-only folders")
def test_output_folder_not_writable(env: Env) -> None:
    env.out.chmod(0o555)
    try:
        env.fails(env.predict(), words=("not writable", "folder you can write"), path=env.out)
    finally:
        env.out.chmod(0o755)


def test_existing_output_is_kept_without_overwrite(env: Env) -> None:
    for args in (env.train(model=env.model), env.predict(out=env.cube)):
        text = env.fails(args, words=(), path=None)
        assert "--overwrite" in text or "same as an input" in text
    existing = env.inp / "map.tif"
    existing.write_bytes(b"an older map")
    env.fails(env.predict(out=existing), words=("already exists", "--overwrite"), path=existing)
    old_model = env.inp / "old.safetensors"
    shutil.copy(env.model, old_model)
    env.fails(env.train(model=old_model), words=("already exists", "--overwrite"),
              path=old_model)


def test_output_equal_to_an_input(env: Env) -> None:
    env.fails(env.predict(out=env.cube),
              words=("same as an input", "inputs are never overwritten"), path=env.cube)
    env.fails(env.predict("--overwrite", out=env.cube),
              words=("same as an input",), path=env.cube)
    env.fails(env.predict("--overwrite", out=env.model),
              words=("same as an input",), path=env.model)
    env.fails(env.train("--overwrite", model=env.cube),
              words=("same as an input", "choose another output name"), path=env.cube)
    env.fails(env.train("--overwrite", model=env.labels),
              words=("same as an input",), path=env.labels)


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_invalid_tile_size(env: Env, value: str) -> None:
    env.fails(env.predict("--tile-size", value),
              words=("--tile-size", value, "positive"),
              path=None, code=2)


def test_invalid_batch_size(env: Env) -> None:
    config = bad.quick_config(env.inp, "[config]\nepochs = 2\nbatch_size = 0\n", "batch.toml")
    env.fails(env.train(config=config), words=("batch_size", "must be positive", "[config]"),
              path=config)


def test_invalid_device_string(env: Env) -> None:
    env.fails(env.predict("--device", "gpu0"), words=("--device", "gpu0", "auto|cpu|cuda"),
              path=None, code=2)
    env.fails(env.train("--device", "tpu"), words=("--device", "tpu", "auto|cpu|cuda"),
              path=None, code=2)


def test_cuda_requested_without_a_gpu(env: Env) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    env.fails(env.predict("--device", "cuda"), words=("no CUDA GPU", "--device cpu"), path=None)
    env.fails(env.train("--device", "cuda:1"), words=("no CUDA GPU", "--device cpu"),
              path=None)


@pytest.mark.parametrize("value", ["abc", "0", "7-3", "1;2"])
def test_unparseable_bad_bands(env: Env, value: str) -> None:
    env.fails(env.train("--bad-bands", value), words=("--bad-bands", "1-based", "130-135,180"),
              path=None, code=2)


def test_bad_bands_outside_the_cube(env: Env) -> None:
    text = env.fails(env.train("--bad-bands", "5,99"),
                     words=("[99] do not exist", "bands 1..12", "from 1 to 12"), path=env.cube)
    assert "98" not in text  # the user's 1-based numbers, not 0-based indices


def test_bad_bands_covering_every_band(env: Env) -> None:
    env.fails(env.train("--bad-bands", "1-12"), words=("all 12 bands are bad bands",
                                                       "shorten --bad-bands"), path=env.cube)


def test_invalid_toml(env: Env) -> None:
    config = bad.quick_config(env.inp, "[config\nepochs = 2\n", "broken.toml")
    env.fails(env.train(config=config), words=("not valid TOML", "line 1", "fix the syntax"),
              path=config)


def test_unknown_config_field(env: Env) -> None:
    config = bad.quick_config(env.inp, "[config]\nepoch = 2\n", "typo.toml")
    env.fails(env.train(config=config), words=("unknown config field", "'epoch'",
                                               "valid fields", "epochs"), path=config)


def test_config_table_that_is_not_a_table(env: Env) -> None:
    config = bad.quick_config(env.inp, 'config = "quick"\n', "flat.toml")
    env.fails(env.train(config=config), words=("must be a table", "[config]"), path=config)


def test_unknown_preset(env: Env) -> None:
    env.fails(env.train("--preset", "huge"), words=("unknown preset 'huge'", "default, fast"),
              path=None)
    config = bad.quick_config(env.inp, 'preset = "huge"\n[config]\nepochs = 2\n', "p.toml")
    env.fails(env.train(config=config), words=("unknown preset 'huge'", "default, fast"),
              path=config)


def test_unknown_model_type(env: Env) -> None:
    args = ["train", "--cube", env.cube, "--labels", env.labels, "--model",
            env.out / "m.safetensors", "--model-type", "random-forest"]
    env.fails(args, words=("unknown model 'random-forest'", "spectral-mlp"), path=None)


# --------------------------------------------------------------------------- Ctrl-C


def _interrupt(args: list[str], *, wait_for: str, cwd: Path, timeout: float = 60.0
               ) -> tuple[int, str]:
    """Run ``hsimap ARGS``, send SIGINT once stderr shows ``wait_for``, return (code, output)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models: threads only contend
    # A suite started in the background of a non-interactive shell inherits SIGINT ignored,
    # and Python then never installs its Ctrl-C handler: restore the default for the child.
    proc = subprocess.Popen([sys.executable, "-m", "hsimap.cli.main", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    chunks: list[bytes] = []
    seen = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):  # type: ignore[union-attr]
            chunks.append(chunk)
            if wait_for.encode() in b"".join(chunks):
                seen.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        if not seen.wait(timeout):
            proc.kill()
            pytest.fail(f"never saw {wait_for!r}: {b''.join(chunks).decode(errors='replace')}")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=5)
    stdout = proc.stdout.read() if proc.stdout else b""
    return proc.returncode, (stdout + b"".join(chunks)).decode(errors="replace")


def test_ctrl_c_during_train_leaves_no_model(tmp_path: Path) -> None:
    cube = write_cube(tmp_path / "cube.tif", height=120, width=120)
    labels = write_polygons(tmp_path / "gt.shp")
    config = bad.quick_config(tmp_path, "[config]\nepochs = 100000\n")
    out = tmp_path / "out"
    out.mkdir()
    code, text = _interrupt([str(a) for a in train_args(cube, labels, out / "m.safetensors",
                                                        config)],
                            wait_for="classifier", cwd=tmp_path)
    assert code == 130, text
    assert "Interrupted" in text and "Traceback" not in text
    assert list(out.iterdir()) == [], "the interrupted run left files behind"


def test_ctrl_c_during_predict_leaves_no_map(tmp_path: Path, trained: Path) -> None:
    scene = write_cube(tmp_path / "big.tif", height=400, width=400)
    out = tmp_path / "out"
    out.mkdir()
    code, text = _interrupt(["predict", str(scene), "-o", str(out / "map.tif"), "--model",
                             str(trained), "--tile-size", "4"], wait_for="predict", cwd=tmp_path)
    assert code == 130, text
    assert "Interrupted" in text and "Traceback" not in text
    left = sorted(p.name for p in out.iterdir())
    assert "map.tif" not in left and "map.qml" not in left and "map.tif.aux.xml" not in left
    partial = [name for name in left if ".partial" in name]
    if partial:  # predict keeps finished tiles for --resume, and must say so
        assert "--resume" in text, text
    else:
        assert left == [], left
