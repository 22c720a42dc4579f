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
        click.echo(f"  size:     {ds.shape[1]} x {ds.shape[0]} px (width x height), "
                   f"{ds.bands} bands")
        click.echo(f"  sensor:   {ds.sensor}, {ds.gsd:g} m; {ds.location}")
        click.echo(f"  sha256:   cube {ds.cube_sha256 or 'unknown'}")
        click.echo(f"            gt   {ds.gt_sha256 or 'unknown'}")
        click.echo(f"  unlabelled: {ds.unlabelled}" + ("" if ds.unlabelled == 0 else " (and 0)"))
        if ds.notes:
            click.echo(f"  notes:    {ds.notes}")
        if ds.source:
            click.echo(f"  source:   {ds.source}")
        click.echo("  classes:")
        for c in ds.classes:
            click.echo(f"    {c.value:>3}  {c.name:<32} {'' if c.pixels is None else c.pixels:>7}")
        return
    header = ("name", "scene", "width x height", "bands", "classes", "labelled", "sensor",
              "GSD m")
    rows = [(d.name, d.title, f"{d.shape[1]} x {d.shape[0]}", str(d.bands), str(len(d.classes)),
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

    The scene is recognised from the variable names and shape (a crop of a known scene
    too). The outputs get a NOMINAL georeference (the site's UTM zone and pixel size), not
    real coordinates. Unlabelled pixels (0, or -1 in the 8-bit Indian Pines copy) get no
    polygon.

    \b
    Examples:
      hsimap datasets convert SalinasA_corrected.mat SalinasA_gt.mat -o salinas_a/
      hsimap datasets convert IP_200_M.mat Label_M_IP_16.mat -o indian_pines_8bit/
    """
    from hsimap.preflight import Problems

    problems = Problems()  # both files at once, before scipy/h5py are imported
    problems.files((cube, ".mat file", "check the CUBE path"), (gt, ".mat file",
                                                                  "check the GT path"))
    problems.raise_all()
    from hsimap.datasets import convert_mat

    result = convert_mat(cube, gt, out_dir, cube_key=cube_key, gt_key=gt_key, name=name,
                         gsd=gsd, overwrite=overwrite)
    ds = result.dataset
    if result.sub_scene:
        rows, cols = result.shape
        click.echo(f"{ds.title}: a {cols} x {rows} px crop of the {ds.shape[1]} x "
                   f"{ds.shape[0]} px scene (width x height), {ds.bands} bands")
    else:
        click.echo(f"{ds.title}: {ds.shape[1]} x {ds.shape[0]} px (width x height), "
                   f"{ds.bands} bands")
    click.echo(f"  image:    {result.image}")
    unlabelled = "0" if ds.unlabelled == 0 else f"{ds.unlabelled} or 0"
    click.echo(f"  labels:   {result.labels} ({result.n_polygons} polygons; "
               f"{result.unlabelled_pixels} unlabelled pixels, value {unlabelled}, have none)")
    click.echo(f"  sidecars: {result.provenance}, {result.readme}")
    click.echo(f"Note: nominal georeference (EPSG:{ds.nominal_epsg}, {ds.gsd:g} m pixels), "
               "not real coordinates.")
