"""Probe: are DiffSpectralNet's features better than spectra, whatever the classifier?

For one scene, protocol and a few seeds, fits the fast preset as ``bench_accuracy.py`` does,
then trains the same SVM-RBF (C=100, gamma=scale, inputs standardised on the training pixels)
on several per-pixel inputs and prints test OA (%) per input:

  spectra            the standardised spectra (the svm-rbf row of bench_accuracy)
  spectra-mean3/5    the spectra averaged over 3 x 3 / 5 x 5 px (is spatial context useful?)
  spectra-pca32      the first 32 principal components of the spectra (what the fast
                     preset's spectral projection keeps)
  dsn-features       the classifier's input map (diffusion features + projected spectra)
  diffusion-only     the diffusion features alone
  transformer        DiffSpectralNet's own window classifier (the dsn-fast row)

Example:
  python benchmarks/probe_features.py --data ../shared/data --dataset potsdam --seeds 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def svm_oa(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """Test OA (%) of an SVM-RBF on ``(D, H, W)`` inputs standardised on training pixels."""
    from sklearn.svm import SVC

    flat = x.reshape(x.shape[0], -1).T
    tr, te = train.ravel(), test.ravel()
    mu, sd = flat[tr].mean(0), flat[tr].std(0) + 1e-6
    clf = SVC(C=100.0, gamma="scale").fit((flat[tr] - mu) / sd, y.ravel()[tr])
    return 100.0 * float((clf.predict((flat[te] - mu) / sd) == y.ravel()[te]).mean())


def main(argv: list[str] | None = None) -> None:
    """Run the probe and print a Markdown table."""
    import bench_accuracy as ba
    import torch
    from scipy import ndimage
    from sklearn.decomposition import PCA

    from hsimap.models.base import get_spec
    from hsimap.models.diffspectralnet.features import reduced_dims
    from hsimap.models.diffspectralnet.fit import extract_features
    from hsimap.predict import classify_array

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--dataset", choices=("potsdam", "salinas_a"), default="potsdam")
    p.add_argument("--protocol", default="disjoint")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--guard", type=int, default=8)
    p.add_argument("--overrides", default="{}", help="JSON overrides of the fast preset")
    args = p.parse_args(argv)
    scene = (ba.load_potsdam if args.dataset == "potsdam" else ba.load_salinas_a)(args.data)
    z, _, _ = ba.standardise(scene)
    y = scene.labels
    pca = np.zeros((32, *z.shape[1:]), np.float32)
    pca[:, scene.valid] = PCA(32).fit_transform(z[:, scene.valid].T).T
    spec = get_spec("diffspectralnet")
    cfg = spec.make_config("fast", json.loads(args.overrides))
    rows: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        train, test, _ = ba.protocol_masks(scene, args.protocol, seed, args.guard)
        model, ckpt, _ = ba.fit_on_split(scene, train, seed, "diffspectralnet", cfg)
        feats = extract_features(model, torch.from_numpy(z), torch.device("cpu"),
                                 lambda e: None).numpy()
        fx = model.features
        first = reduced_dims(cfg, fx.map_channels[0]) if fx.keys[0] == (-1, -1) else 0
        pred = classify_array(ckpt, scene.cube, scene.valid)
        result = {
            "spectra": svm_oa(z, y, train, test),
            "spectra-mean3": svm_oa(ndimage.uniform_filter(z, size=(1, 3, 3)), y, train, test),
            "spectra-mean5": svm_oa(ndimage.uniform_filter(z, size=(1, 5, 5)), y, train, test),
            "spectra-pca32": svm_oa(pca, y, train, test),
            "dsn-features": svm_oa(feats, y, train, test),
            "diffusion-only": svm_oa(feats[first:], y, train, test),  # spectra map is first
            "transformer": 100.0 * float((pred[test] == y[test]).mean()),
        }
        print(json.dumps({"seed": seed, **result}), flush=True)
        for k, v in result.items():
            rows.setdefault(k, []).append(v)
    print(f"\n{args.dataset}, {args.protocol}, {args.seeds} seeds, fast preset "
          f"{args.overrides}\n\n| input | classifier | OA (%) |\n|---|---|---:|")
    for k, v in rows.items():
        clf = "DiffSpectralNet window transformer" if k == "transformer" else "SVM-RBF"
        print(f"| {k} | {clf} | {np.mean(v):.1f} ± {np.std(v):.1f} |")


if __name__ == "__main__":
    main()
