"""Modality groups, their band names and physical units (these names go into the model card)."""

from __future__ import annotations

MODALITIES = ("S1", "S2", "weather", "DEM")

BANDS: dict[str, tuple[str, ...]] = {
    "S1": ("VV", "VH"),
    "S2": ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"),
    "weather": ("temperature", "precipitation"),
    "DEM": ("elevation", "slope"),
}

UNITS: dict[str, tuple[str, ...]] = {
    "S1": ("dB", "dB"),
    "S2": ("reflectance",) * 9,
    "weather": ("K", "mm"),
    "DEM": ("m", "degree"),
}

SENSORS = {
    "S1": "Sentinel-1 GRD",
    "S2": "Sentinel-2 L2A",
    "weather": "ERA5 / AgERA5 monthly",
    "DEM": "SRTM / Copernicus DEM",
}


def check_modalities(modalities) -> tuple[str, ...]:
    """``modalities`` as a tuple in canonical order; unknown names are a clear error."""
    mods = tuple(modalities)
    unknown = [m for m in mods if m not in MODALITIES]
    if unknown or not mods:
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, not {list(mods)}")
    return tuple(m for m in MODALITIES if m in mods)
