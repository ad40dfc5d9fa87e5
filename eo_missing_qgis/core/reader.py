"""The engine's window reader: one window of every input, decoded to physical units per modality."""

from __future__ import annotations

import warnings

import numpy as np

from .errors import InputError
from .preprocessing import decode
from .raster_inputs import InputPlan, Slot
from .raster_io import Grid, Source
from .tiling import Window


def _decoded(read: tuple[np.ndarray, np.ndarray, dict[int, int]], slot: Slot) -> np.ndarray:
    """Physical values of one slot out of its layer's window ``read``, NaN where missing."""
    data, missing, where = read
    k = where[slot.band_index]
    values = decode(data[k], slot.encoding)
    if missing[k].any():
        values[missing[k]] = np.nan
    return values


class WindowReader:
    """Reads one window of every input the plan uses and decodes it to physical units, per modality.

    Each used layer is opened once, for its pixels, on the reference grid (:class:`.raster_io.Source`);
    its header comes from the plan.
    """

    def __init__(self, plan: InputPlan, grid: Grid, resampling: str):
        self.plan = plan
        self.grid = grid
        self.sources: dict[int, Source] = {}
        try:
            for n in plan.used:
                self.sources[n] = Source(plan.inputs[n].header, grid, resampling)
        except BaseException:
            self.close()
            raise
        self.requests: dict[int, list[int]] = {}
        for rows in plan.slots.values():
            for row in rows:
                for s in (part for slot in row for part in slot.parts()):
                    self.requests.setdefault(s.input, [])
                    if s.band_index not in self.requests[s.input]:
                        self.requests[s.input].append(s.band_index)
        for n, bands in self.requests.items():
            count = plan.inputs[n].header.count
            if max(bands) > count:
                self.close()
                raise InputError(f"{plan.inputs[n].label} has {count} raster bands, band {max(bands)} needed")

    @property
    def warped(self) -> list[str]:
        """Labels of the layers resampled onto the reference grid."""
        return [self.plan.inputs[n].label for n, s in self.sources.items() if s.warped]

    def read(self, win: Window) -> dict[str, np.ndarray]:
        """Physical values (time, bands, height, width) per modality, NaN where missing: the input
        convention of :mod:`.block`. Runs in the read-ahead thread."""
        raw = {}
        for n, bands in self.requests.items():
            data, missing = self.sources[n].read(bands, win)
            raw[n] = (data, missing, {b: k for k, b in enumerate(bands)})
        out = {}
        for spec in self.plan.card.inputs:
            rows = self.plan.slots[spec.modality]
            # NaN where a step no layer gives (a card's min_steps allows it) stays missing
            phys = np.full((len(rows), len(spec.bands), win.height, win.width), np.nan, dtype=np.float32)
            for t, row in enumerate(rows):
                for c, slot in enumerate(row):
                    values = [_decoded(raw[part.input], part) for part in slot.parts()]
                    if len(values) == 1:
                        phys[t, c] = values[0]
                        continue
                    with warnings.catch_warnings():  # all dates missing: NaN, said nowhere else
                        warnings.simplefilter("ignore", RuntimeWarning)
                        phys[t, c] = np.nanmedian(np.stack(values), axis=0)
            out[spec.modality] = phys
        return out

    def close(self) -> None:
        """Close every layer opened for reading."""
        for s in self.sources.values():
            s.close()
