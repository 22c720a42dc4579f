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

from .. import bad_inputs as bad
from ..bad_inputs import Snapshot, assert_clean_failure, run_cli, train_args
from ..fixtures import write_cube, write_polygons

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

    def train(self, *extra: str | Path, cube: str | Path | None = None,
              labels: str | Path | None = None, model: Path | None = None,
              config: Path | None = None) -> list[str | Path]:
        return train_args(cube or self.cube, labels or self.labels,
                          model or self.out / "model.safetensors", config or self.config, *extra)

    def predict(self, *extra: str | Path, scene: str | Path | None = None,
                model: Path | None = None, out: Path | None = None) -> list[str | Path]:
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
    path = bad.damaged_blocks(env.cube, env.inp)
    env.fails(env.train(cube=path), words=("cannot be read", "damaged", "copy"), path=path)


def test_damaged_pixel_data_at_predict(env: Env) -> None:
    """The same damage met by predict's reader thread: wrapped, with the tile's window."""
    path = bad.damaged_blocks(env.cube, env.inp)
    env.fails(env.predict(scene=path), words=("pixel data of rows", "cannot be read",
                                              "damaged", "gdalinfo -checksum"), path=path)


@pytest.mark.parametrize("command", ["train", "predict"])
def test_vrt_whose_source_is_missing(env: Env, command: str) -> None:
    vrt, source = bad.vrt_with_missing_source(env.cube, env.inp)
    args = env.train(cube=vrt) if command == "train" else env.predict(scene=vrt)
    text = env.fails(args, words=("does not exist", "restore that file", "vrt"), path=vrt)
    assert source.name in text


@pytest.mark.parametrize("command", ["train", "predict"])
def test_complex_cube_is_refused(env: Env, command: str) -> None:
    cube = bad.complex_cube(env.inp)
    args = env.train(cube=cube) if command == "train" else env.predict(scene=cube)
    env.fails(args, words=("complex numbers (complex64", "imaginary part", "real values"),
              path=cube)


def test_nodata_declared_on_some_bands_only_is_honoured(env: Env) -> None:
    """A VRT declaring nodata on bands 2..12 but not band 1: the nodata corner stays empty."""
    vrt = bad.vrt_of(env.cube, env.inp / "no_band1_nodata.vrt", drop_nodata_of_band=1)
    with rasterio.open(vrt) as src:
        assert src.nodatavals[0] is None and src.nodatavals[1] == -9999.0
    before = Snapshot.of(env.inp)
    result = run_cli(env.train(cube=vrt))
    assert result.exit_code == 0, result.output
    assert "9 of 1440 pixels are nodata/NaN/inf and are ignored" in result.output
    for scene, out in ((vrt, env.out / "vrt_map.tif"), (env.cube, env.out / "tif_map.tif")):
        result = run_cli(env.predict(scene=scene, out=out))
        assert result.exit_code == 0, result.output
    assert Snapshot.of(env.inp) == before
    with rasterio.open(env.out / "vrt_map.tif") as a, rasterio.open(env.out / "tif_map.tif") as b:
        vrt_map, tif_map = a.read(1), b.read(1)
    assert (vrt_map[:3, :3] == 0).all() and (vrt_map != 0).sum() == 1440 - 9
    np.testing.assert_array_equal(vrt_map, tif_map)


def test_band_entirely_nodata_at_predict(env: Env) -> None:
    """Train drops an all-nodata band (with a warning); predict cannot, so it refuses."""
    cube = bad.cube_with_an_empty_band(env.cube, env.inp, band=5)
    env.fails(env.predict(scene=cube), words=("no valid pixel", "band(s) 5 hold no valid value",
                                              "the map would be empty", "--bad-bands 5"),
              path=cube)
    result = run_cli(env.train(cube=cube))
    assert result.exit_code == 0, result.output
    assert "band(s) [5] hold no valid value and are treated as bad bands" in result.output


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

    from ..fixtures import ORIGIN

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
    env.fails(env.train(config=config), words=("batch_size", "must be >= 1", "got 0", "[config]"),
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
            env.out / "m.safetensors", "--model-type", "xgboost"]
    env.fails(args, words=("unknown model 'xgboost'", "spectral-mlp", "svm", "random-forest"),
              path=None)


