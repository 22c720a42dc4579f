"""``hsimap train``: fit a model on a cube and ground-truth labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hsimap.cli.options import (
    BandListType,
    all_touched_opt,
    class_field_opt,
    device_opt,
    input_alias_opt,
    layer_opt,
    mask_layer_opt,
    mask_opt,
    max_memory_opt,
    model_opt,
    overwrite_opt,
)


@click.command(short_help="Train a model on a cube and ground-truth labels.")
@click.argument("cube_args", metavar="[CUBE]...", nargs=-1, type=click.Path(path_type=Path))
@input_alias_opt("cube", "CUBE", "Hyperspectral raster (GeoTIFF, ENVI, VRT, ...); --cube A "
                 "--labels A.shp --cube B --labels B.shp trains on several scenes")
@click.option("--labels", "labels", multiple=True, type=click.Path(path_type=Path),
              help="Ground truth: vector file (Shapefile, GPKG, GeoJSON) or label raster; one "
                   "per CUBE, in the same order.")
@click.option("--scenes", "scenes_file", default=None, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="CSV (header cube,labels[,layer]) or TOML ([[scene]] tables) listing "
                   "training scenes; paths relative to the file. Added after any --cube pairs.")
@model_opt
@click.option("--model-type", "model_kind", default=None, metavar="NAME",
              help="Model kind: diffspectralnet (default), spectral-mlp (baseline), svm or "
                   "random-forest.")
@click.option("--preset", default=None, help="Named configuration of the model kind.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="TOML file overriding config fields.")
@layer_opt
@class_field_opt
@click.option("--classes", "classes_file", default=None, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Class file giving each class's code, name and colour, in order: JSON "
                   "list, QGIS .qml style or .clr colour map.")
@click.option("--color-field", default=None, metavar="F",
              help="Attribute with each class's colour (#rrggbb, rrggbb, #rgb or r,g,b[,a]); "
                   "stored in the model and written into every map.")
@mask_opt
@mask_layer_opt
@all_touched_opt
@click.option("--on-overlap", type=click.Choice(["error", "drop"]), default="error",
              show_default=True, help="Pixels claimed by polygons of different classes.")
@click.option("--validation", type=click.Choice(["polygon", "block", "random"]),
              default="polygon", show_default=True,
              help="How validation pixels are held out (random leaks; for papers only).")
@click.option("--val-fraction", type=click.FloatRange(0, 0.9), default=0.2, show_default=True,
              help="Share of each class's pixels held out for validation.")
@click.option("--guard", type=click.IntRange(min=0), default=None,
              help="Guard band (px) between training and validation pixels "
                   "[default: the widest window radius of the shipped models, the same for "
                   "every --model-type].")
@click.option("--block-size", type=click.IntRange(min=1), default=None,
              help="Block side (px) for --validation block.")
@click.option("--bad-bands", type=BandListType(), default="",
              help="1-based bands to ignore, e.g. 130-135,180 (on top of the file's bbl).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--export-split", "export_split", default=None, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Write the training and validation pixels used to DIR/<model>_split.gpkg "
                   "(field split = train/val, and the class field).")
@click.option("--refit/--no-refit", default=True, show_default=True,
              help="After validating, fit the saved model again on every labelled pixel "
                   "(training + validation). --no-refit saves the validated model, e.g. to "
                   "evaluate it on the --export-split validation pixels.")
@max_memory_opt
@device_opt
@overwrite_opt
@click.pass_context
def train(ctx: click.Context, cube_args: tuple[Path, ...], cube_opt: tuple[Path, ...],
          labels: tuple[Path, ...],
          scenes_file: Path | None, model_path: Path,
          model_kind: str | None, preset: str | None, config_file: Path | None,
          layer: str | None, class_field: str | None, classes_file: Path | None,
          color_field: str | None, mask: str | None, mask_layer: str | None,
          all_touched: bool,
          on_overlap: str, validation: str,
          val_fraction: float, guard: int | None, block_size: int | None,
          bad_bands: tuple[int, ...], seed: int, export_split: Path | None, refit: bool,
          max_memory: str | None, device: str, overwrite: bool) -> None:
    """Train a model on CUBE with ground truth from --labels and save it to --model.

    Several CUBEs train one model on several scenes, each with its --labels (in the same
    order). `--cube CUBE` is the same as the CUBE argument (the older spelling).

    \b
    Examples:
      hsimap train scene.tif --labels gt.shp
      hsimap train a.tif b.tif --labels a.shp --labels b.gpkg
      hsimap train --cube a.tif --labels a.shp --cube b.tif --labels b.gpkg
      hsimap train --scenes scenes.csv
    """
    from hsimap.cli.options import merge_inputs, progress_bars
    from hsimap.preflight import Problems, check_train_outputs
    from hsimap.resources import parse_size

    # every path, option and config before torch is imported and before anything is read
    problems = Problems()
    cube = problems.check(merge_inputs, cube_args, cube_opt, metavar="CUBE",
                          option="--cube", ordered=True) or []
    pairs = problems.check(_scene_pairs, tuple(cube), labels, scenes_file) or []
    problems.files(*[item for c, lab, _ in pairs for item in (
                       (c, "file", "check the path (relative paths start from the current "
                                   "folder)"),
                       (lab, "labels file", "check the --labels path"))],
                   (classes_file, "class file", "check the --classes path"),
                   (mask, "mask file", "check the --mask path"),
                   (config_file, "config file", "check the --config path"))
    problems.check(check_train_outputs, model_path,
                   inputs=[p for c, lab, _ in pairs for p in (c, lab)],
                   cubes=[c for c, _, _ in pairs], export_split=export_split,
                   overwrite=overwrite)
    budget = None if max_memory is None else problems.check(parse_size, max_memory)
    read = problems.check(_read_config, config_file) if problems.exists(config_file) else None
    overrides, file_kind, file_preset = read or ({}, None, None)
    if model_kind or preset or read:  # names and values need the model code (torch)
        problems.check(_check_config, config_file if read else None,
                       model_kind or file_kind or _default_kind(), preset or file_preset,
                       overrides, kind_from_file=not model_kind,
                       preset_from_file=not preset)
    problems.raise_all()
    from hsimap.models import DEFAULT_MODEL
    from hsimap.scenes import ScenePair
    from hsimap.training import TrainOptions, train_model

    options = TrainOptions(
        kind=model_kind or file_kind or DEFAULT_MODEL, preset=preset or file_preset,
        overrides=overrides, class_field=class_field, color_field=color_field,
        classes_file=None if classes_file is None else str(classes_file),
        layer=pairs[0][2] or layer,
        mask=mask, mask_layer=mask_layer,
        all_touched=all_touched,
        on_overlap=on_overlap,  # type: ignore[arg-type]
        validation=validation, val_fraction=val_fraction, guard=guard, block_size=block_size,
        seed=seed, device=device, bad_bands=bad_bands, refit=refit,
        max_memory=budget)
    quiet = ctx.obj.get("verbosity", 0) < 0
    callback, close = progress_bars(quiet)
    try:
        result = train_model(pairs[0][0], pairs[0][1], out=model_path, options=options,
                             overwrite=overwrite, progress=callback, export_split=export_split,
                             more_scenes=[ScenePair(c, lab, own or layer)
                                          for c, lab, own in pairs[1:]])
        close(completed=True)  # a stage the model ended before its total is no failure
    finally:
        close()
    val = "n/a (no validation pixels)" if result.val_accuracy is None else \
        f"{100 * result.val_accuracy:.2f} %"
    s = result.split
    far = ""
    if result.val_distance_px is not None:
        metres = "" if result.pixel_size is None else \
            f", {result.val_distance_px * result.pixel_size:g} m"
        far = f", each at least {result.val_distance_px} px{metres} from any training pixel"
    click.echo(f"validation accuracy: {val} on {s['n_val']} held-out pixels{far} "
               f"({s['method']} split, guard {s['guard_px']} px); "
               f"training accuracy {100 * result.train_accuracy:.2f} %")
    if result.refitted:
        click.echo(f"saved model: refitted on all {result.fitted_pixels} labelled pixels "
                   "(training + validation) with the same schedule; the validation figure "
                   "is that of the model fitted without the validation pixels")
    if len(pairs) > 1:
        click.echo(f"trained on {len(pairs)} scenes: "
                   + ", ".join(str(c) for c, _, _ in pairs))
    if result.split_path is not None:
        click.echo(f"split: {', '.join(map(str, result.split_paths or (result.split_path,)))} "
                   f"({s['n_train']} training, {s['n_val']} validation pixels)")
        if result.refitted:
            click.echo("note: the saved model has seen the validation pixels; to evaluate it "
                       "on them, train with --no-refit")
    ev = result.denoiser_eval
    if ev:
        cells = ", ".join(f"t={t}: {e:.3f} vs {z:.3f}" for t, e, z in
                          zip(ev["timesteps"], ev["eps_l1"], ev["zero_l1"], strict=True))
        where = (f"{ev['n_pixels']} held-out px" if ev.get("held_out")
                 else f"{ev['n_pixels']} px (too small to hold blocks out)")
        click.echo(f"denoiser noise error (L1, eval mode, {where}; predicting zero beside it): "
                   f"{cells}")
    click.echo(f"model: {result.model_path}  (log: {result.log_path}"
               + (f", curves: {result.curves_path})" if result.curves_path else ")"))


def _scene_pairs(cubes: tuple[Path, ...], labels: tuple[Path, ...], scenes_file: Path | None
                 ) -> list[tuple[str | Path, str | Path, str | None]]:
    """The training scenes: the --cube/--labels pairs in order, then the --scenes file's."""
    from hsimap.errors import ConfigError

    if len(cubes) != len(labels):
        raise ConfigError(
            f"{len(cubes)} cube(s) but {len(labels)} --labels given",
            fix="give one --labels per cube, in the same order: hsimap train A.tif B.tif "
                "--labels A.shp --labels B.shp (or list the pairs in a file with --scenes)")
    pairs: list[tuple[str | Path, str | Path, str | None]] = [
        (c, lab, None) for c, lab in zip(cubes, labels, strict=True)]
    if scenes_file is not None:
        from hsimap.scenes import read_scenes_file

        pairs += [(s.cube, s.labels, s.layer) for s in read_scenes_file(scenes_file)]
    if not pairs:
        raise ConfigError("no training scene given",
                          fix="pass scene.tif --labels gt.shp (several cubes, each with its "
                              "--labels, for several scenes), or --scenes scenes.csv")
    return pairs


