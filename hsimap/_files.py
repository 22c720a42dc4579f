"""File helpers shared by every stage: output-path checks, atomic writes, hashes, suffixes.

Every file hsimap writes goes through :func:`check_output` before any work (never an input,
never a device, FIFO, socket or folder, never an existing file without ``--overwrite``) and is
written under ``.<name>.partial`` beside its final path, then renamed into place
(:func:`partial_path`, :func:`atomic_write_text`), so a crash never leaves a
complete-looking file.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from hsimap.errors import OutputError

# File endings read as rasters (not vectors) where a path could be either.
RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".img", ".vrt", ".envi", ".dat", ".bsq", ".jp2"})


def special_kind(path: str | Path) -> str | None:
    """What ``path`` is when it exists but is not a regular file (symbolic links followed).

    ``None`` for a regular file, a missing path or a dangling link; otherwise words such as
    ``"a character device"`` or ``"a symbolic link to a FIFO (named pipe)"``.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    kind = next((words for test, words in _KINDS if test(mode)), None)
    if kind is None:
        return None
    return f"a symbolic link to {kind}" if path.is_symlink() else kind


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"))


def refuse_special(out: Path) -> None:
    """Refuse an output path that is a device, FIFO, socket or folder, whatever --overwrite says."""
    kind = special_kind(out)
    if kind == "a folder":
        raise OutputError("output path is a folder", path=out, fix="give a file name")
    if kind is not None:
        raise OutputError(
            f"output path is {kind}, not a regular file; hsimap never replaces one, even with "
            "--overwrite", path=out, fix="give the name of a regular file (or a new name)")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file (resolved, or the same inode)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(out: str | Path, *, inputs: tuple[str | Path, ...] = (),
                 overwrite: bool = False) -> Path:
    """Refuse an output path that equals an input, is not a regular file, exists (without
    overwrite) or can't be made."""
    out = Path(out)
    if any(same_file(out, item) for item in inputs):
        raise OutputError("output path is the same as an input file", path=out,
                          fix="choose another output name; inputs are never overwritten")
    refuse_special(out)
    if os.path.lexists(out) and not overwrite:
        raise OutputError("output already exists", path=out,
                          fix="pass --overwrite to replace it, or choose another name")
    parent = out.parent if str(out.parent) else Path(".")
    blocker = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise OutputError(f"{blocker} is a file, not a folder", path=out,
                          fix="choose an output path inside an existing folder")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist", path=out,
                          fix=f"create it first (mkdir -p {parent})")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {parent} is not writable", path=out,
                          fix="choose a folder you can write to")
    return out


def partial_path(out: Path) -> Path:
    """Temporary name a file is written under until complete."""
    return out.with_name(f".{out.name}.partial")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``.<name>.partial`` and rename it to ``path`` (removed on failure)."""
    refuse_special(path)
    tmp = partial_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise



def sha256_file(path: str | Path) -> str:
    """SHA-256 of a whole file (hex), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_output_folder(out: Path) -> Path:
    """Create the output folder ``out`` (and its parents); an :class:`OutputError` if not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder ({exc})", path=out,
                          fix="choose a folder you can write to with -o") from exc
    return out
