"""The engine's window reader: one window of every input, decoded to physical units per modality."""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .preprocessing import decode, valid_pixels
from .raster_inputs import InputPlan
from .raster_io import Grid, Source
from .tiling import Window


class WindowReader:
    """Reads one window of every input the plan uses and decodes it to physical units, per modality.

    Each used layer is opened once, for its pixels, on the reference grid (:class:`.raster_io.Source`);
    its header comes from the plan.
    """

    def __init__(self, plan: InputPlan, grid: Grid, resampling: str):
        self.plan = plan
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
                for s in row:
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

    def read(self, win: Window) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Physical values (pixels, time, bands), or (1, time, bands, height, width) for a spatial
        card, per modality, NaN where missing, and which pixels (flat) can be predicted (every
        band valid at one time step at least).

        Runs in the read-ahead thread, so the transposition into the network's layout costs the
        model thread nothing.
        """
        raw = {}
        for n, bands in self.requests.items():
            data, missing = self.sources[n].read(bands, win)
            raw[n] = (data, missing, {b: k for k, b in enumerate(bands)})
        out = {}
        valid = np.ones(win.size, dtype=bool)
        for spec in self.plan.card.inputs:
            rows = self.plan.slots[spec.modality]
            phys = np.empty((len(rows), len(spec.bands), win.size), dtype=np.float32)
            for t, row in enumerate(rows):
                for c, slot in enumerate(row):
                    data, missing, where = raw[slot.input]
                    k = where[slot.band_index]
                    phys[t, c] = decode(data[k], slot.encoding).ravel()
                    if missing[k].any():
                        phys[t, c][missing[k].ravel()] = np.nan
            valid &= valid_pixels(phys[None])[0]
            if self.plan.card.spatial:
                out[spec.modality] = phys.reshape(1, *phys.shape[:2], win.height, win.width)
            else:
                out[spec.modality] = np.ascontiguousarray(phys.transpose(2, 0, 1))
        return out, valid

    def close(self) -> None:
        """Close every layer opened for reading."""
        for s in self.sources.values():
            s.close()
