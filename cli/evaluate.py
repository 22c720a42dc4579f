"""``hsimap evaluate``: accuracy of a class map against reference polygons or a label raster."""

from __future__ import annotations

from pathlib import Path

import click

from hsimap.cli.options import input_alias_opt


@click.command("evaluate")
@click.argument("map_arg", metavar="MAP", required=False,
                type=click.Path(dir_okay=False, path_type=Path))
@input_alias_opt("map", "MAP", "Class map to evaluate")
@click.option("--labels", "reference", required=True, metavar="REFERENCE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Reference data: polygons/points (any OGR vector) or a label raster on the "
                   "map's grid.")
@click.option("--layer", default=None, metavar="NAME",
              help="Layer of a multi-layer reference file (GeoPackage, ...); required when it "
                   "has several.")
@click.option("--class-map", "class_map", default=None, metavar="OLD=NEW,...|FILE",
              help="Merge map classes into coarser reference classes, e.g. "
                   "roof=impervious,pavement=impervious (names or values), or a file with one "
                   "old=new pair per line.")
@click.option("--class-field", default=None, metavar="FIELD",
              help="Field holding class names or codes (auto-detected if omitted).")
@click.option("--all-touched", is_flag=True,
              help="Use every pixel a polygon touches, not only pixel centres inside it.")
@click.option("--on-overlap", type=click.Choice(["error", "drop"]), default="error",
              show_default=True, help="Pixels claimed by polygons of different classes.")
@click.option("--log", "training_log", default=None, metavar="JSON",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Training log (JSON) whose loss/accuracy curves go into the report.")
@click.option("-o", "--out-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder [default: <map stem>_evaluation beside the map].")
@click.option("--overwrite", is_flag=True, help="Replace an existing evaluation in the folder.")
def evaluate(map_arg: Path | None, map_opt: tuple[Path, ...], reference: Path,
             layer: str | None, class_map: str | None,
             class_field: str | None, all_touched: bool,
             on_overlap: str, training_log: Path | None, out_dir: Path | None,
             overwrite: bool) -> None:
    """Compare MAP with reference data; write metrics.json, CSV tables and report.html.

    `--map MAP` is the same as the MAP argument.

    \b
    Example:
      hsimap evaluate map.tif --labels reference.gpkg --log hsimap_model.log.json
    """
    import sys

    from hsimap.cli.options import one_input

    map_path = one_input(map_arg, map_opt, metavar="MAP", option="--map",
                         example="hsimap evaluate map.tif --labels reference.gpkg")
    from hsimap.classmap import parse_class_map
    from hsimap.evaluate import check_out_dir, evaluate_map
    from hsimap.preflight import Problems

    # every path and option before anything is read
    problems = Problems()
    problems.files((map_path, "map file", "check the MAP path"),
                   (reference, "reference file", "check the --labels path"),
                   (training_log, "training log", "check the --log path"))
    problems.check(check_out_dir, map_path, out_dir, overwrite=overwrite)
    pairs = None if class_map is None else problems.check(parse_class_map, class_map)
    problems.raise_all()
    with click.progressbar(length=1, label="Reading the map", file=sys.stderr,
                           show_eta=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        result = evaluate_map(map_path, reference, class_field=class_field,
                              all_touched=all_touched,
                              on_overlap="drop" if on_overlap == "drop" else "error",
                              training_log=training_log, out_dir=out_dir, overwrite=overwrite,
                              progress=progress, layer=layer, class_map=pairs)
    acc = result.accuracy
    area = result.area_adjusted

    def pct(x: float) -> str:
        return "n/a" if x != x else f"{100 * x:.2f} %"

    click.echo(f"Reference pixels:  {acc.n_samples}"
               + (f" ({result.n_reference_on_nodata} more on map nodata, left out)"
                  if result.n_reference_on_nodata else ""))
    click.echo(f"Overall accuracy:  {pct(acc.overall_accuracy)}")
    click.echo(f"Average accuracy:  {pct(acc.average_accuracy)}")
    kappa = "n/a" if acc.kappa != acc.kappa else f"{acc.kappa:.4f}"
    click.echo(f"Cohen's kappa:     {kappa}")
    click.echo(f"Area-adjusted OA:  {pct(area.overall_accuracy)}"
               + ("" if area.overall_accuracy_ci != area.overall_accuracy_ci
                  else f" +- {100 * area.overall_accuracy_ci:.2f} (95% CI)"))
    click.echo(f"Report:            {result.report_path}")
