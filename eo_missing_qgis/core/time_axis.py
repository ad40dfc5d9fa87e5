"""Which month each time step of a card is, and which steps the layers give.

A card's steps are consecutive months (:class:`.card.TimeSpec`). Their calendar months come from
the layers' dates when the user gives them (``RasterInput.dates``, placed by
:func:`anchor`), else from a calendar card's ``first_month``; a relative card without dates knows
only the order of its steps. The plan (:mod:`.raster_inputs`) builds one :class:`TimeAxis` per
run; the engine logs :meth:`TimeAxis.summary`, writes :meth:`TimeAxis.tags` into the output and
feeds :attr:`TimeAxis.months` to models that take the month as an input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from .card import ModelCard
from .definitions import TimeAlignment
from .errors import InputError

_DATE = re.compile(r"^\s*(\d{4})-?(\d{2})(?:-?\d{2})?(?:[T ].*)?$")
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: GeoTIFF metadata keys listing the months a run used and the months it lacked.
USED_TAG, MISSING_TAG = "EO_MONTHS_USED", "EO_MONTHS_MISSING"


def parse_month(text: str, label: str) -> int:
    """A date ``YYYY-MM``, ``YYYY-MM-DD`` or ISO date-time as a month count (year * 12 + month - 1);
    ``label`` names the layer in the error."""
    m = _DATE.match(str(text))
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise InputError(f"{label}: date {text!r} is not a date; write it as YYYY-MM or YYYY-MM-DD")
    return int(m.group(1)) * 12 + int(m.group(2)) - 1


def month_label(count: int) -> str:
    """``YYYY-MM`` of a month count."""
    return f"{count // 12:04d}-{count % 12 + 1:02d}"


def anchor(card: ModelCard, months: list[int]) -> int:
    """The month count of step 0 given the layers' dates (month counts): a calendar card with a
    fixed first month starts at the latest such month not after the oldest date; a relative card
    ends at the newest date (its last step is the month before the target); a calendar card
    without a fixed first month starts at the oldest date."""
    t = card.time
    if t.alignment == TimeAlignment.CALENDAR and t.first_month:
        oldest = min(months)
        return oldest - (oldest - (t.first_month - 1)) % 12
    if t.alignment == TimeAlignment.RELATIVE:
        return max(months) - (t.steps - 1)
    return min(months)


@dataclass(frozen=True)
class TimeAxis:
    """Per card step: its calendar month (1-12, None when unknown), its label for people
    (``2021-06``, ``Jun`` or ``step 3``) and whether the layers give it."""

    months: tuple[int | None, ...]
    labels: tuple[str, ...]
    given: tuple[bool, ...]

    @classmethod
    def build(cls, card: ModelCard, start: int | None, given: list[bool]) -> TimeAxis:
        """The axis of ``card`` with step 0 at month count ``start`` (None: no dates given)."""
        steps, first = card.time.steps, card.time.first_month
        if start is not None:
            counts = [start + t for t in range(steps)]
            months: list[int | None] = [c % 12 + 1 for c in counts]
            labels = [month_label(c) for c in counts]
        elif card.time.alignment == TimeAlignment.CALENDAR and first:
            months = [(first - 1 + t) % 12 + 1 for t in range(steps)]
            labels = [MONTH_NAMES[m - 1] for m in months]
        else:
            months, labels = [None] * steps, [f"step {t + 1}" for t in range(steps)]
        return cls(tuple(months), tuple(labels), tuple(given))

    @property
    def used(self) -> list[str]:
        """Labels of the steps the layers give."""
        return [lab for lab, g in zip(self.labels, self.given, strict=True) if g]

    @property
    def missing(self) -> list[str]:
        """Labels of the steps no layer gives."""
        return [lab for lab, g in zip(self.labels, self.given, strict=True) if not g]

    def with_values(self, seen: np.ndarray) -> TimeAxis:
        """The axis with only the steps where the run found values (``seen`` per step) as given:
        a month the layers hold but whose pixels are all nodata (clouds) was not used."""
        return replace(self, given=tuple(bool(g and s) for g, s in zip(self.given, seen, strict=True)))

    def summary(self) -> str:
        """One log line, e.g. ``1 of 12 months: 2021-06; missing: 2020-11, ...``."""
        text = f"{len(self.used)} of {len(self.labels)} months: {', '.join(self.used) or 'none'}"
        return text + (f"; missing: {', '.join(self.missing)}" if self.missing else "")

    def tags(self) -> dict[str, str]:
        """GeoTIFF metadata: the months used and missing, comma separated (``none``: GDAL drops
        empty values)."""
        return {USED_TAG: ",".join(self.used) or "none", MISSING_TAG: ",".join(self.missing) or "none"}

    def known_months(self, model: str) -> list[int]:
        """Every step's calendar month, for a model that takes them; refused when not known."""
        if any(m is None for m in self.months):
            raise InputError(f"model {model} takes the calendar month of each time step, but the layers "
                             "carry no dates: give each layer's date(s) (YYYY-MM), e.g. --dates in the CLI")
        return [int(m) for m in self.months if m is not None]
