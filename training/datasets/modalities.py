"""Which modality groups a run uses (the names and bands are in :mod:`eo_missing_qgis.core.definitions`)."""

from __future__ import annotations

from eo_missing_qgis.core.definitions import MODALITIES, Modality


def check_modalities(modalities) -> tuple[Modality, ...]:
    """``modalities`` as a tuple in canonical order; unknown names are a clear error."""
    mods = tuple(modalities)
    unknown = [m for m in mods if m not in MODALITIES]
    if unknown or not mods:
        raise ValueError(f"modalities must be a non-empty subset of {', '.join(MODALITIES)}, "
                         f"not {[str(m) for m in mods]}")
    return tuple(m for m in MODALITIES if m in mods)
