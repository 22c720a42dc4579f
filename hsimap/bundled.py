"""The files that ship inside hsimap: the sample scene and the QGIS Processing scripts.

In a source checkout they are the repository's ``sample_data/`` and ``qgis/`` folders; an
installed hsimap (wheel) carries the same files as ``hsimap/sample_data`` and
``hsimap/qgis_scripts`` (``pyproject.toml`` maps the folders into the package).
:func:`copy_bundled` copies one set into a folder of the user's choice.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hsimap.errors import InputFileError, OutputError

BundleKind = Literal["sample-data", "qgis-scripts"]


@dataclass(frozen=True)
class Bundle:
    """Where one set of bundled files lives and which files belong to it."""

    package_dir: str  # folder name inside an installed hsimap package
    source_dir: str  # folder name in a source checkout (beside hsimap/)
    marker: str  # a file that must be there (tells the folder from an unrelated one)
    suffixes: tuple[str, ...]  # the files copied out


BUNDLES: dict[BundleKind, Bundle] = {
    "sample-data": Bundle("sample_data", "sample_data", "potsdam_enmap.tif",
                          (".tif", ".shp", ".shx", ".dbf", ".prj", ".cpg", ".md", ".py")),
    "qgis-scripts": Bundle("qgis_scripts", "qgis", "hsimap_common.py", (".py",)),
}


def bundled_dir(kind: BundleKind) -> Path:
    """The folder holding the bundled files of ``kind`` (installed package or checkout)."""
    bundle = BUNDLES[kind]
    package = Path(__file__).resolve().parent
    for folder in (package / bundle.package_dir, package.parent / bundle.source_dir):
        if (folder / bundle.marker).is_file():
            return folder
    raise InputFileError(
        f"the {kind} files are missing from this hsimap installation (looked for "
        f"{bundle.marker} in {package / bundle.package_dir} and "
        f"{package.parent / bundle.source_dir})", path=package,
        fix="reinstall hsimap from a wheel or a full source checkout")


def bundled_files(kind: BundleKind) -> list[Path]:
    """The bundled files of ``kind``, sorted by name (no caches, no sub-folders)."""
    bundle = BUNDLES[kind]
    return sorted(p for p in bundled_dir(kind).iterdir()
                  if p.is_file() and p.suffix.lower() in bundle.suffixes
                  and p.name != "__init__.py")


def copy_bundled(kind: BundleKind, dest: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Copy the bundled files of ``kind`` into folder ``dest`` (created if missing).

    Nothing is copied when any target file exists and ``overwrite`` is false: the error
    lists the files that would be replaced. Returns the written paths.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise OutputError("is a file, not a folder", path=dest,
                          fix="give the name of a folder (it is created if missing)")
    files = bundled_files(kind)
    targets = [dest / f.name for f in files]
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing and not overwrite:
        names = ", ".join(t.name for t in existing)
        raise OutputError(f"{len(existing)} file(s) already exist there: {names}", path=dest,
                          fix="pass --overwrite to replace them, or choose another folder")
    for target in existing:
        if not target.is_file() or target.is_symlink():
            raise OutputError("exists and is not a regular file; it is never replaced",
                              path=target, fix="move it away or choose another folder")
    dest.mkdir(parents=True, exist_ok=True)
    for src, target in zip(files, targets, strict=True):
        shutil.copyfile(src, target)
    return targets
