"""The QGIS Processing scripts in ``qgis/``, run in a real QGIS (Debian package ``qgis``).

Two ways in, as users meet them:

* ``qgis_process.bin --json run script:hsimap_<x> -- KEY=value`` (headless QGIS, its own
  Python): train -> predict -> evaluate on the sample data, outputs reopened with rasterio;
* ``processing.run`` / ``processing.runAndLoadResults`` inside this pytest process (QGIS's
  Python bindings appended to ``sys.path``): the map layer added to the project is styled,
  a missing hsimap gives install instructions, Cancel stops hsimap, hsimap errors surface.

The scripts run the ``hsimap`` CLI of this venv in a subprocess (``HSIMAP_EXECUTABLE`` or PATH).
Models are spectral-mlp with a few epochs (a TOML override), so the module takes well under
two minutes. Everything skips, with the reason, where QGIS is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.qgis

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "qgis"
SAMPLE = ROOT / "sample_data"
SAMPLE_CUBE = SAMPLE / "potsdam_enmap.tif"
LABELS = SAMPLE / "potsdam_landcover.shp"
# Where Debian puts QGIS's Python bindings, and the packages this process takes from there
# (linked into a private folder, so no other Debian package shadows a missing venv one).
QGIS_DIST_PACKAGES = os.environ.get("QGIS_DIST_PACKAGES", "/usr/lib/python3/dist-packages")
QGIS_PACKAGES = ("qgis", "PyQt5", "osgeo", "psycopg2")
QGIS_PYTHON_DIRS = ("/usr/share/qgis/python", "/usr/share/qgis/python/plugins")


def _find_qgis_process() -> str | None:
    """``$QGIS_PROCESS_BIN``, else Debian's ``qgis_process.bin`` (its ``qgis_process``
    wrapper passes an option the binary rejects)."""
    explicit = os.environ.get("QGIS_PROCESS_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("qgis_process.bin") or shutil.which("qgis_process.bin",
                                                             path="/usr/bin:/bin")


QGIS_PROCESS = _find_qgis_process()
HSIMAP = shutil.which("hsimap", path=str(Path(sys.executable).parent)) or shutil.which("hsimap")
FAST_CONFIG = "[config]\nepochs = 4\npatience = 4\n"
SLOW_CONFIG = "[config]\nepochs = 5000\npatience = 5000\n"
SPECTRAL_MLP = 1  # index of spectral-mlp in the train script's MODEL_TYPE enum
CPU = 1  # index of cpu in the DEVICE enum
MODEL_TYPES_COMPARE = ("diffspectralnet", "spectral-mlp", "svm", "random-forest",  # its enum
                       "svm:smooth")

# ---------------------------------------------------------------------------------- helpers


def _expected_classes() -> dict[int, str]:
    """class_id -> class_name of the sample polygons."""
    import geopandas as gpd

    gdf = gpd.read_file(LABELS)
    return {int(i): str(n) for i, n in
            gdf[["class_id", "class_name"]].drop_duplicates().itertuples(index=False)}


def _qml_palette(qml: Path) -> dict[int, tuple[str, str]]:
    """value -> (#rrggbb, label) from hsimap's .qml sidecar."""
    import xml.etree.ElementTree as ET

    entries = ET.parse(qml).getroot().iter("paletteEntry")
    return {int(e.get("value")): (e.get("color", "").lower(), e.get("label", "")) for e in entries}


def _evaluate_available() -> bool:
    if HSIMAP is None:
        return False
    done = subprocess.run([HSIMAP, "evaluate", "--help"], capture_output=True, text=True)
    return done.returncode == 0


def _write_config(folder: Path, text: str) -> Path:
    path = folder / "override.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def cube(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample cube: QGIS saves band histograms in a ``.aux.xml`` beside any
    raster it opens, and sample_data/ must stay as committed."""
    path = tmp_path_factory.mktemp("cube") / SAMPLE_CUBE.name
    shutil.copyfile(SAMPLE_CUBE, path)
    return path


# ------------------------------------------------------------------- qgis_process (headless)


def _qgis_env(tmp: Path, *, path: str = "/usr/bin:/bin", hsimap: str | None = HSIMAP) -> dict:
    """Environment for qgis_process: temporary profile whose Processing settings name our
    scripts folder, offscreen Qt, and no venv on PATH (QGIS's embedded Python would pick the
    venv's site-packages up from a ``python3`` on PATH and crash on its numpy)."""
    profile = tmp / "profile"
    ini = profile / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_text(f"[Processing]\nConfiguration\\SCRIPTS_FOLDERS={SCRIPTS}\n", encoding="utf-8")
    runtime = tmp / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "QGIS_", "HSIMAP_"))}
    env.update(PATH=path, QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(runtime),
               QGIS_CUSTOM_CONFIG_PATH=str(profile))
    if hsimap is not None:
        env["HSIMAP_EXECUTABLE"] = hsimap
    return env


