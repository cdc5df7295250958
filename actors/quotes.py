"""What a rental costs: pure arithmetic in kopecks, so every number on a quote is exact.

    rent      = sum over the rented units of (that date's override or the listing's price) x quantity
    discount  = the best duration discount the length qualifies for, as a percent of rent
    fee       = the platform's service fee on (rent - discount), paid by the renter
    total     = rent - discount + fee          (what the renter pays for the rental)
    deposit   = the listing's deposit x quantity (held, returned after the rental)

Percentages round half up to the kopeck. Line items group consecutive units with one price, so a
week with one holiday override reads as three lines, not seven."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from actors.periods import RentalPeriod

# 10 % service fee on the discounted rent, in basis points (the fee model of the product document;
# payments will charge it).
PLATFORM_FEE_BASIS_POINTS = 1000


def percent_of(amount: int, basis_points: int) -> int:
    """`amount` x basis_points / 10 000, rounded half up (amounts are never negative)."""
    return (amount * basis_points + 5_000) // 10_000


@dataclass(frozen=True)
class PricingTerms:
    """The parts of a listing that price a rental."""

    price_per_unit: int
    deposit: int
    discounts: Sequence[dict[str, int]]  # {"min_units": n, "percent": p}
    price_overrides: Sequence[dict[str, Any]]  # {"date": "YYYY-MM-DD", "price_per_unit": k}


def _unit_prices(terms: PricingTerms, unit_starts: list[datetime]) -> list[int]:
    overrides = {date.fromisoformat(o["date"]): int(o["price_per_unit"]) for o in terms.price_overrides}
    return [overrides.get(start.date(), terms.price_per_unit) for start in unit_starts]


def best_discount_percent(discounts: Sequence[dict[str, int]], units: int) -> int:
    return max((d["percent"] for d in discounts if units >= d["min_units"]), default=0)


def quote(terms: PricingTerms, period: RentalPeriod, quantity: int) -> dict[str, Any]:
    starts = period.unit_starts()
    prices = _unit_prices(terms, starts)
    lines: list[dict[str, Any]] = []
    for start, price in zip(starts, prices, strict=True):
        if lines and lines[-1]["unit_price"] == price:
            lines[-1]["units"] += 1
        else:
            lines.append({"from": start.isoformat(), "units": 1, "unit_price": price, "quantity": quantity})
    for line in lines:
        line["amount"] = line["units"] * line["unit_price"] * quantity
    rent = sum(line["amount"] for line in lines)
    discount_percent = best_discount_percent(terms.discounts, len(starts))
    discount = percent_of(rent, discount_percent * 100)
    fee = percent_of(rent - discount, PLATFORM_FEE_BASIS_POINTS)
    deposit = terms.deposit * quantity
    total = rent - discount + fee
    return {
        "currency": "RUB",
        "unit": period.unit,
        "units": len(starts),
        "quantity": quantity,
        "lines": lines,
        "rent": rent,
        "discount": {"percent": discount_percent, "amount": discount},
        "platform_fee": fee,
        "deposit": deposit,
        "total": total,
        "total_with_deposit": total + deposit,
    }


def refund_percent(tiers: Sequence[dict[str, int]], hours_before_start: float) -> int:
    """The refund of a cancellation policy for cancelling `hours_before_start` before the start:
    the tier with the longest notice that the renter still gave (tiers sorted longest first)."""
    for tier in sorted(tiers, key=lambda t: -t["hours_before"]):
        if hours_before_start >= tier["hours_before"]:
            return int(tier["refund_percent"])
    return 0


def refund_amount(quote_: dict[str, Any], percent: int) -> int:
    """What the renter gets back of the total: `percent` of the rent after discount, and the
    platform fee only with a full refund (the fee pays for a booking that did happen)."""
    rent = quote_["rent"] - quote_["discount"]["amount"]
    fee = quote_["platform_fee"] if percent == 100 else 0
    return percent_of(rent, percent * 100) + fee
