"""A run's output rasters: where they go, how they are created from the card, and how they are
published together (all or nothing) once the whole run succeeded."""

from __future__ import annotations

from pathlib import Path

from .card import ModelCard
from .definitions import OutputKind, Task
from .errors import OutputError
from .raster_io import GeoTiffOutput, Grid


def output_paths(output: str | Path, card: ModelCard, probabilities: bool,
                 confidence: str | Path | None = None) -> dict[OutputKind, str]:
    """Main raster at ``output``; for classification the confidence at ``confidence`` (default:
    next to it) and, when asked, the probabilities next to it."""
    out = Path(output)
    paths = {OutputKind.PREDICTION: str(out)}
    if card.task == Task.CLASSIFICATION:
        paths[OutputKind.CONFIDENCE] = str(confidence or out.with_name(f"{out.stem}_confidence.tif"))
        if probabilities:
            paths[OutputKind.PROBABILITIES] = str(out.with_name(f"{out.stem}_probabilities.tif"))
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
            main.ds.update_tags(1, UNIT=unit, NAME=card.output.name)
            made[OutputKind.PREDICTION] = main
    except BaseException:
        for o in made.values():
            o.discard()
        raise
    return made


def publish(outs: list[GeoTiffOutput]) -> None:
    """Close every output first (a full disk fails here), then move them all into place; if a move
    fails, the ones already moved are removed again so no partial set is left."""
    for o in outs:
        o.close()
    moved: list[GeoTiffOutput] = []
    try:
        for o in outs:
            o.move_into_place()
            moved.append(o)
    except OSError as exc:
        for o in moved:
            o.path.unlink(missing_ok=True)
        raise OutputError(f"cannot move the output into place at {o.path}: {exc.strerror or exc}") from None
