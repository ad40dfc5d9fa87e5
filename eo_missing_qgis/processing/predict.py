"""Processing algorithm "Predict from available layers": pick the student that fits, run it."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsRasterLayer,
)

from ..core.definitions import DEVICES, TIME_LAYOUT_LABELS, Modality, OutputKind, TimeLayout
from ..core.dependencies import install_hint, missing_packages
from ..core.model_index import NoModelError, load_index, select_model, tasks
from ..core.prediction import PredictionRequest, run_prediction
from ..core.units import PRESETS
from ..map_layers import StyleOnLoad
from .base import EoMissingAlgorithm

AUTO_UNITS = "auto (from the layer's name and values)"
CUSTOM = "Custom ONNX model"
_STYLERS: dict[str, StyleOnLoad] = {}  # output path -> the post-processor styling it on load


class PredictAlgorithm(EoMissingAlgorithm):
    ID, DISPLAY_NAME, GROUP, GROUP_ID = "predict", "Predict from available layers", "Prediction", "prediction"
    INTRO = (
        "Give whichever layers you have: Sentinel-1 (VV, VH backscatter), Sentinel-2 (B02-B08, "
        "B11, B12) or both, as monthly time series. The algorithm picks the bundled model whose "
        "inputs are all present (the S1 + S2 model when both are given, the S1 or S2 student "
        "otherwise), says in the log which one and why, runs it with ONNX Runtime (GPU when "
        "available) and writes the prediction. Pixels with an input band missing in every month "
        "are nodata."
    )
    TASK, MODEL = "TASK", "MODEL"
    S1, S2, DEM = Modality.S1.value, Modality.S2.value, Modality.DEM.value
    LAYOUT, FIRST_STEP = "LAYOUT", "FIRST_STEP"
    S1_UNITS, S2_UNITS = "S1_UNITS", "S2_UNITS"
    TILE_SIZE, BATCH_MB, DEVICE, THREADS, PROBABILITIES = (
        "TILE_SIZE", "BATCH_MB", "DEVICE", "THREADS", "PROBABILITIES")
    OUTPUT, CONFIDENCE = "OUTPUT", "CONFIDENCE"
    MODEL_NAME, PROVIDER = "MODEL_NAME", "PROVIDER"

    def __init__(self):
        super().__init__()
        self.models = load_index()
        self.task_ids = {title: task for task, title in tasks(self.models).items()}

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        task = QgsProcessingParameterEnum(self.TASK, self.tr("Task"), options=[*self.task_ids, CUSTOM],
                                          defaultValue=next(iter(self.task_ids), CUSTOM))
        task.setUsesStaticStrings(True)  # TASK='Crop type' in qgis_process, batch and models
        self.addParameter(task)
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, self.tr("Custom ONNX model"), extension="onnx", optional=True))
        for key, label in ((self.S1, "Sentinel-1 layers"), (self.S2, "Sentinel-2 layers")):
            self.addParameter(QgsProcessingParameterMultipleLayers(
                key, self.tr(label), QgsProcessing.SourceType.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.DEM, self.tr("DEM (optional)"), optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.LAYOUT, self.tr("Time layout of the layers"),
            options=[self.tr(label) for label in TIME_LAYOUT_LABELS.values()], defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.FIRST_STEP, self.tr("First time step (1-based; 0 = latest months)"),
            QgsProcessingParameterNumber.Type.Integer, defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.S1_UNITS, self.tr("Sentinel-1 units"), options=[AUTO_UNITS, *PRESETS["dB"]],
            defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.S2_UNITS, self.tr("Sentinel-2 units"), options=[AUTO_UNITS, *PRESETS["reflectance"]],
            defaultValue=0))
        advanced = [
            QgsProcessingParameterNumber(self.TILE_SIZE, self.tr("Tile size (pixels)"),
                                         QgsProcessingParameterNumber.Type.Integer, 512, minValue=16),
            QgsProcessingParameterNumber(self.BATCH_MB, self.tr("Memory budget per batch (MB)"),
                                         QgsProcessingParameterNumber.Type.Integer, 256, minValue=24),
            QgsProcessingParameterEnum(self.DEVICE, self.tr("Device"),
                                       options=["Auto (GPU when available)", "CPU", "GPU"], defaultValue=0),
            QgsProcessingParameterNumber(self.THREADS, self.tr("Threads (0 = default)"),
                                         QgsProcessingParameterNumber.Type.Integer, 0, minValue=0),
            QgsProcessingParameterBoolean(self.PROBABILITIES, self.tr("Also write class probabilities"),
                                          defaultValue=False),
        ]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Prediction")))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.CONFIDENCE, self.tr("Confidence (classification)"), optional=True, createByDefault=True))
        self.set_help({
            self.TASK: self.tr("What to predict: {}.").format(
                ", ".join(f"'{t}'" for t in self.task_ids) or self.tr("no bundled models")),
            self.MODEL: self.tr("An ONNX model exported by this project's training package; when "
                                "given it is used whatever the task says."),
            self.S1: self.tr("Sentinel-1 rasters (VV, VH). Bands are recognised from band "
                             "descriptions, netCDF variable names or layer names (S1-SIGMA0-VV, VV)."),
            self.S2: self.tr("Sentinel-2 rasters (B02-B08, B11, B12), recognised like the Sentinel-1 "
                             "layers (S2-L2A-B04, B4, B04)."),
            self.DEM: self.tr("Accepted for future models; the bundled models do not use it."),
            self.LAYOUT: self.tr("One layer per spectral band with months as raster bands (the "
                                 "WorldCereal netCDF cube), one layer per month (layers in time "
                                 "order), or one stacked layer (month-major)."),
            self.FIRST_STEP: self.tr("1-based month (raster band, or layer) where the model's time "
                                     "window starts; 0 takes the latest months the model needs."),
            self.S1_UNITS: self.tr("How Sentinel-1 values are stored; 'auto' recognises WorldCereal DN "
                                   "and otherwise assumes dB."),
            self.S2_UNITS: self.tr("How Sentinel-2 values are stored; 'auto' takes integers as "
                                   "reflectance x 10000 and floats as reflectance 0-1."),
            self.TILE_SIZE: self.tr("Side of the windows read at a time, rounded to whole blocks."),
            self.BATCH_MB: self.tr("Memory the run may take beyond the loaded model (windows of data, "
                                   "the network's batches, GDAL's cache); lower it on small machines."),
            self.DEVICE: self.tr("Auto uses a GPU execution provider when ONNX Runtime has one, "
                                 "else the CPU; the log says which ran."),
            self.THREADS: self.tr("Threads ONNX Runtime may use; 0 lets it decide."),
            self.PROBABILITIES: self.tr("Also write one band per class with its probability."),
            self.OUTPUT: self.tr("Class raster (classification, with the class colours) or value "
                                 "raster in the model's unit (regression)."),
            self.CONFIDENCE: self.tr("Highest class probability per pixel (classification only)."),
        })
        self.addOutput(QgsProcessingOutputString(self.MODEL_NAME, self.tr("Model used")))
        self.addOutput(QgsProcessingOutputString(self.PROVIDER, self.tr("Execution provider")))

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API
        missing = missing_packages()
        if missing:
            return False, install_hint(missing)
        # QGIS 3.22 cannot resolve GDAL sources that are not plain files (NETCDF:"f.nc":VAR) as
        # layer parameters, so the layer lists are checked here, source by source.
        ok, message = super().checkParameterValues({**parameters, self.S1: None, self.S2: None}, context)
        if not ok:
            return ok, message
        for key in (self.S1, self.S2):
            for value in _as_list(parameters.get(key)):
                if raster_source(value, context) is None:
                    return False, self.tr("Cannot open {} as a raster layer.").format(value)
        return True, ""

    def _model(self, parameters, context, modalities: set[str], feedback) -> str:
        """The custom ONNX file when one is given, else the bundled model that fits the layers."""
        path = self.parameterAsFile(parameters, self.MODEL, context)
        if path:
            feedback.pushInfo(self.tr("Model: the custom ONNX file {}.").format(path))
            return path
        task = self.enum_text(parameters, self.TASK, context)
        if task not in self.task_ids:
            raise QgsProcessingException(self.tr("Task is '{}' but no model file was given.").format(CUSTOM))
        try:
            model, reason = select_model(self.models, self.task_ids[task], modalities)
        except NoModelError as exc:
            raise QgsProcessingException(str(exc)) from None
        feedback.pushInfo(self.tr("Model: {} ({}).").format(model.title, model.file.name))
        feedback.pushInfo(reason)
        return str(model.file)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        missing = missing_packages()
        if missing:
            raise QgsProcessingException(install_hint(missing))
        layers = {key: [raster_source(v, context) for v in _as_list(parameters.get(key))]
                  for key in (self.S1, self.S2)}
        if any(None in found for found in layers.values()):
            raise QgsProcessingException(self.tr("Some input layers cannot be opened as rasters."))
        dem = self.parameterAsRasterLayer(parameters, self.DEM, context)
        modalities = {key for key, found in layers.items() if found} | ({Modality.DEM} if dem else set())
        if not modalities & {Modality.S1, Modality.S2}:
            raise QgsProcessingException(self.tr("Give Sentinel-1 layers, Sentinel-2 layers, or both."))
        model_path = self._model(parameters, context, modalities, feedback)
        units = {
            Modality.S1: self._units(parameters, self.S1_UNITS, context, "dB"),
            Modality.S2: self._units(parameters, self.S2_UNITS, context, "reflectance"),
        }
        request = PredictionRequest(
            model_path=model_path,
            layers=layers,
            units=units,
            layout=list(TimeLayout)[self.parameterAsEnum(parameters, self.LAYOUT, context)],
            first_step=self.parameterAsInt(parameters, self.FIRST_STEP, context),
            output=self.parameterAsOutputLayer(parameters, self.OUTPUT, context),
            confidence=self.parameterAsOutputLayer(parameters, self.CONFIDENCE, context) or None,
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            batch_mb=self.parameterAsInt(parameters, self.BATCH_MB, context),
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            threads=self.parameterAsInt(parameters, self.THREADS, context) or None,
            probabilities=self.parameterAsBool(parameters, self.PROBABILITIES, context),
        )
        try:
            result = run_prediction(request, progress=lambda f: feedback.setProgress(100 * f),
                                    is_canceled=feedback.isCanceled, log=feedback.pushInfo,
                                    status=feedback.setProgressText)
        except ValueError as exc:  # user errors: a broken card, inputs that do not fit the model
            raise QgsProcessingException(str(exc)) from None
        if result is None:  # canceled: nothing was written
            return {}
        card = result.card  # read once, by the run
        outputs = {self.MODEL_NAME: card.name, self.PROVIDER: result.provider}
        for kind, key in ((OutputKind.PREDICTION, self.OUTPUT), (OutputKind.CONFIDENCE, self.CONFIDENCE)):
            path = result.outputs.get(kind)
            if not path:
                continue
            outputs[key] = path
            if context.willLoadLayerOnCompletion(path):
                # QGIS keeps only a pointer: the Python object must outlive this algorithm copy.
                _STYLERS[path] = StyleOnLoad(card, kind)
                context.layerToLoadOnCompletionDetails(path).setPostProcessor(_STYLERS[path])
        return outputs

    def _units(self, parameters, key: str, context, unit: str) -> str | None:
        index = self.parameterAsEnum(parameters, key, context)
        return None if index == 0 else list(PRESETS[unit])[index - 1]


def _as_list(value) -> list:
    """Layer list values: a list, or one string holding ';'-separated sources (batch dialog)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v for v in value.split(";") if v]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def raster_source(value, context) -> tuple[str, str] | None:
    """(GDAL source, display name) of a layer parameter value: a layer, a layer id or name in the
    project, a file, or any source GDAL opens such as a netCDF subdataset; None if unreadable."""
    if isinstance(value, QgsRasterLayer):
        return value.source(), value.name()
    text = str(value)
    layer = QgsProcessingUtils.mapLayerFromString(text, context, True, QgsProcessingUtils.LayerHint.Raster)
    if isinstance(layer, QgsRasterLayer):
        return layer.source(), layer.name()
    name = text.rsplit(":", 1)[-1] if text.count(":") >= 2 else Path(text).stem
    return (text, name) if QgsRasterLayer(text, name).isValid() else None
