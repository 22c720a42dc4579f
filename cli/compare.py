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
    max_memory_opt,
    overwrite_opt,
)

DEFAULT_MODELS = "diffspectralnet,svm,random-forest,spectral-mlp"


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


@click.command(short_help="Spatial cross-validation of several model kinds.")
@click.option("--cube", "cube", required=True, type=click.Path(path_type=Path),
              help="Hyperspectral raster (GeoTIFF, ENVI, VRT, ...).")
@click.option("--labels", "labels", required=True, type=click.Path(path_type=Path),
              help="Ground truth: vector file (Shapefile, GPKG, GeoJSON) or label raster.")
@click.option("--models", default=DEFAULT_MODELS, show_default=True, metavar="K1,K2,...",
              help="Comma-separated model kinds to compare.")
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
def compare(ctx: click.Context, cube: Path, labels: Path, models: str, folds: int,
            guard: int | None, block_size: int | None, presets: tuple[str, ...],
            configs: tuple[str, ...], class_field: str | None, all_touched: bool,
            on_overlap: str, val_fraction: float, bad_bands: tuple[int, ...], seed: int,
            out_dir: Path, train_best: Path | None, max_memory: str | None, device: str,
            overwrite: bool) -> None:
    """Cross-validate model kinds on the same spatial folds of LABELS and rank them.

    \b
    Example:
      hsimap compare --cube scene.tif --labels gt.shp --models svm,random-forest \\
          --train-best best.safetensors
    """
    from hsimap.cli.options import progress_bars
    from hsimap.cli.train import _check_config, _read_config
    from hsimap.compare import CompareOptions, ModelChoice, compare_models
    from hsimap.resources import parse_size

    kinds = [k.strip() for k in models.split(",") if k.strip()]
    preset_of = _pairs(presets, "--preset")
    config_of = _pairs(configs, "--config")
    for kind in [*preset_of, *config_of]:
        if kind not in kinds:
            raise click.BadParameter(f"{kind!r} is not among --models {','.join(kinds)}",
                                     param_hint="--preset/--config")
    choices = []
    for kind in kinds:
        overrides: dict[str, Any] = {}
        preset = preset_of.get(kind)
        if kind in config_of:
            path = Path(config_of[kind])
            if not path.is_file():
                raise click.BadParameter(f"{path} is not a file", param_hint="--config")
            overrides, _, file_preset = _read_config(path)
            preset = preset or file_preset
            _check_config(path, kind, preset, overrides, kind_from_file=False,
                          preset_from_file=preset_of.get(kind) is None)
        choices.append(ModelChoice(kind, preset, overrides))
    options = CompareOptions(
        folds=folds, guard=guard, block_size=block_size, val_fraction=val_fraction,
        class_field=class_field, all_touched=all_touched,
        on_overlap="drop" if on_overlap == "drop" else "error", seed=seed, device=device,
        bad_bands=bad_bands, max_memory=None if max_memory is None else parse_size(max_memory))
    callback, close = progress_bars(ctx.obj.get("verbosity", 0) < 0)
    try:
        result = compare_models(cube, labels, models=choices, options=options, out_dir=out_dir,
                                overwrite=overwrite, train_best=train_best, progress=callback)
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
