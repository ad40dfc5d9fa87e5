"""Processing algorithm "Predict from available layers": pick the student that fits, run it."""

from __future__ import annotations

import signal
from dataclasses import replace
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
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsRasterLayer,
)

from ..core import gdal_backend
from ..core.card import read_card
from ..core.definitions import (
    DEVICE_LABELS,
    DEVICES,
    TIME_LAYOUT_LABELS,
    Device,
    Modality,
    OutputKind,
    TimeLayout,
)
from ..core.dependencies import install_hint, missing_packages
from ..core.footprint import layers_outline
from ..core.interrupts import cancel_on_signals
from ..core.model_index import NoModelError, load_index, select_model, tasks
from ..core.prediction import (
    PredictionRequest,
    input_problems,
    mapping_for_layers,
    parse_mapping,
    run_prediction,
)
from ..core.units import PRESETS
from ..map_layers import StyleOnLoad
from .base import EoMissingAlgorithm

AUTO_UNITS = "auto (from the layer's name and values)"
CUSTOM = "Custom ONNX model"
_STYLERS: dict[str, StyleOnLoad] = {}  # output path -> the post-processor styling it on load


class CheckedBySource:
    """For raster parameters whose values :meth:`PredictAlgorithm.checkParameterValues` checks
    source by source with :func:`raster_source`. QGIS's own check would load each file as a QGIS
    layer, whose default style computes statistics that GDAL then saves as ``.aux.xml`` next to
    the user's inputs (``qgis_process`` runs it before the algorithm); inputs are never written to.
    It also could not open sources such as ``NETCDF:"f.nc":VAR`` in QGIS 3.22."""

    def checkValueIsAcceptable(self, value, context=None) -> bool:  # noqa: N802 - QGIS API
        """Any value the algorithm's own check then reads: a layer, a list, a source string."""
        return value is not None or bool(self.flags() & QgsProcessingParameterDefinition.Flag.FlagOptional)


class SourceList(CheckedBySource, QgsProcessingParameterMultipleLayers):
    """Raster layers, checked by the algorithm (see :class:`CheckedBySource`)."""


class SourceLayer(CheckedBySource, QgsProcessingParameterRasterLayer):
    """One raster layer, checked by the algorithm (see :class:`CheckedBySource`)."""


