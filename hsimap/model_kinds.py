"""The shipped model kinds and their preset names, without importing torch.

The CLI checks a ``--model-type``/``--models`` name and a ``--preset`` against this table
before anything heavy is imported, so that a typo is reported in a fraction of a second,
together with the other problems of the command line. The registry in
:mod:`hsimap.models.base` stays the authority (a test keeps this table equal to it); a
kind registered by a plugin is not listed here and is checked against the registry.
"""

from __future__ import annotations

from hsimap.errors import ConfigError

# kind -> (default preset, every preset name)
SHIPPED: dict[str, tuple[str, tuple[str, ...]]] = {
    "diffspectralnet": ("fast", ("fast", "paper", "tiny")),
    "random-forest": ("fast", ("fast", "thorough")),
    "spectral-mlp": ("default", ("default", "fast")),
    "svm": ("fast", ("fast", "smooth", "thorough")),
}


def check_name(kind: str, preset: str | None = None) -> bool:
    """Raise :class:`ConfigError` for a preset a shipped ``kind`` does not have; True when
    ``kind`` is shipped (and ``preset`` fits it), False when only the registry can tell."""
    if kind not in SHIPPED:
        return False
    default, presets = SHIPPED[kind]
    name = preset or default
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r} for model {kind!r}",
                          fix=f"choose one of: {', '.join(sorted(presets))}")
    return True
