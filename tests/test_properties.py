"""Properties that must hold for any input: tiled maps equal untiled ones, labels invent nothing.

Tile coverage itself (every pixel written exactly once) is tested in ``test_tiling.py``.
Here a model *with spatial context* (a fixed convolution, halo = its radius) checks that the
halo, cropping and mosaicking of both the in-memory path (``classify_array``) and the streamed
GeoTIFF path (``predict_scene``) reproduce an untiled forward pass exactly. Its weights are
small integers and it sums in float64, so the result does not depend on summation order.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsimap.checkpoint import Checkpoint, Normalisation, save_checkpoint
from hsimap.classes import ClassTable
from hsimap.cube import Grid
from hsimap.errors import LabelError
from hsimap.models.base import HsiModel, ModelSpec, register
from hsimap.predict import classify_array

from .fixtures import ORIGIN, TRANSFORM, UTM

# --------------------------------------------------------------------------- a model with a halo


@dataclass(frozen=True)
class BoxConfig:
    """A fixed (2r+1)x(2r+1) convolution with integer weights drawn from ``seed``."""

    radius: int = 1
    seed: int = 0


class BoxModel(HsiModel):
    """Logits = integer-weight convolution of the normalised tile, zero-padded, in float64."""

    kind = "test-box"

    def __init__(self, config: BoxConfig, *, n_bands: int, n_classes: int) -> None:
        super().__init__()
        self.config = config
        k = 2 * config.radius + 1
        weights = torch.randint(-3, 4, (n_classes, n_bands, k, k),
                                generator=torch.Generator().manual_seed(config.seed))
        self.register_buffer("weight", weights.to(torch.float64))

    def halo(self) -> int:
        return self.config.radius

    def forward_tile(self, x: torch.Tensor, *, origin: tuple[int, int]) -> torch.Tensor:
        out = torch.nn.functional.conv2d(x.to(torch.float64), self.weight,
                                         padding=self.config.radius)
        return out.to(torch.float32)

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)


def _no_fit(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


register(ModelSpec(kind=BoxModel.kind, config_cls=BoxConfig, presets={"default": {}},
                   default_preset="default", build=BoxModel, fit=_no_fit))  # type: ignore[arg-type]


def box_checkpoint(*, radius: int, n_bands: int, n_classes: int, seed: int,
                   values: np.ndarray, valid: np.ndarray) -> Checkpoint:
    model = BoxModel(BoxConfig(radius, seed), n_bands=n_bands, n_classes=n_classes).eval()
    pixels = values[:, valid].astype(np.float64)
    mean = pixels.mean(axis=1) if pixels.size else np.zeros(n_bands)
    std = pixels.std(axis=1) if pixels.size else np.ones(n_bands)
    std[std == 0] = 1.0
    norm = Normalisation(mean.astype(np.float32), std.astype(np.float32))
    classes = ClassTable.from_pairs([(3 * i + 2, f"c{i}") for i in range(n_classes)])
    meta = {"n_bands": n_bands, "band_indices": list(range(n_bands)), "wavelengths": None}
    return Checkpoint(model, norm, classes, meta)


def untiled(ckpt: Checkpoint, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The reference: one forward pass over the whole scene, -1 where invalid."""
    x = ckpt.norm.apply(values.astype(np.float32).copy(), valid)
    with torch.inference_mode():
        logits = ckpt.model.forward_tile(torch.from_numpy(x)[None], origin=(0, 0))[0]
    return np.where(valid, logits.argmax(0).numpy(), -1)


@st.composite
def scenes(draw: st.DrawFn, min_bands: int = 1, max_side: int = 24, min_tile: int = 1
           ) -> dict[str, Any]:
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    bands = draw(st.integers(min_bands, min_bands + 3))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    values = rng.normal(100, 20, size=(bands, h, w)).astype(np.float32)
    valid = rng.random((h, w)) > draw(st.sampled_from([0.0, 0.1, 0.5]))
    return {"values": values, "valid": valid, "seed": seed,
            "radius": draw(st.integers(0, 4)), "n_classes": draw(st.integers(2, 5)),
            "tile": draw(st.integers(min_tile, max_side + 5))}


