"""Human-readable views of a model card (HTML for QGIS, plain text for logs and the CLI)."""

from __future__ import annotations

import calendar
from html import escape

from ..definitions import ContextKind, Task, TimeAlignment
from .model import ModelCard


def _months(card: ModelCard) -> str:
    t = card.time
    if t.alignment == TimeAlignment.CALENDAR:
        text = (f"{t.steps} consecutive calendar months starting in month {t.first_month}" if t.first_month
                else f"{t.steps} consecutive calendar months, months from the layers' dates")
    else:
        text = f"{t.steps} consecutive months before the target date, oldest first (any start month)"
    return text + (f"; runs on {t.min_steps} of them at least" if t.required < t.steps else "")


def _context_inputs(card: ModelCard) -> list[str]:
    what = {ContextKind.MASK: "availability of each step of {m}", ContextKind.MONTH: "month of each step",
            ContextKind.LATLON: "pixel latitude/longitude"}
    return [f"{what[c.kind].format(m=c.modality)}, tensor '{c.tensor}' {c.shape(card.time.steps)}, "
            f"encoded {c.encoding}" for c in card.context]


def _context(card: ModelCard) -> str:
    if card.spatial:
        return f"spatial model: sees {card.halo} px of context around each pixel"
    return "per-pixel model: each pixel is predicted from its own time series"


def _footprint(card: ModelCard) -> list[str]:
    """Where and when the training samples were: what tells a user whether the model fits their area."""
    lines = [f"trained in {r.name} ({r.samples} samples, {_span(r.polygon)})" for r in card.footprint]
    if card.season:
        lines.append("trained on targets of " + ", ".join(calendar.month_name[m] for m in card.season))
    return lines


def _span(polygon: tuple[tuple[float, float], ...]) -> str:
    lons, lats = [v[0] for v in polygon], [v[1] for v in polygon]
    return f"lon {min(lons):.2f} to {max(lons):.2f}, lat {min(lats):.2f} to {max(lats):.2f}"


def _outputs(card: ModelCard) -> list[str]:
    o = card.output
    if card.task == Task.CLASSIFICATION:
        return [f"class {c.id}: {c.name} ({c.color})" for c in o.classes]
    lo, hi = o.range or (float("nan"), float("nan"))
    return [f"{o.name} in {o.unit}, expected range {lo:g} to {hi:g}"]


def card_to_text(card: ModelCard) -> str:
    """The card as plain text, for logs and the CLI."""
    lines = [f"{card.title} [{card.name}]", card.description, f"Task: {card.task}",
             f"Time steps: {_months(card)}", f"Context: {_context(card)}"]
    for spec in card.inputs:
        bands = ", ".join(f"{b.name} ({b.unit})" for b in spec.bands)
        lines.append(f"Input {spec.modality} ({spec.sensor}), tensor '{spec.tensor}': {bands}")
    lines += [f"Context input: {line}" for line in _context_inputs(card)]
    lines += [f"Output: {line}" for line in _outputs(card)]
    lines += [f"Footprint: {line}" for line in _footprint(card)]
    p = card.provenance
    lines.append(f"Trained on {p.dataset} with method {p.method}, version {p.version}"
                 + (f", seed {p.seed}" if p.seed is not None else ""))
    lines += [f"Test {k}: {v:.4g}" for k, v in p.metrics.items()]
    return "\n".join(line for line in lines if line)


def card_to_html(card: ModelCard) -> str:
    """The card as an HTML page, for QGIS and the Describe model algorithm."""
    e = escape
    rows = "".join(
        f"<tr><td>{e(s.modality)}</td><td>{e(s.sensor)}</td><td>{e(s.tensor)}</td>"
        f"<td>{e(', '.join(b.name for b in s.bands))}</td>"
        f"<td>{e(', '.join(sorted({b.unit for b in s.bands})))}</td></tr>"
        for s in card.inputs
    )
    if card.task == Task.CLASSIFICATION:
        outputs = "".join(
            f"<tr><td>{c.id}</td><td><span style='background:{e(c.color)}'>&nbsp;&nbsp;&nbsp;</span>"
            f" {e(c.name)}</td></tr>"
            for c in card.output.classes
        )
        outputs = f"<table border='1' cellpadding='3'><tr><th>Value</th><th>Class</th></tr>{outputs}</table>"
    else:
        outputs = f"<p>{e(_outputs(card)[0])}</p>"
    metrics = "".join(f"<li>{e(k)}: {v:.4g}</li>" for k, v in card.provenance.metrics.items())
    p = card.provenance
    return (
        f"<html><head><meta charset='utf-8'><title>{e(card.title)}</title></head><body>"
        f"<h2>{e(card.title)}</h2><p><code>{e(card.name)}</code> &middot; {e(card.task)} &middot; "
        f"card schema {e(card.schema_version)}</p><p>{e(card.description)}</p>"
        f"<h3>Inputs</h3><p>{e(_months(card))}; {e(_context(card))}.</p>"
        "<table border='1' cellpadding='3'><tr><th>Modality</th><th>Sensor</th><th>Tensor</th>"
        f"<th>Bands (in order)</th><th>Units</th></tr>{rows}</table>"
        + "".join(f"<p>Context input: {e(line)}</p>" for line in _context_inputs(card)) +
        f"<h3>Output</h3>{outputs}"
        + "".join(f"<p>Footprint: {e(line)}</p>" for line in _footprint(card)) +
        f"<h3>Provenance</h3><p>Dataset {e(p.dataset)}, method {e(p.method)}, version "
        f"{e(p.version)}{', seed ' + str(p.seed) if p.seed is not None else ''}"
        f"{', commit ' + e(p.commit) if p.commit else ''}</p><ul>{metrics}</ul>"
        "</body></html>"
    )
