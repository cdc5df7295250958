"""The seeded market's demand model, in one place: the seed draws rental requests with it, and ML
evaluation uses it as the ground truth a learned model is checked against (it is only "truth" on
seeded data - a real market has none, which is why the models are judged on a simulated one).

The rate at which a published listing receives booking requests on a day is proportional to

    popularity(category) x city(city) x price_ratio ** -elasticity(category)
                         x season(category, month) x weekday(unit, weekday)

with the price ratio (price over the median of its category and rental unit) taken within
PRICE_RATIO_RANGE. Elasticities differ by category on purpose: commodity gear (tents, drills) has
many substitutes and is elastic (> 1: a lower price earns more), specialist gear (cameras,
lenses, drones) is not (< 1: a higher price earns more), so a price suggestion has to learn which
way to go per category rather than always cutting or raising."""

from __future__ import annotations

from sharehub.seed.catalog import DEMAND, SEASONS

DEFAULT_ELASTICITY = 1.5
ELASTICITY: dict[str, float] = {
    "power-tools": 1.8, "hand-tools": 1.6, "cleaning": 1.7, "construction": 1.4, "garden-tools": 1.6,
    "tents": 2.0, "sleeping-bags": 1.9, "backpacks": 1.8, "camping-gear": 1.7, "bikes": 1.6, "scooters": 1.7,
    "cameras": 0.6, "lenses": 0.6, "drones": 0.7, "projectors": 0.8, "laptops": 0.9, "audio": 0.9,
    "sound-light": 0.8, "trailers": 0.7, "event-furniture": 0.9, "lighting": 0.8,
}
# Where renting is common: the two capitals and the resort lead; the rest of the country follows.
CITY_DEMAND: dict[str, float] = {
    "Москва": 1.3, "Санкт-Петербург": 1.2, "Сочи": 1.6, "Калининград": 1.1, "Краснодар": 1.1, "Казань": 1.1,
    "Омск": 0.7, "Челябинск": 0.8, "Волгоград": 0.8, "Тюмень": 0.9,
}
PRICE_RATIO_RANGE = (0.25, 4.0)
WEEKDAY = {"day": (1.0, 1.0, 1.0, 1.0, 1.6, 1.4, 1.0), "hour": (1.0, 1.0, 1.0, 1.0, 1.0, 1.5, 1.5)}


def elasticity(category_id: str) -> float:
    return ELASTICITY.get(category_id, DEFAULT_ELASTICITY)


def listing_weight(category_id: str, city: str, price_ratio: float) -> float:
    """The listing's own factor: popularity x city x price."""
    low, high = PRICE_RATIO_RANGE
    popularity = DEMAND.get(category_id, (1.0, "flat"))[0]
    price_factor: float = min(max(price_ratio, low), high) ** -elasticity(category_id)
    return popularity * CITY_DEMAND.get(city, 1.0) * price_factor


def day_weight(category_id: str, unit: str, month: int, weekday: int) -> float:
    """The day's factor for a listing of this category: season x weekday."""
    season = DEMAND.get(category_id, (1.0, "flat"))[1]
    return SEASONS[season][month - 1] * WEEKDAY[unit][weekday]
