"""Validation splits: no validation pixel within the guard band of a training pixel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from hsimap.errors import ConfigError
from hsimap.split import make_split


def _random_layout(seed: int, n_poly: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Random rectangles ("polygons") with random classes; later ones overwrite earlier."""
    rng = np.random.default_rng(seed)
    index = np.full((size, size), -1, dtype=np.int64)
    groups = np.full((size, size), -1, dtype=np.int32)
    for g in range(n_poly):
        r, c = rng.integers(0, size - 4, 2)
        h, w = rng.integers(2, 12, 2)
        index[r:r + h, c:c + w] = rng.integers(0, 4)
        groups[r:r + h, c:c + w] = g
    return index, groups


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n_poly=st.integers(2, 40), guard=st.integers(0, 8),
       method=st.sampled_from(["polygon", "block", "random"]),
       fraction=st.floats(0.05, 0.6))
def test_no_validation_pixel_within_guard_of_training(seed: int, n_poly: int, guard: int,
                                                      method: str, fraction: float) -> None:
    index, groups = _random_layout(seed, n_poly)
    split = make_split(index, groups, method=method, val_fraction=fraction, guard=guard,
                       seed=seed)
    assert not (split.train & split.val).any()
    assert not ((split.train | split.val) & (index < 0)).any()
    if split.val.any() and guard:
        # Chebyshev distance from every validation pixel to the nearest training pixel
        dist = ndimage.distance_transform_cdt(~split.train, metric="chessboard")
        assert dist[split.val].min() > guard
    s = split.summary()
    assert s["n_train"] + s["n_val"] + s["n_guard_removed"] == int((index >= 0).sum())


def test_polygon_split_keeps_polygons_whole() -> None:
    index, groups = _random_layout(3, 30)
    split = make_split(index, groups, method="polygon", val_fraction=0.3, guard=0)
    for g in np.unique(groups[groups >= 0]):
        member = groups == g
        assert not (split.train[member].any() and split.val[member].any())


def test_every_class_keeps_training_pixels() -> None:
    index, groups = _random_layout(5, 25)
    split = make_split(index, groups, method="polygon", val_fraction=0.9, guard=2)
    for c in np.unique(index[index >= 0]):
        assert split.train[index == c].any()


def test_invalid_options() -> None:
    index, groups = _random_layout(1, 5)
    with pytest.raises(ConfigError, match="unknown validation"):
        make_split(index, groups, method="kfold")
    with pytest.raises(ConfigError, match="guard"):
        make_split(index, groups, guard=-1)


def test_patchwork_of_touching_polygons_keeps_validation_for_every_class(
        sample_cube, sample_labels) -> None:
    """The sample's 810 small touching polygons: a guard band must not empty validation."""
    from hsimap.cube import open_cube
    from hsimap.labels import read_labels

    labels = read_labels(sample_labels, grid=open_cube(sample_cube).grid)
    index = labels.index()
    split = make_split(index, labels.groups, method="polygon", guard=4, seed=0)
    assert split.classes_without_val == []
    assert split.val.sum() > 0.05 * (index >= 0).sum()
    dist = ndimage.distance_transform_cdt(~split.train, metric="chessboard")
    assert dist[split.val].min() > 4


def test_train_validates_two_model_kinds_on_the_same_pixels(tmp_path):
    """train_model stores the same split for spectral-mlp and random-forest (same options)."""
    from hsimap.checkpoint import load_checkpoint
    from hsimap.training import TrainOptions, train_model
    from hsimap.training_data import default_guard

    from .fixtures import write_cube, write_polygons

    cube = write_cube(tmp_path / "cube.tif")
    labels = write_polygons(tmp_path / "gt.shp")
    codes = []
    for kind, overrides in (("spectral-mlp", {"epochs": 2}),
                            ("random-forest", {"n_trees": 5, "n_jobs": 1})):
        result = train_model(cube, labels, out=tmp_path / f"{kind}.safetensors",
                             options=TrainOptions(kind=kind, overrides=overrides))
        assert result.split["guard_px"] == default_guard()
        codes.append(load_checkpoint(result.model_path).extras["split"].numpy())
    np.testing.assert_array_equal(codes[0], codes[1])
    assert (codes[0] == 2).any() and (codes[0] == 1).any()
