"""The built wheel: LICENSE, metadata, and the sample data and QGIS scripts it ships."""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import rasterio
from click.testing import CliRunner

from hsimap.bundled import copy_bundled
from hsimap.cli.main import cli
from hsimap.errors import OutputError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_FILES = {"potsdam_enmap.tif", "potsdam_landcover.shp", "potsdam_landcover.shx",
                "potsdam_landcover.dbf", "potsdam_landcover.prj", "potsdam_landcover.cpg",
                "README.md"}
QGIS_FILES = {p.name for p in (ROOT / "qgis").glob("hsimap_*.py")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the source tree (the working tree stays untouched)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("hsimap", "cli", "sample_data", "qgis"):
        shutil.copytree(ROOT / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", str(src), "-w", str(out)], check=True, timeout=300)
    (built,) = out.glob("hsimap-*.whl")
    return built


def test_wheel_carries_license_metadata_sample_data_and_qgis_scripts(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.parser.Parser().parsestr(z.read(meta_name).decode())
        (license_name,) = [n for n in names if n.endswith("/licenses/LICENSE")]
        license_text = z.read(license_name).decode()
    assert "GNU GENERAL PUBLIC LICENSE" in license_text
    assert "Version 3, 29 June 2007" in license_text
    assert license_text == (ROOT / "LICENSE").read_text()
    assert meta["License-Expression"] == "GPL-3.0-or-later"
    assert "License" not in meta  # the deprecated free-text field is gone
    classifiers = meta.get_all("Classifier")
    assert "Topic :: Scientific/Engineering :: GIS" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers)  # SPDX replaces them
    assert meta.get_all("Project-URL")
    assert {f"hsimap/sample_data/{f}" for f in SAMPLE_FILES} <= names
    assert {f"hsimap/qgis_scripts/{f}" for f in QGIS_FILES} <= names
    assert "hsimap/qgis_scripts/hsimap_common.py" in names and len(QGIS_FILES) >= 4


def test_unpacked_wheel_copies_out_sample_data_and_qgis_scripts(
        wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = ("import hsimap, sys; from hsimap.cli.main import main; "
            "sys.stderr.write(hsimap.__file__ + '\\n'); main()")
    for command, dest, expected in (("sample-data", tmp_path / "sample", SAMPLE_FILES),
                                    ("qgis-scripts", tmp_path / "qgis", QGIS_FILES)):
        run = subprocess.run([sys.executable, "-c", code, command, str(dest)], env=env,
                             capture_output=True, text=True, timeout=120, check=False,
                             cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert run.stderr.splitlines()[0].startswith(str(site))  # the wheel's hsimap, not ours
        assert expected <= {p.name for p in dest.iterdir()}
    with rasterio.open(tmp_path / "sample" / "potsdam_enmap.tif") as src:
        assert (src.width, src.height, src.count) == (160, 192, 224)
    assert (tmp_path / "qgis" / "hsimap_common.py").read_bytes() == \
        (ROOT / "qgis" / "hsimap_common.py").read_bytes()
    again = subprocess.run([sys.executable, "-c", code, "sample-data", str(tmp_path / "sample")],
                           env=env, capture_output=True, text=True, timeout=120, check=False,
                           cwd=tmp_path)
    assert again.returncode != 0 and "already exist" in again.stderr


def test_sample_data_refuses_to_overwrite_without_the_flag(tmp_path: Path) -> None:
    runner = CliRunner()
    dest = tmp_path / "new" / "sample"
    r = runner.invoke(cli, ["sample-data", str(dest)])
    assert r.exit_code == 0, r.output
    assert (dest / "potsdam_enmap.tif").read_bytes() == \
        (ROOT / "sample_data" / "potsdam_enmap.tif").read_bytes()
    (dest / "potsdam_landcover.prj").write_text("mine")
    r = runner.invoke(cli, ["sample-data", str(dest)])
    assert r.exit_code != 0
    assert "potsdam_landcover.prj" in r.output and "--overwrite" in r.output
    assert (dest / "potsdam_landcover.prj").read_text() == "mine"
    r = runner.invoke(cli, ["sample-data", str(dest), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert (dest / "potsdam_landcover.prj").read_bytes() == \
        (ROOT / "sample_data" / "potsdam_landcover.prj").read_bytes()


def test_qgis_scripts_refuses_a_file_as_folder_and_a_symlink_even_with_overwrite(
        tmp_path: Path) -> None:
    runner = CliRunner()
    a_file = tmp_path / "f"
    a_file.write_text("x")
    r = runner.invoke(cli, ["qgis-scripts", str(a_file)])
    assert r.exit_code != 0 and "is a file" in r.output
    with pytest.raises(OutputError, match="not a folder"):
        copy_bundled("qgis-scripts", a_file)
    dest = tmp_path / "scripts"
    dest.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (dest / "hsimap_common.py").symlink_to(victim)
    r = runner.invoke(cli, ["qgis-scripts", str(dest), "--overwrite"])
    assert r.exit_code != 0 and "not a regular file" in r.output
    assert victim.read_text() == "keep"


def test_readme_user_installs_skip_the_test_extra_but_the_test_command_keeps_it() -> None:
    readme = (ROOT / "README.md").read_text()
    installs = [line for line in readme.splitlines() if "pip install" in line]
    test_lines = [line for line in installs if "-m pytest" in line]
    assert len(test_lines) == 1 and "'.[test]'" in test_lines[0]
    user_lines = [line for line in installs if line not in test_lines]
    assert user_lines and not any("[test]" in line for line in user_lines)
    assert any("pip install -e . torch==2.13.0 && .venv/bin/hsimap train" in line
               for line in user_lines)