def _qgis_process(alg: str, params: dict[str, Any], env: dict[str, str],
                  cwd: Path) -> tuple[int, dict[str, Any] | None, str]:
    """``qgis_process.bin --json run script:<alg> -- K=V ...``: (rc, JSON or None, stderr)."""
    cmd = [QGIS_PROCESS, "--json", "run", f"script:{alg}", "--",
           *(f"{k}={v}" for k, v in params.items())]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    doc = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, doc, done.stderr


needs_qgis_process = pytest.mark.skipif(
    QGIS_PROCESS is None, reason="QGIS is not installed (no qgis_process.bin; Debian: apt-get "
    "install qgis)")


@pytest.fixture(scope="module")
def headless_run(tmp_path_factory: pytest.TempPathFactory, cube: Path) -> dict[str, Any]:
    """Train (HSIMAP_EXECUTABLE) then predict (hsimap found on PATH) through qgis_process."""
    if QGIS_PROCESS is None:
        pytest.skip("QGIS is not installed (no qgis_process.bin)")
    if HSIMAP is None:
        pytest.skip("the hsimap CLI is not installed")
    tmp = tmp_path_factory.mktemp("qgis_process")
    env = _qgis_env(tmp)
    model = tmp / "model.safetensors"
    rc, train, err = _qgis_process("hsimap_train", {
        "CUBE": cube, "LABELS": LABELS, "CLASS_FIELD": "class_id", "MODEL_TYPE": SPECTRAL_MLP,
        "CONFIG": _write_config(tmp, FAST_CONFIG), "DEVICE": CPU, "MODEL": model}, env, tmp)
    assert rc == 0, err
    # predict finds hsimap on PATH instead: a folder holding only a link to it.
    bindir = tmp / "bin"
    bindir.mkdir()
    (bindir / "hsimap").symlink_to(HSIMAP)
    env_path = _qgis_env(tmp, path=f"{bindir}:/usr/bin:/bin", hsimap=None)
    out = tmp / "map.tif"
    rc, predict, err = _qgis_process("hsimap_predict", {
        "CUBE": cube, "MODEL": model, "DEVICE": CPU, "OUTPUT": out,
        "PROBABILITIES": tmp / "probabilities.tif", "CONFIDENCE": tmp / "confidence.tif"},
        env_path, tmp)
    assert rc == 0, err
    return {"tmp": tmp, "env": env, "model": model, "map": out, "train": train,
            "predict": predict}


@needs_qgis_process
def test_scripts_are_listed(tmp_path: Path) -> None:
    done = subprocess.run([QGIS_PROCESS, "list"], capture_output=True, text=True,
                          env=_qgis_env(tmp_path), timeout=120)
    for name in ("hsimap_train", "hsimap_predict", "hsimap_evaluate", "hsimap_compare"):
        assert f"script:{name}" in done.stdout, done.stderr
    assert "hsimap_common" not in done.stdout  # the shared module is not an algorithm


def test_headless_train_writes_model(headless_run: dict[str, Any]) -> None:
    from hsimap.checkpoint import read_metadata

    train = headless_run["train"]
    assert train["results"]["MODEL"] == str(headless_run["model"])
    meta = read_metadata(headless_run["model"])
    assert meta["model_kind"] == "spectral-mlp"
    assert {c["value"]: c["name"] for c in meta["classes"]} == _expected_classes()
    log = "\n".join(train["log"]["info"])
    assert "--model-type spectral-mlp" in log and "--class-field class_id" in log
    assert "validation accuracy" in log  # hsimap's own summary is relayed


