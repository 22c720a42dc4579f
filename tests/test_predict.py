"""The ``hsimap.predict`` package: its public names, the old import paths, no cycle with Dask.

The prediction stage itself is tested end to end in e2e/test_scale.py (resume, memory,
tiling), test_predict_options.py, test_properties.py (tiled = untiled) and e2e/test_pipeline.py.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_public_names_are_the_package_modules_objects() -> None:
    import hsimap.predict as predict
    from hsimap.predict import engine, plan, run

    assert predict.predict_scene is run.predict_scene
    assert predict.plan_prediction is plan.plan_prediction
    assert predict.check_scene is plan.check_scene
    assert predict.classify_array is engine.classify_array
    assert predict.compute_tile is engine.compute_tile
    assert set(predict.__all__) <= set(dir(predict))


def test_old_import_paths_keep_working() -> None:
    import hsimap.distributed as distributed
    import hsimap.outputs as outputs
    from hsimap import geotiff
    from hsimap.predict import cluster, partial
    from hsimap.predict import outputs as new_outputs

    assert distributed.run_on_cluster is cluster.run_on_cluster
    assert distributed.probe_scheduler is cluster.probe_scheduler
    assert outputs.PartialOutputs is partial.PartialOutputs
    assert outputs.OutputSpec is new_outputs.OutputSpec
    assert outputs.record_path is new_outputs.record_path
    assert outputs.check_creation_options is geotiff.check_creation_options
    assert outputs.write_cog is geotiff.write_cog
    assert set(outputs.__all__) <= set(dir(outputs))
    assert set(distributed.__all__) <= set(dir(distributed))


def test_cluster_imports_the_engine_at_module_level_and_is_typed() -> None:
    """The Dask runner uses the same per-tile function as a local run, imported at the top
    (the old ``distributed`` imported ``predict`` lazily, and ``predict`` imported it)."""
    from hsimap.predict import cluster, engine

    tree = ast.parse((ROOT / "hsimap" / "predict" / "cluster.py").read_text(encoding="utf-8"))
    top = {a.name for n in tree.body if isinstance(n, ast.ImportFrom)
           and n.module == "hsimap.predict.engine" for a in n.names}
    assert {"compute_tile", "SceneReader", "TileWork"} <= top
    assert cluster.compute_tile is engine.compute_tile
    for fn in (cluster.run_tile, cluster.run_on_cluster, cluster.worker_checkpoint):
        hints = inspect.get_annotations(fn)
        assert "Any" not in " ".join(str(v) for v in hints.values()), fn.__name__
