"""Map several scenes with one model: ``hsimap predict A.tif B.tif -o OUT_DIR``.

Each scene gets ``OUT_DIR/<scene stem>_map.tif`` (and its ``.aux.xml`` and ``.qml``
sidecars). Before the first tile is computed every scene is opened and checked against the
model's bands, and every output name is checked, so a bad scene or an existing map is
reported at once rather than after the earlier scenes were mapped.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hsimap._files import RASTER_SUFFIXES, make_output_folder
from hsimap.cube import is_virtual
from hsimap.errors import ConfigError, InputFileError, OutputError

GLOB_CHARS = set("*?[")
# -o names that look like a raster file (an ENVI header too), refused for several scenes
_RASTER_NAMES = RASTER_SUFFIXES | {".hdr"}


def expand_scenes(args: Sequence[str]) -> tuple[list[str], bool]:
    """The scenes named by ``args``, glob patterns expanded (sorted), and whether a pattern
    was among them. A pattern that matches no file is refused naming it."""
    scenes: list[str] = []
    pattern = False
    for arg in args:
        if is_virtual(arg) or not GLOB_CHARS & set(arg) or Path(arg).exists():
            scenes.append(arg)
            continue
        pattern = True
        matches = sorted(m for m in glob.glob(arg) if not m.endswith((".aux.xml", ".ovr")))
        if not matches:
            raise InputFileError("no file matches this pattern", path=arg,
                                 fix="check the folder and the pattern (quote it, e.g. "
                                     "'scenes/*.tif', so that hsimap expands it)")
        scenes.extend(matches)
    seen: set[str] = set()
    unique = [s for s in scenes if not (s in seen or seen.add(s))]  # type: ignore[func-returns-value]
    return unique, pattern


def map_paths(scenes: Sequence[str], out_dir: Path) -> list[Path]:
    """``OUT_DIR/<scene stem>_map.tif`` for every scene; two scenes with one stem are
    refused (their maps would share a name)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError("is a file, but with several scenes -o names the folder the maps "
                          "go to", path=out_dir,
                          fix="give a folder with -o (it is created if missing); each map is "
                              "named <scene>_map.tif")
    if not out_dir.exists() and out_dir.suffix.lower() in _RASTER_NAMES:
        raise OutputError("looks like a file name, but with several scenes -o names the "
                          "folder the maps go to", path=out_dir,
                          fix=f"give a folder, e.g. -o {out_dir.with_suffix('')}; each map is "
                              "named <scene>_map.tif")
    by_name: dict[str, str] = {}
    paths = []
    for scene in scenes:
        stem = Path(scene.rstrip("/")).stem
        name = f"{stem}_map.tif"
        if name in by_name:
            raise ConfigError(f"scenes {by_name[name]} and {scene} would both be mapped to "
                              f"{out_dir / name}",
                              fix="rename one of them, or map them in two runs with different "
                                  "-o folders")
        by_name[name] = scene
        paths.append(out_dir / name)
    return paths


def check_scenes(scenes: Sequence[str], model_path: str | Path) -> None:
    """Open every scene and refuse the first whose bands differ from the model's."""
    from hsimap.checkpoint import load_checkpoint
    from hsimap.cube import open_cube
    from hsimap.predict import check_scene

    ckpt = load_checkpoint(model_path)
    for scene in scenes:
        check_scene(open_cube(scene), ckpt)


def predict_scenes(scenes: Sequence[str], *, out_dir: str | Path, overwrite: bool = False,
                   resume: bool = False, model_path: str | Path, cog: bool = False,
                   creation_options: dict[str, str] | None = None,
                   on_done: Any = None, **kwargs: Any) -> list[Any]:
    """Map every scene into ``out_dir`` with :func:`hsimap.predict.predict_scene`.

    ``kwargs`` go to ``predict_scene`` (model_path, tile, device, mask, progress, ...);
    probabilities and confidence rasters are not written for a batch. ``on_done`` is called
    with each scene and its result (``None`` for a map a resumed batch had finished) as its
    map is complete. Returns the results in scene order.
    """
    from hsimap.geotiff import check_creation_options
    from hsimap.predict.outputs import OutputSpec, check_outputs, input_files, record_path

    out_dir = Path(out_dir)
    paths = map_paths(scenes, out_dir)
    options = tuple((str(k), str(v)) for k, v in (creation_options or {}).items())
    check_creation_options(options, cog=cog)
    check_scenes(scenes, model_path)
    make_output_folder(out_dir)
    if not resume:
        inputs = input_files(*scenes, model_path)
        for path in paths:
            check_outputs(OutputSpec(path, None, None, "uint8", "max", cog, options),
                          inputs=inputs, overwrite=overwrite)
    from hsimap.predict import predict_scene

    results = []
    for scene, path in zip(scenes, paths, strict=True):
        if resume and path.exists() and not record_path(path).exists():
            result = None  # finished by the interrupted batch: nothing to resume
        else:
            result = predict_scene(scene, out=path, model_path=model_path, overwrite=overwrite,
                                   resume=resume, cog=cog, creation_options=creation_options,
                                   **kwargs)
        if on_done is not None:
            on_done(scene, result)
        results.append(result)
    return results
