"""`sharehub seed`: realistic, deterministic, idempotent demo data."""

from __future__ import annotations

from sharehub.platform import Platform
from sharehub.seed.generate import seed_database
from storage.db import create_pool
from storage.migrate import migrate


async def test_seed_loads_realistic_listings_once(platform: Platform) -> None:
    report = await seed_database(platform.db, users=30, listings=300, seed=4242)
    assert (report.users, report.listings, report.skipped) == (30, 300, False)
    again = await seed_database(platform.db, users=30, listings=300, seed=4242)
    assert again.skipped
    rows = await platform.db.fetch(
        """SELECT l.title, l.city, l.price_per_unit, l.rental_unit, l.status, l.category_id, u.roles
           FROM listings l JOIN users u ON u.id = l.owner_id
           WHERE u.email LIKE '%.s4242@seed.sharehub.local'""")
    assert len(rows) == 300
    assert sum(r["status"] == "published" for r in rows) > 200
    assert {r["city"] for r in rows} >= {"Москва", "Санкт-Петербург"}
    assert all(r["price_per_unit"] > 0 and r["price_per_unit"] % 100 == 0 for r in rows)  # whole roubles
    assert any(r["rental_unit"] == "hour" for r in rows)
    assert all("owner" in r["roles"] for r in rows if r["status"] == "published")
    assert any("Перфоратор" in r["title"] or "Палатка" in r["title"] for r in rows)


async def test_the_same_seed_gives_the_same_data(platform: Platform, fresh_db: str) -> None:
    await seed_database(platform.db, users=5, listings=20, seed=777)
    query = """SELECT l.id, l.title, l.price_per_unit FROM listings l JOIN users u ON u.id = l.owner_id
               WHERE u.email LIKE '%.s777@seed.sharehub.local' ORDER BY l.id"""
    first = [tuple(r) for r in await platform.db.fetch(query)]
    # Load the same seed into a fresh database: identical ids, titles and prices.
    await migrate(fresh_db, platform.settings.migrations_dir)
    other = await create_pool(fresh_db, max_size=2)
    try:
        await seed_database(other, users=5, listings=20, seed=777)
        assert [tuple(r) for r in await other.fetch(query)] == first
    finally:
        await other.close()
    assert len(first) == 20
