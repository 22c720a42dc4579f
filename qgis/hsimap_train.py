"""QGIS Processing script ``script:hsimap_train``: train an hsimap model (runs the hsimap CLI).

Needs ``hsimap_common.py`` in the same scripts folder, and hsimap installed in its own Python
environment (see the error message QGIS shows when it is missing).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
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

MODEL_TYPES = ("diffspectralnet", "spectral-mlp", "svm", "random-forest")
# The first entry passes no --preset (the model type's default). Presets belong to a model
# type: diffspectralnet has paper/fast/tiny, spectral-mlp default/fast, svm
# fast/smooth/thorough and random-forest fast/thorough; hsimap names the valid ones when a
# preset does not fit the model type.
PRESETS = ("(default of the model type)", "fast", "tiny", "paper", "thorough", "smooth")
DEVICES = ("auto", "cpu", "cuda")
VALIDATIONS = ("polygon", "block", "random")
ON_OVERLAP = ("error", "drop")
# Progress stages hsimap reports per model type, in order, and those of the refit on every
# labelled pixel that follows validation (DiffSpectralNet reuses its denoiser there).
STAGES = {"diffspectralnet": ("denoiser", "features", "classifier", "cross-validation", "svm"),
          "spectral-mlp": ("classifier",), "svm": ("cross-validation", "svm"),
          "random-forest": ("forest",)}
REFIT_STAGES = {"diffspectralnet": ("refit features", "refit classifier", "refit svm"),
                "spectral-mlp": ("refit classifier",),
                "svm": ("refit svm",),
                "random-forest": ("refit forest",)}


class HsimapTrainAlgorithm(QgsProcessingAlgorithm):
    """Train a model on a hyperspectral cube and ground-truth polygons."""

    CUBE, LABELS, CLASS_FIELD = "CUBE", "LABELS", "CLASS_FIELD"
    MODEL_TYPE, PRESET, ALL_TOUCHED = "MODEL_TYPE", "PRESET", "ALL_TOUCHED"
    VALIDATION, VAL_FRACTION, SEED, CONFIG = "VALIDATION", "VAL_FRACTION", "SEED", "CONFIG"
    REFIT = "REFIT"
    ON_OVERLAP = "ON_OVERLAP"
    DEVICE, OVERWRITE, MODEL = "DEVICE", "OVERWRITE", "MODEL"

    def name(self) -> str:
        return "hsimap_train"

    def displayName(self) -> str:
        return "Train land-cover model"

    def group(self) -> str:
        return "hsimap"

    def groupId(self) -> str:
        return "hsimap"

    def shortHelpString(self) -> str:
        return ("Trains an hsimap model on a hyperspectral raster and ground-truth polygons and "
                "saves it as a .safetensors file for 'Map land cover'. Runs the hsimap "
                f"command-line tool ({common.ENV_VAR} or hsimap on PATH). spectral-mlp trains in "
                "seconds, svm (C and gamma by spatial cross-validation) and random-forest in "
                "under a minute; diffspectralnet is the full model (a GPU helps).")

    def createInstance(self) -> HsimapTrainAlgorithm:
        return HsimapTrainAlgorithm()

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.CUBE, "Hyperspectral raster"))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.LABELS, "Ground-truth polygons", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterField(
            self.CLASS_FIELD, "Class field (names or integer codes; empty: auto-detect)",
            parentLayerParameterName=self.LABELS, optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.MODEL_TYPE, "Model type", options=list(MODEL_TYPES), defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.PRESET, "Preset", options=list(PRESETS), defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.ALL_TOUCHED, "Label every pixel a polygon touches (default: pixel centres)",
            defaultValue=False))
        advanced = [
            QgsProcessingParameterEnum(self.ON_OVERLAP,
                                       "Pixels claimed by polygons of different classes",
                                       options=list(ON_OVERLAP), defaultValue=0),
            QgsProcessingParameterEnum(self.VALIDATION, "Validation split",
                                       options=list(VALIDATIONS), defaultValue=0),
            QgsProcessingParameterNumber(self.VAL_FRACTION, "Validation share of each class",
                                         QgsProcessingParameterNumber.Double, 0.2,
                                         minValue=0.0, maxValue=0.9),
            QgsProcessingParameterBoolean(
                self.REFIT, "Refit the saved model on every labelled pixel after validating "
                "(the validation figure stays that of the model fitted without them)",
                defaultValue=True),
            QgsProcessingParameterNumber(self.SEED, "Random seed",
                                         QgsProcessingParameterNumber.Integer, 0),
            QgsProcessingParameterFile(self.CONFIG, "Config overrides (TOML)",
                                       extension="toml", optional=True),
        ]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        for param in common.label_option_parameters():
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, "Compute device", options=list(DEVICES), defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.OVERWRITE, "Replace an existing model file", defaultValue=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.MODEL, "Model file", fileFilter="hsimap model (*.safetensors)"))

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        cube = common.file_source(self.parameterAsRasterLayer(parameters, self.CUBE, context),
                                  "Hyperspectral raster")
        # The layer's own file when hsimap can read it as is, else a temporary GeoPackage
        # (memory layers, layers with a filter, one table of a multi-layer file, ...).
        labels = self.parameterAsCompatibleSourceLayerPath(
            parameters, self.LABELS, context, ["shp", "gpkg", "geojson"], "gpkg", feedback)
        model = self.parameterAsFileOutput(parameters, self.MODEL, context)
        common.require_suffix(model, (".safetensors",), "Model file")
        kind = MODEL_TYPES[self.parameterAsEnum(parameters, self.MODEL_TYPE, context)]
        args = ["train", "--cube", cube, "--labels", labels, "--model", model,
                "--model-type", kind,
                "--validation", VALIDATIONS[self.parameterAsEnum(parameters, self.VALIDATION,
                                                                 context)],
                "--val-fraction", repr(self.parameterAsDouble(parameters, self.VAL_FRACTION,
                                                              context)),
                "--seed", str(self.parameterAsInt(parameters, self.SEED, context)),
                "--on-overlap", ON_OVERLAP[self.parameterAsEnum(parameters, self.ON_OVERLAP,
                                                                context)],
                "--device", DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]]
        preset = self.parameterAsEnum(parameters, self.PRESET, context)
        if preset:
            args += ["--preset", PRESETS[preset]]
        field = self.parameterAsFields(parameters, self.CLASS_FIELD, context)
        if field:
            args += ["--class-field", field[0]]
        config = self.parameterAsFile(parameters, self.CONFIG, context)
        if config:
            args += ["--config", config]
        args += common.label_option_args(self, parameters, context, feedback)
        if self.parameterAsBoolean(parameters, self.ALL_TOUCHED, context):
            args.append("--all-touched")
        if self.parameterAsBoolean(parameters, self.OVERWRITE, context):
            args.append("--overwrite")
        refit = self.parameterAsBoolean(parameters, self.REFIT, context)
        args.append("--refit" if refit else "--no-refit")
        stages = STAGES.get(kind, ())
        if refit and self.parameterAsDouble(parameters, self.VAL_FRACTION, context) > 0:
            stages += REFIT_STAGES.get(kind, ())
        common.run_hsimap(args, feedback, stages=stages, outputs=[model])
        return {self.MODEL: model}