def test_headless_predict_writes_styled_georeferenced_map(headless_run: dict[str, Any]) -> None:
    import numpy as np
    import rasterio

    out = headless_run["map"]
    assert headless_run["predict"]["results"]["OUTPUT"] == str(out)
    expected = _expected_classes()
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 32633
        with rasterio.open(SAMPLE_CUBE) as scene:
            assert src.transform == scene.transform and src.shape == scene.shape
        values = set(np.unique(src.read(1, masked=True).compressed()).tolist())
        colormap = src.colormap(1)
    assert values and values <= set(expected)
    palette = _qml_palette(out.with_suffix(".qml"))
    assert {v: label for v, (_, label) in palette.items()} == expected
    for value, (color, _) in palette.items():
        r, g, b, _a = colormap[value]
        assert f"#{r:02x}{g:02x}{b:02x}" == color
    aux = out.with_name(out.name + ".aux.xml").read_text(encoding="utf-8")
    assert all(f"<Category>{name}</Category>" in aux for name in expected.values())


def test_headless_predict_writes_probabilities_and_confidence(
        headless_run: dict[str, Any]) -> None:
    import rasterio

    results, tmp = headless_run["predict"]["results"], headless_run["tmp"]
    assert results["PROBABILITIES"] == str(tmp / "probabilities.tif")
    assert results["CONFIDENCE"] == str(tmp / "confidence.tif")
    with rasterio.open(results["PROBABILITIES"]) as src:
        assert src.crs.to_epsg() == 32633 and src.count == len(_expected_classes())
    with rasterio.open(results["CONFIDENCE"]) as src:
        assert src.crs.to_epsg() == 32633 and src.count == 1


def test_headless_evaluate_writes_report(headless_run: dict[str, Any]) -> None:
    if not _evaluate_available():
        pytest.skip("`hsimap evaluate` is not available in this hsimap yet")
    tmp = headless_run["tmp"]
    folder = tmp / "report"
    rc, doc, err = _qgis_process("hsimap_evaluate", {
        "MAP": headless_run["map"], "LABELS": LABELS, "CLASS_FIELD": "class_id",
        "OUTPUT_FOLDER": folder}, headless_run["env"], tmp)
    assert rc == 0, err
    results = doc["results"]
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    assert 0.0 <= metrics["overall_accuracy"] <= 1.0
    assert results["OVERALL_ACCURACY"] == pytest.approx(metrics["overall_accuracy"])
    assert results["KAPPA"] == pytest.approx(metrics["kappa"])
    assert {c["name"] for c in metrics["classes"]} >= set(_expected_classes().values())
    assert Path(results["REPORT"]) == folder / "report.html"
    assert (folder / "report.html").is_file()


@needs_qgis_process
def test_headless_missing_hsimap_says_how_to_install(tmp_path: Path, cube: Path) -> None:
    env = _qgis_env(tmp_path, hsimap=None)
    if shutil.which("hsimap", path=env["PATH"]):
        pytest.skip("hsimap is installed system-wide")
    rc, _, err = _qgis_process("hsimap_train", {
        "CUBE": cube, "LABELS": LABELS, "MODEL": tmp_path / "m.safetensors"}, env, tmp_path)
    assert rc != 0
    assert "hsimap is not installed or not on PATH" in err
    assert "pip install . torch==2.13.0" in err and "HSIMAP_EXECUTABLE" in err
    assert "Traceback" not in err


# ----------------------------------------------------------- processing.run (in this process)


