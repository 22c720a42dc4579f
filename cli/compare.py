"""``hsimap compare``: spatial cross-validation of several model kinds on one scene."""

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
    overwrite_opt,
)

# svm:smooth is measured level with diffspectralnet on Indian Pines disjoint blocks
# (docs/benchmarks.md): a user choosing a model should see it without asking for it.
DEFAULT_MODELS = "diffspectralnet,svm,svm:smooth,random-forest,spectral-mlp"


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """``KIND=VALUE`` pairs from a repeated option."""
    out = {}
    for text in values:
        kind, sep, value = text.partition("=")
        if not sep or not kind.strip() or not value.strip():
            raise click.BadParameter(f"{text!r} is not KIND=VALUE, e.g. svm=thorough",
                                     param_hint=option)
        out[kind.strip()] = value.strip()
    return out


def _not_compared(kind: str, kinds: list[str]) -> None:
    from hsimap.errors import ConfigError

    raise ConfigError(f"--preset/--config name {kind!r}, which is not among --models "
                      f"{','.join(kinds)}", fix=f"add {kind} to --models, or leave its "
                                                "--preset/--config out")


def _check_compare_outputs(out_dir: Path, train_best: Path | None, *,
                           inputs: tuple[Path, ...], overwrite: bool) -> None:
    """The comparison folder and the --train-best model (with its log), checked together."""
    from hsimap.preflight import Problems, log_path_for
    from hsimap.preflight import check_compare_dir as check_out_dir

    problems = Problems()
    problems.check(check_out_dir, out_dir, overwrite=overwrite)
    if train_best is not None:
        from hsimap._files import check_output

        for path in (train_best, log_path_for(train_best)):
            problems.check(check_output, path, inputs=inputs, overwrite=overwrite)
    problems.raise_all()


@click.command(short_help="Spatial cross-validation of several model kinds.")
@click.argument("cube_arg", metavar="CUBE", required=False, type=click.Path(path_type=Path))
@input_alias_opt("cube", "CUBE", "Hyperspectral raster (GeoTIFF, ENVI, VRT, ...)")
@click.option("--labels", "labels", required=True, type=click.Path(path_type=Path),
              help="Ground truth: vector file (Shapefile, GPKG, GeoJSON) or label raster.")
@layer_opt
@click.option("--classes", "classes_file", default=None, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Class file giving each class's code, name and colour, in order: JSON "
                   "list, QGIS .qml style or .clr colour map (as for train).")
@mask_opt
@mask_layer_opt
@click.option("--models", default=DEFAULT_MODELS, show_default=True, metavar="K1,K2,...",
              help="Comma-separated model kinds to compare; KIND:PRESET names a preset, so "
                   "one kind can appear twice, e.g. svm,svm:smooth.")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Number of spatial cross-validation folds.")
@click.option("--guard", type=click.IntRange(min=0), default=None,
              help="Guard band (px) between the training and test pixels of a fold "
                   "[default: the widest window radius of the shipped models].")
@click.option("--block-size", type=click.IntRange(min=1), default=None,
              help="Block side (px) for points, label rasters and large polygons.")
@click.option("--preset", "presets", multiple=True, metavar="KIND=NAME",
              help="Preset of one model kind, e.g. svm=thorough (repeatable) "
                   "[default: each kind's default].")
@click.option("--config", "configs", multiple=True, metavar="KIND=FILE.toml",
              help="TOML config overrides of one model kind, as for train (repeatable).")
@class_field_opt
@all_touched_opt
@click.option("--on-overlap", type=click.Choice(["error", "drop"]), default="error",
              show_default=True, help="Pixels claimed by polygons of different classes.")
@click.option("--val-fraction", type=click.FloatRange(0, 0.9), default=0.2, show_default=True,
              help="Share of each fold's training part held out for early stopping.")
@click.option("--bad-bands", type=BandListType(), default="",
              help="1-based bands to ignore, e.g. 130-135,180 (on top of the file's bbl).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("-o", "--out-dir", default="hsimap_compare", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for compare.json, compare.csv, compare_folds.csv, compare.html.")
