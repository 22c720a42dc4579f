"""QGIS Processing script ``script:hsimap_evaluate``: accuracy of a land-cover map.

Runs ``hsimap evaluate``, which writes metrics.json, confusion_matrix.csv, per_class.csv and
report.html into the chosen folder; the report opens in the Processing results viewer.
Needs ``hsimap_common.py`` in the same scripts folder.
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
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
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

ON_OVERLAP = ("error", "drop")


class HsimapEvaluateAlgorithm(QgsProcessingAlgorithm):
    """Compare a class map with reference polygons and write the accuracy report."""

    MAP, LABELS, CLASS_FIELD, OVERWRITE = "MAP", "LABELS", "CLASS_FIELD", "OVERWRITE"
    ALL_TOUCHED, ON_OVERLAP, LOG = "ALL_TOUCHED", "ON_OVERLAP", "LOG"
    OUTPUT_FOLDER, METRICS, REPORT = "OUTPUT_FOLDER", "METRICS", "REPORT"
    OVERALL_ACCURACY, KAPPA = "OVERALL_ACCURACY", "KAPPA"

    def name(self) -> str:
        return "hsimap_evaluate"

    def displayName(self) -> str:
        return "Evaluate land-cover map"

    def group(self) -> str:
        return "hsimap"

    def groupId(self) -> str:
        return "hsimap"

    def shortHelpString(self) -> str:
        return ("Compares a class map with reference polygons and writes the accuracy report "
                "(metrics.json, confusion_matrix.csv, per_class.csv, report.html) into a "
                "folder. Use reference polygons that were not used for training. Runs the "
                f"hsimap command-line tool ({common.ENV_VAR} or hsimap on PATH).")

    def createInstance(self) -> HsimapEvaluateAlgorithm:
        return HsimapEvaluateAlgorithm()

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(self.MAP, "Land-cover map"))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.LABELS, "Reference polygons", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterField(
            self.CLASS_FIELD, "Class field (names or integer codes; empty: auto-detect)",
            parentLayerParameterName=self.LABELS, optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.ALL_TOUCHED, "Use every pixel a polygon touches (default: pixel centres)",
            defaultValue=False))
        overlap = QgsProcessingParameterEnum(
            self.ON_OVERLAP, "Pixels claimed by polygons of different classes",
            options=list(ON_OVERLAP), defaultValue=0)
        overlap.setFlags(overlap.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(overlap)
        self.addParameter(QgsProcessingParameterFile(
            self.LOG, "Training log (the .log.json beside the model) for the report's curves",
            extension="json", optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.OVERWRITE, "Replace an existing report", defaultValue=True))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT_FOLDER, "Report folder"))
        self.addOutput(QgsProcessingOutputFile(self.METRICS, "Metrics (JSON)"))
        self.addOutput(QgsProcessingOutputHtml(self.REPORT, "Accuracy report"))
        self.addOutput(QgsProcessingOutputNumber(self.OVERALL_ACCURACY, "Overall accuracy"))
        self.addOutput(QgsProcessingOutputNumber(self.KAPPA, "Cohen's kappa"))

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        class_map = common.file_source(self.parameterAsRasterLayer(parameters, self.MAP, context),
                                       "Land-cover map")
        # The layer's own file when hsimap can read it as is, else a temporary GeoPackage
        # (memory layers, layers with a filter, one table of a multi-layer file, ...).
        labels = self.parameterAsCompatibleSourceLayerPath(
            parameters, self.LABELS, context, ["shp", "gpkg", "geojson"], "gpkg", feedback)
        folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        args = ["evaluate", class_map, "--labels", labels, "-o", folder]
        field = self.parameterAsFields(parameters, self.CLASS_FIELD, context)
        if field:
            args += ["--class-field", field[0]]
        args += ["--on-overlap", ON_OVERLAP[self.parameterAsEnum(parameters, self.ON_OVERLAP,
                                                                 context)]]
        log = self.parameterAsFile(parameters, self.LOG, context)
        if log:
            args += ["--log", log]
        if self.parameterAsBoolean(parameters, self.ALL_TOUCHED, context):
            args.append("--all-touched")
        if self.parameterAsBoolean(parameters, self.OVERWRITE, context):
            args.append("--overwrite")
        metrics = os.path.join(folder, "metrics.json")
        report = os.path.join(folder, "report.html")
        common.run_hsimap(args, feedback, outputs=[metrics, report])
        results: dict[str, Any] = {self.OUTPUT_FOLDER: folder, self.METRICS: metrics,
                                   self.REPORT: report}
        try:
            with open(metrics, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as exc:
            feedback.pushWarning(f"could not read {metrics}: {exc}")
            return results
        results[self.OVERALL_ACCURACY] = doc.get("overall_accuracy")
        results[self.KAPPA] = doc.get("kappa")
        return results
