"""Probability smoothing ablation: DiffSpectralNet's edge-preserving smoothing on stored folds.

Reads the folds that ``bench_accuracy.py --methods svm-rbf,blend-dsn-svm --dump DIR`` wrote
(per fold: the class probabilities of DiffSpectralNet ``fast`` without its SVM member, of
hsimap's ``svm``, the fold's masks and the model's spectral projection of the scene) and
applies :func:`hsimap.models.smoothing.smooth_probabilities` -- the very
function the model runs when ``smooth_radius > 0`` -- to five bases: the 0.5/0.5 blend (the
``fast`` preset's map before smoothing), the blends weighted 0.25 and 0.75 on the spatial
model, the diffusion + transformer model alone, and the SVM alone. Each variant (radius,
range factor; ``inf``: no spectral term, a plain Gaussian) is scored on the fold's test
pixels and paired with the fold's ``svm-rbf`` row from the benchmark's JSON.

Model selection never sees a reported fold: ``--dev-seeds`` (by default 10-14) are the folds
the variant is chosen on (the best mean paired gain over SVM-RBF across every scene and
protocol given, one setting for all), and the table reports ``--seeds`` (by default 0-9).

Examples:
  python benchmarks/bench_smoothing.py --dumps /tmp/dumps --results /tmp/bench/*.json \
      --out /tmp/rows.json
  # the same classifier without diffusion features (bench_accuracy --blend-spatial
  # '{"features": "projection"}' --dump /tmp/dumps_nodiff), paired with the run above:
  python benchmarks/bench_smoothing.py --dumps /tmp/dumps_nodiff --results /tmp/nodiff.json \
      --dev-seeds none --settings 6x0.5 --versus /tmp/rows.json
  # other pooling rules, guides and two passes around fast's setting, then a larger grid
  # re-tabulated from its --out (--summary: every variant, paired with --reference):
  python benchmarks/bench_smoothing.py --dumps /tmp/dumps --results /tmp/bench/*.json \
      --settings 6x0.5 --alternatives 6x0.5
  python benchmarks/bench_smoothing.py --rows /tmp/radius.json --summary
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RADII = (1, 2, 3, 4, 6)
RANGES = (0.5, 1.0, 2.0, 4.0, math.inf)
OTHER_WEIGHTS = (0.25, 0.75)  # spatial-model weights of the blend besides ``fast``'s 0.5


def seed_range(text: str) -> list[int]:
    """``"10-14"`` -> [10, 11, 12, 13, 14]; ``"0,3"`` -> [0, 3]."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def fold_scale(guide: torch.Tensor, valid: np.ndarray, radius: int, seed: int) -> float:
    """The smoothing's scale on a stored fold, as the model's fit computes it: the median
    neighbour distance of the guide (:func:`range_scale`), its sample drawn with ``seed``."""
    from hsimap.models.smoothing import range_scale

    return range_scale(guide, valid, radius=radius, project=lambda t: t,
                       rng=np.random.default_rng(seed))


def smooth_map(p: np.ndarray, guide: torch.Tensor, valid: np.ndarray, *, radius: int,
               range_sq: float) -> np.ndarray:
    """The model's smoothing (:func:`smooth_probabilities`) of a fold's ``(K, H, W)``
    probabilities."""
    from hsimap.models.smoothing import smooth_probabilities

    with torch.no_grad():
        return smooth_probabilities(
            torch.from_numpy(p.astype(np.float32))[None], guide[None],
            torch.from_numpy(valid)[None, None], radius=radius, range_sq=range_sq)[0].numpy()


def variants(fold: dict[str, np.ndarray], seed: int, grid: list[tuple[int, float]],
             only: list[str] | None = None) -> dict[str, np.ndarray]:
    """Label maps of every (base, radius, range) variant of one fold (of the bases ``only``
    names, when given)."""
    valid = fold["valid"]
    guide = torch.from_numpy(fold["guide"].astype(np.float32))
    bases = {"blend": 0.5 * fold["spatial"] + 0.5 * fold["spectral"],
             "spatial": fold["spatial"], "spectral": fold["spectral"],
             **{f"blend{w:g}": w * fold["spatial"] + (1 - w) * fold["spectral"]
                for w in OTHER_WEIGHTS}}
    if only:
        bases = {name: p for name, p in bases.items() if name in only}
    out = {name: np.where(valid, p.argmax(0), -1) for name, p in bases.items()}
    for r in sorted({r for r, _ in grid}):
        scale = fold_scale(guide, valid, r, seed)
        for f in (f for rr, f in grid if rr == r):
            range_sq = 1e30 if math.isinf(f) else scale * f
            for name, p in bases.items():
                s = smooth_map(p, guide, valid, radius=r, range_sq=range_sq)
                out[f"{name}/r{r}x{f:g}"] = np.where(valid, s.argmax(0), -1)
    return out


