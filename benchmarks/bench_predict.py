"""Benchmark ``hsimap predict`` at scale: peak memory vs scene size, throughput, FLOP/s.

Three measurements, all in one run so that their ratios are comparable (the machine may be
shared; absolute numbers are noisy):

1. Peak RSS of the ``hsimap predict`` child process (``os.wait4`` rusage) at default settings
   on a small and a 9x larger scene (``benchmarks/make_scenes.py``): absolute and ratio.
2. End-to-end throughput (px/s) of ``predict_scene`` for each model/preset, against a naive
   per-pixel-patch inference of the same model (``forward_tile`` on each pixel's
   ``(2*halo+1)^2`` patch, centre kept; timed on a few pixels and extrapolated).
3. Achieved FLOP/s of one tile's forward pass (``torch.utils.flop_counter``) against this
   machine's fp32 matmul FLOP/s measured in the same run.

Models come from ``--model-dir`` when it holds them. Otherwise the spectral-MLP, svm and
random-forest are trained on the bundled sample scene (seconds to a minute; svm and
random-forest with their full preset: their speed depends on the support vectors and tree
nodes that fitting makes) and DiffSpectralNet presets are built with random weights
(``--train`` trains them on the sample instead, with a few iterations only unless
``--full-train``): speed does not depend on the weights' values.

    python benchmarks/make_scenes.py --out /tmp/hsimap-bench  # 600 and 1800 px, about 1 GB
    python benchmarks/bench_predict.py --scenes /tmp/hsimap-bench \\
        --models spectral-mlp,diffspectralnet:fast,diffspectralnet:paper
    python benchmarks/bench_predict.py --no-memory --models svm,random-forest
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "potsdam_enmap.tif"
LABELS = ROOT / "sample_data" / "potsdam_landcover.shp"
QUICK = {
    "spectral-mlp": {"epochs": 3},
    "diffspectralnet": {"denoiser_iterations": 2, "clf_epochs": 1, "patience": 0},
}


MEMBER_PIXELS = {"n": 2000}  # set from --member-pixels in main()


def model_file(spec: str, folder: Path, quick: bool, train: bool) -> Path:
    """The checkpoint for ``kind[:preset]`` in ``folder``, made if missing."""
    from hsimap.training import TrainOptions, train_model

    kind, _, preset = spec.partition(":")
    random = kind == "diffspectralnet" and not train
    tag = "_random" if random else ("_quick" if quick and kind in QUICK else "")
    if random and MEMBER_PIXELS["n"] != 2000:
        tag += f"_member{MEMBER_PIXELS['n']}"
    path = folder / f"{kind}_{preset or 'default'}{tag}.safetensors"
    if not path.exists() and random:
        return random_model(kind, preset, path, model_file("spectral-mlp", folder, True, True))
    if not path.exists():
        print(f"training {spec} on the sample scene -> {path}", file=sys.stderr)
        train_model(SAMPLE, LABELS, out=path, options=TrainOptions(
            kind=kind, preset=preset or None, overrides=QUICK.get(kind, {}) if quick else {}))
    return path


def random_model(kind: str, preset: str, path: Path, donor: Path) -> Path:
    """A ``kind``/``preset`` model with random weights and buffers, the donor's classes/bands."""
    from hsimap.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from hsimap.models.base import get_spec
    from hsimap.models.untrained import untrained_model

    base = load_checkpoint(donor)
    model = untrained_model(kind, get_spec(kind).make_config(preset or None),
                            n_bands=len(base.band_indices), n_classes=len(base.classes),
                            member_pixels=MEMBER_PIXELS["n"])
    save_checkpoint(path, Checkpoint(model.eval(), base.norm, base.classes, dict(base.meta)))
    return path


