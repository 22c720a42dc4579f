"""``hsimap info``: describe a cube or a model file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


@click.command(short_help="Describe a cube or a model file.")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(path: Path, as_json: bool) -> None:
    """Print what hsimap sees in PATH: a hyperspectral raster or a model (.safetensors).

    \b
    Examples:
      hsimap info scene.tif
      hsimap info hsimap_model.safetensors
    """
    if path.suffix.lower() == ".safetensors":
        description = _model_info(path)
    else:
        description = _cube_info(path)
    if as_json:
        click.echo(json.dumps(description, indent=1))
        return
    for key, value in description.items():
        click.echo(f"{key:>16}: {value}")


def _model_info(path: Path) -> dict[str, Any]:
    from hsimap.checkpoint import read_metadata

    meta = read_metadata(path)
    wl = meta.get("wavelengths")
    return {
        "model": meta["model_kind"],
        "classes": ", ".join(f"{c['value']}={c['name']}" for c in meta["classes"]),
        "bands": f"{meta['n_bands']} in the file, {len(meta['band_indices'])} used",
        "wavelengths": f"{min(wl):.1f}-{max(wl):.1f} nm" if wl else "unknown",
        "halo_px": meta.get("halo"),
        "validation": meta.get("split"),
        "accuracy": meta.get("accuracy"),
        "config": meta.get("model_config"),
        "trained_on": meta.get("training", {}).get("cube"),
        "created": meta.get("created"),
        "software": meta.get("software"),
        "format_version": meta.get("format_version"),
    }


def _cube_info(path: Path) -> dict[str, Any]:
    from hsimap.cube import open_cube

    cube = open_cube(path)
    g = cube.grid
    wl = cube.wavelengths
    return {
        "size": f"{g.width} x {g.height} px, {cube.count} bands, {cube.dtype}",
        "crs": None if g.crs is None else g.crs.to_string(),
        "transform": list(g.transform)[:6],
        "bounds": list(g.bounds),
        "nodata": cube.nodata,
        "wavelengths": f"{min(wl):.1f}-{max(wl):.1f} nm" if wl else "unknown",
        "bad_bands": [b + 1 for b in cube.bad_bands],
    }
