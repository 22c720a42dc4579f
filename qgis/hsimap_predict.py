"""QGIS Processing script ``script:hsimap_predict``: map land cover with an hsimap model.

Runs the hsimap CLI; the map it writes carries a colour table, GDAL category names and a
``.qml`` style, which the layer Processing adds to the project gets (class colours + names).
Needs ``hsimap_common.py`` in the same scripts folder.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
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

DEVICES = ("auto", "cpu", "cuda")
CONFIDENCE_KINDS = ("max", "margin")
PROB_DTYPES = ("uint8", "uint16")


class HsimapPredictAlgorithm(QgsProcessingAlgorithm):
    """Classify a scene with a trained model into a styled land-cover map."""

    CUBE, MODEL, TILE_SIZE, DEVICE = "CUBE", "MODEL", "TILE_SIZE", "DEVICE"
    # The hyperspectral raster is CUBE in every hsimap algorithm (train, compare, predict); the
    # land-cover map is OUTPUT where written and MAP where read (evaluate). Before 0.2.0 this
    # algorithm called it SCENE: that name stays as a hidden parameter, so saved models
    # (.model3) and qgis_process scripts that pass SCENE=... keep working.
    LEGACY_SCENE = "SCENE"
    CONFIDENCE_KIND, PROB_DTYPE, COG = "CONFIDENCE_KIND", "PROB_DTYPE", "COG"
    OVERWRITE, OUTPUT = "OVERWRITE", "OUTPUT"
    PROBABILITIES, CONFIDENCE = "PROBABILITIES", "CONFIDENCE"

    def name(self) -> str:
        return "hsimap_predict"

    def displayName(self) -> str:
        return "Map land cover"

    def group(self) -> str:
        return "hsimap"

    def groupId(self) -> str:
        return "hsimap"

    def shortHelpString(self) -> str:
        return ("Classifies a hyperspectral raster with a model from 'Train land-cover model' "
                "and writes a georeferenced class map (GeoTIFF) styled with the class colours "
                "and names. Runs the hsimap command-line tool "
                f"({common.ENV_VAR} or hsimap on PATH).")

    def createInstance(self) -> HsimapPredictAlgorithm:
        return HsimapPredictAlgorithm()

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.CUBE, "Hyperspectral raster"))
        legacy = QgsProcessingParameterRasterLayer(
            self.LEGACY_SCENE, "Hyperspectral raster (old name of CUBE)", optional=True)
        legacy.setFlags(legacy.flags() | QgsProcessingParameterDefinition.FlagHidden)
        self.addParameter(legacy)
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "Model file", extension="safetensors"))
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, "Compute device", options=list(DEVICES), defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.OVERWRITE, "Replace existing outputs", defaultValue=True))
        advanced = [
            QgsProcessingParameterNumber(
                self.TILE_SIZE, "Tile side in pixels, the halo comes on top (0: fit the free "
                "memory)", QgsProcessingParameterNumber.Integer, 0, minValue=0),
            QgsProcessingParameterEnum(
                self.CONFIDENCE_KIND, "Confidence: max = winning class's probability, margin = "
                "best minus second best", options=list(CONFIDENCE_KINDS), defaultValue=0),
            QgsProcessingParameterEnum(
                self.PROB_DTYPE, "Probability/confidence scaling: uint8 0..254 or uint16 "
                "0..10000", options=list(PROB_DTYPES), defaultValue=0),
            QgsProcessingParameterBoolean(
                self.COG, "Write Cloud-Optimized GeoTIFFs with overviews", defaultValue=False),
        ]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT, "Land-cover map"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.PROBABILITIES, "Class probabilities (one band per class)", optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.CONFIDENCE, "Confidence", optional=True, createByDefault=False))

    def _with_legacy_names(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """``SCENE=...`` (the name before 0.2.0) as ``CUBE=...`` when CUBE is not given."""
        if parameters.get(self.CUBE) in (None, "") and \
                parameters.get(self.LEGACY_SCENE) not in (None, ""):
            parameters = {**parameters, self.CUBE: parameters[self.LEGACY_SCENE]}
        return parameters

    def checkParameterValues(self, parameters: dict[str, Any],
                             context: QgsProcessingContext) -> tuple[bool, str]:
        return super().checkParameterValues(self._with_legacy_names(parameters), context)

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        parameters = self._with_legacy_names(parameters)
        scene = common.file_source(self.parameterAsRasterLayer(parameters, self.CUBE, context),
                                   "Hyperspectral raster")
        model = self.parameterAsFile(parameters, self.MODEL, context)
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        common.require_suffix(out, (".tif", ".tiff"), "Land-cover map")
        tile = self.parameterAsInt(parameters, self.TILE_SIZE, context)
        args = ["predict", scene, "-o", out, "--model", model,
                "--tile-size", str(tile) if tile > 0 else "auto",
                "--device", DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]]
        extra = {}
        for name, option, what in ((self.PROBABILITIES, "--probabilities", "Class probabilities"),
                                   (self.CONFIDENCE, "--confidence", "Confidence")):
            path = self.parameterAsOutputLayer(parameters, name, context)
            if path:
                common.require_suffix(path, (".tif", ".tiff"), what)
                args += [option, path]
                extra[name] = path
        if extra:
            args += ["--confidence-kind", CONFIDENCE_KINDS[self.parameterAsEnum(
                         parameters, self.CONFIDENCE_KIND, context)],
                     "--prob-dtype", PROB_DTYPES[self.parameterAsEnum(
                         parameters, self.PROB_DTYPE, context)]]
        if self.parameterAsBoolean(parameters, self.COG, context):
            args.append("--cog")
        if self.parameterAsBoolean(parameters, self.OVERWRITE, context):
            args.append("--overwrite")
        common.run_hsimap(args, feedback, stages=("predict",), outputs=[out, *extra.values()])
        common.attach_styler(context, out)
        return {self.OUTPUT: out, **extra}