@settings(max_examples=60, deadline=None)
@given(scene=scenes())
def test_tiled_classification_equals_an_untiled_pass(scene: dict[str, Any]) -> None:
    values, valid = scene["values"], scene["valid"]
    ckpt = box_checkpoint(radius=scene["radius"], n_bands=values.shape[0],
                          n_classes=scene["n_classes"], seed=scene["seed"], values=values,
                          valid=valid)
    tiled = classify_array(ckpt, values, valid, tile=scene["tile"])
    np.testing.assert_array_equal(tiled, untiled(ckpt, values, valid))


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scene=scenes(min_bands=5, max_side=30, min_tile=3))
def test_streamed_map_equals_an_untiled_pass(scene: dict[str, Any]) -> None:
    """The real path: GeoTIFF in, checkpoint file, ``predict_scene``, GeoTIFF out."""
    from hsimap.predict import predict_scene

    values, valid = scene["values"], scene["valid"]
    if not valid.any():
        valid = valid.copy()
        valid[0, 0] = True
    nodata = -9999.0
    raw = np.where(valid, values, np.float32(nodata)).astype(np.float32)
    ckpt = box_checkpoint(radius=scene["radius"], n_bands=values.shape[0],
                          n_classes=scene["n_classes"], seed=scene["seed"], values=raw,
                          valid=valid)
    expected = untiled(ckpt, raw, valid)
    lut = np.asarray(ckpt.classes.values)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cube = folder / "cube.tif"
        c, h, w = raw.shape
        with rasterio.open(cube, "w", driver="GTiff", height=h, width=w, count=c,
                           dtype="float32", crs=UTM, transform=TRANSFORM, nodata=nodata) as dst:
            dst.write(raw)
        model = save_checkpoint(folder / "box.safetensors", ckpt)
        out = folder / "map.tif"
        predict_scene(cube, out=out, model_path=model, tile=scene["tile"], device="cpu")
        with rasterio.open(out) as src:
            mapped = src.read(1)
            assert src.transform == TRANSFORM and src.crs == rasterio.crs.CRS.from_string(UTM)
    np.testing.assert_array_equal(mapped, np.where(expected >= 0, lut[expected.clip(0)], 0))


# --------------------------------------------------------------------------- labels


GRID = Grid(12, 10, TRANSFORM, rasterio.crs.CRS.from_string(UTM))


@st.composite
def features(draw: st.DrawFn) -> list[tuple[Any, int]]:
    """1-6 boxes in quarter-pixel steps, some partly or wholly outside the 12x10 grid."""
    from shapely.geometry import box

    out = []
    for _ in range(draw(st.integers(1, 6))):
        c0, r0 = draw(st.integers(-20, 44)), draw(st.integers(-20, 52))
        dc, dr = draw(st.integers(1, 24)), draw(st.integers(1, 24))
        x0, y0 = ORIGIN
        geom = box(x0 + 7.5 * c0, y0 - 7.5 * (r0 + dr), x0 + 7.5 * (c0 + dc), y0 - 7.5 * r0)
        out.append((geom, draw(st.integers(1, 9))))
    return out


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=60, deadline=None)
@given(feats=features(), all_touched=st.booleans())
def test_rasterized_labels_never_invent_a_class(feats: list[tuple[Any, int]],
                                                all_touched: bool) -> None:
    import geopandas as gpd
    from shapely.geometry import Point, box

    from hsimap.labels import read_labels

    frame = gpd.GeoDataFrame({"class_id": [c for _, c in feats]},
                             geometry=[g for g, _ in feats], crs=UTM)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gt.geojson"
        path.write_text(frame.to_json(), encoding="utf-8")
        try:
            labels = read_labels(path, grid=GRID, all_touched=all_touched, on_overlap="drop")
        except LabelError as exc:  # nothing on the grid: must be said, not mapped
            assert "overlap the cube" in str(exc) or "no labelled pixel" in str(exc)
            return
    grid_box = box(*GRID.bounds)
    on_grid = {c for g, c in feats if g.intersects(grid_box)}
    present = set(np.unique(labels.values).tolist())
    assert present <= {0} | on_grid
    assert set(labels.classes.values) <= {c for _, c in feats}
    x0, y0 = ORIGIN
    for r, col in zip(*np.nonzero(labels.values), strict=True):
        value = int(labels.values[r, col])
        cell = box(x0 + 30 * col, y0 - 30 * (r + 1), x0 + 30 * (col + 1), y0 - 30 * r)
        centre = Point(x0 + 30 * col + 15, y0 - 30 * r - 15)
        touching = {c for g, c in feats if g.intersects(cell)}
        assert value in touching  # every label comes from a feature on that pixel
        if not all_touched:  # ...and no other class strictly contains its centre
            assert {c for g, c in feats if g.contains(centre)} <= {value}
        group = int(labels.groups[r, col])
        assert group >= 0


