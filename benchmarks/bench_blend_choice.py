"""Blend weight chosen on validation: could ``fast`` pick its SVM member's weight per scene?

``fast`` averages its window classifier's and its SVM member's class probabilities with a
fixed weight (0.5 on each) and smooths the result. More weight on the SVM pays on disjoint
fields and costs at random splits, so a weight chosen per training scene on held-out
training pixels -- the validation split ``hsimap train`` makes anyway before its refit --
would be free to take. This checks the idea on stored folds:

1. ``bench_accuracy.py --clf-val guarded --methods blend-dsn-svm --dump VAL_DIR``: every
   fold's two models fitted on its training pixels minus 8 px validation blocks (guarded by
   the model's window radius), the dump recording the validation pixels both held out;
2. the fold's full fits from the main run (``--clf-val none --dump FULL_DIR``).

Per fold, each candidate weight's smoothed blend (``fast``'s smoothing, radius 6, range
0.5) is scored on the validation pixels of (1); the best (ties: the one nearest 0.5) is
then applied to the full fits of (2) and scored on the test pixels beside the fixed 0.5.
Prints one line per fold and the mean paired difference (chosen minus 0.5, standard error).

Example:
  python benchmarks/bench_blend_choice.py --val /tmp/dumps_val --full /tmp/dumps
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_smoothing import fold_scale, smooth_map  # noqa: E402

RADIUS, RANGE = 6, 0.5  # fast's smoothing


def smoothed_maps(fold: dict[str, np.ndarray], weights: list[float]) -> dict[float, np.ndarray]:
    """Label map of each weight's smoothed blend of one fold."""
    valid = fold["valid"]
    guide = torch.from_numpy(fold["guide"].astype(np.float32))
    scale = fold_scale(guide, valid, RADIUS, int(fold["seed"]))
    out = {}
    for w in weights:
        p = w * fold["spatial"] + (1 - w) * fold["spectral"]
        s = smooth_map(p, guide, valid, radius=RADIUS, range_sq=scale * RANGE)
        out[w] = np.where(valid, s.argmax(0), -1)
    return out


def accuracy(pred: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> float:
    """OA % of ``pred`` on ``mask``."""
    return 100.0 * float((pred[mask] == labels[mask]).mean())


def main(argv: list[str] | None = None) -> None:
    """Choose per fold, apply, print."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--val", type=Path, required=True, help="dumps of the guarded fits")
    p.add_argument("--full", type=Path, required=True, help="dumps of the full fits")
    p.add_argument("--weights", default="0.25,0.5,0.75",
                   help="candidate weights of the spatial model")
    args = p.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",")]
    diffs = []
    for vf in sorted(args.val.glob("*.npz")):
        full = args.full / vf.name
        if not full.exists():
            continue
        val, fit = dict(np.load(vf)), dict(np.load(full))
        if not val["val"].any():
            continue
        on_val = {w: accuracy(m, val["labels"], val["val"])
                  for w, m in smoothed_maps(val, weights).items()}
        best = max(weights, key=lambda w: (round(on_val[w], 6), -abs(w - 0.5)))
        maps = smoothed_maps(fit, sorted({0.5, best}))
        fixed = accuracy(maps[0.5], fit["labels"], fit["test"])
        chosen = accuracy(maps[best], fit["labels"], fit["test"])
        diffs.append(chosen - fixed)
        print(f"{vf.stem:34s} validation px {int(val['val'].sum()):5d}  "
              + " ".join(f"w{w:g} {a:5.1f}" for w, a in on_val.items())
              + f"  chosen {best:g}: test {chosen:.2f} vs 0.5: {fixed:.2f} ({diffs[-1]:+.2f})")
    if len(diffs) > 1:
        d = np.array(diffs)
        print(f"chosen - 0.5: {d.mean():+.2f} ± {d.std(ddof=1) / math.sqrt(len(d)):.2f} "
              f"over {len(d)} folds ({int((d > 0).sum())} better, {int((d < 0).sum())} worse)")


if __name__ == "__main__":
    main()
