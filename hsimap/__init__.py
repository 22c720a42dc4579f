"""hsimap: hyperspectral cube + ground truth -> georeferenced land-cover map.

The data flow is ``cube`` (open_cube) -> ``labels`` (read_labels) -> ``split`` ->
``training`` (train_model) -> ``checkpoint`` -> ``predict`` (predict_scene) -> GeoTIFF, and
``evaluate`` (evaluate_map) -> ``report`` for accuracy. Import the submodules you need;
this package root stays light so that the CLI starts quickly.
"""

import os

# torch's OpenMP threads spin while waiting by default. When other processes share the cores
# (a laptop, a CI runner, Dask workers), that spinning made 2-thread training and inference
# 8-40x slower than 1 thread on the 2-core test machine; passive waiting removes the penalty
# and costs little on an idle machine (docs/benchmarks.md). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hsimap._version import __version__  # noqa: E402

__all__ = ["__version__"]
