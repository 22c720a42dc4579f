"""Training/validation splits that keep validation pixels away from training pixels.

``polygon`` (default) puts whole polygons into validation, class by class. Polygons closer
to each other than the guard band always go to the same side (they are merged into one
unit first), because a guard band between touching polygons would otherwise delete most
validation pixels of a patchwork of small polygons; a merged unit holding more than half of
the labelled pixels (or every unit, when there are fewer than ``MIN_UNITS``) is cut into
blocks. ``block`` does the same with square blocks of the
grid (for points or label rasters); ``random`` samples pixels (only to compare with papers:
it leaks). A guard band then removes every validation
pixel within ``guard`` pixels (Chebyshev distance) of a training pixel, so no model window
centred on a training pixel sees a validation pixel when ``guard`` >= its radius.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from hsimap.errors import ConfigError

Validation = Literal["polygon", "block", "random"]
VALIDATION_METHODS: tuple[str, ...] = ("polygon", "block", "random")
MIN_UNITS = 20  # fewer merged polygon units than this are cut into blocks


@dataclass(frozen=True)
class Split:
    """Boolean ``(H, W)`` masks of training and validation pixels, and what it cost."""

    train: np.ndarray
    val: np.ndarray
    method: str
    guard: int
    val_fraction: float
    seed: int
    n_guard_removed: int
    classes_without_val: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-able description (stored with the model and printed by ``train``)."""
        return {"method": self.method, "guard_px": self.guard, "val_fraction": self.val_fraction,
                "seed": self.seed, "n_train": int(self.train.sum()), "n_val": int(self.val.sum()),
                "n_guard_removed": self.n_guard_removed,
                "classes_without_val": self.classes_without_val}

    def as_codes(self) -> np.ndarray:
        """``(H, W)`` uint8: 0 unused, 1 train, 2 validation."""
        return (self.train.astype(np.uint8) + 2 * self.val.astype(np.uint8)).astype(np.uint8)


def make_split(index: np.ndarray, groups: np.ndarray, *, method: str = "polygon",
               val_fraction: float = 0.2, guard: int = 0, seed: int = 0,
               block_size: int | None = None) -> Split:
    """Split labelled pixels into training and validation.

    Parameters
    ----------
    index
        ``(H, W)`` class index per pixel, -1 unlabelled.
    groups
        ``(H, W)`` polygon/region id per pixel, -1 none (used by ``polygon``).
    method
        ``polygon``, ``block`` or ``random``.
    val_fraction
        Target share of each class's pixels in validation (before the guard band).
    guard
        Validation pixels within this Chebyshev distance of a training pixel are dropped.
    block_size
        Side of the blocks for ``block`` (default: ``max(16, 4 * guard)``).
    """
    if method not in VALIDATION_METHODS:
        raise ConfigError(f"unknown validation method {method!r}",
                          fix=f"choose one of {', '.join(VALIDATION_METHODS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"validation fraction must be in [0, 1), got {val_fraction}")
    if guard < 0:
        raise ConfigError(f"guard band must be >= 0 pixels, got {guard}")
    rng = np.random.default_rng(seed)
    labelled = index >= 0
    if method == "random":
        val = _random_pixels(index, val_fraction, rng)
    else:
        block = block_size or max(16, 4 * guard)
        units = proximity_units(np.where(labelled, groups, -1), guard, block) \
            if method == "polygon" else block_units(index.shape, block)
        val = _grouped(index, np.where(labelled, units, -1), val_fraction, rng)
    train = labelled & ~val
    near_train = ndimage.maximum_filter(train, size=2 * guard + 1) if guard else train
    kept = val & ~near_train
    n_classes = int(index.max()) + 1 if labelled.any() else 0
    without = [c for c in range(n_classes)
               if (index == c).any() and not (kept & (index == c)).any()]
    return Split(train, kept, method, guard, val_fraction, seed, int(val.sum() - kept.sum()),
                 without)


def _random_pixels(index: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    val = np.zeros(index.shape, dtype=bool)
    for c in np.unique(index[index >= 0]):
        pix = np.flatnonzero(index == c)
        n_val = min(int(round(fraction * len(pix))), len(pix) - 1)
        val.flat[rng.choice(pix, size=max(n_val, 0), replace=False)] = True
    return val


def proximity_units(groups: np.ndarray, guard: int, block: int,
                     max_share: float = 0.5) -> np.ndarray:
    """Merge groups closer than ``guard`` px into units; cut any unit above ``max_share``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    has = groups >= 0
    if guard == 0 or not has.any():
        return groups
    r = (guard + 1) // 2  # pixels <= guard + 1 apart grow into one cluster
    clusters, n_clusters = ndimage.label(ndimage.maximum_filter(has, size=2 * r + 1),
                                         structure=np.ones((3, 3), dtype=bool))
    g_ids, g = np.unique(groups[has], return_inverse=True)
    c = clusters[has] - 1
    n = len(g_ids) + n_clusters  # bipartite graph: groups, then clusters
    graph = coo_matrix((np.ones(len(g)), (g, c + len(g_ids))), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    units = np.full(groups.shape, -1, dtype=np.int64)
    units[has] = comp[g]
    sizes = np.bincount(units[has])
    big = np.flatnonzero(sizes > max_share * has.sum())
    if len(sizes) < MIN_UNITS:  # a patchwork of touching polygons: cut every unit
        big = np.arange(len(sizes))
    if len(big):
        cut = np.isin(units, big) & has
        units[cut] = units.max() + 1 + block_units(groups.shape, block)[cut]
    return units


def block_units(shape: tuple[int, ...], size: int) -> np.ndarray:
    rows = np.arange(shape[0])[:, None] // size
    cols = np.arange(shape[1])[None, :] // size
    return np.asarray(rows * (-(-shape[1] // size)) + cols)


def _grouped(index: np.ndarray, units: np.ndarray, fraction: float,
             rng: np.random.Generator) -> np.ndarray:
    """Move whole units into validation, class by class, until each class reaches ``fraction``.

    A unit (polygon or block) may hold several classes; it goes to validation only while that
    leaves every class it holds at least one training unit.
    """
    ids, inverse = np.unique(units[units >= 0], return_inverse=True)
    cls = index[units >= 0]
    n_classes = int(index.max()) + 1
    counts = np.zeros((len(ids), n_classes), dtype=np.int64)  # pixels per (unit, class)
    np.add.at(counts, (inverse, cls), 1)
    totals = counts.sum(0)
    in_val = np.zeros(len(ids), dtype=bool)
    val_px = np.zeros(n_classes, dtype=np.int64)
    train_units = (counts > 0).sum(0)
    cap = np.maximum(2 * fraction * totals, 1)  # don't let one class balloon for another
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    for c in np.argsort(totals, kind="stable"):  # rarest class first
        candidates = np.flatnonzero(counts[:, c] > 0)
        jitter = rng.random(len(candidates)) * 0.3  # prefer units rich in c, at random
        for u in candidates[np.argsort(-(share[candidates, c] + jitter))]:
            if val_px[c] >= fraction * totals[c]:
                break
            holds = counts[u] > 0
            if in_val[u] or (train_units[holds] <= 1).any() or \
                    (val_px + counts[u] > cap)[holds].any():
                continue
            in_val[u] = True
            val_px += counts[u]
            train_units[holds] -= 1
    val_ids = ids[in_val]
    return np.isin(units, val_ids) & (units >= 0)