class PredictAlgorithm(EoMissingAlgorithm):
    ID, DISPLAY_NAME, GROUP, GROUP_ID = "predict", "Predict from available layers", "Prediction", "prediction"
    INTRO = (
        "Give whichever layers you have: Sentinel-1 (VV, VH backscatter), Sentinel-2 (B02-B08, "
        "B11, B12) or both, as monthly time series. The algorithm picks the bundled model trained "
        "where the layers are (else the nearest region's, with a warning) whose inputs are all "
        "present (the S1 + S2 model when both are given, the S1 or S2 student otherwise), says in "
        "the log which one and why, runs it with ONNX Runtime (GPU when "
        "available) and writes the prediction. Pixels with an input band missing in every month "
        "are nodata."
    )
    TASK, MODEL = "TASK", "MODEL"
    S1, S2, DEM = Modality.S1.value, Modality.S2.value, Modality.DEM.value
    LAYOUT, FIRST_STEP, LAYER_BANDS = "LAYOUT", "FIRST_STEP", "LAYER_BANDS"
    S1_UNITS, S2_UNITS = "S1_UNITS", "S2_UNITS"
    TILE_SIZE, BATCH_MB, DEVICE, THREADS, PROBABILITIES = (
        "TILE_SIZE", "BATCH_MB", "DEVICE", "THREADS", "PROBABILITIES")
    OUTPUT, CONFIDENCE, REFERENCE = "OUTPUT", "CONFIDENCE", "REFERENCE"
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
            self.addParameter(SourceList(key, self.tr(label), QgsProcessing.SourceType.TypeRaster,
                                         optional=True))
        self.addParameter(SourceLayer(self.DEM, self.tr("DEM (optional)"), optional=True))
        self.addParameter(SourceLayer(
            self.REFERENCE, self.tr("Output grid from (default: the finest input)"), optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.LAYOUT, self.tr("Time layout of the layers"),
            options=[self.tr(label) for label in TIME_LAYOUT_LABELS.values()], defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.FIRST_STEP, self.tr("First time step (1-based; 0 = latest months)"),
            QgsProcessingParameterNumber.Type.Integer, defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.LAYER_BANDS, self.tr("Bands and first time step or date per layer"), multiLine=True,
            optional=True))
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
                                       options=[self.tr(DEVICE_LABELS[d]) for d in Device], defaultValue=0),
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
                             "layers (S2-L2A-B04, B4, B04). A multi-sensor stack (band descriptions "
                             "VV, VH, B1 ... B12, ...) may be given in both lists: each list takes "
                             "its own bands from it."),
            self.DEM: self.tr("Accepted for future models; the bundled models do not use it."),
            self.REFERENCE: self.tr("The layer whose grid (CRS, pixel size, extent) the outputs use; "
                                    "by default the input with the finest pixels, so 10 m Sentinel-2 "
                                    "with 20 m Sentinel-1 gives a 10 m map."),
            self.LAYOUT: self.tr("One layer per spectral band with months as raster bands (the "
                                 "WorldCereal netCDF cube), one layer per month (layers in time "
                                 "order), or one stacked layer (month-major)."),
            self.FIRST_STEP: self.tr("1-based month (raster band, or layer) where the model's time "
                                     "window starts; 0 takes the latest months the model needs."),
            self.LAYER_BANDS: self.tr("What a layer holds when its names do not say it: one line (or "
                                      "';') per layer, 'layer: bands @ first step', the layer by its "
                                      "name or file name, bands comma separated in raster-band order, "
                                      "the first step 1-based or the layer's date (YYYY-MM-DD; a date "
                                      "per raster band of a one-band layer, comma separated), which "
                                      "wins over the date the data carry; either may be left out. E.g. "
                                      "'june.tif: B02,B03,B04,B05,B06,B07,B08,B11,B12 @ 6', "
                                      "'export.tif: @ 3' or 'vv.tif: @ 2021-06-12'."),
            self.S1_UNITS: self.tr("How Sentinel-1 values are stored; 'auto' recognises WorldCereal DN "
                                   "and otherwise assumes dB, switching to the one encoding the values "
                                   "fit when they prove it wrong (the log says so)."),
            self.S2_UNITS: self.tr("How Sentinel-2 values are stored; 'auto' reads the baseline 04.00 "
                                   "offset (BOA_ADD_OFFSET) from product metadata, else takes integers "
                                   "as reflectance x 10000 and floats as reflectance 0-1, switching when "
                                   "the values prove that wrong. A declared encoding the values prove "
                                   "wrong is refused, naming the one to declare."),
            self.TILE_SIZE: self.tr("Side of the windows read at a time, rounded to whole blocks."),
            self.BATCH_MB: self.tr("Memory the run may take beyond the loaded model (windows of data, "
                                   "the network's batches, GDAL's cache); lower it on small machines."),
            self.DEVICE: self.tr("Auto uses a GPU execution provider when ONNX Runtime has one, "
                                 "else the CPU, and the log says why no GPU ran; GPU fails without one; "
                                 "TensorRT and CoreML run only when chosen."),
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
        # The layers are checked here, source by source (see CheckedBySource).
        layers = (self.S1, self.S2, self.DEM, self.REFERENCE)
        ok, message = super().checkParameterValues({**parameters, **dict.fromkeys(layers)}, context)
        if not ok:
            return ok, message
        for key in layers:
            for value in _as_list(parameters.get(key)):
                if raster_source(value, context) is None:
                    return False, self.tr("Cannot open {} as a raster layer.").format(value)
        try:  # a mapping that cannot be read, or names no layer given, is said before running
            self._mapping(parameters, context, [raster_source(v, context) for key in (self.S1, self.S2)
                                                for v in _as_list(parameters.get(key))])
        except ValueError as exc:
            return False, str(exc)
        return True, ""

    def _mapping(self, parameters, context, layers: list[tuple[str, str]]) -> dict:
        """The per-layer bands and first steps typed, by GDAL source."""
        text = self.parameterAsString(parameters, self.LAYER_BANDS, context) or ""
        return mapping_for_layers(parse_mapping(text), layers)

    def _model(self, parameters, context, modalities: set[str], feedback, request: PredictionRequest) -> str:
        """The custom ONNX file when one is given (kept wherever the layers are; the run warns when
        they are outside its footprint), else the bundled model that fits the layers and their place
        (among those whose inputs ``request`` holds completely)."""
        path = self.parameterAsFile(parameters, self.MODEL, context)
        if path:
            feedback.pushInfo(self.tr("Model: the custom ONNX file {}.").format(path))
            return path
        task = self.enum_text(parameters, self.TASK, context)
        if task not in self.task_ids:
            raise QgsProcessingException(self.tr("Task is '{}' but no model file was given.").format(CUSTOM))
        sources = [src for found in request.layers.values() for src, _ in found]
        try:
            model, reason = select_model(
                self.models, self.task_ids[task], modalities,
                lambda m: input_problems(replace(request, model_path=str(m.file)), read_card(m.file)),
                layers_outline(sources, request.headers))
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
                  for key in (self.S1, self.S2, self.DEM, self.REFERENCE)}
        reference, dem = layers.pop(self.REFERENCE), layers.pop(self.DEM)
        if any(None in found for found in (*layers.values(), reference, dem)):
            raise QgsProcessingException(self.tr("Some input layers cannot be opened as rasters."))
        layers[Modality.DEM] = dem  # for a model that reads it; never written over in any case
        modalities = {key for key, found in layers.items() if found}
        if not modalities & {Modality.S1, Modality.S2}:
            raise QgsProcessingException(self.tr("Give Sentinel-1 layers, Sentinel-2 layers, or both."))
        try:
            mapping = self._mapping(parameters, context, [lyr for found in layers.values() for lyr in found])
        except ValueError as exc:
            raise QgsProcessingException(str(exc)) from None
        units = {
            Modality.S1: self._units(parameters, self.S1_UNITS, context, "dB"),
            Modality.S2: self._units(parameters, self.S2_UNITS, context, "reflectance"),
        }
        request = PredictionRequest(
            model_path="",
            layers=layers,
            units=units,
            layout=list(TimeLayout)[self.parameterAsEnum(parameters, self.LAYOUT, context)],
            first_step=self.parameterAsInt(parameters, self.FIRST_STEP, context),
            mapping=mapping,
            output=self.parameterAsOutputLayer(parameters, self.OUTPUT, context),
            confidence=self.parameterAsOutputLayer(parameters, self.CONFIDENCE, context) or None,
            reference=reference[0][0] if reference else None,
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            batch_mb=self.parameterAsInt(parameters, self.BATCH_MB, context),
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            threads=self.parameterAsInt(parameters, self.THREADS, context) or None,
            probabilities=self.parameterAsBool(parameters, self.PROBABILITIES, context),
        )
        request.model_path = self._model(parameters, context, modalities, feedback, request)
        # qgis_process: SIGTERM cancels like the Cancel button (Ctrl-C already does, via feedback).
        with cancel_on_signals(feedback.isCanceled, (signal.SIGTERM,)) as cancel:
            try:
                result = run_prediction(request, progress=lambda f: feedback.setProgress(100 * f),
                                        is_canceled=cancel, log=feedback.pushInfo,
                                        status=feedback.setProgressText)
            except ValueError as exc:  # user errors: a broken card, inputs that do not fit the model
                raise QgsProcessingException(str(exc)) from None
        if result is None:  # a cancel is a failure to its caller (exit status, batch, Modeler)
            raise QgsProcessingException(
                self.tr("Prediction {}; nothing was written.").format(cancel.describe()))
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
    project, a file, or any source GDAL opens such as a netCDF subdataset; None if unreadable.

    A source outside the project is checked by opening it with GDAL, not loaded as a QGIS layer: a
    new layer computes statistics for its style, and GDAL saves them as ``.aux.xml`` files next to
    the user's inputs (or fails to, in a read-only folder). Inputs are never written to."""
    if isinstance(value, QgsRasterLayer):
        return value.source(), value.name()
    text = str(value)
    layer = QgsProcessingUtils.mapLayerFromString(text, context, False, QgsProcessingUtils.LayerHint.Raster)
    if isinstance(layer, QgsRasterLayer):
        return layer.source(), layer.name()
    name = text.rsplit(":", 1)[-1] if text.count(":") >= 2 else Path(text).stem
    try:  # opened and closed by QGIS's GDAL only; the run reads its header once, later
        gdal_backend.open(text).close()
    except gdal_backend.RasterioIOError:
        return None
    return text, name