@pytest.fixture(scope="session")
def qgis_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless QgsApplication with Processing and our scripts folder registered."""
    dist = Path(QGIS_DIST_PACKAGES)
    if not (dist / "qgis").is_dir() or not os.path.isdir(QGIS_PYTHON_DIRS[1]):
        pytest.skip(f"QGIS's Python bindings are not installed (no {dist / 'qgis'} or "
                    f"{QGIS_PYTHON_DIRS[1]}; Debian: apt-get install qgis)")
    shim = tmp_path_factory.mktemp("qgis_python")
    for name in QGIS_PACKAGES:
        if (dist / name).exists():
            (shim / name).symlink_to(dist / name)
    for p in (str(shim), *QGIS_PYTHON_DIRS):
        if p not in sys.path:
            sys.path.append(p)  # appended: the venv's numpy etc. keep precedence
    try:
        from qgis.core import QgsApplication
    except ImportError as exc:
        pytest.skip(f"QGIS's Python bindings do not import here: {exc}")
    tmp = tmp_path_factory.mktemp("qgis_app")
    runtime = tmp / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    env = pytest.MonkeyPatch()  # undone at the end of the session
    env.setenv("QT_QPA_PLATFORM", os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    env.setenv("XDG_RUNTIME_DIR", os.environ.get("XDG_RUNTIME_DIR", str(runtime)))
    env.setenv("QGIS_CUSTOM_CONFIG_PATH", str(tmp / "profile"))  # a throw-away profile
    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing
    from processing.core.ProcessingConfig import ProcessingConfig
    from processing.script import ScriptUtils

    Processing.initialize()
    ProcessingConfig.setSettingValue(ScriptUtils.SCRIPTS_FOLDERS, str(SCRIPTS))
    QgsApplication.processingRegistry().providerById("script").refreshAlgorithms()
    for name in ("hsimap_train", "hsimap_predict", "hsimap_evaluate", "hsimap_compare"):
        assert QgsApplication.processingRegistry().algorithmById(f"script:{name}") is not None
    yield app  # never exitQgis(): tearing QGIS down inside pytest can crash the interpreter
    env.undo()


@pytest.fixture
def hsimap_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scripts find this venv's hsimap through HSIMAP_EXECUTABLE."""
    if HSIMAP is None:
        pytest.skip("the hsimap CLI is not installed")
    monkeypatch.setenv("HSIMAP_EXECUTABLE", HSIMAP)


class _Recorder:
    """Collects what an algorithm reports through its feedback."""

    def __init__(self) -> None:
        from qgis.core import QgsProcessingFeedback

        self.feedback = QgsProcessingFeedback()
        self.progress: list[float] = []
        self.commands: list[str] = []
        self.feedback.progressChanged.connect(self.progress.append)
        self.feedback.pushCommandInfo = self.commands.append  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def inprocess_model(qgis_app: Any, tmp_path_factory: pytest.TempPathFactory,
                    cube: Path) -> Path:
    """A spectral-mlp model trained through ``processing.run("script:hsimap_train", ...)``."""
    if HSIMAP is None:
        pytest.skip("the hsimap CLI is not installed")
    import processing
    from qgis.core import QgsVectorLayer

    tmp = tmp_path_factory.mktemp("inprocess")
    # A filtered layer: the script hands hsimap a temporary GeoPackage of it.
    labels = QgsVectorLayer(str(LABELS), "labels", "ogr")
    labels.setSubsetString('"class_id" > 0')
    model = tmp / "model.safetensors"
    rec = _Recorder()
    old = os.environ.get("HSIMAP_EXECUTABLE")
    os.environ["HSIMAP_EXECUTABLE"] = HSIMAP
    try:
        result = processing.run("script:hsimap_train", {
            "CUBE": str(cube), "LABELS": labels, "CLASS_FIELD": "class_id",
            "MODEL_TYPE": SPECTRAL_MLP, "CONFIG": str(_write_config(tmp, FAST_CONFIG)),
            "DEVICE": CPU, "MODEL": str(model)}, feedback=rec.feedback)
    finally:
        if old is None:
            os.environ.pop("HSIMAP_EXECUTABLE")
        else:
            os.environ["HSIMAP_EXECUTABLE"] = old
    assert result["MODEL"] == str(model) and model.is_file()
    # tqdm percentages reached the progress bar, rising to 100
    assert rec.progress and rec.progress[-1] == 100 and rec.progress == sorted(rec.progress)
    assert len(set(rec.progress)) > 2
    # the refit on every labelled pixel has its own share: the bar does not sit at 100 while
    # the refit runs (it reached 100 at the end of the first classifier run before)
    assert rec.progress.count(100) <= 2 and 50 in rec.progress
    assert f"--labels {LABELS}" not in rec.commands[0] and ".gpkg" in rec.commands[0]
    assert "--refit" in rec.commands[0].split()
    return model


