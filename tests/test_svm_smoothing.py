"""The ``svm`` kind with the edge-preserving probability smoothing (``smooth_radius``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
import torch

from hsimap.checkpoint import read_metadata
from hsimap.models.base import TrainData, get_spec

from .bad_inputs import run_cli
from .conftest import SAMPLE_CUBE, SAMPLE_LABELS
from .fixtures import round_trip
from .test_dsn_fit import synthetic

SMALL = {"c_values": (10.0,), "gamma_factors": (1.0,), "max_train_pixels": 400}


def _fit(data: TrainData, **overrides):
    spec = get_spec("svm")
    config = spec.make_config("fast", {**SMALL, **overrides})
    return spec.fit(data, config, seed=0, device=torch.device("cpu"), progress=lambda e: None)


def test_smoothed_svm_is_the_svm_smoothed_over_its_own_guide_and_round_trips(tmp_path: Path):
    """Same machine as without smoothing; the map is the bilateral mean of its
    probabilities over a stored PCA guide with the fitted scale; the halo is the radius; the
    guide and scale survive save and load; the log records the smoothing."""
    from hsimap.models.smoothing import smooth_probabilities

    data = synthetic()
    plain, _ = _fit(data)
    smoothed, history = _fit(data, smooth_radius=2, smooth_range=0.5)
    assert plain.halo() == 0 and smoothed.halo() == 2 and smoothed.smoother is not None
    # train's memory check counts the guide the scale's fit projects (10 bands: all kept)
    assert plain.fit_bytes_per_pixel() == 0 and smoothed.fit_bytes_per_pixel() == 40
    log = history["smoothing"]
    assert log["radius"] == 2 and log["range"] == 0.5 and log["range_sq"] > 0
    assert log["guide_components"] == 10  # min(32, bands): the guide keeps every band here
    x = torch.from_numpy(data.cube)[None]
    with torch.no_grad():
        p = plain.forward_tile(x, origin=(0, 0)).exp()
        expected = smooth_probabilities(
            p, smoothed.smoother.projection(x), torch.from_numpy(data.valid)[None, None],
            radius=2, range_sq=log["range_sq"] * 0.5)
        got = smoothed.forward_tile(x, origin=(0, 0)).exp()
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, p, atol=1e-3)  # it does smooth
    # the write window alone (tiled prediction): the same values, probabilities computed
    # only within the radius of it
    window = (slice(3, 9), slice(0, 5))
    with torch.no_grad():
        part = smoothed.forward_window(x, origin=(0, 0), window=window).exp()
    assert torch.allclose(part, got[:, :, window[0], window[1]], atol=1e-6, rtol=0)
    loaded = round_trip(smoothed, 10, tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded.forward_tile(x, origin=(0, 0)),
                           smoothed.forward_tile(x, origin=(0, 0)))


def test_smoothing_stops_at_a_spectral_edge():
    """A smoothed map keeps the stripes' boundaries: accuracy on every labelled pixel is no
    worse than the plain SVM's (the synthetic stripes are spectrally distinct)."""
    data = synthetic(seed=3)
    scores = []
    for overrides in ({}, {"smooth_radius": 3, "smooth_range": 0.5}):
        model, _ = _fit(data, **overrides)
        with torch.no_grad():
            pred = model.forward_tile(torch.from_numpy(data.cube)[None], origin=(0, 0))
        pred = pred[0].argmax(0).numpy()
        scores.append(float((pred == data.labels)[data.labels >= 0].mean()))
    assert scores[1] >= scores[0] and scores[1] > 0.95


def test_smooth_preset_through_the_cli_is_tile_invariant(tmp_path: Path):
    """``hsimap train --model svm --preset smooth`` on the sample: the file's halo is the
    preset's radius, the log records the smoothing, and 40 px tiles give the single-tile
    map."""
    model = tmp_path / "svm.safetensors"
    result = run_cli(["train", "--cube", SAMPLE_CUBE, "--labels", SAMPLE_LABELS, "--model",
                      model, "--model-type", "svm", "--preset", "smooth", "--no-refit"])
    assert result.exit_code == 0, result.output
    radius = get_spec("svm").make_config("smooth").smooth_radius
    assert radius > 0 and read_metadata(model)["halo"] == radius
    log = json.loads(model.with_name("svm.log.json").read_text())
    assert log["history"]["smoothing"]["radius"] == radius
    maps = []
    for tile in ("512", "40"):
        out = tmp_path / f"map{tile}.tif"
        r = run_cli(["predict", SAMPLE_CUBE, "-o", out, "--model", model, "--tile-size", tile])
        assert r.exit_code == 0, r.output
        with rasterio.open(out) as src:
            maps.append(src.read(1))
    np.testing.assert_array_equal(maps[0], maps[1])
    assert (maps[0] > 0).mean() > 0.5
    # the same map through a Dask cluster (tiles with the smoothing's halo on workers)
    from click.testing import CliRunner
    from dask.distributed import LocalCluster

    from hsimap.cli.main import cli

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster:
        r = CliRunner().invoke(
            cli, ["predict", str(SAMPLE_CUBE), "-o", str(tmp_path / "dask.tif"), "--model",
                  str(model), "--tile-size", "48", "--device", "cpu"],
            env={"DASK_SCHEDULER_ADDRESS": cluster.scheduler_address})
    assert r.exit_code == 0, r.output
    with rasterio.open(tmp_path / "dask.tif") as src:
        np.testing.assert_array_equal(src.read(1), maps[0])
