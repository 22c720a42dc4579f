"""How a multi-class RBF-SVM's pairwise probabilities should be calibrated, by labels per class.

For each scene, protocol and split, one ``SVC(C=100, gamma="scale", probability=True)``
(the benchmark's SVM-RBF, with libsvm's Platt sigmoids) is fitted on the training pixels'
standardised spectra, and its test pixels are classified three ways:

- ``vote``: libsvm's one-vs-one vote (``SVC.predict``);
- ``pairwise``: the argmax of libsvm's probabilities, one Platt sigmoid per class pair
  (hsimap's ``svm`` with ``calibration = "pairwise"``, computed by hsimap's torch code);
- ``slopes``: the same coupling with libsvm's per-pair slopes and no offsets (which of the
  two per-pair parameters goes wrong);
- ``shared``: the same coupling with one slope for every pair, the median of libsvm's, and
  no offsets (``calibration = "shared"``, :func:`hsimap.models.libsvm.shared_sigmoid`).

It prints OA (%) and the mean negative log-likelihood of the true class for each, plus the
range of libsvm's per-pair slopes (a working sigmoid has a negative slope). C and gamma are
fixed, so the rows differ in the calibration alone; hsimap's own C/gamma search is measured
in ``bench_accuracy.py`` (rows ``hsimap-svm`` and ``svm-shared``).

Example:
  python benchmarks/bench_svm_calibration.py --data ../shared/data --seeds 3 --first-seed 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_accuracy import (  # noqa: E402
    load_indian_pines,
    load_potsdam,
    load_salinas_a,
    protocol_masks,
    standardise,
)

from hsimap.models.libsvm import fit_svc, shared_sigmoid, svc_tensors  # noqa: E402
from hsimap.models.svm import SVMConfig, SVMModel  # noqa: E402

LOADERS = {"indian_pines": load_indian_pines, "potsdam": load_potsdam,
           "salinas_a": load_salinas_a}
WAYS = ("vote", "pairwise", "slopes", "shared")


def score(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray,
          seed: int) -> tuple[dict[str, float], dict[str, float], tuple[float, float]]:
    """OA (%) and NLL of each way on one split, and libsvm's slope range."""
    from sklearn.svm import SVC

    svc = fit_svc(SVC(C=100.0, gamma="scale", probability=True, random_state=seed), x, y)
    tensors = svc_tensors(svc)
    vote = svc.predict(xt)
    k = int(y.max()) + 1
    truth = torch.from_numpy(yt)
    oa, nll = {"vote": 100.0 * float((vote == yt).mean())}, {}
    no_offsets = {**tensors, "prob_b": torch.zeros_like(tensors["prob_b"])}
    for way, t in (("pairwise", tensors), ("slopes", no_offsets),
                   ("shared", shared_sigmoid(tensors))):
        model = SVMModel(SVMConfig(), n_bands=x.shape[1], n_classes=k)
        model.set_tensors(t)
        with torch.inference_mode():
            p = model.forward_pixels(torch.from_numpy(xt))
        oa[way] = 100.0 * float((p.argmax(1) == truth).double().mean())
        nll[way] = float(-p[torch.arange(len(yt)), truth].clamp_min(1e-12).log().mean())
    a = tensors["prob_a"]
    return oa, nll, (float(a.min()), float(a.max()))


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print the table."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--datasets", default="indian_pines,potsdam,salinas_a")
    p.add_argument("--protocols", default="random5px,random10px,random30,disjoint")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=10)
    p.add_argument("--guard", type=int, default=8)
    args = p.parse_args(argv)
    print("| dataset | protocol | splits | OA vote | OA pairwise | OA slopes only | OA shared "
          "| NLL pairwise | NLL shared | libsvm slopes (min .. max) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for ds in args.datasets.split(","):
        scene = LOADERS[ds](args.data)
        z, _, _ = standardise(scene)
        for proto in args.protocols.split(","):
            oas, nlls, lo, hi = [], [], [], []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                train, test, _ = protocol_masks(scene, proto, seed, args.guard)
                oa, nll, (a_min, a_max) = score(
                    z[:, train].T.copy(), scene.labels[train], z[:, test].T.copy(),
                    scene.labels[test], seed)
                oas.append([oa[w] for w in WAYS])
                nlls.append([nll["pairwise"], nll["shared"]])
                lo.append(a_min)
                hi.append(a_max)
            m, n = np.mean(oas, 0), np.mean(nlls, 0)
            print(f"| {ds} | {proto} | {len(oas)} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} "
                  f"| {m[3]:.2f} | {n[0]:.3f} | {n[1]:.3f} | {min(lo):.2f} .. {max(hi):.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
