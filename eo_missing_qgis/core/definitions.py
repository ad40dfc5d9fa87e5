"""The project's vocabulary, written once: every module, the GUI, training, scripts and tests import
these names instead of spelling the strings again.

The enums are ``StrEnum``: a member is its string (``Modality.S2 == "S2"``), so cards read from
JSON, Processing parameters and YAML configs compare with them directly.
"""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class Modality(StrEnum):
    """A group of inputs from one kind of source; one input tensor of a model each."""

    S1 = "S1"
    S2 = "S2"
    WEATHER = "weather"
    DEM = "DEM"


#: Every modality name, in the canonical order (cards, datasets and the teacher use this order);
#: plain strings, as they go into cards, configs and training checkpoints (which unpickle only
#: plain types).
MODALITIES: tuple[str, ...] = tuple(m.value for m in Modality)

#: What a user reads for a modality.
MODALITY_NAMES: dict[Modality, str] = {
    Modality.S1: "Sentinel-1", Modality.S2: "Sentinel-2", Modality.WEATHER: "weather", Modality.DEM: "DEM",
}

#: The sensor a card names for each modality.
SENSORS: dict[Modality, str] = {
    Modality.S1: "Sentinel-1 GRD",
    Modality.S2: "Sentinel-2 L2A",
    Modality.WEATHER: "ERA5 / AgERA5 monthly",
    Modality.DEM: "SRTM / Copernicus DEM",
}

#: Band names of each modality, in the order the bundled models take them.
BANDS: dict[Modality, tuple[str, ...]] = {
    Modality.S1: ("VV", "VH"),
    Modality.S2: ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"),
    Modality.WEATHER: ("temperature", "precipitation"),
    Modality.DEM: ("elevation", "slope"),
}

#: Physical unit of each band of :data:`BANDS` (keys of :data:`.units.UNITS`).
BAND_UNITS: dict[Modality, tuple[str, ...]] = {
    Modality.S1: ("dB", "dB"),
    Modality.S2: ("reflectance",) * len(BANDS[Modality.S2]),
    Modality.WEATHER: ("K", "mm"),
    Modality.DEM: ("m", "degree"),
}


@unique
class Task(StrEnum):
    """What a model predicts."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


@unique
class TimeLayout(StrEnum):
    """How a user's raster layers hold months and spectral bands."""

    AUTO = "auto"
    BAND_PER_LAYER = "band_per_layer"
    DATE_PER_LAYER = "date_per_layer"
    STACKED = "stacked"


#: What a user reads for each time layout (Processing and the panel).
TIME_LAYOUT_LABELS: dict[TimeLayout, str] = {
    TimeLayout.AUTO: "Auto-detect",
    TimeLayout.BAND_PER_LAYER: "One layer per spectral band, months as raster bands",
    TimeLayout.DATE_PER_LAYER: "One layer per month, spectral bands as raster bands (layers in time order)",
    TimeLayout.STACKED: "One stacked layer, month-major",
}


@unique
class TimeAlignment(StrEnum):
    """How a card's time steps are anchored: ``calendar`` months (step ``t`` is a fixed calendar
    month when the card gives ``first_month``) or ``relative`` (the last step is the month before
    the target date, e.g. an LFMC measurement)."""

    RELATIVE = "relative"
    CALENDAR = "calendar"


@unique
class ContextKind(StrEnum):
    """Context inputs a model may take besides the sensor tensors (card schema 1.2), computed by
    the plugin from the layers: availability of each step of one modality, calendar month of each
    step, and the pixel's latitude/longitude."""

    MASK = "mask"
    MONTH = "month"
    LATLON = "latlon"


@unique
class ContextEncoding(StrEnum):
    """How a context input is written into its tensor (float32; ``batch`` is pixels):

    - ``binary`` (mask): (batch, time), 1 where every band of the modality has a value, else 0;
    - ``sin_cos`` (month): (batch, time, 2), sin and cos of 2 pi (month - 1) / 12, month 1-12;
    - ``index`` (month): (batch, time), month - 1 (0-11, presto's ``month.npy`` convention);
    - ``degrees`` (latlon): (batch, 2), latitude and longitude in degrees (WGS 84);
    - ``lat_sin_cos_lon`` (latlon): (batch, 3), latitude / 90, sin and cos of the longitude.
    """

    BINARY = "binary"
    SIN_COS = "sin_cos"
    INDEX = "index"
    DEGREES = "degrees"
    LAT_SIN_COS_LON = "lat_sin_cos_lon"


#: The encodings each context kind may use, the first one being the default.
CONTEXT_ENCODINGS: dict[ContextKind, tuple[ContextEncoding, ...]] = {
    ContextKind.MASK: (ContextEncoding.BINARY,),
    ContextKind.MONTH: (ContextEncoding.SIN_COS, ContextEncoding.INDEX),
    ContextKind.LATLON: (ContextEncoding.LAT_SIN_COS_LON, ContextEncoding.DEGREES),
}

#: Values per pixel and time step (mask, month) or per pixel (latlon) of each context encoding.
CONTEXT_WIDTH: dict[ContextEncoding, int] = {
    ContextEncoding.BINARY: 1, ContextEncoding.SIN_COS: 2, ContextEncoding.INDEX: 1,
    ContextEncoding.DEGREES: 2, ContextEncoding.LAT_SIN_COS_LON: 3,
}


@unique
class TensorLayout(StrEnum):
    """A network input's axes: per pixel (batch, time, bands) or spatial (..., height, width)."""

    NTC = "NTC"
    NTCHW = "NTCHW"


@unique
class OutputKind(StrEnum):
    """The rasters a run writes, in the order they are added to the map."""

    PREDICTION = "prediction"
    CONFIDENCE = "confidence"
    PROBABILITIES = "probabilities"


@unique
class Device(StrEnum):
    """Where a model runs (:mod:`.providers`): ``auto`` takes a GPU when one works, ``gpu`` fails
    without one, ``tensorrt`` and ``coreml`` only when chosen."""

    AUTO = "auto"
    CPU = "cpu"
    GPU = "gpu"
    TENSORRT = "tensorrt"
    COREML = "coreml"


#: Every device name, in the order the CLI offers them (Processing offers the first three).
DEVICES: tuple[str, ...] = tuple(d.value for d in Device)

#: How Processing and the panel name each device, in :data:`DEVICES` order.
DEVICE_LABELS: dict[Device, str] = {
    Device.AUTO: "Auto (GPU when available)",
    Device.CPU: "CPU",
    Device.GPU: "GPU (fails without one)",
    Device.TENSORRT: "TensorRT (NVIDIA, on request)",
    Device.COREML: "CoreML (macOS, on request)",
}

#: Custom layer property holding the name of the model that made a layer (and its version).
LAYER_MODEL_PROPERTY = "eo_missing_qgis/model"
LAYER_MODEL_VERSION_PROPERTY = "eo_missing_qgis/model_version"