# --------------------------------------------------------------------------- Ctrl-C


def _interrupt(args: list[str], *, wait_for: str, cwd: Path, timeout: float = 60.0,
               delay: float = 0.3) -> tuple[int, str]:
    """Run ``hsimap ARGS``, send SIGINT once stderr shows ``wait_for``, return (code, output)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models: threads only contend
    # A suite started in the background of a non-interactive shell inherits SIGINT ignored,
    # and Python then never installs its Ctrl-C handler: restore the default for the child.
    # Started as the installed ``hsimap`` script is (a script, not ``python -m``): under
    # ``-m`` CPython itself ends the process by SIGINT (exit -2) after hsimap's handler exited
    # 130 whenever the Ctrl-C landed in code a lazy import exec()s (torch._dynamo, imported
    # by the first optimizer), one run in three here; a script's exit status is the handler's.
    proc = subprocess.Popen([sys.executable, "-c", "from hsimap.cli.main import main; main()",
                             *args], cwd=cwd,
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
        time.sleep(delay)
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
    # Off a terminal the "classifier" line comes when that stage ends; waiting for it, the
    # fit (stopped early) had saved within the 0.3 s wait on idle cores. Now: the split's
    # line, then 1 s into a fit that neither ends nor stops early.
    config = bad.quick_config(tmp_path, "[config]\nepochs = 100000\npatience = 100000\n")
    out = tmp_path / "out"
    out.mkdir()
    code, text = _interrupt([str(a) for a in train_args(cube, labels, out / "m.safetensors",
                                                        config)],
                            wait_for="validation: ", cwd=tmp_path, delay=1.0)
    # 130 from hsimap's handler, also when the Ctrl-C lands in torch's lazy import of
    # torch._dynamo (Python then raises it as a RuntimeError from __set_name__: see
    # hsimap.errors.caused_by_interrupt)
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


# --------------------------------------------------------------------------- output safety


class _Deadline:
    """Fail (instead of hanging) if the block takes longer than ``seconds``: writing into a
    FIFO nobody reads blocks forever."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        def expired(signum, frame):
            raise TimeoutError(f"still running after {self.seconds} s (writing into a FIFO?)")

        self._old = signal.signal(signal.SIGALRM, expired)
        signal.alarm(self.seconds)

    def __exit__(self, *exc: object) -> None:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self._old)


SPECIAL_KINDS = ["chardev", "fifo", "socket", "folder", "link-to-device"]


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
def test_special_file_output_is_never_replaced(env: Env, kind: str) -> None:
    """-o a device node, FIFO, socket or a link to a device: refused, --overwrite or not; -o
    an existing folder is an output folder (the map goes inside as <scene>_map.tif, the
    folder stays); --model a folder is refused."""
    if kind == "chardev" and not ROOT_USER:
        pytest.skip("mknod needs root")
    target = bad.special_file(env.inp, kind)
    words = ("not a regular file", "never replaces", "even with --overwrite")
    with _Deadline(60):
        if kind == "folder":
            result = run_cli(env.predict(out=target))
            assert result.exit_code == 0, result.output
            assert target.is_dir() and (target / "cube_map.tif").is_file()
        else:
            for extra in ((), ("--overwrite",)):
                env.fails(env.predict(*extra, out=target), words=words, path=target)
        train_words = ("is a directory",) if kind == "folder" else words  # click says so
        env.fails(env.train("--overwrite", model=target), words=train_words, path=target)
    assert os.path.lexists(target)
    assert not (env.inp / f"{kind}.qml").exists()


@pytest.mark.parametrize("kind", ["fifo", "link-to-device"])
def test_special_file_sidecar_is_never_written_into(env: Env, kind: str) -> None:
    """map.qml is a FIFO (or a link to a device) next to -o map.tif --overwrite."""
    special = bad.special_file(env.inp, kind)
    sidecar = env.inp / "map.qml"
    special.rename(sidecar)
    with _Deadline(60):
        env.fails(env.predict("--overwrite", out=env.inp / "map.tif"),
                  words=("not a regular file", "never replaces"), path=sidecar)
    assert not (env.inp / "map.tif").exists()


