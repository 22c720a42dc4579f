"""hsimap's torch inference of svm/random-forest against scikit-learn's ``predict_proba``.

Fits an RBF-SVM and a random forest on the sample scene's training pixels (polygon split,
seed 0, as ``hsimap train`` does) with the given settings, then times scikit-learn's
``predict_proba`` and hsimap's ``forward_pixels`` on the same pixels, alternately, a few
times in one process, so that both see the same load. Also prints the largest probability
difference between the two.

    python benchmarks/bench_sklearn_inference.py --pixels 30000 --repeats 2
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "potsdam_enmap.tif"
LABELS = ROOT / "sample_data" / "potsdam_landcover.shp"


def sample_pixels() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised spectra ``(H*W, C)``, class index per pixel and the training mask."""
    from hsimap.cube import open_cube
    from hsimap.labels import read_labels
    from hsimap.split import make_split
    from hsimap.training_data import load_scene

    cube, raw, valid = load_scene(open_cube(SAMPLE))
    labels = read_labels(LABELS, grid=cube.grid)
    index = labels.index()
    index[~valid] = -1
    split = make_split(index, labels.groups, method="polygon", val_fraction=0.2, guard=0,
                       seed=0)
    good = raw[:, valid].astype(np.float64)
    std = (raw - good.mean(1)[:, None, None]) / good.std(1)[:, None, None]
    std[:, ~valid] = 0
    x = np.ascontiguousarray(std.reshape(len(std), -1).T, dtype=np.float32)
    return x, index.reshape(-1), split.train.reshape(-1)


def main() -> None:
    """Fit, time both inferences and print one line per model and repeat."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pixels", type=int, default=30000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--svm-c", type=float, default=1000.0)
    parser.add_argument("--svm-gamma-factor", type=float, default=0.25)
    parser.add_argument("--trees", type=int, default=300)
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)
    from hsimap.models.forest import (
        RandomForestConfig,
        RandomForestModel,
        forest_tensors,
        make_forest,
    )
    from hsimap.models.libsvm import fit_svc, svc_tensors
    from hsimap.models.svm import SVMConfig, SVMModel, make_svc

    x, y, train = sample_pixels()
    tr = np.flatnonzero(train)
    k = int(y.max()) + 1
    scale = 1.0 / (x.shape[1] * x[tr].astype(np.float64).var())
    svc = fit_svc(make_svc(args.svm_c, args.svm_gamma_factor * scale, SVMConfig(),
                           probability=True, seed=0), x[tr], y[tr])
    svm = SVMModel(SVMConfig(), n_bands=x.shape[1], n_classes=k)
    svm.set_tensors(svc_tensors(svc))
    config = RandomForestConfig(n_trees=args.trees)
    forest = make_forest(config, seed=0).fit(x[tr], y[tr])
    rf = RandomForestModel(config, n_bands=x.shape[1], n_classes=k)
    rf.set_tensors(forest_tensors(forest, k))
    test = x[np.random.default_rng(0).choice(len(x), args.pixels, replace=False)]
    print(f"svm: {len(svc.support_)} support vectors; forest: {args.trees} trees, "
          f"{int(rf.tree_offsets[-1])} nodes, depth {rf.depth}; {len(test)} pixels, "
          f"torch {torch.get_num_threads()} threads")
    for rep in range(args.repeats):
        for name, sk, ours in (("svm", svc, svm), ("random-forest", forest, rf)):
            start = time.perf_counter()
            expected = sk.predict_proba(test)
            mid = time.perf_counter()
            with torch.inference_mode():
                got = ours.forward_pixels(torch.from_numpy(test)).numpy()
            end = time.perf_counter()
            print(f"{rep + 1} {name}: scikit-learn {len(test) / (mid - start):,.0f} px/s, "
                  f"hsimap {len(test) / (end - mid):,.0f} px/s, max |diff| "
                  f"{np.abs(got[:, sk.classes_] - expected).max():.1e}")


if __name__ == "__main__":
    main()
