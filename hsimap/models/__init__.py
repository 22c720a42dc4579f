"""Model kinds behind ``hsimap train``/``predict``: the interface and the built-in models."""

from __future__ import annotations

import functools
import importlib
import sys

BUILTIN_MODULES = ("hsimap.models.spectral", "hsimap.models.diffspectralnet",
                   "hsimap.models.svm", "hsimap.models.forest")
DEFAULT_MODEL = "diffspectralnet"


def load_builtin_models() -> None:
    """Import the built-in model modules so that they register themselves."""
    for name in BUILTIN_MODULES:
        importlib.import_module(name)


@functools.cache
def widest_window_radius() -> int:
    """Largest classifier window radius of any preset of any built-in model kind (px).

    This is the default validation guard band, so that the split does not depend on the model
    kind: every shipped model validated on it sees no validation pixel from a window centred
    on a training pixel. Computed by building each preset (a few bands, two classes), so it
    follows the presets when they change; models registered by users or tests are not counted.
    """
    load_builtin_models()
    radii = [0]
    for name in BUILTIN_MODULES:
        spec = sys.modules[name].SPEC
        for preset in spec.presets:
            model = spec.build(spec.make_config(preset), n_bands=8, n_classes=2)
            radii.append(int(model.window_radius()))
    return max(radii)
