"""One prediction as the plugin asks for it: layers per modality plus options -> the engine.

The Processing algorithm and the GUI panel both build a :class:`PredictionRequest` and call
:func:`run_prediction`, so they behave the same; neither talks to the engine directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .card import ModelCard
from .definitions import Device, TimeLayout
from .errors import Cancelled

if TYPE_CHECKING:  # raster I/O loads only when a run or a recognition needs it
    from .raster_io import RasterHeader


@dataclass
class PredictionRequest:
    """What the Processing algorithm or the panel asks for: model, layers, options; ``headers``
    holds layer headers already read (GDAL source -> header), which the run then reuses."""

    model_path: str
    layers: dict[str, list[tuple[str, str]]]  # modality -> [(GDAL source, layer name)]
    output: str
    units: dict[str, str | None] = field(default_factory=dict)  # modality -> preset name or None
    layout: TimeLayout = TimeLayout.AUTO
    first_step: int = 0  # 1-based first time step; 0 = the latest steps the model needs
    confidence: str | None = None
    tile_size: int = 512
    batch_mb: int = 256
    device: Device = Device.AUTO
    threads: int | None = None
    probabilities: bool = False
    headers: dict[str, RasterHeader] = field(default_factory=dict)


def build_inputs(request: PredictionRequest, card: ModelCard) -> list:
    """RasterInputs for the modalities the model uses (others, e.g. DEM, are left out).

    The time window: ``first_step`` (1-based) where the model's steps start in the layers' time
    axis (raster bands of a band-per-layer layer, or the order of date-per-layer layers); 0 takes
    the latest steps. A layer whose raster band count decides the window has its header read here,
    once: the plan keeps it.
    """
    from .raster_io import read_header
    from .recognition import RasterInput

    steps = card.time.steps
    inputs = []
    for modality in card.modalities:
        layers = request.layers.get(modality, [])
        for position, (source, name) in enumerate(layers):
            inp = RasterInput(path=source, modality=modality, layout=request.layout, name=name,
                              encoding=request.units.get(modality), header=request.headers.get(source))
            if request.layout == TimeLayout.DATE_PER_LAYER:
                start = request.first_step - 1 if request.first_step else max(len(layers) - steps, 0)
                if not start <= position < start + steps:
                    continue  # a date outside the model's time window
                inp.time_index = position - start
            elif request.layout in (TimeLayout.AUTO, TimeLayout.BAND_PER_LAYER):
                inp.header = inp.header or read_header(source)
                if request.first_step:
                    inp.time_index = request.first_step - 1
                elif inp.header.count > steps:
                    inp.time_index = inp.header.count - steps
            inputs.append(inp)
    return inputs


def input_problems(request: PredictionRequest, card: ModelCard) -> str:
    """Why the layers do not fit the model of ``card`` ('' when they do), without running it."""
    from .errors import InputError
    from .raster_inputs import match_inputs

    try:
        match_inputs(card, build_inputs(request, card))
    except InputError as exc:
        return str(exc)
    return ""


def recognise_layer(source: str, name: str, headers: dict[str, RasterHeader] | None = None):
    """What a layer looks like (modality, band, reason) for the panel; never raises: a layer that
    cannot be read (or a missing rasterio) is 'not recognised', with the reason. ``headers`` (GDAL
    source -> header) holds the headers already read; one read here is added, for what follows."""
    from .raster_io import read_header
    from .recognition import RasterInput, Recognition, recognise

    try:
        header = (headers or {}).get(source) or read_header(source)
        if headers is not None:
            headers[source] = header
        return recognise(RasterInput(path=source, name=name), header)
    except (ValueError, ImportError, OSError) as exc:
        return Recognition(None, None, TimeLayout.AUTO, str(exc))


def run_prediction(
    request: PredictionRequest,
    progress: Callable[[float], None] | None = None,
    is_canceled: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
    status: Callable[[str], None] | None = None,
):
    """Run the request; returns the engine's RunResult (its ``card`` is the model's, read once
    here), or None when cancelled. ``status`` gets the progress text (share done, time left)."""
    from .engine import RunOptions, run_model
    from .session import open_session

    session = open_session(request.model_path, request.device, request.threads)
    options = RunOptions(
        tile_size=request.tile_size, memory_mb=request.batch_mb, device=request.device,
        threads=request.threads, write_probabilities=request.probabilities, confidence=request.confidence,
    )
    try:
        return run_model(session, build_inputs(request, session.card), request.output,
                         options=options, progress=progress, cancel=is_canceled, log=log, status=status)
    except Cancelled:
        return None
