"""``hsimap predict``: map a scene with a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hsimap.cli.options import (
    device_opt,
    input_alias_opt,
    mask_layer_opt,
    mask_opt,
    model_opt,
    overwrite_opt,
)
from hsimap.errors import caused_by_interrupt

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


class TileSizeType(click.ParamType):
    """``auto`` or a positive number of pixels."""

    name = "tile-size"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | str:
        """Parse ``auto`` or an integer >= 1."""
        if isinstance(value, int) and value >= 1:
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        if text.isdigit() and int(text) >= 1:
            return int(text)
        self.fail(f"{value!r} is not 'auto' or a positive number of pixels", param, ctx)


class CreationOptionType(click.ParamType):
    """A GDAL creation option ``KEY=VALUE``."""

    name = "KEY=VALUE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, str]:
        """Split ``KEY=VALUE``; GDAL checks the key and value before the run starts."""
        if isinstance(value, tuple):
            return value
        key, sep, val = str(value).partition("=")
        if not sep or not key.strip() or not val.strip():
            self.fail(f"{value!r} is not KEY=VALUE (e.g. --co COMPRESS=ZSTD)", param, ctx)
        return key.strip().upper(), val.strip()


@click.command(short_help="Map a scene with a trained model.")
@click.argument("scenes", metavar="SCENE...", nargs=-1,
                type=click.Path())  # strs: pathlib would mangle /vsicurl/http://
@input_alias_opt("cube", "SCENE", "Scene to map, as train's --cube", as_path=False)
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Class map GeoTIFF to write; with several scenes (or a glob pattern) the "
                   "folder for their maps, OUT_DIR/<scene>_map.tif.")
@model_opt
@click.option("--tile-size", "tile", type=TileSizeType(), default="auto", show_default=True,
              metavar="auto|PIXELS",
              help="Tile side in pixels (the halo comes on top); auto fits the free memory.")
@device_opt
@overwrite_opt
@click.option("--probabilities", type=click.Path(path_type=Path), default=None,
              metavar="PATH", help="Also write per-class probabilities (one band per class).")
@click.option("--confidence", type=click.Path(path_type=Path), default=None, metavar="PATH",
              help="Also write a confidence raster (see --confidence-kind).")
@click.option("--confidence-kind", type=click.Choice(["max", "margin"]), default="max",
              show_default=True,
              help="max: the winning class's probability; margin: best minus second best.")
@click.option("--prob-dtype", type=click.Choice(["uint8", "uint16"]), default="uint8",
              show_default=True,
              help="Scaling of probabilities/confidence: uint8 0..254 (nodata 255) or "
                   "uint16 0..10000 (nodata 65535).")
@click.option("--cog", is_flag=True,
              help="Write Cloud-Optimized GeoTIFFs with overviews.")
@click.option("--co", "creation_options", type=CreationOptionType(), multiple=True,
              metavar="KEY=VALUE",
              help="GDAL creation option for every output, e.g. --co COMPRESS=ZSTD (repeatable; "
                   "GTiff options, or COG options with --cog).")
@mask_opt
@mask_layer_opt
@click.option("--scheduler", envvar=SCHEDULER_ENV, default=None, metavar="ADDRESS",
              help=f"Run the tiles on this Dask scheduler (e.g. tcp://host:8786; default "
                   f"${SCHEDULER_ENV}). Workers must see the scene and model at the same paths.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run from its .partial files.")
@click.option("--dry-run", is_flag=True,
              help="Print tile count, tile size, halo, memory and time estimates; write nothing.")
@click.option("--flush-every", "--checkpoint-every", "flush_seconds", type=click.FloatRange(min=0),
              default=10.0, show_default=True, metavar="SECONDS",
              help="How often finished tiles are made durable for --resume.")
@click.pass_context
def predict(ctx: click.Context, scenes: tuple[str, ...], cube_opt: tuple[str, ...],
            output: Path, model_path: Path,
            tile: int | str, device: str, overwrite: bool, probabilities: Path | None,
            confidence: Path | None, confidence_kind: str, prob_dtype: str, cog: bool,
            creation_options: tuple[tuple[str, str], ...], mask: str | None,
            mask_layer: str | None, scheduler: str | None,
            resume: bool, dry_run: bool, flush_seconds: float) -> None:
    """Classify SCENE with the model and write a georeferenced class map.

    `--cube SCENE` is the same as the SCENE argument (train's spelling).

    SCENE may also be a GDAL virtual path (/vsizip/scenes.zip/scene.tif, /vsis3/bucket/scene.tif,
    /vsicurl/https://host/scene.tif). Several scenes, or a quoted glob pattern ('tiles/*.tif'),
    are mapped one after the other into the folder -o, one <scene>_map.tif each.

    \b
    Examples:
      hsimap predict scene.tif -o map.tif
      hsimap predict scene.tif -o map.tif --probabilities probs.tif --confidence conf.tif --cog
      hsimap predict big.tif -o map.tif --resume          # after an interrupted run
      hsimap predict big.tif -o map.tif --scheduler tcp://10.0.0.5:8786
      hsimap predict a.tif b.tif -o maps/                 # maps/a_map.tif, maps/b_map.tif
      hsimap predict 'tiles/*.tif' -o maps/
    """
    from hsimap.batch import expand_scenes
    from hsimap.errors import ConfigError

    if not scenes and not cube_opt:
        raise ConfigError("no scene given", fix="name the scene to map: hsimap predict "
                                                "scene.tif -o map.tif")
    names, pattern = expand_scenes((*scenes, *cube_opt))
    if len(names) > 1 or pattern or output.is_dir():
        _predict_batch(ctx, names, output, model_path=model_path, tile=tile, device=device,
                       overwrite=overwrite, probabilities=probabilities, confidence=confidence,
                       cog=cog, creation_options=creation_options, mask=mask,
                       mask_layer=mask_layer, scheduler=scheduler, resume=resume,
                       dry_run=dry_run, flush_seconds=flush_seconds)
        return
    scene = names[0]
    # every path and option before torch is imported and before any pixel is read
    from hsimap.preflight import Problems, check_predict_outputs

    problems = Problems()
    problems.files(_scene_item(scene), _model_item(model_path),
                   (mask, "mask file", "check the --mask path"))
    problems.check(check_predict_outputs, scene, out=output, model=model_path,
                   probabilities=probabilities, confidence=confidence, prob_dtype=prob_dtype,
                   confidence_kind=confidence_kind, cog=cog,
                   creation_options=creation_options, overwrite=overwrite, resume=resume)
    problems.raise_all()
    if dry_run:
        click.echo(_plan(scene, model_path, tile, device, probabilities is not None))
        click.echo("dry run: nothing was written")
        return
    from hsimap.cli.options import progress_bars
    from hsimap.predict import predict_scene

    callback, close = progress_bars(ctx.obj.get("verbosity", 0) < 0)
    try:
        result = predict_scene(
            scene, out=output, model_path=model_path, tile=tile,  # type: ignore[arg-type]
            device=device, overwrite=overwrite, probabilities=probabilities,
            confidence=confidence, prob_dtype=prob_dtype,  # type: ignore[arg-type]
            confidence_kind=confidence_kind,  # type: ignore[arg-type]
            cog=cog, scheduler=scheduler, resume=resume, flush_seconds=flush_seconds,
            progress=callback, creation_options=dict(creation_options), mask=mask,
            mask_layer=mask_layer)
    except BaseException as exc:
        if not caused_by_interrupt(exc):
            raise
        close()
        _interrupted(output)
        ctx.exit(130)
    finally:
        close()
    resumed = f", {result.resumed_tiles} resumed" if result.resumed_tiles else ""
    click.echo(f"{result.n_valid} pixels classified in {result.seconds:.1f} s "
               f"({result.n_tiles} tiles of {result.tile} px{resumed}, halo {result.halo} px)")
    for line in class_area_table(result):
        click.echo(line)
    click.echo(f"map: {result.map_path}")
    for path in result.outputs:
        if path != result.map_path:
            click.echo(f"also: {path}")


def _predict_batch(ctx: click.Context, scenes: list[str], out_dir: Path, *, model_path: Path,
                   tile: int | str, device: str, overwrite: bool, probabilities: Path | None,
                   confidence: Path | None, cog: bool,
                   creation_options: tuple[tuple[str, str], ...], mask: str | None,
                   mask_layer: str | None, scheduler: str | None, resume: bool,
                   dry_run: bool, flush_seconds: float) -> None:
    """``predict`` for several scenes: one ``<scene>_map.tif`` each in the folder ``out_dir``."""
    from hsimap.batch import map_paths, predict_scenes
    from hsimap.errors import ConfigError
    from hsimap.preflight import Problems, check_predict_outputs

    problems = Problems()
    problems.files(*[_scene_item(s) for s in scenes], _model_item(model_path),
                   (mask, "mask file", "check the --mask path"))
    if probabilities is not None or confidence is not None:
        problems.errors.append(ConfigError(
            "--probabilities and --confidence name one file each, so they cannot be used "
            "with several scenes", fix="map the scenes whose probabilities you need one at a "
                                       "time (hsimap predict scene.tif -o map.tif "
                                       "--probabilities p.tif)"))
    paths = problems.check(map_paths, scenes, out_dir)
    if paths is None or not out_dir.is_dir():  # the batch creates it: only the options
        from hsimap.geotiff import check_creation_options

        problems.check(check_creation_options, tuple(creation_options), cog=cog)
    for scene, path in zip(scenes, paths or [], strict=bool(paths)):
        if out_dir.is_dir() and problems.exists(scene) and problems.exists(model_path):
            problems.check(check_predict_outputs, scene, out=path, model=model_path, cog=cog,
                           creation_options=creation_options, overwrite=overwrite,
                           resume=resume)
    problems.raise_all()
    assert paths is not None
    if dry_run:
        for scene, path in zip(scenes, paths, strict=True):
            click.echo(f"{scene} -> {path}")
            click.echo(_plan(scene, model_path, tile, device, False))
        click.echo("dry run: nothing was written")
        return
    from hsimap.cli.options import progress_bars

    def done(scene: str, result: Any) -> None:
        click.echo(f"{scene}:")
        if result is None:
            click.echo("  already mapped by the interrupted run")
            return
        click.echo(f"  {result.n_valid} pixels classified in {result.seconds:.1f} s "
                   f"({result.n_tiles} tiles of {result.tile} px, halo {result.halo} px)")
        for line in class_area_table(result):
            click.echo(f"  {line}")
        click.echo(f"  map: {result.map_path}")

    callback, close = progress_bars(ctx.obj.get("verbosity", 0) < 0)
    try:
        predict_scenes(scenes, out_dir=out_dir, model_path=model_path, tile=tile, device=device,
                       overwrite=overwrite, cog=cog, creation_options=dict(creation_options),
                       mask=mask, mask_layer=mask_layer, scheduler=scheduler, resume=resume,
                       flush_seconds=flush_seconds, progress=callback,
                       on_done=done)
    except BaseException as exc:
        if not caused_by_interrupt(exc):
            raise
        close()
        _interrupted(next((p for p in paths if not p.exists()), paths[-1]))
        click.secho("rerun the same command with --resume to finish the batch (finished "
                    "maps are kept)", err=True, fg="yellow")
        ctx.exit(130)
    finally:
        close()
    click.echo(f"{len(scenes)} maps in {out_dir}")


def _scene_item(scene: str) -> tuple[str, str, str]:
    return (scene, "file", "check the path (relative paths start from the current folder)")


def _model_item(model_path: Path) -> tuple[Path, str, str]:
    return (model_path, "model file", "train one with `hsimap train` or pass --model PATH")


def _plan(scene: str, model_path: Path, tile: int | str, device: str,
          probabilities: bool) -> str:
    """The dry-run plan: from the model file's stored speed without torch when it can
    (:mod:`hsimap.dry_run`), else measured on a sample tile."""
    from hsimap.dry_run import plan_from_metadata

    plan = plan_from_metadata(scene, model=model_path, tile=tile, device=device,
                              probabilities=probabilities)
    if plan is None:
        from hsimap.predict import plan_prediction

        plan = plan_prediction(scene, model_path=model_path, tile=tile,  # type: ignore[arg-type]
                               device=device, probabilities=probabilities)
    return plan.describe()


def class_area_table(result: Any) -> list[str]:
    """Pixels, hectares (metric CRSs only) and share of the mapped area per class."""
    hectares = result.class_hectares()
    width = max([5, *(len(name) for name in result.class_counts)])
    head = f"{'class':<{width}}  {'pixels':>10}" + ("" if hectares is None else
                                                    f"  {'hectares':>12}") + f"  {'share':>7}"
    lines = [head]
    total = max(result.n_valid, 1)
    for name, n in result.class_counts.items():
        area = "" if hectares is None else f"  {hectares[name]:>12,.2f}"
        lines.append(f"{name:<{width}}  {n:>10,}{area}  {100 * n / total:>6.1f}%")
    if hectares is not None:
        lines.append(f"{'total':<{width}}  {result.n_valid:>10,}  "
                     f"{sum(hectares.values()):>12,.2f}  {100.0:>6.1f}%")
    return lines


def _interrupted(output: Path) -> None:
    from hsimap.predict.outputs import record_path

    if record_path(output).exists():
        click.secho(f"Interrupted: no output is complete; finished tiles are kept in "
                    f"{record_path(output).with_suffix('')} (and .json); run the same command "
                    "with --resume to finish.", err=True, fg="yellow")
    else:
        click.secho("Interrupted: no output was written and no partial files are left.",
                    err=True, fg="yellow")
