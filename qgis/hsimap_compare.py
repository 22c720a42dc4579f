"""QGIS Processing script ``script:hsimap_compare``: compare model kinds by spatial
cross-validation (runs the hsimap CLI).

Needs ``hsimap_common.py`` in the same scripts folder, and hsimap installed in its own Python
environment (see the error message QGIS shows when it is missing).
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
)


def _load_common() -> Any:
    """``hsimap_common.py`` from this script's folder (a scripts folder is not on sys.path)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hsimap_common.py")
    if not os.path.isfile(path):
        raise ImportError(f"{path} is missing: add the whole hsimap 'qgis' folder as a scripts "
                          "folder (Settings > Options > Processing > Scripts)")
    spec = importlib.util.spec_from_file_location("hsimap_qgis_common", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


common = _load_common()

# "svm:smooth": the svm kind with its smooth preset (``--models KIND:PRESET``)
MODEL_TYPES = ("diffspectralnet", "spectral-mlp", "svm", "random-forest", "svm:smooth")
DEVICES = ("auto", "cpu", "cuda")


class HsimapCompareAlgorithm(QgsProcessingAlgorithm):
    """Cross-validate several model kinds on the same spatial folds and pick the best."""

    CUBE, LABELS, CLASS_FIELD, MODELS = "CUBE", "LABELS", "CLASS_FIELD", "MODELS"
    FOLDS, GUARD, SEED, DEVICE, OVERWRITE = "FOLDS", "GUARD", "SEED", "DEVICE", "OVERWRITE"
    OUTPUT_FOLDER, BEST_MODEL = "OUTPUT_FOLDER", "BEST_MODEL"
    REPORT, TABLE, BEST = "REPORT", "TABLE", "BEST"

    def name(self) -> str:
        return "hsimap_compare"

    def displayName(self) -> str:
        return "Compare land-cover models"

    def group(self) -> str:
        return "hsimap"

    def groupId(self) -> str:
        return "hsimap"

    def shortHelpString(self) -> str:
        return ("Spatially grouped k-fold cross-validation of several hsimap model kinds on "
                "the same folds of your ground truth (whole polygons or blocks, with a guard "
                "band between training and test pixels). Writes compare.json, compare.csv and "
                "compare.html (OA, AA, kappa per model with their spread and the paired "
                "difference to the best) and, if a model file is given, trains the best model "
                f"on all labels. Runs the hsimap command-line tool ({common.ENV_VAR} or hsimap "
                "on PATH). diffspectralnet takes far longer than the others on a CPU.")

    def createInstance(self) -> HsimapCompareAlgorithm:
        return HsimapCompareAlgorithm()

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(self.CUBE, "Hyperspectral raster"))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.LABELS, "Ground-truth polygons", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterField(
            self.CLASS_FIELD, "Class field (names or integer codes; empty: auto-detect)",
            parentLayerParameterName=self.LABELS, optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.MODELS, "Model types to compare", options=list(MODEL_TYPES),
            allowMultiple=True, defaultValue=[1, 2, 3, 4]))
        self.addParameter(QgsProcessingParameterNumber(
            self.FOLDS, "Cross-validation folds", QgsProcessingParameterNumber.Integer, 5,
            minValue=2))
        self.addParameter(QgsProcessingParameterNumber(
            self.GUARD, "Guard band (px; -1: hsimap's default)",
            QgsProcessingParameterNumber.Integer, -1, minValue=-1))
        self.addParameter(QgsProcessingParameterNumber(
            self.SEED, "Random seed", QgsProcessingParameterNumber.Integer, 0))
        for param in common.label_option_parameters():
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, "Compute device", options=list(DEVICES), defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.OVERWRITE, "Replace existing outputs", defaultValue=True))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT_FOLDER, "Comparison folder"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.BEST_MODEL, "Train the best model on all labels to (optional)",
            fileFilter="hsimap model (*.safetensors)", optional=True,
            createByDefault=False))
        self.addOutput(QgsProcessingOutputHtml(self.REPORT, "Comparison report"))
        self.addOutput(QgsProcessingOutputFile(self.TABLE, "Comparison table (CSV)"))
        self.addOutput(QgsProcessingOutputString(self.BEST, "Best model type"))

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        cube = common.file_source(self.parameterAsRasterLayer(parameters, self.CUBE, context),
                                  "Hyperspectral raster")
        labels = self.parameterAsCompatibleSourceLayerPath(
            parameters, self.LABELS, context, ["shp", "gpkg", "geojson"], "gpkg", feedback)
        kinds = [MODEL_TYPES[i] for i in self.parameterAsEnums(parameters, self.MODELS, context)]
        if not kinds:
            raise QgsProcessingException("choose at least one model type to compare")
        folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        args = ["compare", "--cube", cube, "--labels", labels, "--models", ",".join(kinds),
                "--folds", str(self.parameterAsInt(parameters, self.FOLDS, context)),
                "--seed", str(self.parameterAsInt(parameters, self.SEED, context)),
                "--device", DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
                "-o", folder]
        guard = self.parameterAsInt(parameters, self.GUARD, context)
        if guard >= 0:
            args += ["--guard", str(guard)]
        field = self.parameterAsFields(parameters, self.CLASS_FIELD, context)
        if field:
            args += ["--class-field", field[0]]
        args += common.label_option_args(self, parameters, context, feedback)
        best_model = self.parameterAsFileOutput(parameters, self.BEST_MODEL, context)
        outputs = [os.path.join(folder, "compare.json"), os.path.join(folder, "compare.html")]
        if best_model:
            common.require_suffix(best_model, (".safetensors",), "Best model file")
            args += ["--train-best", best_model]
            outputs.append(best_model)
        if self.parameterAsBoolean(parameters, self.OVERWRITE, context):
            args.append("--overwrite")
        common.run_hsimap(args, feedback, stages=[f"{k} folds" for k in kinds], outputs=outputs)
        results: dict[str, Any] = {self.OUTPUT_FOLDER: folder, self.REPORT: outputs[1],
                                   self.TABLE: os.path.join(folder, "compare.csv")}
        if best_model:
            results[self.BEST_MODEL] = best_model
        try:
            with open(outputs[0], encoding="utf-8") as f:
                results[self.BEST] = json.load(f).get("best")
        except (OSError, ValueError) as exc:
            feedback.pushWarning(f"could not read {outputs[0]}: {exc}")
        return results