def test_processing_train_writes_the_model_it_was_asked_for(inprocess_model: Path) -> None:
    """The model the script trained (its progress is checked by the fixture) is a loadable
    spectral-mlp with the sample's classes and bands."""
    import rasterio

    from hsimap.checkpoint import load_checkpoint, read_metadata

    meta = read_metadata(inprocess_model)
    assert meta["model_kind"] == "spectral-mlp"
    assert {c["value"]: c["name"] for c in meta["classes"]} == _expected_classes()
    ckpt = load_checkpoint(inprocess_model)
    with rasterio.open(SAMPLE_CUBE) as src:
        assert ckpt.n_bands == src.count


def test_processing_train_refit_off_saves_the_validated_model(
        qgis_app: Any, hsimap_env: None, tmp_path: Path, cube: Path) -> None:
    import json

    import processing

    model = tmp_path / "kept.safetensors"
    rec = _Recorder()
    processing.run("script:hsimap_train", {
        "CUBE": str(cube), "LABELS": str(LABELS), "CLASS_FIELD": "class_id",
        "MODEL_TYPE": SPECTRAL_MLP, "CONFIG": str(_write_config(tmp_path, FAST_CONFIG)),
        "REFIT": False, "DEVICE": CPU, "MODEL": str(model)}, feedback=rec.feedback)
    assert "--no-refit" in rec.commands[0]
    log = json.loads(model.with_suffix(".log.json").read_text())
    assert log["meta"]["accuracy"]["refitted_on_all"] is False
    # one classifier stage only: the bar's single share is the whole bar
    assert rec.progress[-1] == 100 and rec.progress == sorted(rec.progress)


def _aoi_layer(cube: Path) -> Any:
    """A memory layer (the scripts hand hsimap a temporary GeoPackage of it) with one polygon
    over the western half of the scene."""
    import rasterio
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer

    with rasterio.open(cube) as src:
        b, epsg = src.bounds, src.crs.to_epsg()
    mid = (b.left + b.right) / 2
    layer = QgsVectorLayer(f"Polygon?crs=EPSG:{epsg}", "aoi", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromWkt(
        f"POLYGON(({b.left} {b.bottom}, {mid} {b.bottom}, {mid} {b.top}, {b.left} {b.top}, "
        f"{b.left} {b.bottom}))"))
    assert layer.dataProvider().addFeatures([feature])
    return layer


def _class_file(folder: Path) -> tuple[Path, list[tuple[int, str, str]]]:
    """A JSON class file listing the sample's codes in reverse order with names and colours
    of its own; returns it and its (value, name, colour) rows."""
    rows = [(v, f"{n} (file)", f"#{37 * v % 256:02x}{91 * v % 256:02x}{53 * v % 256:02x}")
            for v, n in sorted(_expected_classes().items(), reverse=True)]
    path = folder / "classes.json"
    path.write_text(json.dumps([{"value": v, "name": n, "color": c} for v, n, c in rows]),
                    encoding="utf-8")
    return path, rows


def _option_value(command: str, option: str) -> str:
    words = command.split()
    return words[words.index(option) + 1]


def test_processing_train_takes_an_area_of_interest_and_a_class_file(
        inprocess_model: Path, hsimap_env: None, tmp_path: Path, cube: Path) -> None:
    """MASK (a memory layer: passed as a temporary GeoPackage) keeps only the labels inside
    it; CLASSES sets the classes' order, names and colours in the model."""
    import processing

    from hsimap.checkpoint import read_metadata

    classes, rows = _class_file(tmp_path)
    model = tmp_path / "aoi.safetensors"
    rec = _Recorder()
    processing.run("script:hsimap_train", {
        "CUBE": str(cube), "LABELS": str(LABELS), "CLASS_FIELD": "class_id",
        "MODEL_TYPE": SPECTRAL_MLP, "CONFIG": str(_write_config(tmp_path, FAST_CONFIG)),
        "MASK": _aoi_layer(cube), "CLASSES": str(classes), "REFIT": False, "DEVICE": CPU,
        "MODEL": str(model)}, feedback=rec.feedback)
    assert _option_value(rec.commands[0], "--mask").endswith(".gpkg")
    assert _option_value(rec.commands[0], "--classes") == str(classes)
    meta = read_metadata(model)
    assert [(c["value"], c["name"], c["color"].lower()) for c in meta["classes"]] == rows

    def labelled(path: Path) -> int:
        split = json.loads(path.with_suffix(".log.json").read_text())["meta"]["split"]
        return int(split["n_train"]) + int(split["n_val"]) + int(split["n_guard_removed"])

    assert 0 < labelled(model) < 0.8 * labelled(inprocess_model)  # the western half only


