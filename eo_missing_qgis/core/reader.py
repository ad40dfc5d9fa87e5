"""The engine's window reader: one window of every input, decoded to physical units per modality."""

from __future__ import annotations

import warnings

import numpy as np

from .errors import InputError
from .preprocessing import decode, mask_implausible
from .raster_inputs import InputPlan, Slot
from .raster_io import Grid, Source
from .tiling import Window
from .units import Encoding


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
        for s in self._parts():
            self.requests.setdefault(s.input, [])
            if s.band_index not in self.requests[s.input]:
                self.requests[s.input].append(s.band_index)
        for n, bands in self.requests.items():
            count = plan.inputs[n].header.count
            if max(bands) > count:
                self.close()
                raise InputError(f"{plan.inputs[n].label} has {count} raster bands, band {max(bands)} needed")

    def _parts(self) -> list[Slot]:
        """Every slot of the plan, the other dates of a month included."""
        return [part for rows in self.plan.slots.values() for row in rows for slot in row
                for part in slot.parts()]

    def _groups(self) -> dict[int, dict[Encoding, list[int]]]:
        """Per input, its bands by encoding, each group decoded in one call (a layer's 12 time steps
        at once, not 12 small arrays whose cost was mostly numpy's per call). Built per read: the
        encoding check may replace a slot's encoding after the reader was opened."""
        groups: dict[int, dict[Encoding, list[int]]] = {}
        for s in self._parts():
            group = groups.setdefault(s.input, {}).setdefault(s.encoding, [])
            if s.band_index not in group:
                group.append(s.band_index)
        return groups

    @property
    def warped(self) -> list[str]:
        """Labels of the layers resampled onto the reference grid."""
        return [self.plan.inputs[n].label for n, s in self.sources.items() if s.warped]

    def read(self, win: Window) -> dict[str, np.ndarray]:
        """Physical values (time, bands, height, width) per modality, NaN where missing: the input
        convention of :mod:`.block`. Runs in the read-ahead thread."""
        decoded: dict[tuple[int, Encoding, int], np.ndarray] = {}
        groups = self._groups()
        for n, bands in self.requests.items():
            data, missing = self.sources[n].read(bands, win)
            where = {b: k for k, b in enumerate(bands)}
            for encoding, group in groups[n].items():
                ks = [where[b] for b in group]
                every = ks == list(range(len(bands)))
                values = decode(data if every else data[ks], encoding)
                gone = missing if every else missing[ks]
                if gone.any():
                    values[gone] = np.nan
                decoded.update({(n, encoding, b): v for b, v in zip(group, values, strict=True)})
        out = {}
        for spec in self.plan.card.inputs:
            rows = self.plan.slots[spec.modality]
            # NaN where a step no layer gives (a card's min_steps allows it) stays missing
            phys = np.full((len(rows), len(spec.bands), win.height, win.width), np.nan, dtype=np.float32)
            for t, row in enumerate(rows):
                for c, slot in enumerate(row):
                    values = [decoded[part.input, part.encoding, part.band_index] for part in slot.parts()]
                    if len(values) == 1:
                        phys[t, c] = values[0]
                        continue
                    phys[t, c] = composite(np.stack(values), spec.bands[c].unit)
            out[spec.modality] = phys
        return out

    def close(self) -> None:
        """Close every layer opened for reading."""
        for s in self.sources.values():
            s.close()


def composite(dates: np.ndarray, unit: str) -> np.ndarray:
    """Per-pixel median of one band's ``dates`` (dates, height, width) of one month, leaving out
    the dates whose value is impossible for ``unit`` (a saturated or fill value must not pull the
    median, as it would not in training's monthly composites). Where every date is impossible the
    plain median is kept, so the unit check still sees what the layers hold; it is masked later."""
    with warnings.catch_warnings():  # all dates missing: NaN, said nowhere else
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.nanmedian(mask_implausible(dates[:, None, None], [unit])[:, 0, 0], axis=0)
        only_impossible = np.isnan(out) & ~np.isnan(dates).all(axis=0)
        if only_impossible.any():  # rare: the second median only where no date is possible
            out[only_impossible] = np.nanmedian(dates[:, only_impossible], axis=0)
        return out
