"""The bounding box never loses a point inside the radius; distances are right."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from search.geo import bounding_box, distance_km

MOSCOW, SPB = (55.7558, 37.6173), (59.9343, 30.3351)


def test_known_distances() -> None:
    assert math.isclose(distance_km(*MOSCOW, *SPB), 634.0, rel_tol=0.01)
    assert distance_km(*MOSCOW, *MOSCOW) == 0.0


@given(lat=st.floats(-80, 80), lon=st.floats(-179, 179), radius=st.floats(0.1, 500),
       bearing=st.floats(0, 2 * math.pi), fraction=st.floats(0, 0.999))
def test_every_point_within_the_radius_is_in_the_box(lat: float, lon: float, radius: float, bearing: float,
                                                     fraction: float) -> None:
    # A point `fraction * radius` away in direction `bearing` (spherical destination formula).
    delta = fraction * radius / 6371.0088
    phi1, lambda1 = math.radians(lat), math.radians(lon)
    phi2 = math.asin(math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(bearing))
    lambda2 = lambda1 + math.atan2(math.sin(bearing) * math.sin(delta) * math.cos(phi1),
                                   math.cos(delta) - math.sin(phi1) * math.sin(phi2))
    p_lat, p_lon = math.degrees(phi2), (math.degrees(lambda2) + 540) % 360 - 180
    box = bounding_box(lat, lon, radius)
    assert box.min_lat - 1e-9 <= p_lat <= box.max_lat + 1e-9
    if not box.wraps:
        assert box.min_lon - 1e-9 <= p_lon <= box.max_lon + 1e-9


def test_the_box_is_tight_enough_to_be_worth_it() -> None:
    box = bounding_box(*MOSCOW, 10)
    assert box.max_lat - box.min_lat < 0.2 and box.max_lon - box.min_lon < 0.35
