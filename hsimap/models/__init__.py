"""Model kinds behind ``hsimap train``/``predict``: the interface and the built-in models."""

from __future__ import annotations

import importlib

BUILTIN_MODULES = ("hsimap.models.spectral", "hsimap.models.diffspectralnet",
                   "hsimap.models.svm", "hsimap.models.forest")
DEFAULT_MODEL = "diffspectralnet"


def load_builtin_models() -> None:
    """Import the built-in model modules so that they register themselves."""
    for name in BUILTIN_MODULES:
        importlib.import_module(name)
