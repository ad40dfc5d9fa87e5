"""Where a model is valid: the input's extent against the training footprint on its card.

A model applied far from its training samples still paints a confident map; the analyst must hear
that before trusting it. The check is coarse on purpose (an outline of the input in lon/lat against
each region's simplified convex hull): it tells "outside every region the model saw", never refuses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .card import ModelCard, Region

#: Mean Earth radius (km), for distances on the sphere.
EARTH_KM = 6371.0
#: An input this close (km) to a region counts as inside it: a hull of the samples is tight, and
#: fields a few km past its edge (e.g. the Belgian demo cube, 16 km south of the Flanders samples)
#: are the same landscape.
NEAR_KM = 50.0
#: GeoTIFF tag set on a prediction made outside the model's footprint.
OUTSIDE_TAG = "EO_OUTSIDE_FOOTPRINT"


@dataclass(frozen=True)
class FootprintCheck:
    """An input outside every training region of model ``model`` (trained on ``regions``): the
    ``nearest`` one and how far away (km)."""

    model: str
    regions: tuple[Region, ...]
    nearest: Region
    km: float

    @property
    def message(self) -> str:
        """The plain sentence for the log and the panel."""
        names = ", ".join(r.name for r in self.regions)
        return (f"model {self.model} was trained on {names}; this area is outside it (nearest training "
                f"region: {self.nearest.name}, about {self.km:,.0f} km away): treat the map with caution")

    @property
    def tags(self) -> dict[str, str]:
        """GeoTIFF metadata recording it on the output."""
        return {OUTSIDE_TAG: f"nearest training region '{self.nearest.name}', about {self.km:.0f} km away"}


def check_footprint(card: ModelCard, outline: np.ndarray) -> FootprintCheck | None:
    """None when the card has no footprint or the input (``outline``: (n, 2) lon/lat points of its
    edges and centre, see :func:`.raster_io.outline_lonlat`) touches one of its regions or comes
    within :data:`NEAR_KM` of one."""
    return outside_footprint(card.name, card.footprint, outline)


def outside_footprint(model: str, regions: tuple[Region, ...], outline: np.ndarray) -> FootprintCheck | None:
    """:func:`check_footprint` for a model known by its name and regions (e.g. from ``index.json``)."""
    if not regions:
        return None
    nearest, km = nearest_region(regions, outline)
    return None if km <= NEAR_KM else FootprintCheck(model, regions, nearest, km)


def nearest_region(regions: tuple[Region, ...], outline: np.ndarray) -> tuple[Region, float]:
    """The region of ``regions`` (not empty) nearest the input and its distance in km: 0 for the
    first one the input touches (a hull vertex in its bounding box, or an outline point in the hull)."""
    lon_lo, lat_lo = outline.min(axis=0)
    lon_hi, lat_hi = outline.max(axis=0)
    away: list[tuple[float, int]] = []
    for n, region in enumerate(regions):
        poly = np.asarray(region.polygon, np.float64)
        vertex_in = ((poly[:, 0] >= lon_lo) & (poly[:, 0] <= lon_hi)
                     & (poly[:, 1] >= lat_lo) & (poly[:, 1] <= lat_hi)).any()
        if vertex_in or any(_inside(p, poly) for p in outline):
            return region, 0.0
        away.append((min(_distance_km(p, poly) for p in outline), n))
    km, nearest = min(away)
    return regions[nearest], km


def layers_outline(sources: list[str], headers: dict | None = None) -> np.ndarray | None:
    """The lon/lat outline of several layers together (GDAL ``sources``; ``headers``, source ->
    :class:`.raster_io.RasterHeader`, holds those already read): each one's edge points and centre,
    stacked, placed as coarsely as one grid. None when no layer's grid can be placed."""
    from .raster_io import outline_lonlat, read_header

    points = []
    for source in dict.fromkeys(sources):
        try:
            header = (headers or {}).get(source) or read_header(source)
            points.append(outline_lonlat(header.grid))
        except (ValueError, ImportError, OSError):  # unreadable, no CRS: the run says why; no place here
            continue
    return np.vstack(points) if points else None


def _inside(point: np.ndarray, poly: np.ndarray) -> bool:
    """Whether ``point`` lies in the polygon (even-odd rule; fewer than 3 vertices hold none)."""
    if len(poly) < 3:
        return False
    x, y = point
    xs, ys = poly[:, 0], poly[:, 1]
    xn, yn = np.roll(xs, -1), np.roll(ys, -1)
    crosses = (ys > y) != (yn > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = xs + (y - ys) * (xn - xs) / (yn - ys)
    return bool(np.count_nonzero(crosses & (x < at)) % 2)


def _distance_km(point: np.ndarray, poly: np.ndarray) -> float:
    """Great-circle distance (km) from ``point`` to the polygon's outline: per edge, its point nearest
    in a local equirectangular projection around ``point``, measured on the sphere (exact at the
    vertices, close enough elsewhere to say "far")."""
    lon0, lat0 = point
    k = math.cos(math.radians(lat0))
    xy = np.column_stack([((poly[:, 0] - lon0 + 180) % 360 - 180) * k, poly[:, 1] - lat0])
    a, b = xy, np.roll(xy, -1, axis=0)
    ab = b - a
    length2 = (ab ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip(np.where(length2 > 0, -(a * ab).sum(axis=1) / length2, 0.0), 0.0, 1.0)
    nearest = a + t[:, None] * ab
    lat1, lat2 = math.radians(lat0), np.radians(lat0 + nearest[:, 1])
    dlon = np.radians(nearest[:, 0] / k) if k > 1e-9 else np.zeros(len(nearest))
    h = np.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * np.cos(lat2) * np.sin(dlon / 2) ** 2
    return float(2 * EARTH_KM * np.arcsin(np.minimum(1.0, np.sqrt(h))).min())
