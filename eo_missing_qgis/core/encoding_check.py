"""Check every layer's encoding against a sample of its values before anything is written.

A wrong encoding gives a plausible-looking wrong map (float reflectance x 10000 read as 0-1, S1
linear power read as dB), so values that prove it wrong stop the run: an encoding the user
declared is refused, naming the one to declare; an inferred one is replaced when exactly one known
encoding fits the values, and the log says so. The Sentinel-2 offset of baseline 04.00+ cannot be
told from values: it comes from product metadata (:func:`.units.product_offset`) or is declared.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .errors import InputError
from .preprocessing import decode
from .raster_inputs import InputPlan
from .raster_io import Source
from .tiling import Window
from .units import BOA_OFFSET_PRESET, PRESETS, Encoding, encoding_name, judge, product_offset

#: Side of the sample windows and the most values judged per layer and unit.
SAMPLE_PX, MAX_VALUES = 128, 200_000
#: Values of each band kept for the baseline-04.00 offset check across layers (a percentile).
KEPT_VALUES = 50_000

#: Reflectance the darkest 1 % of every band reaches only when DN still carry the +1000 offset.
DARK_FLOOR = 0.1


def sample_windows(height: int, width: int, size: int = SAMPLE_PX) -> list[Window]:
    """The whole grid when small, else five windows (centre and the quarters' centres), so a scene
    with an empty middle is still sampled."""
    if height <= 2 * size and width <= 2 * size:
        return [Window(0, 0, height, width)]
    h, w = min(size, height), min(size, width)
    centres = ((0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75))
    return [Window(min(int(height * fy) - h // 2, height - h), min(int(width * fx) - w // 2, width - w), h, w)
            for fy, fx in centres]


def _stored_values(source: Source, bands: dict[int, list[int]], wins: list[Window]) -> list[np.ndarray]:
    """Valid stored values of each card band (its raster bands, i.e. its time steps, pooled) over
    ``wins``, at most :data:`MAX_VALUES` in all; ``bands`` maps card band -> 1-based raster bands."""
    indexes = sorted({b for group in bands.values() for b in group})
    parts: dict[int, list[np.ndarray]] = {b: [] for b in indexes}
    for win in wins:
        data, missing = source.read(indexes, win)
        for k, b in enumerate(indexes):
            v = data[k][~missing[k]]
            parts[b].append(v[np.isfinite(v)] if v.dtype.kind == "f" else v)
    values = [np.concatenate([p for b in group for p in parts[b]]) for group in bands.values()]
    step = max(1, sum(v.size for v in values) // MAX_VALUES)
    return [v[::step].copy() if step > 1 else v for v in values]  # copies: the full reads are freed


def _judge(stored: list[np.ndarray], enc: Encoding, unit: str) -> bool | None:
    """:func:`.units.judge` band by band (all time steps of a band pooled, so one empty month does
    not decide): wrong when one band proves it, fits when every band with a valid value fits."""
    decoded = (decode(v, enc) for v in stored)
    verdicts = [judge(d, unit) for d in decoded if np.isfinite(d).any()]
    return False if False in verdicts else (True if verdicts and all(verdicts) else None)


def _plain_dn(enc: Encoding, unit: str) -> bool:
    """Whether ``enc`` is reflectance x 10000 DN without an offset (a preset)."""
    return unit == "reflectance" and enc.kind == "scaled" and enc.scale == 1e-4 and enc.offset == 0 \
        and encoding_name(unit, enc) in PRESETS[unit]


def _offset_left_in(stored: list[np.ndarray], enc: Encoding) -> bool:
    """Whether DN decoded without an offset look like baseline 04.00+ DN (+1000): no band of the
    modality, not even blue, has dark pixels, which real scenes (water, shadow, vegetation) have."""
    found = False
    for values in stored:  # one band decoded at a time: the check stays inside the memory budget
        d = decode(values, enc)
        d = d[np.isfinite(d)]
        if d.size:
            if np.percentile(d, 1) < DARK_FLOOR:
                return False
            found = True
    return found


def _slots(plan: InputPlan):
    """(modality, unit, row, column) of every slot of the plan; ``row[column]`` is the slot."""
    for spec in plan.card.inputs:
        for row in plan.slots[spec.modality]:
            for c in range(len(row)):
                yield spec.modality, spec.bands[c].unit, row, c


def check_encodings(plan: InputPlan, sources: dict[int, Source], height: int, width: int) -> list[str]:
    """Judge the encoding of every (layer, unit) the plan reads on a sample of its values; replace
    inferred encodings the values prove wrong when exactly one preset fits (in ``plan.slots``).

    Returns what to tell the user; raises :class:`InputError` listing every layer whose values
    prove its encoding wrong with no single replacement.
    """
    groups: dict[tuple[int, str], tuple[str, Encoding, dict[int, list[int]]]] = {}
    for modality, unit, row, c in _slots(plan):
        slot = row[c]
        entry = groups.setdefault((slot.input, unit), (modality, slot.encoding, {}))
        entry[2].setdefault(c, []).append(slot.band_index)
    wins = sample_windows(height, width)
    notes: dict[str, list[str]] = {}
    problems: list[str] = []
    switched: dict[tuple[int, str], Encoding] = {}
    plain_dn: dict[tuple[str, str], tuple[list[str], dict[int, list[np.ndarray]]]] = {}
    for (n, unit), (modality, enc, bands) in groups.items():
        inp = plan.inputs[n]
        stored = _stored_values(sources[n], bands, wins)
        name = encoding_name(unit, enc)
        stated = product_offset(inp.header.metadata) if unit == "reflectance" else None
        verdict = _judge(stored, enc, unit)
        if verdict is not False:
            if inp.encoding is None and stated:
                notes.setdefault(f"{modality} decoded as '{name}' (product metadata: {stated[1]})",
                                 []).append(inp.label)
            elif not stated and _plain_dn(enc, unit):
                dn = plain_dn.setdefault((modality, name), ([], {}))
                dn[0].append(inp.label)
                for c, values in zip(bands, stored, strict=True):
                    dn[1].setdefault(c, []).append(values[::max(1, values.size // KEPT_VALUES)].copy())
            continue
        fitting = [k for k, e in PRESETS[unit].items() if k != BOA_OFFSET_PRESET and _judge(stored, e, unit)]
        median = float(np.median(np.concatenate(stored)))
        seen = (f"{inp.label}: its {modality} values (median {median:.4g} as stored) are not {unit} "
                f"as '{name}'")
        if inp.encoding is None and len(fitting) == 1:
            switched[(n, unit)] = PRESETS[unit][fitting[0]]
            why = f" although its metadata says {stated[1]}" if stated else ""
            notes.setdefault(f"{modality} values are not {unit} as '{name}'{why}: they fit only "
                             f"'{fitting[0]}', which is used (declare the layer's encoding to choose "
                             "another)",
                             []).append(inp.label)
        elif fitting:
            problems.append(f"{seen}; declare {' or '.join(repr(f) for f in fitting)}")
        else:
            problems.append(f"{seen}, nor any known encoding ({'; '.join(PRESETS[unit])}); convert the "
                            "layer to one of them")
    for (modality, name), (labels, by_band) in plain_dn.items():
        if _offset_left_in([np.concatenate(v) for v in by_band.values()], PRESETS["reflectance"][name]):
            notes[f"{modality} decoded as '{name}', but the darkest 1 % of every band is reflectance "
                  f"{DARK_FLOOR:g} or more, as in Sentinel-2 baseline 04.00+ DN that still carry the "
                  "+1000 offset (BOA_ADD_OFFSET) and no metadata saying so; if they do, declare "
                  f"'{BOA_OFFSET_PRESET}'"] = labels
    if problems:
        raise InputError("the layers' values prove their encoding wrong:\n- " + "\n- ".join(problems))
    for _modality, unit, row, c in _slots(plan):
        if (row[c].input, unit) in switched:
            row[c] = replace(row[c], encoding=switched[(row[c].input, unit)])
    return [f"{', '.join(labels)}: {what}" for what, labels in notes.items()]
