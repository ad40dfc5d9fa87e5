"""One prediction as the plugin asks for it: layers per modality plus options -> the engine.

The Processing algorithm and the GUI panel both build a :class:`PredictionRequest` and call
:func:`run_prediction`, so they behave the same; neither talks to the engine directly.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from .card import ModelCard, read_card
from .definitions import Device, TimeLayout
from .errors import Cancelled


@dataclass
class PredictionRequest:
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


def build_inputs(request: PredictionRequest, card: ModelCard) -> list:
    """RasterInputs for the modalities the model uses (others, e.g. DEM, are left out).

    The time window: ``first_step`` (1-based) where the model's steps start in the layers' time
    axis (raster bands of a band-per-layer layer, or the order of date-per-layer layers); 0 takes
    the latest steps.
    """
    from .raster_inputs import RasterInput, recognise

    steps = card.time.steps
    inputs = []
    for modality in card.modalities:
        layers = request.layers.get(modality, [])
        for position, (source, name) in enumerate(layers):
            inp = RasterInput(path=source, modality=modality, layout=request.layout, name=name,
                              encoding=request.units.get(modality))
            if request.layout == TimeLayout.DATE_PER_LAYER:
                start = request.first_step - 1 if request.first_step else max(len(layers) - steps, 0)
                if not start <= position < start + steps:
                    continue  # a date outside the model's time window
                inp.time_index = position - start
            elif request.layout in (TimeLayout.AUTO, TimeLayout.BAND_PER_LAYER):
                count = recognise(inp).count
                if request.first_step:
                    inp.time_index = request.first_step - 1
                elif count > steps:
                    inp.time_index = count - steps
            inputs.append(inp)
    return inputs


def input_problems(request: PredictionRequest) -> str:
    """Why the layers do not fit the model ('' when they do), without running it."""
    from .errors import InputError
    from .raster_inputs import match_inputs

    card = read_card(request.model_path)
    try:
        match_inputs(card, build_inputs(request, card))
    except InputError as exc:
        return str(exc)
    return ""


def recognise_layer(source: str, name: str):
    """What a layer looks like (modality, band, reason) for the panel; never raises: a layer that
    cannot be read (or a missing rasterio) is 'not recognised', with the reason."""
    from .raster_inputs import RasterInput, Recognition, recognise

    try:
        return recognise(RasterInput(path=source, name=name))
    except (ValueError, ImportError, OSError) as exc:
        return Recognition(None, None, TimeLayout.AUTO, str(exc))


def run_prediction(
    request: PredictionRequest,
    progress: Callable[[float], None] | None = None,
    is_canceled: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
):
    """Run the request; returns the engine's RunResult, or None when cancelled."""
    from .engine import CancelToken, RunOptions, run_model

    class CallerToken(CancelToken):
        """Also asks the caller (Processing feedback, QgsTask) before every batch."""

        @property
        def cancelled(self) -> bool:
            return is_canceled is not None and is_canceled()

    card = read_card(request.model_path)
    options = RunOptions(
        tile_size=request.tile_size, memory_mb=request.batch_mb, device=request.device,
        threads=request.threads, write_probabilities=request.probabilities,
    )
    try:
        result = run_model(request.model_path, build_inputs(request, card), request.output,
                           options=options, progress=progress, cancel=CallerToken(), log=log)
    except Cancelled:
        return None
    wanted = request.confidence
    produced = result.outputs.get("confidence")
    if wanted and produced and os.path.abspath(wanted) != os.path.abspath(produced):
        shutil.move(produced, wanted)
        result.outputs["confidence"] = wanted
    return result
