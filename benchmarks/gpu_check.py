"""The CUDA path, measured: one run that writes every figure to a JSON file and a summary.

Called by ``benchmarks/gpu_check.sh`` (which installs what is missing first); see
``docs/gpu.md``. Stages, each recorded even when a later one fails or the time runs out:

1. ``env``: torch/CUDA versions, GPU name and memory, CPU, cores, hsimap version, commit.
2. ``tests``: the CUDA-marked tests (``pytest -m cuda tests/test_cuda.py``), counts.
3. ``predict``: end-to-end ``predict_scene`` of the ``fast`` and ``paper`` presets of
   DiffSpectralNet (random weights; speed does not depend on their values) on a generated
   ``--size`` x ``--size`` x 224 scene (``make_scenes.py``) on the GPU: seconds, px/s,
   tile, peak GPU memory; then the same presets on a crop (``--cpu-crop-*``) on the GPU
   and on this machine's CPU, whose px/s ratio is the CPU/GPU comparison (the CPU figure
   for the full scene is the crop's px/s scaled, not measured).
4. ``denoiser``: training speed of the paper preset's denoiser (iterations/s after a
   warm-up) and the projected time of its full schedule.
5. ``accuracy`` (optional, when the data and the time are there): Indian Pines, random
   10 % protocol, one seed: the ``fast`` preset and the ``paper`` preset with a shortened
   denoiser schedule, OA/AA/kappa and the denoiser's per-timestep held-out error.

``--dry`` runs every stage on the CPU at tiny sizes (CI runs it, so this file cannot rot).
The JSON is rewritten after every stage, so a run stopped at its time limit keeps what it
measured. Reruns reuse the generated scenes (``--work``) and overwrite the results.

    python benchmarks/gpu_check.py --out /tmp/hsimap-gpu-check/out
    python benchmarks/gpu_check.py --dry --out /tmp/gpu-dry
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
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

PRESETS = ("fast", "paper")
SCHEMA = 1
# Sizes of a normal (GPU) run and of --dry (CPU, tiny, well under a minute).
FULL = {"size": 1000, "cpu_crop": {"fast": 256, "paper": 32}, "denoiser_iters": 60,
        "denoiser_warmup": 10, "tests": True, "paper_denoiser_iters": None,
        "accuracy": True, "bands": None}
DRY = {"size": 32, "cpu_crop": {"fast": 24, "paper": 16}, "denoiser_iters": 3,
       "denoiser_warmup": 1, "tests": True, "paper_denoiser_iters": 2, "accuracy": True,
       "bands": 12}  # --dry: the models see the first 12 bands (3D U-Net cost ~ bands)
_DRY_CLF = {"window": 3, "token_dim": 8, "depth": 1, "heads": 1, "head_dim": 8,
            "mlp_dim": 8, "head_hidden": 8, "clf_min_batches": 1}
DRY_OVERRIDES: dict[str, dict[str, Any]] = {  # --dry: every preset small enough for a CPU
    "paper": {"widths": [4, 8], "layers": [1], "reduced_dims": 4, "timesteps": [5, 50],
              "crop": 16, "batch": 2, **_DRY_CLF},
    "fast": {"widths": [8, 8], "layers": [1], "denoiser_check_every": 0, **_DRY_CLF},
}
PAPER_FULL_ITERS = 30000  # the paper preset's denoiser_iterations


def main(argv: list[str] | None = None) -> int:
    """Run every stage, write ``gpu_check.json`` and ``gpu_check.txt`` into ``--out``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/hsimap-gpu-check/out"))
    p.add_argument("--work", type=Path, default=None,
                   help="cache of generated scenes and models (default: OUT/../work)")
    p.add_argument("--dry", action="store_true", help="CPU only, tiny sizes (CI)")
    p.add_argument("--size", type=int, default=None, help="side of the generated scene")
    p.add_argument("--budget", type=float, default=420.0,
                   help="seconds for the whole run; optional stages skip when short")
    p.add_argument("--data", type=Path, default=Path(os.environ.get(
        "HSIMAP_DATA", ROOT.parent / "shared" / "data")),
        help="folder holding indian_pines_8bit/ (skipped when missing)")
    p.add_argument("--no-tests", action="store_true")
    p.add_argument("--no-accuracy", action="store_true")
    p.add_argument("--stages", default="env,tests,predict,denoiser,accuracy")
    args = p.parse_args(argv)
    sizes = dict(DRY if args.dry else FULL)
    if args.size:
        sizes["size"] = args.size
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or args.out.parent / "work"
    work.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu") if args.dry or not torch.cuda.is_available() \
        else torch.device("cuda")
    check = Check(args.out, start=time.perf_counter(), budget=args.budget)
    check.result["mode"] = "dry" if args.dry else "gpu"
    check.result["device"] = str(device)
    check.result["command"] = " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])
    if device.type != "cuda" and not args.dry:
        check.result["warning"] = ("no CUDA device visible to torch "
                                   f"{torch.__version__}: nothing measured on a GPU")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    skip = {"tests"} if args.no_tests else set()
    skip |= {"accuracy"} if args.no_accuracy else set()
    table: dict[str, Callable[[], dict[str, Any]]] = {
        "env": lambda: env_info(device),
        "tests": lambda: run_cuda_tests(args.out),
        "predict": lambda: predict_stage(work, device, sizes, args.dry),
        "denoiser": lambda: denoiser_stage(work, device, sizes, args.dry),
        "accuracy": lambda: accuracy_stage(args.data, device, sizes, args.dry, check),
    }
    for name in stages:
        if name in skip:
            check.result[name] = {"skipped": "by option"}
            continue
        check.stage(name, table[name])
    check.write()
    print(check.summary())
    print(f"\nwrote {check.json_path} and {check.txt_path}")
    failed = [n for n in stages if isinstance(check.result.get(n), dict)
              and "error" in check.result[n]]
    tests = check.result.get("tests", {})
    return 1 if failed or tests.get("failed") or tests.get("errors") else 0


