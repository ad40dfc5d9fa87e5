"""Physical units a model expects, and the encodings data arrive in.

Every source stores the same quantity differently (S1 in dB, linear power or WorldCereal DN;
S2 reflectance as 0-1 floats or x10000 integers; temperature in K or K x 100). Models are trained
and run on physical units; an :class:`Encoding` says how to get there from stored values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: Physical units a card may declare for a band, with the range of plausible values in that unit
#: (used to warn when a layer is probably given in another unit).
UNITS: dict[str, tuple[float, float]] = {
    "dB": (-60.0, 30.0),
    "reflectance": (-0.2, 2.0),
    "K": (180.0, 340.0),
    "mm": (0.0, 2000.0),
    "m": (-500.0, 9000.0),
    "degree": (0.0, 90.0),
}

#: Decoded values no sensor can report, per unit (inclusive limits): surface reflectance outside
#: 0..1 (e.g. the unmasked 2.5-6.2 of the Flanders 20 m bands) and backscatter below any sensor's
#: noise floor or above any target's return. Such values become missing in training and inference
#: alike (:func:`.preprocessing.mask_implausible`). Narrower than :data:`UNITS`, which only judges
#: whether an encoding fits and must stay tolerant of a few bright clouds. Reflectance limits are
#: widened by half a DN (5e-5): float32 decoding of DN 1000 with the -0.1 offset of baseline 04.00
#: gives -1e-9, not 0, and DN 10000 must stay valid whichever encoding carries it.
PHYSICAL_LIMITS: dict[str, tuple[float, float]] = {
    "reflectance": (-5e-5, 1.0 + 5e-5),
    "dB": (-50.0, 20.0),
}

#: Medians a band's decoded values have over any real scene: outside them an encoding is wrong even
#: when every value lies in the plausible range (linear power read as dB is positive; reflectance
#: 0-1 read as x 10000 is about 0; an offset applied twice makes reflectance negative).
TYPICAL_MEDIAN: dict[str, tuple[float, float]] = {
    "dB": (-45.0, 0.0),
    "reflectance": (0.001, 1.0),
    "K": (200.0, 330.0),
}

#: Share of decoded values outside their unit's plausible range that proves an encoding wrong,
#: and the share below which an encoding fits the values.
WRONG_SHARE, FIT_SHARE = 0.5, 0.05

ENCODING_KINDS = ("scaled", "power_db", "amplitude_db")


@dataclass(frozen=True)
class Encoding:
    """Stored value -> physical value (decoded by :func:`.preprocessing.decode`).

    ``scaled``: ``x * scale + offset``; ``power_db``: ``10 log10(x * scale) + offset`` (linear
    backscatter power); ``amplitude_db``: ``20 log10(x * scale) + offset`` (amplitude DN, e.g.
    WorldCereal's ``20 log10(DN) - 83``). ``nodata`` is a stored value that means "missing".
    """

    kind: str = "scaled"
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ENCODING_KINDS:
            raise ValueError(f"encoding kind must be one of {ENCODING_KINDS}, not {self.kind!r}")
        if not np.isfinite(self.scale) or self.scale == 0:
            raise ValueError(f"encoding scale must be finite and non-zero, not {self.scale!r}")
        if not np.isfinite(self.offset):
            raise ValueError(f"encoding offset must be finite, not {self.offset!r}")


#: Sentinel-2 L2A of processing baseline 04.00 or later (every product since January 2022): DN
#: carry BOA_ADD_OFFSET = -1000. Values alone cannot tell it from plain x 10000 DN, so it is taken
#: from product metadata (:func:`product_offset`) or declared, never guessed from values.
BOA_OFFSET_PRESET = "L2A DN with offset -1000 (baseline 04.00+)"

#: Named encodings a user can pick for a layer, keyed by the physical unit they decode to.
#: The first entry of each unit is that unit itself (no conversion).
PRESETS: dict[str, dict[str, Encoding]] = {
    "dB": {
        "dB": Encoding(),
        "linear power": Encoding("power_db"),
        "WorldCereal DN (20 log10 DN - 83, nodata 65535)": Encoding(
            "amplitude_db", offset=-83.0, nodata=65535
        ),
        "dB x 10000 integers": Encoding(scale=1e-4),
    },
    "reflectance": {
        "reflectance (0-1)": Encoding(),
        "reflectance x 10000 (L2A DN)": Encoding(scale=1e-4, nodata=65535),
        BOA_OFFSET_PRESET: Encoding(scale=1e-4, offset=-0.1, nodata=0),
    },
    "K": {
        "K": Encoding(),
        "K x 100 (AgERA5)": Encoding(scale=0.01, nodata=65535),
        "degree Celsius": Encoding(offset=273.15),
    },
    "mm": {
        "mm": Encoding(),
        "mm x 100 (AgERA5)": Encoding(scale=0.01, nodata=65535),
        "m (ERA5)": Encoding(scale=1000.0),
    },
    "m": {"m": Encoding()},
    "degree": {"degree": Encoding()},
}


def preset(unit: str, name: str | None = None) -> Encoding:
    """The encoding called ``name`` for ``unit`` (the identity when ``name`` is None)."""
    if unit not in PRESETS:
        raise ValueError(f"unknown unit {unit!r}; known: {', '.join(PRESETS)}")
    choices = PRESETS[unit]
    if name is None:
        return next(iter(choices.values()))
    if name not in choices:
        raise ValueError(f"no encoding {name!r} for unit {unit}; choose from: {', '.join(choices)}")
    return choices[name]


def implausible_fraction(physical: np.ndarray, unit: str) -> float:
    """Share of valid values outside the plausible range of ``unit`` (0 when none are valid)."""
    lo, hi = UNITS[unit]
    valid = np.isfinite(physical)
    n = int(valid.sum())
    if n == 0:
        return 0.0
    v = physical[valid]
    return float(((v < lo) | (v > hi)).sum()) / n


def judge(physical: np.ndarray, unit: str) -> bool | None:
    """Whether decoded values fit ``unit``: True (they fit), False (they prove the encoding wrong:
    mostly implausible, or a median no real scene has), None (in between, or no valid value)."""
    valid = physical[np.isfinite(physical)]
    if valid.size == 0:
        return None
    share = implausible_fraction(valid, unit)
    lo, hi = TYPICAL_MEDIAN.get(unit, (-np.inf, np.inf))
    median = float(np.median(valid))
    if share >= WRONG_SHARE or not lo <= median <= hi:
        return False
    return True if share <= FIT_SHARE else None


def encoding_name(unit: str, enc: Encoding) -> str:
    """The preset name of ``enc`` for ``unit``, else its formula (a custom encoding)."""
    for name, known in PRESETS.get(unit, {}).items():
        if known == enc:
            return name
    return f"{enc.kind} x {enc.scale:g} + {enc.offset:g}"


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def product_offset(metadata: Mapping[str, str]) -> tuple[float, str] | None:
    """The Sentinel-2 L2A DN offset (e.g. -1000) product metadata states, and the item saying so:
    ``BOA_ADD_OFFSET*`` (named as in MTD_MSIL2A.xml; always subtracted, as some exports write
    1000 for -1000), else ``PROCESSING_BASELINE`` (04.00 or later: -1000, earlier: 0). None when
    neither is present."""
    items = {k.upper(): str(v) for k, v in metadata.items()}
    for key, value in sorted(items.items()):
        found = _NUMBER.search(value)
        if "BOA_ADD_OFFSET" in key and found:
            return -abs(float(found.group())), f"{key}={value}"
    baseline = items.get("PROCESSING_BASELINE", "")
    found = _NUMBER.search(baseline.lstrip("Nn"))
    if found:
        number = float(found.group())
        version = number / 100 if "." not in found.group() else number  # N0400 -> 4.0
        return (-1000.0 if version >= 4.0 else 0.0), f"PROCESSING_BASELINE={baseline}"
    return None
