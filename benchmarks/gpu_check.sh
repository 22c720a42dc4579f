#!/usr/bin/env bash
# The CUDA check of hsimap in one command, from a clone (see docs/gpu.md):
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--dry] [more options of gpu_check.py]
#
# 1. Finds a Python that has hsimap's dependencies and a torch that sees the GPU:
#    $PYTHON (default python3) as it is, when it already does (a pre-installed CUDA torch,
#    e.g. an image's /opt/.../python3); otherwise a virtual environment in $HSIMAP_GPU_WORK/venv
#    made with --system-site-packages (so a system CUDA torch is reused), into which it
#    installs, only where missing:
#      - a CUDA build of torch, when the visible one is CPU-only and nvidia-smi finds a GPU:
#        pip install "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
#        (defaults: torch==2.13.0 from https://download.pytorch.org/whl/cu128)
#      - hsimap and its dependencies: pip install -e '.[test]' (no torch change)
#    With HSIMAP_WHEELS=DIR every pip install uses only the wheels in DIR (--no-index), for
#    machines without internet access.
# 2. Runs benchmarks/gpu_check.py, which writes DIR/gpu_check.json and DIR/gpu_check.txt
#    (default DIR: $HSIMAP_GPU_WORK/out). Safe to rerun: the environment and the generated
#    scenes are reused, the results are overwritten.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${HSIMAP_GPU_WORK:-/tmp/hsimap-gpu-check}
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu128}
DRY=0
OUT="$WORK/out"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        --dry) DRY=1 ;;
        --out) OUT="${args[$((i + 1))]:-$OUT}" ;;
        --out=*) OUT="${args[$i]#--out=}" ;;
    esac
done
mkdir -p "$WORK" "$OUT"
log() { echo "[gpu_check.sh] $*" >&2; }

# Exit 0 when python $1 imports hsimap (this checkout) and its dependencies; 2 when
# additionally torch sees a CUDA GPU.
probe() {
    "$1" - <<'EOF' 2>/dev/null
import importlib, pathlib, sys
for m in ("numpy", "torch", "rasterio", "geopandas", "pyogrio", "xarray", "rioxarray",
          "dask", "distributed", "scipy", "sklearn", "safetensors", "click", "pytest",
          "hypothesis", "matplotlib", "h5py", "tqdm", "shapely", "psutil"):
    importlib.import_module(m)
import hsimap, torch
if pathlib.Path(hsimap.__file__).resolve().parents[1] != pathlib.Path.cwd().resolve():
    sys.exit(1)  # another checkout's hsimap
sys.exit(2 if torch.cuda.is_available() else 0)
EOF
}

pip_install() {  # pip install with the wheel folder when one is given
    if [ -n "${HSIMAP_WHEELS:-}" ]; then
        "$VPY" -m pip install -q --no-index --find-links "$HSIMAP_WHEELS" "$@"
    else
        "$VPY" -m pip install -q "$@"
    fi
}

rc=0; probe "$PY" || rc=$?
if [ "$rc" -eq 2 ] || { [ "$rc" -eq 0 ] && { [ "$DRY" -eq 1 ] || ! command -v nvidia-smi >/dev/null; }; }; then
    VPY=$PY
    log "using $PY as it is ($(("$VPY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())') 2>&1))"
else
    VENV="$WORK/venv"
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV (system site packages visible, so a system CUDA torch is reused)"
        "$PY" -m venv --system-site-packages "$VENV"
    fi
    VPY="$VENV/bin/python"
    cuda_torch=$("$VPY" -c 'import torch; print(int(torch.version.cuda is not None))' 2>/dev/null || echo 0)
    if [ "$cuda_torch" != 1 ] && [ "$DRY" -eq 0 ] && command -v nvidia-smi >/dev/null; then
        log "installing a CUDA build of torch: pip install $TORCH_SPEC --index-url $TORCH_INDEX_URL"
        if [ -n "${HSIMAP_WHEELS:-}" ]; then
            pip_install "$TORCH_SPEC"
        else
            "$VPY" -m pip install -q "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
        fi
    fi
    rc=0; probe "$VPY" || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then
        log "installing hsimap and its dependencies into $VENV"
        pip_install -e '.[test,bench]'
    fi
    rc=0; probe "$VPY" || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then
        log "$VPY still cannot import hsimap and its dependencies; see docs/gpu.md"
        exit 3
    fi
fi

"$VPY" -c 'import torch; print("torch", torch.__version__, "CUDA build", torch.version.cuda, "GPU", torch.cuda.is_available())' >&2
export PYTHONUNBUFFERED=1
set +e
"$VPY" benchmarks/gpu_check.py --work "$WORK/work" --out "$OUT" "$@"
status=$?
set -e
[ -f "$OUT/gpu_check.txt" ] && log "summary: $OUT/gpu_check.txt"
exit $status