def alternatives(fold: dict[str, np.ndarray], seed: int, radius: int,
                 factor: float) -> dict[str, np.ndarray]:
    """Label maps of other ways to combine and smooth the two models' probabilities, each
    next to ``fast``'s (the 0.5/0.5 mean smoothed at ``radius`` x ``factor`` with the
    projection as guide): pooling rules (a weighted geometric mean, confidence-weighted
    means), smoothing log-probabilities, two passes, and other guides (the blended
    probabilities themselves, as Hellinger coordinates, and those next to the projection)."""
    valid = fold["valid"]
    ps, pq = fold["spatial"], fold["spectral"]
    eps, k = 1e-6, ps.shape[0]

    def geo(w: float) -> np.ndarray:
        logp = w * np.log(ps + eps) + (1 - w) * np.log(pq + eps)
        e = np.exp(logp - logp.max(0, keepdims=True))
        return e / e.sum(0, keepdims=True)

    def certainty(p: np.ndarray) -> np.ndarray:  # 1 - normalised entropy
        return 1 + (p * np.log(p + eps)).sum(0, keepdims=True) / np.log(k)

    cs, cq = ps.max(0, keepdims=True), pq.max(0, keepdims=True)
    es, eq = certainty(ps), certainty(pq)
    blend = 0.5 * ps + 0.5 * pq
    pools = {"geo0.25": geo(0.25), "geo0.5": geo(0.5), "geo0.75": geo(0.75),
             "maxprob-weighted": (cs * ps + cq * pq) / (cs + cq),
             "certainty-weighted": (es * ps + eq * pq) / (es + eq + eps)}

    def scale_of(g: torch.Tensor) -> float:
        return fold_scale(g, valid, radius, seed)

    def smooth(p: np.ndarray, g: torch.Tensor, range_sq: float) -> np.ndarray:
        return smooth_map(p, g, valid, radius=radius, range_sq=range_sq)

    proj = torch.from_numpy(fold["guide"].astype(np.float32))
    s_proj = scale_of(proj)
    hell = torch.from_numpy(np.sqrt(blend).astype(np.float32))
    s_hell = scale_of(hell)
    both = torch.cat([proj / math.sqrt(s_proj), hell / math.sqrt(s_hell)])
    tag = f"r{radius}x{factor:g}"
    once = smooth(blend, proj, s_proj * factor)
    maps = {f"{name}/{tag}": smooth(p, proj, s_proj * factor) for name, p in pools.items()}
    maps[f"blend/{tag} of log-probabilities"] = smooth(np.log(blend + eps), proj,
                                                       s_proj * factor)
    maps[f"blend/{tag} twice"] = smooth(once, proj, s_proj * factor)
    for f in (0.5, 1.0, 2.0, 4.0):
        maps[f"blend/r{radius} guide probabilities x{f:g}"] = smooth(blend, hell, s_hell * f)
    for f in (0.5, 1.0):
        maps[f"blend/r{radius} guide projection+probabilities x{f:g}"] = smooth(blend, both, f)
    return {name: np.where(valid, p.argmax(0), -1) for name, p in maps.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dumps", type=Path)
    p.add_argument("--results", type=Path, nargs="+", default=[],
                   help="bench_accuracy JSON files with the folds' svm-rbf rows")
    p.add_argument("--seeds", default="0-9", help="reported folds")
    p.add_argument("--dev-seeds", default="10-14",
                   help="folds the variant is chosen on; none: no choice, the fast preset's "
                        "setting is reported")
    p.add_argument("--show", nargs="*", default=[],
                   help="variants to report besides the chosen one, e.g. blend/r2x1")
    p.add_argument("--train-seed", type=int, default=0,
                   help="the folds of bench_accuracy's --train-seed N (seed-spread runs)")
    p.add_argument("--settings", nargs="*", metavar="RxF",
                   help="only these smoothing settings (radius x range factor, e.g. 6x0.5); "
                        "default: the whole grid")
    p.add_argument("--versus", type=Path, metavar="JSON",
                   help="another run's --out (e.g. without diffusion features): also print "
                        "each shown variant's paired difference to it on the same folds")
    p.add_argument("--alternatives", metavar="RxF",
                   help="also score other pooling rules, guides and passes (see "
                        "alternatives()) around this smoothing setting, e.g. 6x0.5, and "
                        "print every variant's dev and reported mean gain per scene")
    p.add_argument("--summary", action="store_true",
                   help="print every variant's dev and reported mean gain per scene, and its "
                        "paired difference to --reference (implied by --alternatives)")
    p.add_argument("--reference", default="blend/r6x0.5",
                   help="the variant --summary pairs the others with (fast's setting)")
    p.add_argument("--rows", type=Path, nargs="+", metavar="JSON",
                   help="tabulate earlier runs' --out (rows of the same folds, e.g. two "
                        "grids) instead of scoring the dumps again")
    p.add_argument("--confusions", metavar="VARIANT",
                   help="print where VARIANT (e.g. blend/r6x0.5) errs on the reported folds: "
                        "per scene/protocol, the most frequent (true, predicted) class pairs "
                        "per fold (class indices in the scene's order)")
    p.add_argument("--bases", nargs="*", metavar="BASE",
                   help="smooth only these bases (blend, spatial, spectral, blend0.25, "
                        "blend0.75); default: all")
    p.add_argument("--out", type=Path, help="write every fold's scores (JSON)")
    args = p.parse_args(argv)

    grid = [(r, f) for r in RADII for f in RANGES] if not args.settings else \
        [(int(r), float(f)) for r, _, f in (x.partition("x") for x in args.settings)]

    base_oa = {}
    for f in args.results:
        for r in json.loads(f.read_text()):
            if r.get("method") == "svm-rbf" and r.get("train_seed", 0) == args.train_seed:
                base_oa[(r["dataset"], r["protocol"], r["seed"])] = r["oa"]
    report = set(seed_range(args.seeds))
    dev = set() if args.dev_seeds == "none" else set(seed_range(args.dev_seeds))
    rows: list[dict] = [] if args.rows is None else \
        [r for f in args.rows for r in json.loads(f.read_text())]
    if args.rows is None and (args.dumps is None or not args.results):
        p.error("--dumps and --results are needed unless --rows is given")
    confusion: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    if args.rows is None:
        rows = score_dumps(args, grid, base_oa, report | dev, confusion)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    print_tables(rows, report, dev, args.show)
    if confusion:
        print_confusions(confusion, args.confusions)
    if args.alternatives or args.summary:
        print_summary(rows, report, dev, args.reference)
    if args.versus:
        print_versus(rows, json.loads(args.versus.read_text()), report, args.show)


def score_dumps(args: argparse.Namespace, grid: list[tuple[int, float]],
                base_oa: dict[tuple, float], seeds: set[int],
                confusion: dict[tuple[str, str], list[np.ndarray]]) -> list[dict]:
    """Every variant's OA, AA and paired gain over SVM-RBF on every stored fold of ``seeds``;
    the confusion matrices of ``--confusions`` on the reported folds go to ``confusion``."""
    from hsimap.metrics import accuracy_metrics, confusion_matrix

    report = set(seed_range(args.seeds))
    rows = []
    for path in sorted(args.dumps.glob(f"*_t{args.train_seed}.npz")):
        fold = dict(np.load(path))
        seed = int(fold["seed"])
        scene, proto = _scene_protocol(path.stem)
        if seed not in seeds or (scene, proto, seed) not in base_oa:
            continue
        labels, test = fold["labels"], fold["test"]
        classes = list(range(fold["spatial"].shape[0]))
        maps = variants(fold, seed + 1000 * args.train_seed, grid, args.bases)
        if args.alternatives:
            r, _, f = args.alternatives.partition("x")
            maps.update(alternatives(fold, seed + 1000 * args.train_seed, int(r), float(f)))
        if args.confusions in maps and seed in report:
            confusion[(scene, proto)].append(confusion_matrix(
                labels[test], maps[args.confusions][test], classes=classes))
        for name, pred in maps.items():
            m = accuracy_metrics(confusion_matrix(labels[test], pred[test], classes=classes),
                                 classes=classes)  # as bench_accuracy's scores()
            oa, aa = 100.0 * m.overall_accuracy, 100.0 * m.average_accuracy
            rows.append({"dataset": scene, "protocol": proto, "seed": seed, "variant": name,
                         "oa": oa, "aa": aa, "diff": oa - base_oa[(scene, proto, seed)]})
        print(f"{path.name}: done", file=sys.stderr, flush=True)
    return rows


SCENES = ("indian_pines", "salinas_a", "potsdam")


def _scene_protocol(stem: str) -> tuple[str, str]:
    """``indian_pines_disjoint_3_t0`` -> (indian_pines, disjoint)."""
    for s in SCENES:
        if stem.startswith(s + "_"):
            return s, stem[len(s) + 1:].split("_")[0]
    raise ValueError(f"not a dump name: {stem}")


def _mean_se(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs, float)
    se = float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")
    return float(a.mean()), se


def print_tables(rows: list[dict], report: set[int], dev: set[int], show: list[str]) -> None:
    """The dev-fold choice, then the reported folds' table."""
    groups = sorted({(r["dataset"], r["protocol"]) for r in rows})
    by: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by[(r["variant"], r["dataset"], r["protocol"], r["seed"] in dev)].append(r)
    names = sorted({r["variant"] for r in rows})
    # one setting for every scene and protocol: the mean over groups of the mean dev gain
    def dev_score(v: str) -> float:
        gains = [np.mean([r["diff"] for r in by[(v, *g, True)]]) for g in groups
                 if by[(v, *g, True)]]
        return float(np.mean(gains)) if gains else -math.inf

    print("## Dev folds (choice): mean paired OA gain over SVM-RBF, per scene/protocol\n")
    print("| variant | mean | " + " | ".join(f"{d} {p}" for d, p in groups) + " |")
    print("|---" * (len(groups) + 2) + "|")
    ranked = sorted(names, key=dev_score, reverse=True)
    for v in ranked[:12] + [n for n in ("blend", "spatial", "spectral") if n not in ranked[:12]]:
        cells = [f"{np.mean([r['diff'] for r in by[(v, *g, True)]]):+.2f}"
                 if by[(v, *g, True)] else "" for g in groups]
        print(f"| {v} | {dev_score(v):+.2f} | " + " | ".join(cells) + " |")
    chosen = next((v for v in ranked if v.startswith("blend") and "/" in v),
                  next((v for v in ranked if "/" in v), "blend/r6x0.5"))  # --bases spectral
    if math.isinf(-dev_score(chosen)):
        chosen = "blend/r6x0.5"  # no dev folds given: the ``fast`` preset's setting
    print(f"\nchosen on the dev folds: {chosen}\n")
    smoothing = chosen.split("/", 1)[1]
    shown = ["blend", chosen, f"blend/{smoothing}", "spatial", f"spatial/{smoothing}",
             "spectral", f"spectral/{smoothing}", *show]
    print("## Reported folds: OA % and paired difference to SVM-RBF (mean ± s.e.)\n")
    print("| scene | protocol | variant | folds | OA (± std) | AA | - svm-rbf "
          "| - blend (unsmoothed) |")
    print("|---|---|---|---|---|---|---|---|")
    for g in groups:
        plain = {r["seed"]: r["oa"] for r in by[("blend", *g, False)]}
        for v in dict.fromkeys(shown):
            rs = by[(v, *g, False)]
            if not rs:
                continue
            oas = np.asarray([r["oa"] for r in rs])
            aa = float(np.mean([r["aa"] for r in rs]))
            d, d_se = _mean_se([r["diff"] for r in rs])
            b, b_se = _mean_se([r["oa"] - plain[r["seed"]] for r in rs
                                if r["seed"] in plain]) if plain else (math.nan, math.nan)
            print(f"| {g[0]} | {g[1]} | {v} | {len(rs)} | {oas.mean():.2f} ± {oas.std(ddof=1):.2f} "
                  f"| {aa:.2f} | {d:+.2f} ± {d_se:.2f} | "
                  + ("" if math.isnan(b) else f"{b:+.2f} ± {b_se:.2f}") + " |")


def print_confusions(confusion: dict[tuple[str, str], list[np.ndarray]], variant: str) -> None:
    """The most frequent errors of ``variant`` per scene/protocol, per fold on average."""
    print(f"\n## Where {variant} errs (reported folds; test pixels per fold)\n")
    print("| scene | protocol | errors / test px | most frequent (true -> predicted: px) |")
    print("|---|---|---|---|")
    for (scene, proto), cms in sorted(confusion.items()):
        cm = np.mean(np.asarray(cms, float), axis=0)
        off = cm - np.diag(np.diag(cm))
        top = np.dstack(np.unravel_index(np.argsort(-off, axis=None)[:6], off.shape))[0]
        pairs = ", ".join(f"{t} -> {p}: {off[t, p]:.1f}" for t, p in top if off[t, p] > 0)
        print(f"| {scene} | {proto} | {off.sum():.1f} / {cm.sum():.0f} | {pairs} |")


def print_summary(rows: list[dict], report: set[int], dev: set[int], reference: str) -> None:
    """Every variant's mean paired gain over SVM-RBF per scene/protocol, on the development
    folds and on the reported ones, ranked by the development mean; then its paired
    difference to ``reference`` (mean ± standard error over folds)."""
    groups = sorted({(r["dataset"], r["protocol"]) for r in rows})
    by: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        part = "dev" if r["seed"] in dev else "report" if r["seed"] in report else None
        if part:
            by[(r["variant"], r["dataset"], r["protocol"], part)].append(r["diff"])

    def cells(v: str, part: str) -> list[float | None]:
        return [float(np.mean(by[(v, *g, part)])) if by[(v, *g, part)] else None
                for g in groups]

    def mean(xs: list[float | None]) -> float:
        ys = [x for x in xs if x is not None]
        return float(np.mean(ys)) if ys else -math.inf

    names = sorted({r["variant"] for r in rows}, key=lambda v: -mean(cells(v, "dev")))
    for part, title in (("dev", "development folds (the choice)"),
                        ("report", "reported folds (not chosen on)")):
        print(f"\n## Every variant, {title}: mean paired OA gain over SVM-RBF\n")
        print("| variant | mean | " + " | ".join(f"{d} {p}" for d, p in groups) + " |")
        print("|---" * (len(groups) + 2) + "|")
        for v in names:
            c = cells(v, part)
            print(f"| {v} | {mean(c):+.2f} | "
                  + " | ".join("" if x is None else f"{x:+.2f}" for x in c) + " |")
    oa = {(r["variant"], r["dataset"], r["protocol"], r["seed"]): r["oa"] for r in rows}
    if not any(key[0] == reference for key in oa):
        return
    for part, seeds in (("development", dev), ("reported", report)):
        print(f"\n## Minus {reference}, {part} folds: paired OA difference (mean ± s.e.)\n")
        print("| variant | " + " | ".join(f"{d} {p}" for d, p in groups) + " |")
        print("|---" * (len(groups) + 1) + "|")
        for v in names:
            if v == reference:
                continue
            out = []
            for g in groups:
                diffs = [oa[(v, *g, sd)] - oa[(reference, *g, sd)] for sd in sorted(seeds)
                         if (v, *g, sd) in oa and (reference, *g, sd) in oa]
                m, se = _mean_se(diffs) if diffs else (math.nan, math.nan)
                out.append(f"{m:+.2f} ± {se:.2f}" if diffs else "")
            print(f"| {v} | " + " | ".join(out) + " |")


def print_versus(rows: list[dict], other: list[dict], report: set[int],
                 show: list[str]) -> None:
    """Paired OA difference of this run's variants to the same variants of ``other``."""
    theirs = {(r["dataset"], r["protocol"], r["seed"], r["variant"]): r["oa"] for r in other}
    print("\n## This run minus the --versus run, same folds and variant (OA, mean ± s.e.)\n")
    print("| scene | protocol | variant | folds | this run | versus run | difference "
          "| better/worse |")
    print("|---|---|---|---|---|---|---|---|")
    groups = sorted({(r["dataset"], r["protocol"]) for r in rows})
    names = show or sorted({r["variant"] for r in rows})
    for g in groups:
        for v in names:
            pairs = [(r["oa"], theirs[(*g, r["seed"], v)]) for r in rows
                     if (r["dataset"], r["protocol"], r["variant"]) == (*g, v)
                     and r["seed"] in report and (*g, r["seed"], v) in theirs]
            if not pairs:
                continue
            a = np.asarray(pairs)
            d, d_se = _mean_se(list(a[:, 0] - a[:, 1]))
            print(f"| {g[0]} | {g[1]} | {v} | {len(a)} | {a[:, 0].mean():.2f} | "
                  f"{a[:, 1].mean():.2f} | {d:+.2f} ± {d_se:.2f} | "
                  f"{int((a[:, 0] > a[:, 1]).sum())}/{int((a[:, 0] < a[:, 1]).sum())} |")


if __name__ == "__main__":
    main()
