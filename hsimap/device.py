"""Choose the torch device from ``auto|cpu|cuda|cuda:N``, with clear errors."""

from __future__ import annotations

import re

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