class Check:
    """The results so far, written to JSON and a text summary after every stage."""

    def __init__(self, out: Path, *, start: float, budget: float) -> None:
        self.json_path = out / "gpu_check.json"
        self.txt_path = out / "gpu_check.txt"
        self.start = start
        self.budget = budget
        self.result: dict[str, Any] = {"schema": SCHEMA, "stage_seconds": {}}

    def left(self) -> float:
        """Seconds left of the budget."""
        return self.budget - (time.perf_counter() - self.start)

    def stage(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
        try:
            self.result[name] = fn()
        except Exception as exc:  # noqa: BLE001 - one stage's failure must not lose the rest
            self.result[name] = {"error": f"{type(exc).__name__}: {exc}",
                                 "traceback": traceback.format_exc(limit=8)}
            print(self.result[name]["traceback"], file=sys.stderr)
        self.result["stage_seconds"][name] = round(time.perf_counter() - t0, 2)
        self.result["total_seconds"] = round(time.perf_counter() - self.start, 2)
        self.write()

    def write(self) -> None:
        tmp = self.json_path.with_suffix(".json.partial")
        tmp.write_text(json.dumps(self.result, indent=2, default=_jsonable))
        os.replace(tmp, self.json_path)
        self.txt_path.write_text(self.summary() + "\n")

    def summary(self) -> str:
        return summarise(self.result)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


# --------------------------------------------------------------------------- env


def env_info(device: torch.device) -> dict[str, Any]:
    """Versions, device and machine."""
    from bench_predict import _cpu

    import hsimap

    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "hsimap": hsimap.__version__, "cpu": _cpu(), "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "cuda_available": torch.cuda.is_available(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    gpu_capability=f"{props.major}.{props.minor}",
                    gpu_multiprocessors=props.multi_processor_count,
                    bf16_supported=torch.cuda.is_bf16_supported())
        smi = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        info["driver"] = smi.strip() or None
    return info



