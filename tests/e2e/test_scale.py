"""Prediction at scale: extra outputs, COG, dry run, resume after a kill, OOM split, Dask.

Real files through the real libraries: the bundled sample scene (40 % nodata), a 2 x 2
mosaic of it for the kill/resume test, the session's spectral-MLP and a DiffSpectralNet
``tiny`` model with random weights (spatial context, halo > 0) for tiling exactness.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from hsimap.checkpoint import load_checkpoint
from hsimap.cli.main import cli
from hsimap.errors import OutputError
from hsimap.predict import predict_scene
from hsimap.predict.outputs import record_path


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory, sample_cube: Path) -> Path:
    """The sample scene tiled 2 x 2 (384 x 320 px, 224 bands)."""
    with rasterio.open(sample_cube) as src:
        data = np.tile(src.read(), (1, 2, 2))
        profile = src.profile.copy()
        tags = [src.tags(i + 1) for i in range(src.count)]
    profile.update(height=data.shape[1], width=data.shape[2])
    out = tmp_path_factory.mktemp("mosaic") / "mosaic.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
        for i, t in enumerate(tags):
            dst.update_tags(i + 1, **t)
    return out


def test_probabilities_and_confidence(tmp_path: Path, sample_cube: Path, mlp_model: Path):
    out, probs, conf = tmp_path / "map.tif", tmp_path / "p.tif", tmp_path / "c.tif"
    predict_scene(sample_cube, out=out, model_path=mlp_model, tile=48, probabilities=probs,
                  confidence=conf)
    ckpt = load_checkpoint(mlp_model)
    with rasterio.open(sample_cube) as s, rasterio.open(probs) as p, rasterio.open(conf) as c:
        for dst in (p, c):
            assert dst.crs == s.crs and dst.transform == s.transform and dst.shape == s.shape
            assert dst.dtypes[0] == "uint8" and dst.nodata == 255
        assert p.count == len(ckpt.classes) and list(p.descriptions) == ckpt.classes.names
        assert p.scales[0] == pytest.approx(1 / 254)
        invalid = s.read(1) == s.nodata
        pa, ca = p.read().astype(int), c.read(1).astype(int)
    classes = _read(out)[0]
    assert invalid.any() and (pa[:, invalid] == 255).all() and (ca[invalid] == 255).all()
    valid = ~invalid
    sums = pa[:, valid].sum(0)
    assert np.abs(sums - 254).max() <= len(ckpt.classes) // 2 + 1  # rounding only
    index = np.searchsorted(ckpt.classes.values, classes[valid])
    chosen = np.take_along_axis(pa[:, valid], index[None], 0)[0]
    assert (chosen == pa[:, valid].max(0)).all()  # argmax of probabilities == map (ties ok)
    assert (ca[valid] == pa[:, valid].max(0)).all()  # confidence "max" is that probability


def test_uint16_margin_confidence(tmp_path: Path, sample_cube: Path, mlp_model: Path):
    out, probs, conf = tmp_path / "map.tif", tmp_path / "p.tif", tmp_path / "c.tif"
    predict_scene(sample_cube, out=out, model_path=mlp_model, probabilities=probs, confidence=conf,
                  prob_dtype="uint16", confidence_kind="margin")
    pa, ca = _read(probs).astype(int), _read(conf)[0].astype(int)
    valid = ca != 65535
    top2 = np.sort(pa[:, valid], axis=0)[-2:]
    assert np.abs(ca[valid] - (top2[1] - top2[0])).max() <= 1
    assert np.abs(pa[:, valid].sum(0) - 10000).max() <= 4


def test_cog_outputs_validate_and_keep_colours(tmp_path: Path, sample_cube: Path,
                                               mlp_model: Path):
    from rio_cogeo.cogeo import cog_validate

    out, probs = tmp_path / "map.tif", tmp_path / "p.tif"
    r = CliRunner().invoke(cli, ["predict", str(sample_cube), "-o", str(out), "--model",
                                 str(mlp_model), "--cog", "--probabilities", str(probs)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    for path in (out, probs):
        valid, errors, _ = cog_validate(path, quiet=True)
        assert valid, errors
    with rasterio.open(out) as m, rasterio.open(probs) as p:
        assert m.overviews(1) and p.overviews(1)
        assert m.nodata == 0 and p.nodata == 255
        first = next(iter(load_checkpoint(mlp_model).classes))  # colours the model stores
        assert m.colormap(1)[first.value][:3] == first.rgb()
        assert "HSIMAP_CLASSES" in m.tags() and m.tags(1)["CLASS_5"] == "soil"
        assert p.descriptions[0] == "roof" and p.scales[0] == pytest.approx(1 / 254)
    assert out.with_suffix(".qml").exists() and Path(f"{out}.aux.xml").exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["map.qml", "map.tif", "map.tif.aux.xml",
                                                           "p.tif"]


def test_dry_run_writes_nothing(tmp_path: Path, sample_cube: Path, mlp_model: Path):
    before = sorted(tmp_path.iterdir())
    r = CliRunner().invoke(cli, ["predict", str(sample_cube), "-o", str(tmp_path / "m.tif"),
                                 "--model", str(mlp_model), "--tile-size", "64", "--dry-run"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "tiles: 9 of 64 px (+ halo 0 px" in r.output
    assert "peak memory (estimate):" in r.output and "run time (estimate" in r.output
    assert sorted(tmp_path.iterdir()) == before


def test_spatial_model_tiling_and_oom_split_are_exact(tmp_path: Path, sample_cube: Path,
                                                     spatial_model: Path, monkeypatch):
    ckpt = load_checkpoint(spatial_model)
    assert ckpt.model.halo() > 5
    maps = {}
    for tile in (40, 1000):
        predict_scene(sample_cube, out=tmp_path / f"m{tile}.tif", model_path=spatial_model,
                      tile=tile, probabilities=tmp_path / f"p{tile}.tif")
        maps[tile] = _read(tmp_path / f"m{tile}.tif")
    np.testing.assert_array_equal(maps[40], maps[1000])
    # A device that runs out of memory above 50x50 px: tiles are split, the map is the same.
    from hsimap.models.diffspectralnet import DiffSpectralNet

    real = DiffSpectralNet.forward_window
    calls = []

    def small_only(self, x, *, origin, window):
        calls.append(tuple(x.shape[-2:]))
        if x.shape[-1] * x.shape[-2] > 50 * 50:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, x, origin=origin, window=window)

    monkeypatch.setattr(DiffSpectralNet, "forward_window", small_only)
    predict_scene(sample_cube, out=tmp_path / "oom.tif", model_path=spatial_model, tile=40,
                  probabilities=tmp_path / "poom.tif")
    assert any(h * w > 2500 for h, w in calls) and any(h * w <= 2500 for h, w in calls)
    np.testing.assert_array_equal(_read(tmp_path / "oom.tif"), maps[40])
    np.testing.assert_allclose(_read(tmp_path / "poom.tif").astype(int),
                               _read(tmp_path / "p40.tif").astype(int), atol=1)


def test_dask_local_cluster_matches_local_run(tmp_path: Path, sample_cube: Path,
                                              spatial_model: Path):
    from dask.distributed import LocalCluster

    local = tmp_path / "local.tif"
    predict_scene(sample_cube, out=local, model_path=spatial_model, tile=48,
                  confidence=tmp_path / "lc.tif")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        r = CliRunner().invoke(
            cli, ["predict", str(sample_cube), "-o", str(tmp_path / "dask.tif"), "--model",
                  str(spatial_model), "--tile-size", "48", "--confidence",
                  str(tmp_path / "dc.tif"), "--device", "cpu"],
            env={"DASK_SCHEDULER_ADDRESS": cluster.scheduler_address}, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(_read(tmp_path / "dask.tif"), _read(local))
    np.testing.assert_allclose(_read(tmp_path / "dc.tif").astype(int),
                               _read(tmp_path / "lc.tif").astype(int), atol=1)


def test_interrupt_keeps_resumable_state_and_resume_checks_settings(
        tmp_path: Path, sample_cube: Path, mlp_model: Path, monkeypatch):
    out = tmp_path / "map.tif"
    reference = tmp_path / "ref.tif"
    predict_scene(sample_cube, out=reference, model_path=mlp_model, tile=32)

    def stop_after_3(event):
        if event.done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_scene(sample_cube, out=out, model_path=mlp_model, tile=32, progress=stop_after_3,
                      flush_seconds=0)
    assert not out.exists()
    record = json.loads(record_path(out).read_text())
    assert len(record["done"]) >= 3 and (tmp_path / ".map.tif.partial").exists()
    with pytest.raises(OutputError, match="cannot resume.*tile"):
        predict_scene(sample_cube, out=out, model_path=mlp_model, tile=48, resume=True)
    result = predict_scene(sample_cube, out=out, model_path=mlp_model, tile="auto", resume=True)
    assert result.resumed_tiles >= 3 and result.tile == 32
    np.testing.assert_array_equal(_read(out), _read(reference))
    assert sorted(f.name for f in tmp_path.iterdir() if f.name.startswith(".")) == []
    # An interrupt before any tile is finished leaves nothing behind.

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("hsimap.predict.run.compute_tile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict_scene(sample_cube, out=tmp_path / "m2.tif", model_path=mlp_model, tile=32)
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".m2")]


def test_sigkill_then_resume_is_identical(tmp_path: Path, mosaic: Path, mlp_model: Path):
    out = tmp_path / "map.tif"
    cmd = [sys.executable, "-m", "hsimap.cli.main", "-q", "predict", str(mosaic), "-o",
           str(out), "--model", str(mlp_model), "--tile-size", "32"]
    proc = subprocess.Popen(cmd + ["--checkpoint-every", "0"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    record = record_path(out)
    deadline = time.monotonic() + 60
    done: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        if record.exists():
            try:
                done = json.loads(record.read_text())["done"]
            except (ValueError, OSError):
                done = []
            if done:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "predict finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and record.exists()
    total = json.loads(record.read_text())["n_tiles"]
    assert 1 <= len(json.loads(record.read_text())["done"]) < total
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not record.exists()
    reference = tmp_path / "ref.tif"
    predict_scene(mosaic, out=reference, model_path=mlp_model, tile=32)
    np.testing.assert_array_equal(_read(out), _read(reference))