def test_output_that_is_its_own_sidecar(env: Env) -> None:
    """-o map.qml: the QGIS style would be written over the map itself."""
    target = env.out / "map.qml"
    env.fails(env.predict(out=target), words=("the map output", "QGIS style sidecar",
                                              "both be written", "ending in .tif"), path=target)
    env.fails(env.predict("--probabilities", env.out / "map.qml", out=env.out / "map.tif"),
              words=("probabilities output", "QGIS style sidecar", "both be written"),
              path="map.qml")
    env.fails(env.predict("--confidence", env.out / "map.tif.aux.xml",
                          out=env.out / "map.tif"),
              words=("confidence output", "category names sidecar"), path="map.tif.aux.xml")


def test_sidecar_that_would_replace_an_input(env: Env) -> None:
    model = env.inp / "map.qml"  # an oddly named model next to the requested map
    shutil.copy(env.model, model)
    env.fails(env.predict("--overwrite", model=model, out=env.inp / "map.tif"),
              words=("QGIS style sidecar", "would replace an input file", "never overwritten"),
              path=model)


@pytest.mark.parametrize("sidecar", ["map.qml", "map.tif.aux.xml"])
def test_existing_sidecar_is_kept_without_overwrite(env: Env, sidecar: str) -> None:
    """Only the map did not exist: its user-made sidecar must not be replaced silently."""
    existing = env.inp / sidecar
    existing.write_text("<qgis>my own style</qgis>\n")
    env.fails(env.predict(out=env.inp / "map.tif"),
              words=("already exists", "sidecar", "--overwrite"), path=existing)
    assert existing.read_text() == "<qgis>my own style</qgis>\n"
    result = run_cli(env.predict("--overwrite", out=env.inp / "map.tif"))
    assert result.exit_code == 0, result.output
    assert "my own style" not in existing.read_text()  # replaced, as asked