def test_box_model_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    """The property tests' model loads back like any other (guards the test itself)."""
    from hsimap.checkpoint import load_checkpoint

    values = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    valid = np.ones((6, 7), dtype=bool)
    ckpt = box_checkpoint(radius=2, n_bands=5, n_classes=3, seed=1, values=values, valid=valid)
    path = save_checkpoint(tmp_path / "box.safetensors", ckpt)
    loaded = load_checkpoint(path)
    assert loaded.model.halo() == 2 and json.loads(json.dumps(loaded.meta))["model_kind"] == \
        "test-box"
    np.testing.assert_array_equal(untiled(loaded, values, valid), untiled(ckpt, values, valid))


def test_safetensors_headers_that_begin_like_a_pickle_still_load(tmp_path: Path) -> None:
    """Header lengths 640, 896, 1152, 1408 bytes start with pickle's magic b"\\x80\\x02".."5"."""
    from safetensors.torch import save_file

    from hsimap.checkpoint import read_metadata

    values = np.zeros((5, 2, 2), dtype=np.float32)
    ckpt = box_checkpoint(radius=0, n_bands=5, n_classes=2, seed=0, values=values,
                          valid=np.ones((2, 2), dtype=bool))
    good = save_checkpoint(tmp_path / "good.safetensors", ckpt)
    meta = read_metadata(good)
    from safetensors.torch import load_file

    tensors = load_file(str(good))
    hit = set()
    path = tmp_path / "m.safetensors"
    for pad in range(0, 1200):
        meta["note"] = "x" * pad
        save_file(tensors, str(path), metadata={"hsimap": json.dumps(meta)})
        head = path.read_bytes()[:2]
        if head in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
            hit.add(head)
            assert read_metadata(path)["note"] == "x" * pad
            if len(hit) == 2:
                break
    assert len(hit) >= 2  # the loop did reach such headers


# --------------------------------------------------------------------------- one split per dataset


@st.composite
def labelled_scenes(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """``(index, groups)``: random axis-aligned polygons of 2-3 classes on a small grid."""
    h, w = draw(st.integers(12, 40)), draw(st.integers(12, 40))
    index = np.full((h, w), -1, dtype=np.int64)
    groups = np.full((h, w), -1, dtype=np.int64)
    n_classes = draw(st.integers(2, 3))
    for g in range(draw(st.integers(n_classes, 14))):
        r0, c0 = draw(st.integers(0, h - 2)), draw(st.integers(0, w - 2))
        r1 = draw(st.integers(r0 + 1, min(h, r0 + 8)))
        c1 = draw(st.integers(c0 + 1, min(w, c0 + 8)))
        index[r0:r1, c0:c1] = g % n_classes
        groups[r0:r1, c0:c1] = g
    return index, groups


BUILTIN_KINDS = ("diffspectralnet", "spectral-mlp", "svm", "random-forest")


@settings(max_examples=40, deadline=None)
@given(scene=labelled_scenes(), kinds=st.lists(st.sampled_from(BUILTIN_KINDS), min_size=2,
                                               max_size=2),
       method=st.sampled_from(["polygon", "block", "random"]), seed=st.integers(0, 3),
       guard=st.one_of(st.none(), st.integers(0, 5)))
def test_two_model_kinds_get_the_same_split(scene: tuple[np.ndarray, np.ndarray],
                                            kinds: list[str], method: str, seed: int,
                                            guard: int | None) -> None:
    """The split is a function of the labels and the split options, never of the model kind."""
    from hsimap.training_data import TrainOptions, dataset_split

    index, groups = scene
    a, b = (dataset_split(index, groups, TrainOptions(kind=k, validation=method, seed=seed,
                                                      guard=guard)) for k in kinds)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.val, b.val)
    assert a.summary() == b.summary()
    assert not (a.train & a.val).any()


def test_default_guard_covers_every_shipped_window() -> None:
    """The default guard is at least the window radius of every preset of every built-in kind."""
    from hsimap.models.base import get_spec
    from hsimap.training_data import default_guard

    widest = 0
    for kind in BUILTIN_KINDS:
        spec = get_spec(kind)
        for preset in spec.presets:
            model = spec.build(spec.make_config(preset), n_bands=6, n_classes=3)
            widest = max(widest, model.window_radius())
    assert default_guard() == widest
    assert widest >= get_spec("diffspectralnet").build(
        get_spec("diffspectralnet").make_config("paper"), n_bands=6, n_classes=3
    ).window_radius() > 0
