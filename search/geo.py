"""Distance filters without a geo index: a bounding box on the lat/lon fast fields narrows the
candidates cheaply (two range queries), exact great-circle distance finishes the job and sorts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_KM = 6371.0088
_KM_PER_DEGREE_LAT = math.pi * EARTH_RADIUS_KM / 180


@dataclass(frozen=True)
class Box:
    min_lat: float
    max_lat: float
    min_lon: float
    max_lon: float
    # Past ±180° the box is two ranges of longitude; callers then filter on latitude only.
    wraps: bool = False


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance (good to ~0.5 %, far better than a renter's idea of "near")."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi, d_lambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def bounding_box(lat: float, lon: float, radius_km: float) -> Box:
    """The smallest lat/lon box that holds every point within `radius_km` of (lat, lon)."""
    d_lat = radius_km / _KM_PER_DEGREE_LAT
    min_lat, max_lat = max(-90.0, lat - d_lat), min(90.0, lat + d_lat)
    if min_lat <= -90.0 or max_lat >= 90.0:  # a pole inside the circle: every longitude
        return Box(min_lat, max_lat, -180.0, 180.0)
    # The widest longitude span is at the latitude farthest from the equator.
    widest = max(abs(min_lat), abs(max_lat))
    d_lon = math.degrees(math.asin(min(1.0, math.sin(math.radians(d_lat)) / math.cos(math.radians(widest)))))
    d_lon = max(d_lon, radius_km / (_KM_PER_DEGREE_LAT * math.cos(math.radians(widest))))
    min_lon, max_lon = lon - d_lon, lon + d_lon
    if min_lon < -180.0 or max_lon > 180.0:
        return Box(min_lat, max_lat, -180.0, 180.0, wraps=True)
    return Box(min_lat, max_lat, min_lon, max_lon)


def distances_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """`distance_km` from one point to many at once (the candidates in a bounding box)."""
    phi1, phi2 = math.radians(lat), np.radians(lats)
    d_phi, d_lambda = phi2 - phi1, np.radians(lons - lon)
    a = np.sin(d_phi / 2) ** 2 + math.cos(phi1) * np.cos(phi2) * np.sin(d_lambda / 2) ** 2
    result: np.ndarray = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(a)))
    return result