def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                              check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _git(*args: str) -> str | None:
    return _run(["git", "-C", str(ROOT), *args]).strip() or None


# --------------------------------------------------------------------------- tests


def run_cuda_tests(out: Path) -> dict[str, Any]:
    """``pytest -m cuda tests/test_cuda.py``: pass/fail/skip counts and failure messages."""
    xml = out / "cuda_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-p", "no:cacheprovider", "-q",
           f"--junitxml={xml}", str(ROOT / "tests" / "test_cuda.py")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False,
                          timeout=300)
    res: dict[str, Any] = {"command": " ".join(cmd[2:]), "returncode": proc.returncode,
                           "seconds": round(time.perf_counter() - t0, 1)}
    (out / "cuda_tests.log").write_text(proc.stdout + proc.stderr)
    if not xml.exists():
        res["error"] = "pytest wrote no report: " + (proc.stdout + proc.stderr)[-2000:]
        return res
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    cases = []
    for case in suite.iter("testcase"):  # type: ignore[union-attr]
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (el.get("message") or "")[:500]
        cases.append({"name": case.get("name"), "outcome": outcome,
                      "seconds": float(case.get("time") or 0), "message": message})
    for key in ("passed", "failed", "error", "skipped"):
        res["errors" if key == "error" else key] = sum(c["outcome"] == key for c in cases)
    res["cases"] = cases
    return res


# --------------------------------------------------------------------------- models


def random_checkpoint(preset: str, scene: Path, path: Path, *, n_classes: int = 8,
                      overrides: dict[str, Any] | None = None,
                      n_bands: int | None = None) -> Path:
    """A DiffSpectralNet ``preset`` with random weights and buffers for ``scene``'s bands.

    As ``bench_predict.random_model``, without a donor model: the normalisation is the
    scene's per-band mean and standard deviation (from its first 64 x 64 px). ``n_bands``:
    feed the model the first good bands only (``--dry``).
    """
    from hsimap.checkpoint import Checkpoint, Normalisation, save_checkpoint
    from hsimap.classes import ClassTable
    from hsimap.cube import open_cube
    from hsimap.models.base import get_spec
    from hsimap.models.untrained import untrained_model

    if path.exists():
        return path
    cube = open_cube(scene)
    bands = cube.good_bands[:n_bands]
    values, valid = cube.read((0, min(64, cube.grid.height)), (0, min(64, cube.grid.width)),
                              bands=bands)
    pix = values[:, valid].astype(np.float64)
    std = pix.std(1)
    std[std == 0] = 1.0
    model = untrained_model("diffspectralnet",
                            get_spec("diffspectralnet").make_config(preset, overrides or {}),
                            n_bands=len(bands), n_classes=n_classes)
    meta = {"n_bands": cube.count, "band_indices": list(bands),
            "wavelengths": list(cube.wavelengths) if cube.wavelengths else None}
    classes = ClassTable.from_names([f"class {i + 1}" for i in range(n_classes)])
    norm = Normalisation(pix.mean(1).astype(np.float32), std.astype(np.float32))
    save_checkpoint(path, Checkpoint(model.eval(), norm, classes, meta))
    return path


