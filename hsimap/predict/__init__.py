"""The prediction stage: cube -> tiles (+ halo) -> model -> crop -> class map GeoTIFF, streamed.

- :mod:`~hsimap.predict.engine`: the scene reader, the per-tile compute (with the CUDA
  out-of-memory split) and :func:`classify_array` for in-memory cubes;
- :mod:`~hsimap.predict.plan`: band check, tile size from the memory budget, ``--dry-run``
  (its torch-free arithmetic is :mod:`hsimap.dry_run`);
- :mod:`~hsimap.predict.run`: :func:`predict_scene`, the local read/compute/write loop, resume;
- :mod:`~hsimap.predict.cluster`: the same tile work on a Dask cluster;
- :mod:`~hsimap.predict.outputs`: partial outputs, the resume record, the output lock.

The names below are the public API (``from hsimap.predict import predict_scene``); the
GeoTIFF profiles and tags live in :mod:`hsimap.geotiff`. They are loaded on first use
(PEP 562), so importing a torch-free submodule (``hsimap.predict.outputs``, used by the
command's pre-flight checks) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names, for type checkers and readers; loaded lazily below
    from hsimap.predict.engine import (
        DEFAULT_TILE,
        SceneReader,
        TileWork,
        classify_array,
        compute_tile,
        mask_tile,
    )
    from hsimap.predict.plan import (
        PredictPlan,
        TileSize,
        activation_bytes_per_pixel,
        auto_tile_size,
        check_scene,
        inference_record,
        io_bytes_per_pixel,
        memory_budget,
        plan_prediction,
    )
    from hsimap.predict.run import PredictResult, fingerprint, predict_scene, run_local

_HOMES = {
    "DEFAULT_TILE": "hsimap.predict.engine",
    "SceneReader": "hsimap.predict.engine",
    "TileWork": "hsimap.predict.engine",
    "classify_array": "hsimap.predict.engine",
    "compute_tile": "hsimap.predict.engine",
    "mask_tile": "hsimap.predict.engine",
    "PredictPlan": "hsimap.predict.plan",
    "TileSize": "hsimap.predict.plan",
    "activation_bytes_per_pixel": "hsimap.predict.plan",
    "auto_tile_size": "hsimap.predict.plan",
    "check_scene": "hsimap.predict.plan",
    "inference_record": "hsimap.predict.plan",
    "io_bytes_per_pixel": "hsimap.predict.plan",
    "memory_budget": "hsimap.predict.plan",
    "plan_prediction": "hsimap.predict.plan",
    "PredictResult": "hsimap.predict.run",
    "fingerprint": "hsimap.predict.run",
    "predict_scene": "hsimap.predict.run",
    "run_local": "hsimap.predict.run",
}

__all__ = [
    "DEFAULT_TILE", "PredictPlan", "PredictResult", "SceneReader", "TileSize", "TileWork",
    "activation_bytes_per_pixel", "auto_tile_size", "check_scene", "classify_array",
    "compute_tile", "fingerprint", "inference_record", "io_bytes_per_pixel", "mask_tile",
    "memory_budget", "plan_prediction", "predict_scene", "run_local",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
