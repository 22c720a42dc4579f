"""The CUDA path on a real GPU: CUDA equals CPU, bf16 autocast, out-of-memory tile splitting.

Marked ``cuda`` and skipped without a CUDA device (``benchmarks/gpu_check.sh`` runs them:
``pytest -m cuda tests/test_cuda.py``). Models are DiffSpectralNet presets, with random
weights where the test compares the same weights on two devices, and trained for a few
seconds on a synthetic blocky scene where a map must be decisive (bf16 agreement, splits).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import rasterio
import torch

from hsimap.checkpoint import Checkpoint, Normalisation, save_checkpoint
from hsimap.classes import ClassTable
from hsimap.models.base import TrainData, get_spec
from hsimap.models.diffspectralnet import DiffSpectralNet
from hsimap.models.untrained import untrained_model
from hsimap.predict import classify_array, predict_scene

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda")
CPU = torch.device("cpu")
N_BANDS = 24
SIDE = 96
N_CLASSES = 4
# Short schedules: enough for a decisive classifier on the synthetic scene, seconds on a GPU.
TRAIN = {
    "tiny": {"denoiser_iterations": 40},
    "paper": {"denoiser_iterations": 40, "crop": 32, "batch": 4, "clf_epochs": 15,
              "reduced_dims": 16},
}


@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 on the GPU as on the CPU: no TF32 in matmuls and cuDNN convolutions."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def blocky_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(C, H, W)`` standardised cube of 16 x 16 px class blocks, validity, labels."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, N_CLASSES, (SIDE // 16, SIDE // 16))
    labels = np.kron(blocks, np.ones((16, 16), np.int64))
    means = rng.normal(0, 1, (N_CLASSES, N_BANDS)).astype(np.float32)
    cube = means[labels].transpose(2, 0, 1) + rng.normal(0, 0.3, (N_BANDS, SIDE, SIDE))
    valid = np.ones((SIDE, SIDE), bool)
    valid[:4, :4] = False
    return cube.astype(np.float32), valid, np.where(valid, labels, -1)


def checkpoint(model: torch.nn.Module) -> Checkpoint:
    """A checkpoint of ``model`` on a standardised cube (identity normalisation)."""
    norm = Normalisation(np.zeros(N_BANDS, np.float32), np.ones(N_BANDS, np.float32))
    meta = {"n_bands": N_BANDS, "band_indices": list(range(N_BANDS)), "wavelengths": None}
    return Checkpoint(model.eval(), norm,
                      ClassTable.from_names([f"c{i}" for i in range(N_CLASSES)]), meta)


def random_model(preset: str) -> DiffSpectralNet:
    return cast(DiffSpectralNet, untrained_model(
        "diffspectralnet", get_spec("diffspectralnet").make_config(preset), n_bands=N_BANDS,
        n_classes=N_CLASSES))


_TRAINED: dict[str, DiffSpectralNet] = {}


def trained_model(preset: str) -> DiffSpectralNet:
    """``preset`` trained on CUDA on the blocky scene (cached per session), on the CPU."""
    if preset not in _TRAINED:
        cube, valid, labels = blocky_scene()
        rng = np.random.default_rng(1)
        pick = (labels >= 0) & (rng.random(labels.shape) < 0.3)
        train = pick & (rng.random(labels.shape) < 0.8)
        spec = get_spec("diffspectralnet")
        data = TrainData(cube, valid, np.where(pick, labels, -1), train, pick & ~train,
                         N_CLASSES)
        model, _ = spec.fit(data, spec.make_config(preset, TRAIN[preset]), seed=0,
                            device=CUDA, progress=lambda e: None)
        _TRAINED[preset] = model.cpu().eval()
    return copy.deepcopy(_TRAINED[preset])


@pytest.mark.parametrize("preset", ["tiny", "fast", "paper"])
def test_a_tile_on_cuda_equals_the_same_tile_on_cpu(preset: str):
    model = random_model(preset)
    side = 2 * model.halo() + 8  # the CPU pass of the paper preset is the slow part
    x = torch.from_numpy(blocky_scene()[0][:, :side, :side])[None]
    with torch.inference_mode():
        on_cpu = model.forward_tile(x, origin=(5, 9))
        on_cuda = model.to(CUDA).forward_tile(x.to(CUDA), origin=(5, 9)).cpu()
    scale = float(on_cpu.abs().max())
    assert scale > 0
    torch.testing.assert_close(on_cuda, on_cpu, rtol=1e-4, atol=1e-4 * scale)
    assert (on_cuda.argmax(1) == on_cpu.argmax(1)).float().mean() >= 0.999


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_autocast_maps_agree_with_fp32_maps(preset: str):
    cube, valid, labels = blocky_scene(seed=0)
    model = trained_model(preset)
    fp32 = classify_array(checkpoint(copy.deepcopy(model)), cube.copy(), valid, tile=SIDE,
                          device=CPU)  # one tile: the CPU pass of the paper preset is slow
    bf16 = classify_array(checkpoint(model.to(CUDA)), cube.copy(), valid, tile=SIDE,
                          device=CUDA)  # compute_tile autocasts to bf16 on CUDA
    agree = float((fp32[valid] == bf16[valid]).mean())
    assert agree >= 0.999, f"bf16 and fp32 maps agree on {100 * agree:.3f} % of pixels"
    assert (fp32[valid] == labels[valid]).mean() > 0.5  # the model is not constant


def test_forced_out_of_memory_splits_the_tile_and_gives_the_same_map(monkeypatch, caplog):
    cube, valid, _ = blocky_scene(seed=0)
    ckpt = checkpoint(trained_model("tiny").to(CUDA))
    reference = classify_array(ckpt, cube.copy(), valid, tile=64, device=CUDA)
    real = DiffSpectralNet.forward_window
    sizes: list[tuple[int, int]] = []
    limit = 48 * 48

    def small_only(self, x, *, origin, window):
        sizes.append(tuple(x.shape[-2:]))
        if x.shape[-1] * x.shape[-2] > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (forced by the test)")
        return real(self, x, origin=origin, window=window)

    monkeypatch.setattr(DiffSpectralNet, "forward_window", small_only)
    with caplog.at_level(logging.WARNING, logger="hsimap.predict"):
        split = classify_array(ckpt, cube.copy(), valid, tile=64, device=CUDA)
    assert any(h * w > limit for h, w in sizes) and any(h * w <= limit for h, w in sizes)
    assert "splitting it into" in caplog.text
    differ = int((split != reference).sum())
    assert differ == 0, f"{differ} pixels differ after the out-of-memory split"


def test_predict_scene_on_cuda_matches_the_cpu_map(tmp_path: Path):
    """``--device cuda`` end to end (GeoTIFF in and out, auto tile, bf16) against the CPU."""
    cube, valid, _ = blocky_scene(seed=0)
    raw = np.where(valid, cube, -9999.0).astype(np.float32)
    scene = tmp_path / "scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", height=SIDE, width=SIDE, count=N_BANDS,
                       dtype="float32", nodata=-9999.0, crs="EPSG:32633",
                       transform=rasterio.transform.from_origin(366015, 5809965, 30, 30)) as d:
        d.write(raw)
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, checkpoint(trained_model("tiny")))
    maps = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.tif"
        result = predict_scene(scene, out=out, model_path=model, device=device)
        assert result.n_valid == int(valid.sum())
        with rasterio.open(out) as src:
            maps[device] = src.read(1)
    agree = float((maps["cpu"][valid] == maps["cuda"][valid]).mean())
    assert agree >= 0.999, f"CUDA and CPU maps agree on {100 * agree:.3f} % of pixels"
    assert (maps["cuda"][~valid] == 0).all()
