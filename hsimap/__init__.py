"""hsimap: hyperspectral cube + ground truth -> georeferenced land-cover map.

The data flow is ``cube`` (open_cube) -> ``labels`` (read_labels) -> ``split`` ->
``training`` (train_model) -> ``checkpoint`` -> ``predict`` (predict_scene) -> GeoTIFF, and
``report`` (evaluate_map) for accuracy. Import the submodules you need; this package root
stays light so that the CLI starts quickly.
"""

from hsimap._version import __version__

__all__ = ["__version__"]