def scene_file(work: Path, size: int) -> Path:
    """``work/scene_<size>.tif`` from ``make_scenes.make_scene``, made once."""
    from make_scenes import make_scene

    path = work / f"scene_{size}.tif"
    if not path.exists():
        tmp = work / f".scene_{size}.partial.tif"
        make_scene(tmp, height=size, width=size)
        os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- predict


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_predict(scene: Path, model: Path, out: Path, device: torch.device) -> dict[str, Any]:
    """One ``predict_scene`` run: seconds, px/s, tile, halo, peak GPU memory."""
    import rasterio

    from hsimap.predict import predict_scene

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t0 = time.perf_counter()
    r = predict_scene(scene, out=out, model_path=model, device=str(device), overwrite=True)
    _sync(device)
    seconds = time.perf_counter() - t0
    with rasterio.open(scene) as src:
        pixels = src.height * src.width
    res: dict[str, Any] = {"scene": scene.name, "pixels": pixels, "seconds": round(seconds, 3),
                           "px_per_s": round(pixels / seconds, 1), "tile": r.tile,
                           "halo": r.halo, "n_tiles": r.n_tiles,
                           "threads": torch.get_num_threads()}
    if device.type == "cuda":
        res["peak_gpu_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
        res["peak_gpu_reserved_mib"] = round(torch.cuda.max_memory_reserved(device) / 2**20)
    return res


def predict_stage(work: Path, device: torch.device, sizes: dict[str, Any],
                  dry: bool) -> dict[str, Any]:
    """GPU end to end on the full scene; GPU and CPU on a crop (the ratio)."""
    size = sizes["size"]
    t0 = time.perf_counter()
    scene = scene_file(work, size)
    res: dict[str, Any] = {"scene": {"path": str(scene), "size": size,
                                     "generate_s": round(time.perf_counter() - t0, 1)}}
    warm = scene_file(work, 64)
    for preset in PRESETS:
        over = DRY_OVERRIDES[preset] if dry else None
        tag = "_dry" if dry else ""
        model = random_checkpoint(preset, scene, work / f"dsn_{preset}{tag}_random.safetensors",
                                  overrides=over, n_bands=sizes["bands"])
        row: dict[str, Any] = {"preset": preset, "overrides": over}
        if not dry:  # cuDNN autotuning, the allocator's first blocks
            timed_predict(warm, model, work / "warm.tif", device)
        row["full"] = timed_predict(scene, model, work / f"map_{preset}.tif", device)
        crop = scene_file(work, sizes["cpu_crop"][preset])
        row["crop_device"] = timed_predict(crop, model, work / f"crop_{preset}.tif", device)
        row["crop_cpu"] = timed_predict(crop, model, work / f"crop_{preset}_cpu.tif",
                                        torch.device("cpu"))
        cpu_px = row["crop_cpu"]["px_per_s"]
        row["gpu_over_cpu_crop"] = round(row["crop_device"]["px_per_s"] / cpu_px, 2)
        row["cpu_full_scene_s_scaled"] = round(row["full"]["pixels"] / cpu_px, 1)
        row["gpu_over_cpu_full_scaled"] = round(row["full"]["px_per_s"] / cpu_px, 2)
        row["under_60_s"] = row["full"]["seconds"] < 60
        res[preset] = row
    return res


# --------------------------------------------------------------------------- denoiser


def _standardised_crop(scene: Path, side: int) -> tuple[np.ndarray, np.ndarray]:
    from hsimap.cube import open_cube

    cube = open_cube(scene)
    side = min(side, cube.grid.height, cube.grid.width)
    values, valid = cube.read((0, side), (0, side))
    pix = values[:, valid]
    std = pix.std(1)
    std[std == 0] = 1
    z = (values - pix.mean(1)[:, None, None]) / std[:, None, None]
    z[:, ~valid] = 0
    return z.astype(np.float32), valid


def denoiser_stage(work: Path, device: torch.device, sizes: dict[str, Any],
                   dry: bool) -> dict[str, Any]:
    """Paper-preset denoiser iterations/s on the generated scene; full-schedule projection."""
    from hsimap.models.base import TrainData, get_spec

    size = sizes["size"]
    z, valid = _standardised_crop(scene_file(work, size), 160)
    z = z[:sizes["bands"]]
    labels = np.full(valid.shape, -1, np.int64)
    labels[::8, ::8] = np.arange(labels[::8, ::8].size).reshape(labels[::8, ::8].shape) % 2
    train = labels >= 0
    data = TrainData(z, valid, labels, train, np.zeros_like(train), 2)
    spec = get_spec("diffspectralnet")
    n, warm = sizes["denoiser_iters"], sizes["denoiser_warmup"]
    over = {**(DRY_OVERRIDES["paper"] if dry else {}), "denoiser_iterations": n + warm,
            "denoiser_check_every": 0, "clf_epochs": 1, "patience": 0}
    config = spec.make_config("paper", over)
    stamps: dict[int, float] = {}

    def progress(e: Any) -> None:
        if e.stage == "denoiser":
            _sync(device)
            stamps[e.done] = time.perf_counter()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _, history = spec.fit(data, config, seed=0, device=device, progress=progress)
    rate = n / (stamps[n + warm] - stamps[warm])
    res = {"preset": "paper", "scene_crop": list(z.shape), "crop": config.crop,
           "batch": config.batch, "bands": z.shape[0], "iterations_timed": n,
           "warmup_iterations": warm, "iterations_per_s": round(rate, 3),
           "full_schedule_iterations": PAPER_FULL_ITERS,
           "full_schedule_projected_s": round(PAPER_FULL_ITERS / rate, 1),
           "full_schedule_projected_h": round(PAPER_FULL_ITERS / rate / 3600, 3),
           "fit_total_s": history["timings"]["total_s"]}
    if device.type == "cuda":
        res["peak_gpu_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    if dry:
        res["overrides"] = DRY_OVERRIDES["paper"]
    return res


# --------------------------------------------------------------------------- accuracy


def fit_on_gpu(scene: Any, train: np.ndarray, seed: int, preset: str,
               overrides: dict[str, Any], device: torch.device) -> tuple[Any, Any, dict]:
    """``bench_accuracy.fit_on_split`` (guarded block validation from the training pixels),
    on ``device``."""
    from bench_accuracy import fit_on_split

    from hsimap.models.base import get_spec

    config = get_spec("diffspectralnet").make_config(preset, overrides)
    return fit_on_split(scene, train, seed, "diffspectralnet", config, device=device)


def accuracy_stage(data: Path, device: torch.device, sizes: dict[str, Any], dry: bool,
                   check: Check) -> dict[str, Any]:
    """Indian Pines, random10, seed 0: fast preset vs a shortened paper preset."""
    from bench_accuracy import load_indian_pines, protocol_masks, scores

    from hsimap.predict import classify_array

    if not (data / "indian_pines_8bit").is_dir():
        return {"skipped": f"no {data / 'indian_pines_8bit'} (pass --data DIR)"}
    scene = load_indian_pines(data)
    if dry:  # a corner of the scene, so that the CPU run stays short
        from bench_accuracy import Scene
        sl = (slice(0, 40), slice(0, 40))
        scene = Scene(scene.name, scene.cube[:sizes["bands"], sl[0], sl[1]], scene.valid[sl],
                      scene.labels[sl], scene.tiles[sl], scene.class_names)
    train, test, _ = protocol_masks(scene, "random10", 0, 0)
    res: dict[str, Any] = {"dataset": scene.name, "protocol": "random10", "seed": 0,
                           "train_pixels": int(train.sum()), "test_pixels": int(test.sum()),
                           "rows": {}}
    paper_iters = sizes["paper_denoiser_iters"]
    den = check.result.get("denoiser", {})
    if paper_iters is None:  # what fits in about a third of the time left
        rate = den.get("iterations_per_s") or 5.0
        paper_iters = int(max(200, min(PAPER_FULL_ITERS, rate * check.left() / 3)))
    runs = [("fast", dict(DRY_OVERRIDES["fast"]) if dry else {}),
            ("paper", {**(DRY_OVERRIDES["paper"] if dry else {}),
                       "denoiser_iterations": paper_iters,
                       **({"clf_epochs": 2} if dry else {})})]
    if dry:
        runs[0][1]["denoiser_iterations"] = 3
        runs[0][1]["clf_epochs"] = 2
    for preset, over in runs:
        if check.left() < 30 and not dry:
            res["rows"][preset] = {"skipped": f"{check.left():.0f} s left of the budget"}
            continue
        t0 = time.perf_counter()
        _, ckpt, history = fit_on_gpu(scene, train, 0, preset, over, device)
        t1 = time.perf_counter()
        pred = classify_array(ckpt, scene.cube, scene.valid, device=device)
        s = scores(pred, scene, test)
        res["rows"][preset] = {
            "overrides": over, "oa": round(s["oa"], 2), "aa": round(s["aa"], 2),
            "kappa": round(s["kappa"], 2), "train_s": round(t1 - t0, 1),
            "predict_s": round(time.perf_counter() - t1, 2),
            "denoiser_iterations": history.get("denoiser", {}).get("iterations"),
            "denoiser_stopped": history.get("denoiser", {}).get("stopped"),
            "denoiser_eval": history.get("denoiser_eval"),
            "best_epoch": history.get("classifier", {}).get("best_epoch")}
    return res


# --------------------------------------------------------------------------- summary


def summarise(r: dict[str, Any]) -> str:
    """The short text summary of a result dict (also of a partial one)."""
    e = r.get("env", {})
    lines = [f"hsimap GPU check ({r.get('mode')}, device {r.get('device')}), "
             f"{e.get('date', '?')}, total {r.get('total_seconds', '?')} s",
             f"torch {e.get('torch', '?')} (CUDA {e.get('torch_cuda')}), "
             f"GPU {e.get('gpu', 'none')}, CPU {e.get('cpu', '?')} x {e.get('cores', '?')}, "
             f"commit {str(e.get('git_commit'))[:10]}"]
    if "warning" in r:
        lines.append(f"WARNING: {r['warning']}")
    t = r.get("tests", {})
    if "passed" in t:
        lines.append(f"cuda tests: {t['passed']} passed, {t['failed']} failed, "
                     f"{t['errors']} errors, {t['skipped']} skipped")
    lines += _stage_errors(r)
    pr = r.get("predict", {})
    for preset in PRESETS:
        row = pr.get(preset)
        if not row:
            continue
        f, c = row["full"], row["crop_cpu"]
        mem = f" peak GPU {f['peak_gpu_allocated_mib']} MiB," if "peak_gpu_allocated_mib" \
            in f else ""
        lines.append(
            f"predict {preset}: {f['scene']} in {f['seconds']} s ({f['px_per_s']:.0f} px/s, "
            f"tile {f['tile']}+{f['halo']}),{mem} CPU {c['px_per_s']:.0f} px/s on "
            f"{c['scene']} -> device/CPU {row['gpu_over_cpu_crop']}x on that crop")
    d = r.get("denoiser", {})
    if "iterations_per_s" in d:
        lines.append(f"paper denoiser: {d['iterations_per_s']} it/s (crop {d['crop']}, batch "
                     f"{d['batch']}, {d['bands']} bands): full {d['full_schedule_iterations']}"
                     f" iterations ~ {d['full_schedule_projected_h']} h")
    a = r.get("accuracy", {})
    if "skipped" in a:
        lines.append(f"accuracy: skipped ({a['skipped']})")
    for preset, row in a.get("rows", {}).items():
        if "oa" not in row:
            lines.append(f"accuracy {preset}: {row.get('skipped', row)}")
            continue
        ev = row.get("denoiser_eval") or {}
        ratios = ", ".join(f"t={t}: {v:.2f}" for t, v in zip(ev.get("timesteps", []),
                                                             ev.get("ratio", []), strict=False)
                           if v is not None)
        lines.append(f"accuracy {a['dataset']} {a['protocol']} {preset} "
                     f"({row['denoiser_iterations']} denoiser it): OA {row['oa']} %, "
                     f"AA {row['aa']} %, kappa {row['kappa']}; denoiser error / predict-zero "
                     f"{ratios or 'n/a'}; train {row['train_s']} s")
    return "\n".join(lines)


def _stage_errors(r: dict[str, Any]) -> list[str]:
    return [f"{name}: ERROR {v['error']}" for name, v in r.items()
            if isinstance(v, dict) and "error" in v]


if __name__ == "__main__":
    sys.exit(main())
