"""``random-forest``: a random forest on the standardised spectrum, stored as tensors.

Fitting uses scikit-learn's ``RandomForestClassifier``. The checkpoint stores every tree's
node arrays (``children_left``, ``children_right``, ``feature``, ``threshold`` and the class
fractions ``value``), concatenated into flat tensors with per-tree offsets, never a pickle.
Inference walks all trees for all pixels of a chunk at once in torch, one tree level per
step, and averages the leaves' class fractions: scikit-learn's ``predict_proba``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hsimap.errors import ConfigError
from hsimap.models.base import ModelSpec, ProgressCallback, ProgressEvent, TrainData, register
from hsimap.models.fitted import (
    FittedTensorsModel,
    buffer,
    class_counts,
    stratified_subsample,
    training_pixels,
)

#: (pixel, tree) pairs walked at once; bounds the traversal's working memory.
PAIR_CHUNK = 1 << 20
#: Deepest tree a model file may hold (scikit-learn's trees on hsimap's pixel counts stay
#: far below; the bound keeps an edited file from making the walk arbitrarily long).
MAX_DEPTH = 2048


@dataclass(frozen=True)
class RandomForestConfig:
    """Settings of the random forest (scikit-learn's names).

    ``max_features``: ``"sqrt"``, ``"log2"`` or a share of the bands in (0, 1];
    ``max_depth`` 0: unlimited; ``class_weights``: ``class_weight="balanced"``;
    ``max_train_pixels``: stratified subsample above this many training pixels (the file
    grows with the pixel count: a leaf per few pixels and tree); ``n_jobs``: CPU threads
    (-1: all).
    """

    n_trees: int = 300
    max_features: str | float = "sqrt"
    max_depth: int = 0
    min_samples_leaf: int = 1
    bootstrap: bool = True
    class_weights: bool = True
    max_train_pixels: int = 50000
    n_jobs: int = -1

    def __post_init__(self) -> None:
        for name in ("n_trees", "max_depth", "min_samples_leaf", "max_train_pixels", "n_jobs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
        if self.n_trees < 1 or self.min_samples_leaf < 1:
            raise ConfigError(f"n_trees and min_samples_leaf must be positive, got "
                              f"{self.n_trees} and {self.min_samples_leaf}")
        if self.max_depth < 0:
            raise ConfigError(f"max_depth must be 0 (unlimited) or positive, got {self.max_depth}")
        if self.max_train_pixels < 10:
            raise ConfigError(f"max_train_pixels must be at least 10, got "
                              f"{self.max_train_pixels}")
        if self.n_jobs == 0:
            raise ConfigError("n_jobs must be -1 (all CPUs) or a positive number of threads")
        mf = self.max_features
        if isinstance(mf, str):
            if mf not in ("sqrt", "log2"):
                raise ConfigError(f"max_features must be 'sqrt', 'log2' or a share in (0, 1], "
                                  f"got {mf!r}")
        elif isinstance(mf, bool) or not isinstance(mf, (int, float)) or not 0 < mf <= 1:
            raise ConfigError(f"max_features must be 'sqrt', 'log2' or a share in (0, 1], "
                              f"got {mf!r}")


class RandomForestModel(FittedTensorsModel[RandomForestConfig]):
    """A forest of binary trees on single bands, applied per pixel in torch."""

    kind = "random-forest"
    depth: int = 0  # levels of the deepest tree, set when tensors are installed
    stored = {
        "tree_offsets": (torch.int64, 1),  # (T+1,) first node of each tree, then the count
        "children_left": (torch.int32, 1),  # (n,) node index within its tree, -1 at leaves
        "children_right": (torch.int32, 1),  # (n,)
        "feature": (torch.int32, 1),  # (n,) band tested (ignored at leaves)
        # (n,) float32 rounded down from scikit-learn's float64, so for float32 spectra
        # "x <= threshold" is decided exactly as scikit-learn decides it
        "threshold": (torch.float32, 1),
        "value": (torch.float32, 2),  # (n, K) class fractions (used at leaves)
    }

    def check_tensors(self, tensors: Mapping[str, torch.Tensor]) -> str | None:
        """Tree structure (children after their parent, inside their tree) and values."""
        off = tensors["tree_offsets"]
        left, right = tensors["children_left"].long(), tensors["children_right"].long()
        n = len(left)
        if len(off) < 2 or int(off[0]) != 0 or int(off[-1]) != n or \
                bool((off[1:] <= off[:-1]).any()):
            return (f"tree_offsets must rise from 0 to the node count {n} with at least one "
                    "node per tree")
        for name in ("children_right", "feature", "threshold"):
            if tensors[name].shape != (n,):
                return f"{name} has {tuple(tensors[name].shape)} entries, expected ({n},)"
        if tensors["value"].shape != (n, self.n_classes):
            return (f"value is {tuple(tensors['value'].shape)}, expected "
                    f"({n}, {self.n_classes})")
        sizes = off[1:] - off[:-1]
        local = torch.arange(n) - torch.repeat_interleave(off[:-1], sizes)
        size = torch.repeat_interleave(sizes, sizes)
        leaf = left == -1
        if bool((leaf != (right == -1)).any()):
            return "a node has exactly one child"
        inner = ~leaf
        for child in (left[inner], right[inner]):
            if bool((child <= local[inner]).any()) or bool((child >= size[inner]).any()):
                return "a child node does not come after its parent inside its own tree"
        feature = tensors["feature"].long()[inner]
        if bool((feature < 0).any()) or bool((feature >= self.n_bands).any()):
            return f"a split tests a band outside 0..{self.n_bands - 1}"
        value = tensors["value"][leaf]
        if bool((value < 0).any()) or bool((value.sum(1) <= 0).any()):
            return "a leaf has negative class fractions or none at all"
        children, _ = _global_children(off, left, right)
        parents = torch.bincount(children.reshape(-1, 2)[inner].reshape(-1), minlength=n)
        if bool((parents[off[:-1]] != 0).any()) or \
                bool((parents[local != 0] != 1).any()):
            return "a node is not reached from its tree's root by exactly one path"
        if _depth(children, off[:-1], leaf) > MAX_DEPTH:
            return f"a tree is deeper than {MAX_DEPTH} levels"
        return None

    def prepare(self) -> None:
        """Tables for the walk, indexed by *doubled* node ids ``2i`` (and ``2i + 1``), so
        that one step is ``node = child[node + goes_right]`` on int32 ids; leaves point to
        themselves. Plus the leaves' class fractions and the depth."""
        off = buffer(self, "tree_offsets")
        children, leaf = _global_children(off, buffer(self, "children_left").long(),
                                          buffer(self, "children_right").long())
        feature = torch.where(leaf, 0, buffer(self, "feature").long())
        value = buffer(self, "value").double()[leaf]
        leaf_row = torch.full_like(feature, -1)
        leaf_row[leaf] = torch.arange(int(leaf.sum()), device=leaf.device)
        twice = torch.repeat_interleave  # each node's entry at 2i and 2i + 1
        self.register_buffer("child2", (2 * children).int(), persistent=False)  # (2n,)
        self.register_buffer("feature2", twice(feature, 2).int(), persistent=False)
        self.register_buffer("threshold2", twice(buffer(self, "threshold"), 2),
                             persistent=False)
        self.register_buffer("leaf_row2", twice(leaf_row, 2), persistent=False)
        self.register_buffer("is_leaf2", twice(leaf, 2), persistent=False)
        self.register_buffer("leaf_value", (value / value.sum(1, keepdim=True)).float(),
                             persistent=False)  # (leaves, K)
        self.register_buffer("roots2", (2 * off[:-1]).int(), persistent=False)  # (T,)
        self.depth = _depth(children, off[:-1], leaf)

    def leaves(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` float32 spectra -> ``(N, T)`` row in ``leaf_value`` of the leaf each
        pixel reaches in each tree.

        One tree level per step for all (pixel, tree) pairs; every few levels the pairs that
        have reached a leaf are set aside, so the later, sparser levels cost less.
        """
        n, c = x.shape
        roots = buffer(self, "roots2")
        t = len(roots)
        child, feature = buffer(self, "child2"), buffer(self, "feature2")
        threshold, is_leaf = buffer(self, "threshold2"), buffer(self, "is_leaf2")
        node = roots.repeat(n)  # (N*T,) int32, pair p = pixel p // T, tree p % T
        base = torch.arange(n, dtype=torch.int32, device=x.device).repeat_interleave(t) * c
        where = torch.arange(n * t, device=x.device)
        done = torch.empty(n * t, dtype=torch.int32, device=x.device)
        flat = x.reshape(-1)
        for level in range(self.depth):
            if level >= 6 and level % 3 == 0:
                at_leaf = is_leaf.index_select(0, node)
                finished = at_leaf.nonzero()[:, 0]
                if len(finished):
                    done.index_copy_(0, where.index_select(0, finished),
                                     node.index_select(0, finished))
                    going = (~at_leaf).nonzero()[:, 0]
                    node, base, where = (v.index_select(0, going) for v in (node, base, where))
                    if len(node) == 0:
                        break
            v = flat.index_select(0, base + feature.index_select(0, node))
            # scikit-learn: x <= threshold goes left
            node = child.index_select(0, node + (v > threshold.index_select(0, node)))
        done.index_copy_(0, where, node)
        return buffer(self, "leaf_row2").index_select(0, done).view(n, t)

    def forward_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` -> ``(N, K)`` float64 mean of the trees' leaf class fractions."""
        n_trees = len(buffer(self, "roots2"))
        step = max(1, min(PAIR_CHUNK // n_trees, (2**31 - 1) // max(1, x.shape[1])))
        value = buffer(self, "leaf_value")
        out = []
        for i in range(0, x.shape[0], step):
            rows = self.leaves(x[i:i + step])  # (n, T)
            out.append(value.index_select(0, rows.reshape(-1)).view(*rows.shape, -1)
                       .sum(1, dtype=torch.float64) / n_trees)
        return torch.cat(out)


def _global_children(offsets: torch.Tensor, left: torch.Tensor, right: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(2n,)`` scene-wide ``[left, right]`` child of every node (leaves point to
    themselves, so a walk may run past them) and the ``(n,)`` leaf mask."""
    sizes = offsets[1:] - offsets[:-1]
    start = torch.repeat_interleave(offsets[:-1], sizes)
    node = torch.arange(len(left), device=left.device)
    leaf = left == -1
    children = torch.stack([torch.where(leaf, node, left + start),
                            torch.where(leaf, node, right + start)], 1).reshape(-1)
    return children, leaf


def _depth(children: torch.Tensor, roots: torch.Tensor, leaf: torch.Tensor) -> int:
    """Levels from the roots to the deepest leaf; stops counting past :data:`MAX_DEPTH`.

    Children come after their parents, so the walk ends; every node has one parent, so the
    frontiers together hold each node once.
    """
    frontier, depth = roots, 0
    while depth <= MAX_DEPTH:
        frontier = frontier[~leaf[frontier]]
        if len(frontier) == 0:
            return depth
        frontier = torch.cat([children[2 * frontier], children[2 * frontier + 1]])
        depth += 1
    return depth


def forest_tensors(forest: Any, n_classes: int) -> dict[str, torch.Tensor]:
    """The stored tensors of a fitted ``sklearn.ensemble.RandomForestClassifier`` whose
    classes are output class indices (``forest.classes_`` within ``0..n_classes-1``)."""
    classes = np.asarray(forest.classes_, np.int64)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                          ("left", "right", "feature", "threshold", "value")}
    offsets = [0]
    for est in forest.estimators_:
        tree = est.tree_
        parts["left"].append(tree.children_left.astype(np.int32))
        parts["right"].append(tree.children_right.astype(np.int32))
        parts["feature"].append(tree.feature.astype(np.int32))
        parts["threshold"].append(_round_down_f32(tree.threshold))
        frac = tree.value[:, 0, :].astype(np.float64)
        frac /= np.maximum(frac.sum(1, keepdims=True), 1e-300)
        value = np.zeros((tree.node_count, n_classes), np.float32)
        value[:, classes] = frac
        parts["value"].append(value)
        offsets.append(offsets[-1] + tree.node_count)
    return {
        "tree_offsets": torch.tensor(offsets, dtype=torch.int64),
        "children_left": torch.from_numpy(np.concatenate(parts["left"])),
        "children_right": torch.from_numpy(np.concatenate(parts["right"])),
        "feature": torch.from_numpy(np.concatenate(parts["feature"])),
        "threshold": torch.from_numpy(np.concatenate(parts["threshold"])),
        "value": torch.from_numpy(np.concatenate(parts["value"])),
    }


def _round_down_f32(values: np.ndarray) -> np.ndarray:
    """The largest float32 not above each float64 value."""
    out = values.astype(np.float32)
    up = out.astype(np.float64) > values
    out[up] = np.nextafter(out[up], np.float32(-np.inf))
    return out


def build(config: RandomForestConfig, *, n_bands: int, n_classes: int) -> RandomForestModel:
    """An empty model (tensors set by ``fit`` or by loading a checkpoint)."""
    return RandomForestModel(config, n_bands=n_bands, n_classes=n_classes)


def make_forest(config: RandomForestConfig, *, seed: int) -> Any:
    """The scikit-learn estimator with hsimap's settings."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=config.n_trees, max_features=config.max_features,
        max_depth=config.max_depth or None, min_samples_leaf=config.min_samples_leaf,
        bootstrap=config.bootstrap, n_jobs=config.n_jobs, random_state=seed,
        class_weight="balanced" if config.class_weights else None)


def fit(data: TrainData, config: RandomForestConfig, *, seed: int, device: torch.device,
        progress: ProgressCallback) -> tuple[RandomForestModel, dict[str, Any]]:
    """Grow the forest on the training pixels, a tenth of the trees at a time (progress)."""
    start = time.perf_counter()
    _, x, y = training_pixels(data)
    n_train = len(y)
    used = stratified_subsample(y, config.max_train_pixels, seed=seed)
    x, y = x[used], y[used]
    forest = make_forest(config, seed=seed).set_params(warm_start=True)  # grown in steps
    step = max(1, -(-config.n_trees // 10))
    progress(ProgressEvent("forest", 0, config.n_trees))
    for grown in range(step, config.n_trees + step, step):
        forest.set_params(n_estimators=min(grown, config.n_trees))
        with warnings.catch_warnings():  # every step sees the same pixels: the warning
            warnings.filterwarnings("ignore", message=".*warm_start.*")  # does not apply
            forest.fit(x, y)
        progress(ProgressEvent("forest", len(forest.estimators_), config.n_trees))
    model = build(config, n_bands=data.n_bands, n_classes=data.n_classes)
    model.set_tensors(forest_tensors(forest, data.n_classes))
    nodes = [int(e.tree_.node_count) for e in forest.estimators_]
    history = {"random_forest": {
        "training_pixels": n_train, "pixels_used": len(y), "subsampled": len(y) < n_train,
        "subsample": f"stratified, at most {config.max_train_pixels} px (max_train_pixels)",
        "class_pixels_used": class_counts(y, data.n_classes),
        "trees": len(nodes), "nodes": sum(nodes), "max_depth": model.depth,
        "seconds": time.perf_counter() - start,
    }}
    return model.to(device).eval(), history


def refit(model: Any, data: TrainData, config: RandomForestConfig, history: Mapping[str, Any],
          *, seed: int, device: torch.device,
          progress: ProgressCallback) -> tuple[RandomForestModel, dict[str, Any]]:
    """Grow the forest again on every labelled pixel (same settings)."""
    return fit(data, config, seed=seed, device=device, progress=progress)


SPEC = register(ModelSpec(
    kind=RandomForestModel.kind,
    config_cls=RandomForestConfig,
    presets={"fast": {}, "thorough": {"n_trees": 1000}},
    default_preset="fast",
    build=build,
    fit=fit,
    refit=refit,
    description="random forest on the spectrum (scikit-learn, stored as tree arrays)",
))
