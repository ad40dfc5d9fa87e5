"""The bundled models and the choice of the one that fits the layers a user has."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .card import ModelCard, Region
from .definitions import MODALITY_NAMES
from .footprint import NEAR_KM, FootprintCheck, nearest_region, outside_footprint

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


class NoModelError(ValueError):
    """No bundled model can run on the inputs given."""


@dataclass(frozen=True)
class BundledModel:
    """One entry of the bundled models' ``index.json``."""

    file: Path
    task: str
    task_title: str
    modalities: tuple[str, ...]
    name: str
    title: str
    #: The card's training footprint, copied into ``index.json`` (:func:`footprint_entry`) so the
    #: choice by location reads no ONNX file; the card stays the source of truth.
    footprint: tuple[Region, ...] = ()

    def outside(self, outline: np.ndarray) -> FootprintCheck | None:
        """Whether an input (lon/lat ``outline``) lies outside this model's footprint, and where."""
        return outside_footprint(self.name, self.footprint, outline)


def footprint_entry(card: ModelCard) -> list[dict]:
    """The card's footprint as ``index.json`` holds it (the card's own JSON form)."""
    return [{"name": r.name, "polygon": [list(v) for v in r.polygon], "samples": r.samples}
            for r in card.footprint]


def load_index(models_dir: Path = MODELS_DIR) -> list[BundledModel]:
    """Entries of ``index.json`` (empty when no models are bundled)."""
    index = models_dir / "index.json"
    if not index.is_file():
        return []
    data = json.loads(index.read_text(encoding="utf-8"))
    if data.get("version") != 1:
        raise ValueError(f"{index}: unsupported index version {data.get('version')!r}")
    return [
        BundledModel(
            file=models_dir / m["file"],
            task=m["task"],
            task_title=m["task_title"],
            modalities=tuple(m["modalities"]),
            name=m["name"],
            title=m["title"],
            footprint=tuple(Region(r["name"], tuple((float(x), float(y)) for x, y in r["polygon"]),
                                   int(r["samples"])) for r in m.get("footprint", ())),
        )
        for m in data["models"]
    ]


def tasks(models: list[BundledModel]) -> dict[str, str]:
    """Task id -> title, in index order."""
    return {m.task: m.task_title for m in models}


def _names(modalities) -> str:
    return " and ".join(MODALITY_NAMES.get(m, m) for m in modalities)


def select_model(models: list[BundledModel], task: str, available: set[str],
                 problems: Callable[[BundledModel], str] | None = None,
                 outline: np.ndarray | None = None) -> tuple[BundledModel, str]:
    """The model of ``task`` that uses the most of the ``available`` modalities, and why.

    With the input's lon/lat ``outline`` (:func:`.footprint.layers_outline`), the place comes first:
    among the models that fit the sensors, those whose footprint holds the input (within
    :data:`.footprint.NEAR_KM`); else those without a footprint; else those of the nearest region,
    and the reason says the input is outside (:meth:`BundledModel.outside` gives the warning).

    Every modality the chosen model needs must be available; among those that fit, the one using
    more sensors wins (S1+S2 when both are given). ``problems`` says why a model's inputs are
    incomplete ('' when they are complete, e.g. :func:`.prediction.input_problems`): a richer model
    with incomplete inputs (all S1 but only some S2 bands) gives way to one whose inputs are
    complete, and the reason says what it lacked; once the bands are added it is chosen again.
    When no model is complete, the richest is returned (its problems are the caller's to show).
    """
    candidates = [m for m in models if m.task == task]
    if not candidates:
        known = ", ".join(sorted(tasks(models))) or "none"
        raise NoModelError(f"No bundled model for task '{task}' (bundled tasks: {known}).")
    fitting = sorted((m for m in candidates if set(m.modalities) <= available),
                     key=lambda m: len(m.modalities), reverse=True)
    if not fitting:
        options = "; ".join(f"{_names(m.modalities)} for '{m.title}'" for m in candidates)
        given = _names(sorted(available)) if available else "no layers"
        raise NoModelError(
            f"No {candidates[0].task_title} model can run on {given}. Add layers of: {options}."
        )
    here, where = _located(fitting, outline)
    fitting = [m for m in fitting if here(m)]
    best, incomplete = fitting[0], []
    for m in fitting if problems is not None else ():  # richest first; each card read only if needed
        lacks = problems(m)
        if not lacks:
            best = m
            break
        incomplete.append((m, lacks))
    else:
        incomplete = []  # none complete (or not checked): the richest, whose problems the caller shows
    reason = (where(best) + f"Layers given: {_names(sorted(available))}. "
              f"Chosen: '{best.title}', which needs {_names(best.modalities)}")
    for m, p in incomplete:
        lacking = sorted(set(m.modalities) - set(best.modalities))
        reason += (f"; not '{m.title}': its {_names(lacking)} layers are incomplete ({_condensed(p)}); "
                   "add what they lack to use it")
    richer = [m for m in candidates if here(m) and len(m.modalities) > len(best.modalities)
              and not set(m.modalities) <= available]
    if richer:
        missing = sorted(set(richer[0].modalities) - available)
        reason += f"; '{richer[0].title}' would also need {_names(missing)}"
    explained = {x for m, _ in incomplete for x in m.modalities}
    unused = sorted(available - set(best.modalities) - explained)
    if unused:
        reason += f"; {_names(unused)} not used by this model"
    return best, reason + "."


