"""The classic benchmark scenes: the registry and the ``.mat`` converter, in one namespace.

Kept so that ``from hsimap.datasets import ...`` (``hsimap datasets``, the tests) works;
the code lives in :mod:`hsimap.benchmark_scenes` (the registry) and
:mod:`hsimap.matconvert` (``.mat`` reading and :func:`convert_mat`).
"""

from hsimap.benchmark_scenes import (
    CUSTOM_EPSG,
    CUSTOM_ORIGIN,
    DATASETS,
    GEOREFERENCE_TAG,
    NOMINAL_GEOREFERENCE_NOTE,
    BenchmarkClass,
    BenchmarkDataset,
    get_dataset,
)
from hsimap.matconvert import (
    ConversionResult,
    convert_mat,
    detect_dataset,
    is_sub_scene,
    mat_variables,
    output_paths,
    read_mat_variable,
)

__all__ = [
    "CUSTOM_EPSG", "CUSTOM_ORIGIN", "DATASETS", "GEOREFERENCE_TAG", "NOMINAL_GEOREFERENCE_NOTE",
    "BenchmarkClass", "BenchmarkDataset", "ConversionResult", "convert_mat", "detect_dataset",
    "get_dataset", "is_sub_scene", "mat_variables", "output_paths", "read_mat_variable",
]