@click.option("--train-best", default=None, metavar="MODEL_PATH",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Also fit the best model on all labels to this model file (as train).")
@max_memory_opt
@device_opt
@overwrite_opt
@click.pass_context
def compare(ctx: click.Context, cube_arg: Path | None, cube_opt: tuple[Path, ...],
            labels: Path, layer: str | None, classes_file: Path | None, mask: str | None,
            mask_layer: str | None, models: str, folds: int,
            guard: int | None, block_size: int | None, presets: tuple[str, ...],
            configs: tuple[str, ...], class_field: str | None, all_touched: bool,
            on_overlap: str, val_fraction: float, bad_bands: tuple[int, ...], seed: int,
            out_dir: Path, train_best: Path | None, max_memory: str | None, device: str,
            overwrite: bool) -> None:
    """Cross-validate model kinds on the same spatial folds of LABELS and rank them.

    `--cube CUBE` is the same as the CUBE argument (the older spelling).

    \b
    Example:
      hsimap compare scene.tif --labels gt.shp --models svm,random-forest \\
          --train-best best.safetensors
    """
    from hsimap.cli.options import one_input, progress_bars
    from hsimap.cli.train import _check_config, _read_config
    from hsimap.preflight import Problems
    from hsimap.resources import parse_size

    # every path, option and config before anything is read (and, unless a preset or
    # config needs checking, before torch is imported)
    problems = Problems()
    cube = problems.check(one_input, cube_arg, cube_opt, metavar="CUBE", option="--cube",
                          example="hsimap compare scene.tif --labels gt.shp")
    names = [k.strip() for k in models.split(",") if k.strip()]
    kinds = [n.partition(":")[0].strip() for n in names]  # KIND or KIND:PRESET
    preset_of = problems.check(_pairs, presets, "--preset") or {}
    config_of = problems.check(_pairs, configs, "--config") or {}
    for kind in [*preset_of, *config_of]:
        if kind not in kinds:
            problems.check(_not_compared, kind, kinds)
    problems.files((cube, "file", "check the path (relative paths start from the current "
                                  "folder)"),
                   (labels, "labels file", "check the --labels path"),
                   (classes_file, "class file", "check the --classes path"),
                   (mask, "mask file", "check the --mask path"),
                   *[(Path(f), "config file", "check the --config path")
                     for f in config_of.values()])
    problems.check(_check_compare_outputs, out_dir, train_best,
                   inputs=(cube, labels) if cube is not None else (labels,),
                   overwrite=overwrite)
    budget = None if max_memory is None else problems.check(parse_size, max_memory)
    choices = []
    for name, kind in zip(names, kinds, strict=True):
        fixed = name.partition(":")[2].strip() or None  # svm:smooth names its preset
        overrides: dict[str, Any] = {}
        preset = fixed or preset_of.get(kind)
        path = Path(config_of[kind]) if kind in config_of else None
        if path is not None and problems.exists(path):
            read = problems.check(_read_config, path)
            if read is not None:
                overrides, _, file_preset = read
                preset = preset or file_preset
        choices.append((f"{kind}:{fixed}" if fixed else None, kind, preset, overrides, path,
                        fixed is None and preset_of.get(kind) is None))
    for _, kind, preset, overrides, path, from_file in choices:  # names and values need
        problems.check(_check_config, path, kind, preset, overrides,  # the model code
                       kind_from_file=False, preset_from_file=from_file)
    problems.raise_all()
    assert cube is not None
    from hsimap.compare import CompareOptions, ModelChoice, compare_models

    options = CompareOptions(
        folds=folds, guard=guard, block_size=block_size, val_fraction=val_fraction,
        class_field=class_field, all_touched=all_touched,
        on_overlap="drop" if on_overlap == "drop" else "error", seed=seed, device=device,
        bad_bands=bad_bands, max_memory=budget, layer=layer,
        classes_file=None if classes_file is None else str(classes_file), mask=mask,
        mask_layer=mask_layer)
    callback, close = progress_bars(ctx.obj.get("verbosity", 0) < 0)
    try:
        result = compare_models(cube, labels, options=options, out_dir=out_dir,
                                models=[ModelChoice(k, p, o, name=n)
                                        for n, k, p, o, _, _ in choices],
                                overwrite=overwrite, train_best=train_best, progress=callback)
        close(completed=True)  # a stage the model ended before its total is no failure
    finally:
        close()

    def pct(x: float | None, signed: bool = False) -> str:
        return "n/a" if x is None else (f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}")

    width = max(len(r["model"]) for r in result.summary)
    click.echo(f"{'model':<{width}}  OA % (mean +- sd)   diff to best (+- se)   AA %     kappa")
    for r in result.summary:
        sd = "" if r["oa_std"] is None else f" +- {pct(r['oa_std'])}"
        se = "" if r["oa_diff_se"] is None else f" +- {pct(r['oa_diff_se'])}"
        click.echo(f"{r['model']:<{width}}  {pct(r['oa_mean']) + sd:<18} "
                   f"{pct(r['oa_diff'], True) + se:<22} {pct(r['aa_mean']):<8} "
                   f"{'n/a' if r['kappa_mean'] is None else format(r['kappa_mean'], '.4f')}")
    click.echo(f"best: {result.best}  (report: {result.files['compare.html']})")
    if result.best_model_path is not None:
        click.echo(f"best model trained on all labels: {result.best_model_path}")