def _read_config(path: Path | None) -> tuple[dict[str, Any], str | None, str | None]:
    """Config overrides from a TOML file: top-level ``model``/``preset`` + a ``[config]`` table
    (or fields at the top level)."""
    if path is None:
        return {}, None, None
    import tomllib

    from hsimap.errors import ConfigError

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"is not valid TOML ({exc})", path=path,
                          fix="fix the syntax there: a [config] header, then one `field = "
                              "value` per line (strings in quotes)") from exc
    kind = data.pop("model", None)
    preset = data.pop("preset", None)
    for key, value in (("model", kind), ("preset", preset)):
        if value is not None and not isinstance(value, str):
            example = "spectral-mlp" if key == "model" else "default"
            raise ConfigError(f"{key} must be a name in quotes, got {value!r}", path=path,
                              fix=f'write e.g. {key} = "{example}"')
    fields = data.pop("config", None)
    if fields is None:
        fields = data
    elif not isinstance(fields, dict):
        raise ConfigError(f"config must be a table, got {fields!r}", path=path,
                          fix="write the fields under a [config] header, one per line")
    elif data:
        raise ConfigError(f"unexpected top-level keys {sorted(data)}", path=path,
                          fix="put model fields under [config]")
    return dict(fields), kind, preset


def _default_kind() -> str:
    from hsimap.models import DEFAULT_MODEL

    return DEFAULT_MODEL


def _check_config(path: Path | None, kind: str, preset: str | None, overrides: dict[str, Any],
                  *, kind_from_file: bool, preset_from_file: bool) -> None:
    """Build the config once so that a bad kind, preset or field is reported before any
    reading, against the TOML file when it comes from there."""
    from hsimap.errors import ConfigError
    from hsimap.model_kinds import check_name

    if path is None and not overrides and check_name(kind, preset):
        return  # a shipped kind and its preset: known without importing torch
    from hsimap.models.base import get_spec

    def named(exc: ConfigError, fix: str | None = None) -> ConfigError:
        return ConfigError(exc.message, path=path, fix=exc.fix or fix)

    try:
        spec = get_spec(kind)
    except ConfigError as exc:
        if kind_from_file and path is not None:
            raise named(exc) from exc
        raise
    try:
        spec.make_config(preset, {})
    except ConfigError as exc:
        if preset_from_file and path is not None:
            raise named(exc) from exc
        raise
    try:
        spec.make_config(preset, overrides)
    except ConfigError as exc:
        if path is None:
            raise
        raise named(exc, "correct that field in the [config] table") from exc
