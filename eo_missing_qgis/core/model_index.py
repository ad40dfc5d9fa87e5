"""The bundled models and the choice of the one that fits the layers a user has."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .definitions import MODALITY_NAMES

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
        )
        for m in data["models"]
    ]


def tasks(models: list[BundledModel]) -> dict[str, str]:
    """Task id -> title, in index order."""
    return {m.task: m.task_title for m in models}


def _names(modalities) -> str:
    return " and ".join(MODALITY_NAMES.get(m, m) for m in modalities)


def select_model(models: list[BundledModel], task: str, available: set[str],
                 problems: Callable[[BundledModel], str] | None = None) -> tuple[BundledModel, str]:
    """The model of ``task`` that uses the most of the ``available`` modalities, and why.

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
    best, incomplete = fitting[0], []
    for m in fitting if problems is not None else ():  # richest first; each card read only if needed
        lacks = problems(m)
        if not lacks:
            best = m
            break
        incomplete.append((m, lacks))
    else:
        incomplete = []  # none complete (or not checked): the richest, whose problems the caller shows
    reason = (f"Layers given: {_names(sorted(available))}. "
              f"Chosen: '{best.title}', which needs {_names(best.modalities)}")
    for m, p in incomplete:
        lacking = sorted(set(m.modalities) - set(best.modalities))
        reason += (f"; not '{m.title}': its {_names(lacking)} layers are incomplete ({_condensed(p)}); "
                   "add what they lack to use it")
    richer = [m for m in candidates if len(m.modalities) > len(best.modalities)
              and not set(m.modalities) <= available]
    if richer:
        missing = sorted(set(richer[0].modalities) - available)
        reason += f"; '{richer[0].title}' would also need {_names(missing)}"
    explained = {x for m, _ in incomplete for x in m.modalities}
    unused = sorted(available - set(best.modalities) - explained)
    if unused:
        reason += f"; {_names(unused)} not used by this model"
    return best, reason + "."


def _condensed(problems: str) -> str:
    """An input-plan error on one line, without its heading ('the layers do not match ...:')."""
    lines = [line.strip().removeprefix("- ") for line in problems.splitlines()]
    return "; ".join(line for line in lines[1:] if line) or problems
