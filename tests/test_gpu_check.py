"""``benchmarks/gpu_check.sh --dry``: the GPU check runs end to end on the CPU at tiny sizes.

The real check runs on rare, short-lived GPU machines; this keeps it from rotting in
between: the shell script (with this interpreter, so it installs nothing), every stage of
``gpu_check.py``, the JSON keys and the text summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def test_gpu_check_dry_run_writes_every_figure(tmp_path: Path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "HSIMAP_GPU_WORK": str(tmp_path / "w"),
           "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry",
                           "--out", str(out), "--data", str(DATA)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert f"using {sys.executable} as it is" in proc.stderr  # nothing installed
    r = json.loads((out / "gpu_check.json").read_text())
    assert r["mode"] == "dry" and r["device"] == "cpu"
    assert set(r["stage_seconds"]) == {"env", "tests", "predict", "denoiser", "accuracy"}
    assert not [k for k, v in r.items() if isinstance(v, dict) and "error" in v]
    assert r["env"]["torch"] and r["env"]["cores"] >= 1
    t = r["tests"]  # no GPU here: the CUDA tests are collected and skipped, none fails
    assert t["skipped"] >= 4 and t["passed"] == t["failed"] == t["errors"] == 0
    assert all(c["name"].startswith("test_") for c in t["cases"])
    for preset in ("fast", "paper"):
        row = r["predict"][preset]
        for run in ("full", "crop_device", "crop_cpu"):
            assert row[run]["px_per_s"] > 0 and row[run]["tile"] >= 1
        assert row["full"]["pixels"] == r["predict"]["scene"]["size"] ** 2
        assert row["gpu_over_cpu_crop"] > 0 and row["cpu_full_scene_s_scaled"] > 0
    d = r["denoiser"]
    assert d["iterations_per_s"] > 0 and d["full_schedule_iterations"] == 30000
    assert abs(d["full_schedule_projected_s"] - 30000 / d["iterations_per_s"]) < 0.01 * \
        d["full_schedule_projected_s"] + 1
    a = r["accuracy"]
    if (DATA / "indian_pines_8bit").is_dir():
        for preset in ("fast", "paper"):
            row = a["rows"][preset]
            assert 0 <= row["oa"] <= 100
            assert row["denoiser_eval"]["timesteps"] and row["denoiser_eval"]["ratio"]
    else:
        assert "skipped" in a
    summary = (out / "gpu_check.txt").read_text()
    assert summary.startswith("hsimap GPU check (dry, device cpu)")
    for text in ("cuda tests: 0 passed", "predict fast:", "predict paper:",
                 "paper denoiser:", "accuracy"):
        assert text in summary, summary
    assert summary.strip() in proc.stdout