def peak_rss(scene: Path, model: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """(max RSS in MiB, wall seconds) of one ``hsimap predict`` child process."""
    cmd = [sys.executable, "-m", "hsimap.cli.main", "-q", "predict", str(scene), "-o", str(out),
           "--model", str(model), "--overwrite", *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return usage.ru_maxrss / 1024, wall


def matmul_flops(n: int = 2048, repeat: int = 5) -> float:
    """Best fp32 matmul FLOP/s of this process's torch threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeat))
    return 2 * n**3 / best


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def tile_flops(ckpt: object, x: torch.Tensor) -> tuple[float, float, str]:
    """(FLOPs, seconds) of one forward pass of the feature extractor (or the whole model)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = ckpt.model  # type: ignore[attr-defined]
    features = getattr(model, "features", None)
    if features is not None:
        def fn() -> object:
            return features(x, (0, 0))
        part = "feature extractor"
    else:
        def fn() -> object:
            return model.forward_tile(x, origin=(0, 0))
        part = "whole model"
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            fn()
        fn()
        seconds = min(_timed(fn) for _ in range(2))
    return float(counter.get_total_flops()), seconds, part


def naive_px_per_s(ckpt: object, scene: Path, n_pixels: int, budget_s: float) -> float:
    """Per-pixel patch inference: ``forward_tile`` on each pixel's patch, centre kept."""
    from hsimap.cube import open_cube

    model = ckpt.model  # type: ignore[attr-defined]
    halo = model.halo()
    cube = open_cube(scene).with_bad_bands(tuple(sorted(
        set(range(ckpt.n_bands)) - set(ckpt.band_indices))))  # type: ignore[attr-defined]
    side = 2 * halo + 1
    size = min(cube.grid.height, cube.grid.width, max(64, side + 16))
    values, valid = cube.read((0, size), (0, size))
    x = torch.from_numpy(ckpt.norm.apply(values, valid))  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    done, start = 0, time.perf_counter()
    with torch.inference_mode():
        while done < n_pixels and time.perf_counter() - start < budget_s:
            r, c = (int(v) for v in rng.integers(0, size, 2))
            r0, c0 = max(0, r - halo), max(0, c - halo)
            patch = x[:, r0:r + halo + 1, c0:c + halo + 1][None]
            logits = model.forward_tile(patch, origin=(r0, c0))
            logits[0, :, r - r0, c - c0].argmax()
            done += 1
    return done / (time.perf_counter() - start)


def throughput(spec: str, model: Path, scene: Path, work: Path, naive_pixels: int,
               naive_budget: float, peak: float) -> dict[str, object]:
    """End-to-end px/s, naive px/s and FLOP/s of one model on ``scene``."""
    from hsimap.checkpoint import load_checkpoint
    from hsimap.predict import predict_scene

    ckpt = load_checkpoint(model)
    result = predict_scene(scene, out=work / "tp.tif", model_path=model, overwrite=True)
    import rasterio

    with rasterio.open(scene) as src:
        pixels = src.height * src.width
    e2e = pixels / result.seconds
    naive = naive_px_per_s(ckpt, scene, naive_pixels, naive_budget)
    side = result.tile + 2 * result.halo
    x = torch.randn(1, len(ckpt.band_indices), side, side)
    flops, seconds, part = tile_flops(ckpt, x)
    achieved = flops / seconds
    return {"model": spec, "halo": result.halo, "tile": result.tile, "pixels": pixels,
            "seconds": round(result.seconds, 2), "px_per_s": round(e2e),
            "naive_px_per_s": round(naive, 2), "speedup": round(e2e / naive, 1),
            "flops_per_tile_px": round(flops / (side * side)), "flop_part": part,
            "achieved_gflops": round(achieved / 1e9, 1),
            "fraction_of_matmul": round(achieved / peak, 3)}


def main() -> None:
    """Run the benchmarks and print a Markdown table (and ``--json`` results)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=Path, default=Path("/tmp/hsimap-bench"),
                        help="folder with scene_<N>.tif from make_scenes.py")
    parser.add_argument("--small", type=int, default=600,
                        help="side of the small scene (several tiles, so caches and queues fill)")
    parser.add_argument("--large", type=int, default=1800, help="side of the 9x-pixel scene")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-RSS measurement (throughput rows only)")
    parser.add_argument("--models", default="spectral-mlp,diffspectralnet:fast")
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/hsimap-bench/models"))
    parser.add_argument("--memory-model", default="spectral-mlp",
                        help="model of the peak-RSS measurement")
    parser.add_argument("--throughput-scene", type=int, default=None,
                        help="scene size for throughput (default: --large; paper uses --small)")
    parser.add_argument("--train", action="store_true",
                        help="train DiffSpectralNet models on the sample instead of random weights")
    parser.add_argument("--full-train", action="store_true",
                        help="with --train: the full preset schedule (slow) instead of quick")
    parser.add_argument("--naive-pixels", type=int, default=300)
    parser.add_argument("--naive-seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--member-pixels", type=int, default=2000,
                        help="random DiffSpectralNet models: random spectra their SVM member "
                             "is fitted on (about its support vectors; a real fit keeps at "
                             "most svm's max_train_pixels, 5,000)")
    args = parser.parse_args()
    MEMBER_PIXELS["n"] = args.member_pixels
    args.model_dir.mkdir(parents=True, exist_ok=True)
    quick = not args.full_train
    specs = [s.strip() for s in args.models.split(",") if s.strip()]
    small = args.scenes / f"scene_{args.small}.tif"
    large = args.scenes / f"scene_{args.large}.tif"
    for scene in () if args.no_memory else (small, large):
        if not scene.exists():
            raise SystemExit(f"{scene} missing: run benchmarks/make_scenes.py --out {args.scenes}")
    work = args.model_dir.parent / "out"
    work.mkdir(exist_ok=True)
    info = {"date": dt.date.today().isoformat(), "machine": _cpu(),
            "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    peak = matmul_flops()
    info["matmul_gflops"] = round(peak / 1e9, 1)
    memory: dict = {}
    if not args.no_memory:
        mem_model = model_file(args.memory_model, args.model_dir, quick, args.train)
        for name, scene in (("small", small), ("large", large)):
            rss, wall = peak_rss(scene, mem_model, work / f"mem_{name}.tif", [])
            memory[name] = {"scene": scene.name, "max_rss_mib": round(rss),
                            "seconds": round(wall, 1)}
        memory["ratio"] = round(memory["large"]["max_rss_mib"]
                                / memory["small"]["max_rss_mib"], 3)
    rows = []
    for spec in specs:
        model = model_file(spec, args.model_dir, quick, args.train)
        size = args.throughput_scene or (args.small if spec.endswith(":paper") else args.large)
        scene = args.scenes / f"scene_{size}.tif"
        rows.append(throughput(spec, model, scene, work, args.naive_pixels,
                               args.naive_seconds, peak) | {"scene": scene.name})
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(_table(info, memory, rows))
    if args.json:
        args.json.write_text(json.dumps({"info": info, "memory": memory, "throughput": rows},
                                        indent=2))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _table(info: dict, memory: dict, rows: list[dict]) -> str:
    lines = [f"machine: {info['machine']}, {info['cores']} cores, torch {info['torch']} "
             f"({info['torch_threads']} threads), fp32 matmul {info['matmul_gflops']} GFLOP/s, "
             f"{info['date']}", ""]
    if memory:
        lines += ["| scene | peak RSS (MiB) | wall (s) |", "|---|---:|---:|"]
        for name in ("small", "large"):
            m = memory[name]
            lines.append(f"| {m['scene']} | {m['max_rss_mib']} | {m['seconds']} |")
        lines += [f"\npeak RSS ratio large/small: {memory['ratio']}", ""]
    lines += ["| model | scene | tile+halo | px/s end to end | naive per-pixel px/s | speedup "
              "| FLOP/px (tile) | achieved GFLOP/s | of matmul |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['scene']} | {r['tile']}+{r['halo']} | "
                     f"{r['px_per_s']} | {r['naive_px_per_s']} | {r['speedup']}x | "
                     f"{r['flops_per_tile_px']} ({r['flop_part']}) | {r['achieved_gflops']} | "
                     f"{100 * r['fraction_of_matmul']:.0f} % |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
