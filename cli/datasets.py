"""``hsimap datasets``: the classic benchmark scenes and their conversion from .mat files."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("datasets")
def datasets() -> None:
    """Classic hyperspectral benchmark scenes (Indian Pines, Pavia, Salinas, KSC, Botswana)."""


@datasets.command("list")
@click.argument("name", required=False)
def list_datasets(name: str | None) -> None:
    """List the known scenes, or show one scene's classes with NAME."""
    from hsimap.datasets import DATASETS, get_dataset

    if name is not None:
        ds = get_dataset(name)
        click.echo(f"{ds.title} ({ds.name})")
        click.echo(f"  files:    {ds.cube_file} [{ds.cube_key}], {ds.gt_file} [{ds.gt_key}]")
        click.echo(f"  shape:    {ds.shape[0]} x {ds.shape[1]} px, {ds.bands} bands")
        click.echo(f"  sensor:   {ds.sensor}, {ds.gsd:g} m; {ds.location}")
        click.echo(f"  sha256:   cube {ds.cube_sha256 or 'unknown'}")
        click.echo(f"            gt   {ds.gt_sha256 or 'unknown'}")
        if ds.notes:
            click.echo(f"  notes:    {ds.notes}")
        click.echo("  classes:")
        for c in ds.classes:
            click.echo(f"    {c.value:>3}  {c.name:<32} {'' if c.pixels is None else c.pixels:>7}")
        return
    header = ("name", "scene", "rows x cols", "bands", "classes", "labelled", "sensor", "GSD m")
    rows = [(d.name, d.title, f"{d.shape[0]} x {d.shape[1]}", str(d.bands), str(len(d.classes)),
             "" if d.labelled_pixels is None else str(d.labelled_pixels), d.sensor, f"{d.gsd:g}")
            for d in DATASETS]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, tuple("-" * w for w in widths), *rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


@datasets.command("convert")
@click.argument("cube", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("gt", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (created if missing).")
@click.option("--cube-key", default=None, help="Variable holding the cube (unknown files).")
@click.option("--gt-key", default=None, help="Variable holding the ground truth (unknown files).")
@click.option("--name", default=None, help="Output base name [default: the scene's name].")
@click.option("--gsd", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Pixel size in metres for unregistered scenes [default: 1].")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def convert(cube: Path, gt: Path, out_dir: Path, cube_key: str | None, gt_key: str | None,
            name: str | None, gsd: float | None, overwrite: bool) -> None:
    """Convert a benchmark CUBE.mat + GT.mat pair to GeoTIFF + GeoPackage polygons.

    The scene is recognised from the variable names and shape. The outputs get a NOMINAL
    georeference (the site's UTM zone and pixel size), not real coordinates.

    \b
    Example:
      hsimap datasets convert SalinasA_corrected.mat SalinasA_gt.mat -o salinas_a/
    """
    from hsimap.datasets import convert_mat

    result = convert_mat(cube, gt, out_dir, cube_key=cube_key, gt_key=gt_key, name=name,
                         gsd=gsd, overwrite=overwrite)
    ds = result.dataset
    click.echo(f"{ds.title}: {ds.shape[0]} x {ds.shape[1]} px, {ds.bands} bands")
    click.echo(f"  image:    {result.image}")
    click.echo(f"  labels:   {result.labels} ({result.n_polygons} polygons)")
    click.echo(f"  sidecars: {result.provenance}, {result.readme}")
    click.echo(f"Note: nominal georeference (EPSG:{ds.nominal_epsg}, {ds.gsd:g} m pixels), "
               "not real coordinates.")
