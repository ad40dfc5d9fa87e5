"""A run's output rasters: where they go, how they are created from the card, and how they are
published together (all or nothing) once the whole run succeeded."""

from __future__ import annotations

from pathlib import Path

from .card import ModelCard
from .definitions import OutputKind, Task
from .errors import OutputError
from .raster_io import GeoTiffOutput, Grid, rasterio_module

#: Dataset tag naming the prediction file an output belongs to: an earlier run's file carrying it
#: may be replaced or removed by a later run to the same name, and no other file ever is.
SET_TAG = "EO_MISSING_OUTPUT_OF"


def sibling(output: str | Path, kind: OutputKind) -> Path:
    """Where an output of ``kind`` goes by default: next to the prediction, named after it."""
    out = Path(output)
    return out.with_name(f"{out.stem}_{kind.value}.tif")


def output_paths(output: str | Path, card: ModelCard, probabilities: bool,
                 confidence: str | Path | None = None) -> dict[OutputKind, str]:
    """Main raster at ``output``; for classification the confidence at ``confidence`` (default:
    next to it) and, when asked, the probabilities next to it."""
    out = Path(output)
    paths = {OutputKind.PREDICTION: str(out)}
    if card.task == Task.CLASSIFICATION:
        paths[OutputKind.CONFIDENCE] = str(confidence or sibling(out, OutputKind.CONFIDENCE))
        if probabilities:
            paths[OutputKind.PROBABILITIES] = str(sibling(out, OutputKind.PROBABILITIES))
    resolved = [Path(p).resolve() for p in paths.values()]
    if len(set(resolved)) < len(resolved):
        raise OutputError(f"two outputs would be written to the same file ({', '.join(paths.values())}); "
                          "give each output its own file name")
    return paths


def create_outputs(paths: dict[OutputKind, str], card: ModelCard,
                   grid: Grid) -> dict[OutputKind, GeoTiffOutput]:
    """Temporary GeoTIFFs for every output, described from the card (class colours, unit)."""
    made: dict[OutputKind, GeoTiffOutput] = {}
    try:
        if card.task == Task.CLASSIFICATION:
            main = GeoTiffOutput(paths[OutputKind.PREDICTION], grid, 1, "uint8", 0, [card.output.name])
            made[OutputKind.PREDICTION] = main
            main.describe_classes(card.output.classes, card.title)
            made[OutputKind.CONFIDENCE] = GeoTiffOutput(paths[OutputKind.CONFIDENCE], grid, 1, "float32",
                                                        float("nan"), ["confidence (max probability)"])
            if OutputKind.PROBABILITIES in paths:
                made[OutputKind.PROBABILITIES] = GeoTiffOutput(
                    paths[OutputKind.PROBABILITIES], grid, len(card.output.classes), "float32", float("nan"),
                    [f"probability {c.name}" for c in card.output.classes])
        else:
            unit = card.output.unit
            main = GeoTiffOutput(paths[OutputKind.PREDICTION], grid, 1, "float32", float("nan"),
                                 [f"{card.output.name} ({unit})"])
            main.tag(1, UNIT=unit, NAME=card.output.name)
            made[OutputKind.PREDICTION] = main
        name = Path(paths[OutputKind.PREDICTION]).name
        for o in made.values():
            o.tag(0, **{SET_TAG: name})
    except BaseException:
        for o in made.values():
            o.discard()
        raise
    return made


def stale_outputs(outs: dict[OutputKind, GeoTiffOutput]) -> list[Path]:
    """Files an earlier run to the same prediction name left next to it (its confidence or
    probabilities) that this run does not write: only files tagged as that prediction's."""
    main = outs[OutputKind.PREDICTION].path
    rio = rasterio_module()
    written = {o.path for o in outs.values()}
    stale = []
    for kind in (OutputKind.CONFIDENCE, OutputKind.PROBABILITIES):
        path = sibling(main, kind)
        if path in written or not path.is_file():
            continue
        try:
            with rio.open(str(path)) as ds:
                owner = ds.tags().get(SET_TAG)
        except (rio.errors.RasterioError, OSError):
            continue  # not a raster we wrote: never touched
        if owner == main.name:
            stale.append(path)
    return stale


def publish(outs: dict[OutputKind, GeoTiffOutput]) -> list[Path]:
    """Close every output first (a full disk fails here), then move them all into place; if a move
    fails, the ones already moved are removed again so no partial set is left. An earlier run's
    outputs of the same name that this run does not write are removed, so the set on disk is
    this run's only; returns the files removed."""
    for o in outs.values():
        o.close()
    stale = stale_outputs(outs)
    moved: list[GeoTiffOutput] = []
    try:
        for o in outs.values():
            o.move_into_place()
            moved.append(o)
        for path in stale:
            path.unlink()
    except OSError as exc:
        for o in moved:
            o.path.unlink(missing_ok=True)
        raise OutputError(f"cannot move the output into place at {o.path}: {exc.strerror or exc}") from None
    return stale
