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


@dataclass(frozen=True)
class LayerMapping:
    """What a user says one layer holds: its bands in raster-band order (empty: recognised) and the
    1-based time step it starts at (0: the latest steps the model needs, or a date layer's position),
    or its date(s) (``YYYY-MM[-DD]``: one for a one-date layer, one per raster band of a one-band
    layer), which place it on the model's months and win over the dates the data carry."""

    bands: tuple[str, ...] = ()
    first_step: int = 0
    dates: tuple[str, ...] = ()

    @classmethod
    def from_text(cls, bands: str, first_step: str, where: str) -> LayerMapping:
        """From the texts a user typed (bands comma separated; first step, date(s) comma
        separated, or blank); ``where`` names the layer in the error."""
        from .errors import InputError
        from .time_axis import parse_month

        first = first_step.strip()
        names = tuple(b.strip() for b in bands.split(",") if b.strip())
        if "-" in first:  # dates, e.g. 2021-06-12
            dates = tuple(d.strip() for d in first.split(",") if d.strip())
            for d in dates:
                parse_month(d, where)
            return cls(names, 0, dates)
        if first and (not first.isdigit() or int(first) < 1):
            raise InputError(f"the first time step of {where} must be a whole number, 1 or more, "
                             f"or a date (YYYY-MM-DD), not '{first}'")
        return cls(names, int(first) if first else 0)


def parse_mapping(text: str) -> dict[str, LayerMapping]:
    """The per-layer mapping of Processing's text parameter: one entry per line (or ';'),
    ``LAYER: BANDS @ FIRST_STEP`` with LAYER a layer name, source or file name, BANDS comma
    separated (may be empty), ``@ FIRST_STEP`` (or ``@ DATE``) optional; e.g.
    ``s2_june.tif: B02,B03 @ 6`` or ``vv.tif: @ 2021-06-12``."""
    from .errors import InputError

    mapping: dict[str, LayerMapping] = {}
    for entry in (e.strip() for e in text.replace(";", "\n").splitlines()):
        if not entry:
            continue
        layer, sep, rest = entry.rpartition(":")
        if not sep or not layer.strip():
            raise InputError(f"cannot read the layer mapping '{entry}': write 'layer: B02,B03,... @ first "
                             "step' (bands comma separated, first step 1 or more or a date YYYY-MM-DD, both "
                             "optional)")
        bands, _, first = rest.partition("@")
        mapping[layer.strip()] = LayerMapping.from_text(bands, first, f"'{layer.strip()}'")
    return mapping


def mapping_for_layers(mapping: dict[str, LayerMapping],
                       layers: list[tuple[str, str]]) -> dict[str, LayerMapping]:
    """``mapping`` keyed by the GDAL source of the layer each entry names (by layer name, source,
    file name or file stem); an entry naming none of ``layers`` is refused, listing them."""
    from pathlib import Path

    from .errors import InputError
    from .raster_io import file_of

    out = {}
    for key, value in mapping.items():
        found = [source for source, name in layers
                 if key in (name, source, Path(file_of(source)).name, Path(file_of(source)).stem)]
        if not found:
            given = ", ".join(name for _, name in layers) or "none"
            raise InputError(f"the layer mapping names '{key}', which is none of the layers given ({given})")
        out.update(dict.fromkeys(found, value))
    return out


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
    mapping: dict[str, LayerMapping] = field(default_factory=dict)  # GDAL source -> what it holds
    confidence: str | None = None
    reference: str | None = None  # GDAL source whose grid the outputs use; None: the finest input's
    tile_size: int = 512
    batch_mb: int = 256
    device: Device = Device.AUTO
    threads: int | None = None
    probabilities: bool = False
    headers: dict[str, RasterHeader] = field(default_factory=dict)


def build_inputs(request: PredictionRequest, card: ModelCard) -> list:
    """RasterInputs for the modalities the model uses (others, e.g. DEM, are left out).

    The time window: a layer's own first step (``mapping``), else ``first_step`` (1-based), where
    the model's steps start in the layer's time axis (raster bands of a band-per-layer layer, time
    blocks of a stacked layer, or the order of date-per-layer layers); 0 takes the latest steps,
    which the plan chooses and says, as for the CLI.
    """
    from .recognition import RasterInput

    steps = card.time.steps
    inputs = []
    for modality in card.modalities:
        layers = request.layers.get(modality, [])
        for position, (source, name) in enumerate(layers):
            own = request.mapping.get(source, LayerMapping())
            first = own.first_step or request.first_step
            inp = RasterInput(path=source, modality=modality, layout=request.layout, name=name,
                              bands=list(own.bands) or None, encoding=request.units.get(modality),
                              header=request.headers.get(source), dates=list(own.dates) or None)
            if own.dates:  # placed by its dates
                inputs.append(inp)
                continue
            if request.layout == TimeLayout.DATE_PER_LAYER:
                if own.first_step:  # the date this layer holds, said by the user
                    inp.time_index = own.first_step - 1
                else:
                    start = first - 1 if first else max(len(layers) - steps, 0)
                    if not start <= position < start + steps:
                        continue  # a date outside the model's time window
                    inp.time_index = position - start
            elif first:
                inp.time_index = first - 1
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


def layer_date_text(source: str, headers: dict[str, RasterHeader]) -> str:
    """The date(s) a layer carries (:func:`.dates.recognised_dates`) for the panel's Date column,
    comma separated; '' when none or the layer's header was not read."""
    from .dates import recognised_dates

    header = headers.get(source)
    return ", ".join(recognised_dates(source, header.metadata, header.descriptions) or ()) if header else ""


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
        reference=request.reference,
        keep=tuple(src for layers in request.layers.values() for src, _ in layers),
    )
    try:
        return run_model(session, build_inputs(request, session.card), request.output,
                         options=options, progress=progress, cancel=is_canceled, log=log, status=status)
    except Cancelled:
        return None
