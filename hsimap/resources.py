"""Memory budget: estimate a large allocation before making it, refuse it clearly when too big.

Training reads the scene into memory (prediction streams), rasterises the labels on the full
grid and may keep whole-scene feature maps. Each is estimated from the grid and band count
before any of it is allocated, and compared with a budget (``hsimap train --max-memory``,
default :data:`DEFAULT_FRACTION` of the memory available now), so a scene too large for the
machine ends in a message saying what needs how much and what to do, not in the kernel's
out-of-memory killer minutes later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from hsimap.errors import ConfigError, ResourceError

DEFAULT_FRACTION = 0.5  # of the memory available when the command starts

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def available_memory() -> int:
    """Bytes of memory available now (psutil, else ``/proc/meminfo``, else ``sysconf``)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # psutil comes with distributed; keep working without it
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def default_budget() -> int:
    """The budget when none is given: :data:`DEFAULT_FRACTION` of the available memory."""
    return int(DEFAULT_FRACTION * available_memory())


def parse_size(text: str) -> int:
    """Bytes from ``8G``, ``8GiB``, ``512M``, ``1.5T``, ``2000000000`` or ``50%`` (of the
    memory available now)."""
    s = str(text).strip().lower().replace(" ", "")
    percent = re.fullmatch(r"(\d+(?:\.\d+)?)%", s)
    if percent:
        share = float(percent.group(1)) / 100
        if not 0 < share <= 1:
            raise ConfigError(f"--max-memory {text!r}: a share must be in (0, 100] %",
                              fix="give e.g. 50% or a size such as 8G")
        return int(share * available_memory())
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmgt]?)(?:i?b)?", s)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"--max-memory {text!r} is not a memory size",
                          fix="give a size such as 8G, 512M, 16GiB, or a share such as 50%")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def human(n: float) -> str:
    """``18.3 GiB``, ``512 MiB``, ``12 kiB``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("kiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def check_budget(what: str, parts: Sequence[tuple[str, float]], budget: int, *,
                 path: str | Path | None, fix: str) -> int:
    """Refuse when the ``(description, bytes)`` parts of ``what`` add up to more than
    ``budget``; return the total otherwise."""
    total = int(sum(b for _, b in parts))
    if total > budget:
        listed = "; ".join(f"{d}: {human(b)}" for d, b in parts if b > 0)
        raise ResourceError(
            f"{what} would need about {human(total)} of memory ({listed}), more than the "
            f"{human(budget)} budget (--max-memory; default {100 * DEFAULT_FRACTION:.0f} % of "
            f"the {human(available_memory())} available)", path=path, fix=fix)
    return total
