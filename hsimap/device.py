"""Choose the torch device from ``auto|cpu|cuda|cuda:N``, with clear errors."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

from hsimap.errors import DeviceError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(spec: str = "auto") -> torch.device:
    """Return the device named by ``spec`` (``auto``: first CUDA GPU if any, else CPU)."""
    spec = spec.strip().lower()
    if not DEVICE_PATTERN.match(spec):
        raise DeviceError(f"unknown device {spec!r}", fix="use auto, cpu, cuda or cuda:N")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} requested but no CUDA GPU is available "
                              f"(torch {torch.__version__})",
                              fix="use --device cpu (or auto), or install a CUDA build of torch "
                                  "on a machine with an NVIDIA GPU")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r} requested but only "
                              f"{torch.cuda.device_count()} GPU(s) are visible",
                              fix="pick an index below that count")
    return torch.device(spec)


def autocast(device: torch.device) -> torch.autocast:
    """bfloat16 autocast on CUDA, a no-op elsewhere (CPU inference stays float32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


TRAIN_THREADS_ENV = "HSIMAP_TRAIN_THREADS"
SMALL_MACHINE_CORES = 2  # measured there (docs/benchmarks.md, 2026-12-02): 1 thread wins


def training_threads() -> int | None:
    """torch's intra-op threads for fitting on the CPU, or None for torch's own choice.

    ``HSIMAP_TRAIN_THREADS`` decides when set. Otherwise, on a machine with at most
    :data:`SMALL_MACHINE_CORES` cores and no ``OMP_NUM_THREADS``, one thread: the steps of
    hsimap's small networks (64 windows, a 32-dim transformer; 8 crops for the denoiser) are
    too short to share, and on 2 idle cores the README quick start trained in 3 min 27 s with
    one thread against 5 min 28 s with two (every stage faster). Larger machines keep
    torch's default until measured.
    """
    import os

    text = os.environ.get(TRAIN_THREADS_ENV, "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            raise DeviceError(f"{TRAIN_THREADS_ENV}={text!r} is not a whole number",
                              fix=f"set {TRAIN_THREADS_ENV} to 1, 2, ... or unset it") from None
        if value < 1:
            raise DeviceError(f"{TRAIN_THREADS_ENV}={text!r} must be at least 1",
                              fix=f"set {TRAIN_THREADS_ENV} to 1, 2, ... or unset it")
        return value
    if "OMP_NUM_THREADS" in os.environ:
        return None
    return 1 if (os.cpu_count() or 1) <= SMALL_MACHINE_CORES else None


@contextlib.contextmanager
def fitting_threads(device: torch.device) -> Iterator[None]:
    """Within the block, torch uses :func:`training_threads` intra-op threads when fitting on
    the CPU; the previous number is restored afterwards (prediction keeps its threads)."""
    threads = training_threads() if device.type == "cpu" else None
    if threads is None:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
