"""``hsimap sample-data`` and ``hsimap qgis-scripts``: copy the bundled files into a folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from hsimap.bundled import BundleKind

_DEST = click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
_OVERWRITE = click.option("--overwrite", is_flag=True, help="Replace files that already exist.")


@click.command("sample-data", short_help="Copy the bundled sample scene into a folder.")
@_DEST
@_OVERWRITE
def sample_data(dest: Path, overwrite: bool) -> None:
    """Copy the sample EnMAP scene of Potsdam and its land-cover polygons into DEST.

    \b
    Example:
      hsimap sample-data hsimap_sample
      hsimap train hsimap_sample/potsdam_enmap.tif \\
          --labels hsimap_sample/potsdam_landcover.shp
    """
    _copy("sample-data", dest, overwrite)


@click.command("qgis-scripts", short_help="Copy the QGIS Processing scripts into a folder.")
@_DEST
@_OVERWRITE
def qgis_scripts(dest: Path, overwrite: bool) -> None:
    """Copy the QGIS Processing scripts into DEST.

    Add DEST in QGIS under Settings > Options > Processing > Scripts > Scripts folder(s).

    \b
    Example:
      hsimap qgis-scripts ~/hsimap-qgis
    """
    _copy("qgis-scripts", dest, overwrite)


def _copy(kind: BundleKind, dest: Path, overwrite: bool) -> None:
    from hsimap.bundled import copy_bundled

    for path in copy_bundled(kind, dest, overwrite=overwrite):
        click.echo(str(path))