def test_resume_detects_a_scene_rewritten_with_same_size_and_mtime(env: Env) -> None:
    """A new delivery copied over the scene with cp -p: same path, size and mtime."""
    from hsimap.predict import predict_scene

    scene = env.inp / "delivery.tif"
    shutil.copy(env.cube, scene)
    out = env.out / "map.tif"

    def stop_after_3(event):
        if event.done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_scene(scene, out=out, model_path=env.model, tile=16, progress=stop_after_3,
                      flush_seconds=0)
    st = scene.stat()
    newer = write_cube(env.out.parent / "delivery2.tif", seed=1)
    assert newer.stat().st_size == st.st_size
    shutil.copyfile(newer, scene)
    os.utime(scene, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (scene.stat().st_size, scene.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    before = Snapshot.of(env.inp, env.out)
    result = run_cli(env.predict("--resume", "--tile-size", "16", scene=scene, out=out))
    assert_clean_failure(result, words=("cannot resume", "scene_sha256",
                                        "without --resume"), path=out.name)
    assert Snapshot.of(env.inp, env.out) == before  # the unfinished run is kept, untouched
    assert not out.exists()
    # Same content, new mtime (a plain `touch`): the content matches, so resume works.
    shutil.copy(env.cube, scene)
    result = run_cli(env.predict("--resume", "--tile-size", "16", scene=scene, out=out))
    assert result.exit_code == 0, result.output
    reference = env.out / "ref.tif"
    assert run_cli(env.predict("--tile-size", "16", out=reference)).exit_code == 0
    with rasterio.open(out) as a, rasterio.open(reference) as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_resume_detects_a_model_rewritten_with_same_size_and_mtime(env: Env) -> None:
    from safetensors.torch import load_file, save_file

    from hsimap.checkpoint import META_KEY, read_metadata
    from hsimap.predict import predict_scene

    out = env.out / "map.tif"

    def stop_after_3(event):
        if event.done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_scene(env.cube, out=out, model_path=env.model, tile=16, progress=stop_after_3,
                      flush_seconds=0)
    st = env.model.stat()
    tensors = load_file(str(env.model))
    name = next(k for k, t in tensors.items() if t.is_floating_point() and t.numel() > 1)
    tensors[name] = tensors[name] * 1.5  # other weights, same shapes: the same file size
    import json

    save_file(tensors, str(env.model), metadata={META_KEY: json.dumps(read_metadata(env.model))})
    assert env.model.stat().st_size == st.st_size
    os.utime(env.model, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = run_cli(env.predict("--resume", "--tile-size", "16", out=out))
    assert_clean_failure(result, words=("cannot resume", "model_sha256"), path=out.name)
    assert not out.exists()


def _mount_tmpfs(point: Path, size: str) -> None:
    point.mkdir()
    if not ROOT_USER or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")


@pytest.fixture()
def small_disk(tmp_path: Path):
    """A real 256 KiB file system (tmpfs), for disk-full tests."""
    point = tmp_path / "small"
    _mount_tmpfs(point, "256k")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.mark.parametrize("room", ["some", "none"])
def test_disk_full_during_predict(env: Env, small_disk: Path, room: str) -> None:
    """A full disk: 'disk full' named, no traceback, every partial file removed.

    ``some``: room for the headers and the resume record but not the tiles, so a GDAL write
    fails in the writer thread or at a checkpoint; ``none``: nothing fits (the lock file).
    """
    scene = write_cube(env.inp / "big.tif", height=300, width=300)
    out = small_disk / "out"
    out.mkdir()
    filler = small_disk / "filler"
    keep_free = 48 * 1024 if room == "some" else 0
    with open(filler, "wb") as fh:
        fh.write(b"\0" * (shutil.disk_usage(small_disk).free - keep_free))
    assert shutil.disk_usage(small_disk).free == keep_free
    before = Snapshot.of(env.inp)
    result = run_cli(env.predict("--probabilities", out / "probs.tif", "--prob-dtype", "uint16",
                                 "--tile-size", "64", scene=scene, out=out / "map.tif"))
    assert_clean_failure(result, words=("disk full", "free some space", "partial files were "
                                        "removed"), path=None)
    assert str(small_disk) in result.output
    assert Snapshot.of(env.inp) == before
    assert sorted(p.name for p in out.iterdir()) == []


def test_two_predict_runs_on_one_output(env: Env, tmp_path: Path) -> None:
    """The second run fails at once, naming the first; the first finishes a correct map."""
    scene = write_cube(env.inp / "big.tif", height=240, width=240)
    out = env.out / "map.tif"
    first = subprocess.Popen(
        [sys.executable, "-m", "hsimap.cli.main", "predict", str(scene), "-o", str(out),
         "--model", str(env.model), "--tile-size", "4"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        lock = env.out / ".map.tif.lock"
        while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        before = Snapshot.of(env.inp)
        result = run_cli(env.predict(scene=scene, out=out))
        text = assert_clean_failure(result, words=("another hsimap run is writing this output",
                                                   f"pid {first.pid}", "wait for it"),
                                    path=out)
        assert "Traceback" not in text and Snapshot.of(env.inp) == before
        result = run_cli(env.predict("--overwrite", "--resume", scene=scene, out=out))
        assert_clean_failure(result, words=("another hsimap run",), path=out)
        assert first.poll() is None, "the first run was disturbed"
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err.decode(errors="replace")
    assert sorted(p.name for p in env.out.iterdir()) == ["map.qml", "map.tif",
                                                         "map.tif.aux.xml"]
    reference = tmp_path / "ref.tif"
    assert run_cli(env.predict("--tile-size", "64", scene=scene, out=reference)).exit_code == 0
    with rasterio.open(out) as a, rasterio.open(reference) as b:
        np.testing.assert_array_equal(a.read(), b.read())


# --------------------------------------------------------------------------- paths and services


def test_gdal_virtual_paths(env: Env) -> None:
    """/vsizip/ inputs (a real ZIP) are read by GDAL; missing members and unreachable URLs
    are reported with the path as given (no http:/ mangling)."""
    gpkg = env.inp / "gt.gpkg"
    import geopandas as gpd

    gpd.read_file(env.labels).to_file(gpkg, driver="GPKG")
    archive = bad.zipped(env.inp, "delivery.zip", [env.cube, gpkg])
    vcube, vlabels = f"/vsizip/{archive}/cube.tif", f"/vsizip/{archive}/gt.gpkg"
    before = Snapshot.of(env.inp)
    model = env.out / "zip_model.safetensors"
    result = run_cli(env.train(cube=vcube, labels=vlabels, model=model))
    assert result.exit_code == 0, result.output
    result = run_cli(env.predict(scene=vcube, model=model))
    assert result.exit_code == 0, result.output
    assert Snapshot.of(env.inp) == before
    for p in env.out.iterdir():
        p.unlink()
    missing = f"/vsizip/{archive}/scene_2024.tif"
    env.fails(env.predict(scene=missing), words=("file not found", "member inside it"),
              path=missing)
    env.fails(env.train(cube=vcube, labels=f"/vsizip/{archive}/gt_2024.gpkg"),
              words=("labels file not found",), path=f"/vsizip/{archive}/gt_2024.gpkg")
    url = "/vsicurl/http://127.0.0.1:1/scene.tif"
    for args in (env.predict(scene=url), env.train(cube=url)):
        text = env.fails(args, words=("127.0.0.1", "credentials"), path=None)
        assert url in " ".join(text.split()), text


def test_unreachable_scheduler_fails_fast(env: Env) -> None:
    start = time.monotonic()
    env.fails(env.predict("--scheduler", "tcp://127.0.0.1:1"),
              words=("cannot reach the dask scheduler", "tcp://127.0.0.1:1",
                     "connection refused", "dask scheduler"), path=None)
    assert time.monotonic() - start < 10, "the refusal took Dask's connect timeout"


@pytest.mark.parametrize("which", ["both", "gt"])
def test_datasets_convert_of_empty_mat_files(env: Env, which: str) -> None:
    cube, gt = env.inp / "Indian_pines_corrected.mat", env.inp / "Indian_pines_gt.mat"
    if which == "both":
        cube.write_bytes(b"")
    else:
        from scipy.io import savemat

        savemat(cube, {"indian_pines_corrected": np.zeros((145, 145, 200), np.uint16)})
    gt.write_bytes(b"")
    target = env.out / "indian_pines"
    env.fails(["datasets", "convert", cube, gt, "-o", target],
              words=("is empty (0 bytes)", "not a MATLAB .mat file", "download"),
              path=cube if which == "both" else gt)


# --------------------------------------------------------------------------- class codes


@pytest.mark.parametrize("code", [3000000001, 100000000, 65536])
def test_class_codes_a_map_cannot_store(env: Env, code: int) -> None:
    """Codes above 65535 (the largest a uint16 map holds; 3000000001 also overflows int32)
    are refused at once, naming the field and the value: no truncation, no table sized by
    the largest code."""
    labels = bad.polygons(env.inp, "codes.gpkg", bad.halves(class_id=[3, code]))
    start = time.monotonic()
    env.fails(env.train(labels=labels), words=("field 'class_id'", f"({code})", "above 65535",
                                               "renumber"), path=labels)
    assert time.monotonic() - start < 30


def test_label_raster_code_a_map_cannot_store(env: Env) -> None:
    values = np.zeros((40, 36), dtype=np.uint32)
    values[5:30, 3:14], values[5:30, 22:33] = 3, 3000000001
    labels = bad.label_raster(env.inp, values)
    env.fails(env.train(labels=labels), words=("label raster", "(3000000001)", "above 65535"),
              path=labels)


def test_sparse_large_codes_and_300_classes_keep_their_colours(env: Env) -> None:
    """Codes 2 and 65000 (a uint16 map) index correctly without a 65001-entry table; a
    300-class raster trains, and both maps carry their colour table, .qml and names."""
    from hsimap.checkpoint import load_checkpoint

    rows = []
    for codes, name in (([2, 65000], "sparse"), (None, "many")):
        if codes is None:  # 300 classes: 6 px blocks of a 60 x 60 label raster
            cube = write_cube(env.inp / "cube60.tif", height=60, width=60)
            values = np.zeros((60, 60), dtype=np.uint16)
            for k in range(300):
                r, c = 3 + 3 * (k // 20), 3 * (k % 20)
                values[r:r + 3, c:c + 2] = k + 1
            labels = bad.label_raster(env.inp, values, dtype="uint16", name="many.tif")
        else:
            cube, labels = env.cube, bad.polygons(env.inp, "sparse.gpkg",
                                                   bad.halves(class_id=codes))
        model = env.out / f"{name}.safetensors"
        result = run_cli(env.train("--validation", "random", "--guard", "0", cube=cube,
                                   labels=labels, model=model))
        assert result.exit_code == 0, result.output
        out = env.out / f"{name}.tif"
        result = run_cli(env.predict(scene=cube, model=model, out=out))
        assert result.exit_code == 0, result.output
        rows.append((model, out, labels))
    for model, out, _ in rows:
        ckpt = load_checkpoint(model)
        with rasterio.open(out) as src:
            assert src.dtypes[0] == "uint16"
            data, cmap = src.read(1), src.colormap(1)
        assert set(np.unique(data)) <= {0, *ckpt.classes.values}
        for c in ckpt.classes:
            assert cmap[c.value][:3] == c.rgb(), c
        qml = out.with_suffix(".qml").read_text()
        assert all(f'value="{c.value}"' in qml for c in ckpt.classes)
    sparse = load_checkpoint(rows[0][0])
    assert sparse.classes.values == [2, 65000]
    with rasterio.open(rows[0][1]) as src:
        sparse_map = src.read(1)
    assert (sparse_map[10:30, 4:14] == 2).mean() > 0.9  # left half: code 2
    assert (sparse_map[10:30, 22:32] == 65000).mean() > 0.9


# --------------------------------------------------------------------------- bounded resources


def test_huge_grid_is_refused_before_it_is_read(env: Env) -> None:
    """A 70000 x 70000 px VRT over a small file: refused within seconds, with sizes and what
    to do, instead of allocating full-grid arrays until the kernel kills the process."""
    vrt = bad.huge_vrt(env.cube, env.inp)
    start = time.monotonic()
    text = env.fails(env.train(cube=vrt), words=(
        "training on this scene would need about", "70000 x 70000 px x 12 bands",
        "labels rasterised", "budget (--max-memory", "crop the scene", "gdal_translate",
        "--bad-bands"), path=vrt)
    assert time.monotonic() - start < 30, "the refusal came too late"
    assert "GiB" in text or "TiB" in text


def test_max_memory_is_honoured_and_parsed(env: Env) -> None:
    # 1440 px x (12 bands x 16 B + 48 B) = 338 kiB
    env.fails(env.train("--max-memory", "100K"), words=("would need about 337.5 kiB",
                                                        "more than the 100.0 kiB budget",
                                                        "--max-memory"), path=env.cube)
    env.fails(env.train("--max-memory", "lots"), words=("--max-memory 'lots'",
                                                        "not a memory size", "8G"), path=None)
    result = run_cli(env.train("--max-memory", "2G"))
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- config values


@pytest.mark.parametrize(("line", "words"), [
    ("epochs = 2.5", ("field epochs must be a whole number, got 2.5",)),
    ('epochs = "2"', ("field epochs must be a whole number, got '2'", "without quotes")),
    ("dropout = 1.5", ("field dropout must be in [0, 1), got 1.5",)),
    ("weight_decay = -1.0", ("field weight_decay must be >= 0, got -1.0",)),
    ("hidden = [64.5, 32]", ("field hidden must be a list of whole numbers, got [64.5, 32]",)),
    ("class_weights = 1", ("field class_weights must be true or false, got 1",)),
    ("epochs = 100000000", ("field epochs must be in [1, 10000000], got 100000000",)),
])
def test_config_values_checked_against_field_types(env: Env, line: str,
                                                   words: tuple[str, ...]) -> None:
    config = bad.quick_config(env.inp, f"[config]\n{line}\n", name="bad.toml")
    env.fails(env.train(config=config), words=(*words, "[config] table"), path=config)


@pytest.mark.parametrize(("line", "words"), [
    ("window = 5.0", ("field window must be a whole number, got 5.0",)),
    ("denoiser_iterations = 1000000000000", (
        "field denoiser_iterations must be in [1, 10000000], got 1000000000000",)),
])
def test_diffspectralnet_config_values_checked(env: Env, line: str,
                                               words: tuple[str, ...]) -> None:
    config = bad.quick_config(env.inp, f'model = "diffspectralnet"\npreset = "tiny"\n'
                                       f"[config]\n{line}\n", name="dsn.toml")
    env.fails(["train", "--cube", env.cube, "--labels", env.labels, "--model",
               env.out / "m.safetensors", "--config", config], words=words, path=config)


@pytest.mark.parametrize(("line", "words"), [
    ("window = 1001", ("window = 1001 px is larger than the scene", "36 x 40 px",
                       "at most 36 px")),
    ("crop = 4096", ("crop = 4096 px is larger than the scene", "at most 36 px")),
    ("proj_bands = 1000", ("proj_bands = 1000", "more bands than the scene's 12",
                           "at most 12")),
])
def test_config_values_bounded_by_the_scene(env: Env, line: str,
                                            words: tuple[str, ...]) -> None:
    """Checked once the cube is open, before labels are rasterised or the scene is read."""
    config = bad.quick_config(env.inp, f'model = "diffspectralnet"\npreset = "tiny"\n'
                                       f"[config]\n{line}\n", name="dsn.toml")
    start = time.monotonic()
    env.fails(["train", "--cube", env.cube, "--labels", env.labels, "--model",
               env.out / "m.safetensors", "--config", config], words=words, path=env.cube)
    assert time.monotonic() - start < 60


# --------------------------------------------------------------------------- edited model files


def _set_class(i: int, key: str, value: object):
    def edit(meta: dict) -> None:
        if value is None:
            del meta["classes"][i][key]
        else:
            meta["classes"][i][key] = value
    return edit


def _set_meta(key: str, value: object):
    def edit(meta: dict) -> None:
        meta[key] = value
    return edit


def _cut_tensor(key: str):
    def edit(tensors: dict) -> None:
        tensors[key] = tensors[key][:-1].clone()
    return edit


EDITS = {
    "class-without-value": (dict(meta_edit=_set_class(0, "value", None)),
                            ("class entry 1", "has no 'value'")),
    "class-value-roof": (dict(meta_edit=_set_class(1, "value", "roof")),
                         ("class entry 2 has value 'roof'", "whole number from 1 to 65535")),
    "class-value-0": (dict(meta_edit=_set_class(0, "value", 0)),
                      ("class entry 1 has value 0", "nodata")),
    "bands-beyond": (dict(meta_edit=_set_meta("band_indices", list(range(10, 22)))),
                     ("band_indices", "beyond the 12 bands")),
    "n-bands-many": (dict(meta_edit=_set_meta("n_bands", "many")),
                     ("n_bands is 'many'", "positive whole number")),
    "classes-text": (dict(meta_edit=_set_meta("classes", "roof,tree")),
                     ("classes is 'roof,tree'", "list of at least two")),
    "norm-mean-short": (dict(tensor_edit=_cut_tensor("norm.mean")),
                        ("norm.mean holds (11,)", "12 finite numbers")),
    "norm-std-short": (dict(tensor_edit=_cut_tensor("norm.std")),
                       ("norm.std holds (11,)", "12 finite numbers")),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_model_with_edited_metadata(env: Env, edit: str) -> None:
    """Hand-edited model files: predict and info name the file and the damage (no code in
    the file ever runs, and no traceback either)."""
    changes, words = EDITS[edit]
    model = bad.edited_model(env.model, env.inp, edit, **changes)
    fix = ("copy it again", "retrain")
    env.fails(env.predict(model=model), words=(*words, *fix), path=model)
    if edit.startswith("norm"):  # info reads the metadata only, which is intact
        assert run_cli(["info", model]).exit_code == 0
    else:
        env.fails(["info", model], words=(*words, *fix), path=model)


def test_compare_checks_memory_and_a_huge_grid_before_reading(env: Env) -> None:
    """compare reads the scene whole as train does: the same budget, for every model, before
    the labels or the scene are read."""
    vrt = bad.huge_vrt(env.cube, env.inp)
    start = time.monotonic()
    for cube, extra, words in (
            (vrt, (), ("training on this scene would need about", "70000 x 70000 px")),
            (env.cube, ("--max-memory", "100K"), ("more than the 100.0 kiB budget",
                                                   "--max-memory"))):
        env.fails(["compare", "--cube", cube, "--labels", env.labels, "--models",
                   "random-forest,spectral-mlp", "-o", env.out / "cmp", *extra],
                  words=words, path=cube)
    assert time.monotonic() - start < 60, "the refusal came too late"