def _located(fitting: list[BundledModel], outline: np.ndarray | None
             ) -> tuple[Callable[[BundledModel], bool], Callable[[BundledModel], str]]:
    """Which models are at the input's place, and the sentence saying where the chosen one was trained.

    Models of one region share its footprint, so distances to it are equal: the nearest region's
    models are those within a km of the nearest distance."""
    if outline is None or not any(m.footprint for m in fitting):
        return (lambda m: True), (lambda m: "")
    place = {m.file: nearest_region(m.footprint, outline) for m in fitting if m.footprint}
    inside = [m for m in fitting if m.file in place and place[m.file][1] <= NEAR_KM]
    if inside:
        def here(m: BundledModel) -> bool:
            return bool(m.footprint) and nearest_region(m.footprint, outline)[1] <= NEAR_KM

        def where(m: BundledModel) -> str:
            return (f"Input is in {place[m.file][0].name}, where '{m.title}' was trained"
                    f"{_elsewhere(fitting, here)}. ")
    elif len(place) < len(fitting):  # models that say nothing of where they hold beat those known to be far
        def here(m: BundledModel) -> bool:
            return not m.footprint

        def where(m: BundledModel) -> str:
            return f"'{m.title}' has no training footprint; the others were trained far from the input" \
                   f"{_elsewhere(fitting, here)}. "
    else:
        closest = min(km for _, km in place.values())

        def here(m: BundledModel) -> bool:
            return bool(m.footprint) and nearest_region(m.footprint, outline)[1] <= closest + 1.0

        def where(m: BundledModel) -> str:
            region, km = place[m.file]
            return (f"Input is outside every region these models were trained on; the nearest is "
                    f"{region.name}, about {km:,.0f} km away, where '{m.title}' was trained: treat the map "
                    f"with caution{_elsewhere(fitting, here)}. ")
    return here, where


def _elsewhere(fitting: list[BundledModel], here: Callable[[BundledModel], bool]) -> str:
    """The models left out for their place, by region, e.g. "; not used here: 'Crop type (East Africa)
    from S2', trained in East-African croplands"."""
    far: dict[str, list[str]] = {}
    for m in fitting:
        if not here(m):
            area = ", ".join(r.name for r in m.footprint) or "an unknown area"
            far.setdefault(area, []).append(f"'{m.title}'")
    return "".join(f"; not used here: {', '.join(titles)}, trained in {area}" for area, titles in far.items())


def _condensed(problems: str) -> str:
    """An input-plan error on one line, without its heading ('the layers do not match ...:')."""
    lines = [line.strip().removeprefix("- ") for line in problems.splitlines()]
    return "; ".join(line for line in lines[1:] if line) or problems
