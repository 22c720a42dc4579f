"""hsimap._files: the output-path guard, atomic writes, hashes and the output folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from hsimap._files import (
    RASTER_SUFFIXES,
    atomic_write_text,
    check_output,
    make_output_folder,
    partial_path,
    same_file,
    sha256_file,
    special_kind,
)
from hsimap.errors import OutputError


def test_check_output_refuses_inputs_existing_files_folders_and_fifos(tmp_path: Path) -> None:
    src = tmp_path / "in.tif"
    src.write_bytes(b"x")
    with pytest.raises(OutputError, match="same as an input"):
        check_output(tmp_path / "." / "in.tif", inputs=(src,))
    with pytest.raises(OutputError, match="already exists"):
        check_output(src)
    assert check_output(src, overwrite=True) == src
    with pytest.raises(OutputError, match="is a folder"):
        check_output(tmp_path, overwrite=True)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert special_kind(fifo) == "a FIFO (named pipe)"
    with pytest.raises(OutputError, match="FIFO"):
        check_output(fifo, overwrite=True)
    with pytest.raises(OutputError, match="does not exist"):
        check_output(tmp_path / "no" / "such" / "out.tif")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output(src / "out.tif")


def test_atomic_write_text_replaces_whole_and_leaves_no_partial(tmp_path: Path) -> None:
    out = tmp_path / "a.txt"
    target = tmp_path / "target.txt"
    target.write_text("old")
    out.symlink_to(target)
    atomic_write_text(out, "new")
    assert out.read_text() == "new" and not out.is_symlink()  # the link itself is replaced
    assert target.read_text() == "old"
    assert partial_path(out) == tmp_path / ".a.txt.partial" and not partial_path(out).exists()


def test_sha256_same_file_folder_and_suffixes(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"hsimap" * 100_000)
    assert sha256_file(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert same_file(f, tmp_path / "." / "f.bin") and not same_file(f, tmp_path / "g.bin")
    folder = make_output_folder(tmp_path / "x" / "y")
    assert folder.is_dir()
    with pytest.raises(OutputError, match="cannot create the output folder"):
        make_output_folder(f / "sub")
    assert {".tif", ".vrt"} <= RASTER_SUFFIXES and ".gpkg" not in RASTER_SUFFIXES