def test_processing_compare_takes_an_area_of_interest_and_a_class_file(
        qgis_app: Any, hsimap_env: None, tmp_path: Path, cube: Path) -> None:
    """The compare script, run in QGIS, with MASK and CLASSES: its table names the classes
    of the file and counts only the pixels inside the area of interest."""
    import processing

    classes, rows = _class_file(tmp_path)
    folder = tmp_path / "compare"
    rec = _Recorder()
    result = processing.run("script:hsimap_compare", {
        "CUBE": str(cube), "LABELS": str(LABELS), "CLASS_FIELD": "class_id",
        "MODELS": [MODEL_TYPES_COMPARE.index("random-forest"),
                   MODEL_TYPES_COMPARE.index("svm:smooth")], "FOLDS": 2, "DEVICE": CPU,
        "MASK": _aoi_layer(cube), "CLASSES": str(classes), "OUTPUT_FOLDER": str(folder)},
        feedback=rec.feedback)
    assert result["BEST"] in ("random-forest", "svm:smooth")
    assert Path(result["REPORT"]).is_file() and Path(result["TABLE"]).is_file()
    report = json.loads((folder / "compare.json").read_text())
    assert {(m["model"], m["kind"], m["preset"]) for m in report["models"]} == \
        {("random-forest", "random-forest", "fast"), ("svm:smooth", "svm", "smooth")}
    assert report["inputs"]["classes"] == [n for _, n, _ in rows]
    assert report["inputs"]["mask"].endswith(".gpkg")
    assert rec.progress and rec.progress[-1] == 100
    full = subprocess.run(  # the same comparison without the mask, for the pixel count
        [HSIMAP or "hsimap", "compare", str(cube), "--labels", str(LABELS), "--class-field",
         "class_id", "--models", "random-forest", "--folds", "2", "-o", str(tmp_path / "all")],
        capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    whole = json.loads((tmp_path / "all" / "compare.json").read_text())

    def test_pixels(r: dict[str, Any]) -> int:
        return sum(f["n_test"] for f in r["folds"]["per_fold"])

    assert 0 < test_pixels(report) < 0.8 * test_pixels(whole)


def test_processing_predict_adds_styled_layer_to_project(
        inprocess_model: Path, hsimap_env: None, tmp_path: Path, cube: Path) -> None:
    import processing
    from qgis.core import (
        QgsPalettedRasterRenderer,
        QgsProcessingContext,
        QgsProject,
        QgsRasterLayer,
    )

    project = QgsProject.instance()
    project.clear()
    context = QgsProcessingContext()
    context.setProject(project)
    out = tmp_path / "map.tif"
    result = processing.runAndLoadResults("script:hsimap_predict", {
        "CUBE": str(cube), "MODEL": str(inprocess_model), "DEVICE": CPU, "OUTPUT": str(out)},
        context=context)
    assert result["OUTPUT"] == str(out) and out.is_file()
    layers = [lyr for lyr in project.mapLayers().values()
              if isinstance(lyr, QgsRasterLayer) and lyr.source() == str(out)]
    assert len(layers) == 1, [lyr.source() for lyr in project.mapLayers().values()]
    layer = layers[0]
    assert layer.crs().authid() == "EPSG:32633"
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    classes = {int(c.value): (c.color.name(), c.label) for c in renderer.classes()}
    assert {v: label for v, (_, label) in classes.items()} == _expected_classes()
    assert classes == _qml_palette(out.with_suffix(".qml"))
    project.clear()

    # Without the .qml sidecar the styler falls back to the colour table + category names.
    import importlib.util

    spec = importlib.util.spec_from_file_location("hsimap_common", SCRIPTS / "hsimap_common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    bare = tmp_path / "bare" / "map.tif"
    bare.parent.mkdir()
    for suffix in ("", ".aux.xml"):
        shutil.copyfile(f"{out}{suffix}", f"{bare}{suffix}")
    layer = QgsRasterLayer(str(bare), "bare")
    assert common.style_class_map(layer, str(bare))
    fallback = {int(c.value): (c.color.name(), c.label) for c in layer.renderer().classes()}
    assert fallback == classes


def test_processing_evaluate_reads_metrics(inprocess_model: Path, hsimap_env: None,
                                           tmp_path: Path, cube: Path) -> None:
    if not _evaluate_available():
        pytest.skip("`hsimap evaluate` is not available in this hsimap yet")
    import processing

    out = tmp_path / "map.tif"
    processing.run("script:hsimap_predict", {  # SCENE: the name before 0.2.0 still works
        "SCENE": str(cube), "MODEL": str(inprocess_model), "DEVICE": CPU, "OUTPUT": str(out)})
    log = inprocess_model.with_name(inprocess_model.stem + ".log.json")
    result = processing.run("script:hsimap_evaluate", {
        "MAP": str(out), "LABELS": str(LABELS), "OUTPUT_FOLDER": str(tmp_path / "report"),
        "LOG": str(log) if log.is_file() else None})
    metrics = json.loads(Path(result["METRICS"]).read_text(encoding="utf-8"))
    assert result["OVERALL_ACCURACY"] == pytest.approx(metrics["overall_accuracy"])
    assert Path(result["REPORT"]).is_file()


def test_processing_missing_hsimap_says_how_to_install(
        qgis_app: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cube: Path) -> None:
    import processing
    from qgis.core import QgsProcessingException

    monkeypatch.setenv("HSIMAP_EXECUTABLE", str(tmp_path / "no" / "hsimap"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    if shutil.which("hsimap"):
        pytest.skip(f"hsimap is installed system-wide ({shutil.which('hsimap')})")
    with pytest.raises(QgsProcessingException) as info:
        processing.run("script:hsimap_train", {
            "CUBE": str(cube), "LABELS": str(LABELS), "MODEL": str(tmp_path / "m.safetensors")})
    message = str(info.value)
    assert "HSIMAP_EXECUTABLE" in message and str(tmp_path / "no" / "hsimap") in message
    assert "python3 -m venv" in message and "pip install . torch==2.13.0" in message
    assert "Settings > Options > System > Environment" in message


def test_processing_cancel_stops_hsimap(qgis_app: Any, hsimap_env: None, tmp_path: Path,
                                        cube: Path) -> None:
    import processing
    from qgis.core import QgsProcessingException

    rec = _Recorder()
    # Cancel as soon as hsimap reports its first progress (the first tqdm frame).
    rec.feedback.progressChanged.connect(lambda _p: rec.feedback.cancel())
    model = tmp_path / "m.safetensors"
    start = time.monotonic()
    with pytest.raises(QgsProcessingException, match="cancelled"):
        processing.run("script:hsimap_train", {
            "CUBE": str(cube), "LABELS": str(LABELS), "MODEL_TYPE": SPECTRAL_MLP,
            "CONFIG": str(_write_config(tmp_path, SLOW_CONFIG)), "DEVICE": CPU,
            "MODEL": str(model)}, feedback=rec.feedback)
    assert time.monotonic() - start < 120
    assert rec.progress  # it was cancelled after a progress report, not before starting
    assert not model.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["override.toml"]


def test_processing_hsimap_error_becomes_processing_exception(
        qgis_app: Any, hsimap_env: None, tmp_path: Path, cube: Path) -> None:
    import processing
    from qgis.core import QgsProcessingException

    fake = tmp_path / "not_a_model.safetensors"
    fake.write_text("this is not a model", encoding="utf-8")
    with pytest.raises(QgsProcessingException) as info:
        processing.run("script:hsimap_predict", {
            "CUBE": str(cube), "MODEL": str(fake), "OUTPUT": str(tmp_path / "map.tif")})
    message = str(info.value)
    assert message.startswith("hsimap predict failed: Error: "), message
    assert "Traceback" not in message
    assert not (tmp_path / "map.tif").exists()
