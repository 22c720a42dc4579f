"""Shared pytest fixtures: the bundled sample scene and a quickly trained baseline model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CUBE = ROOT / "sample_data" / "potsdam_enmap.tif"
SAMPLE_LABELS = ROOT / "sample_data" / "potsdam_landcover.shp"
SALINAS_A = ROOT / "tests" / "data" / "salinas_a"


E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the end-to-end suites (``tests/e2e/``) ``e2e``: ``-m 'not e2e'`` runs the rest."""
    for item in items:
        if E2E in item.path.resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def sample_cube() -> Path:
    return SAMPLE_CUBE


@pytest.fixture(scope="session")
def sample_labels() -> Path:
    return SAMPLE_LABELS


@pytest.fixture(scope="session")
def mlp_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spectral-MLP trained on the sample scene (a few seconds)."""
    from hsimap.training import TrainOptions, train_model

    out = tmp_path_factory.mktemp("mlp") / "mlp.safetensors"
    train_model(SAMPLE_CUBE, SAMPLE_LABELS, out=out,
                options=TrainOptions(kind="spectral-mlp", overrides={"epochs": 5}))
    return out


@pytest.fixture(scope="session")
def spatial_model(tmp_path_factory: pytest.TempPathFactory, mlp_model: Path) -> Path:
    """A DiffSpectralNet ``tiny`` with random (non-zero) weights and buffers: halo > 0, so
    tiling mistakes (a wrong halo, a misplaced crop, a dropped edge tile) change the map."""
    from hsimap.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from hsimap.models.diffspectralnet import PRESETS, DiffSpectralNetConfig
    from hsimap.models.untrained import untrained_model

    base = load_checkpoint(mlp_model)
    model = untrained_model("diffspectralnet", DiffSpectralNetConfig(**PRESETS["tiny"]),
                            n_bands=len(base.band_indices), n_classes=len(base.classes))
    out = tmp_path_factory.mktemp("dsn") / "tiny.safetensors"
    save_checkpoint(out, Checkpoint(model, base.norm, base.classes, dict(base.meta)))
    return out


@pytest.fixture()
def sample_copy(tmp_path: Path) -> Path:
    """A private copy of the sample cube (tests that must not touch the original)."""
    dst = tmp_path / "scene.tif"
    shutil.copy(SAMPLE_CUBE, dst)
    return dst
