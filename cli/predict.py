"""``hsimap predict``: map a scene with a trained model."""

from __future__ import annotations

from pathlib import Path

import click

from hsimap.cli.options import device_opt, model_opt, overwrite_opt, tile_opt


@click.command(short_help="Map a scene with a trained model.")
@click.argument("scene", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Class map GeoTIFF to write.")
@model_opt
@tile_opt
@device_opt
@overwrite_opt
@click.pass_context
def predict(ctx: click.Context, scene: Path, output: Path, model_path: Path, tile: int,
            device: str, overwrite: bool) -> None:
    """Classify SCENE with the model and write a georeferenced class map.

    \b
    Example:
      hsimap predict scene.tif -o map.tif
    """
    from hsimap.cli.options import progress_bars
    from hsimap.predict import predict_scene

    callback, close = progress_bars(ctx.obj.get("verbosity", 0) < 0)
    try:
        result = predict_scene(scene, out=output, model=model_path, tile=tile, device=device,
                               overwrite=overwrite, progress=callback)
    finally:
        close()
    counts = ", ".join(f"{k}={v}" for k, v in result.class_counts.items())
    click.echo(f"{result.n_valid} pixels classified in {result.seconds:.1f} s "
               f"({result.n_tiles} tiles, halo {result.halo} px): {counts}")
    click.echo(f"map: {result.map_path}")
