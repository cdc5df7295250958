"""Entity -> logical shard -> physical shard."""

from __future__ import annotations

from collections import Counter

import pytest

from actors.sharding import LOGICAL_SHARDS, ShardMap, logical_shard


def test_the_hash_is_stable_and_spreads_entities() -> None:
    assert logical_shard("listing", "42") == logical_shard("listing", "42")
    # The kind is part of the key: listing 7 and rental 7 are different entities.
    assert sum(logical_shard("listing", str(i)) != logical_shard("rental", str(i)) for i in range(100)) > 90
    spread = Counter(logical_shard("listing", str(i)) for i in range(25_600))
    assert len(spread) == LOGICAL_SHARDS
    assert max(spread.values()) < 3 * 100  # ~100 each; no hot shard


def test_physical_shards_partition_the_logical_ones() -> None:
    for count in (1, 2, 3, 8):
        shard_map = ShardMap(count)
        assert shard_map.actor_name(0) == f"entities-shard-0-of-{count}"
        owned = [shard_map.logical_of(p) for p in range(count)]
        assert sorted(s for group in owned for s in group) == list(range(LOGICAL_SHARDS))
        assert all(shard_map.physical_for(s) == p for p, group in enumerate(owned) for s in group)
    with pytest.raises(ValueError):
        ShardMap(0)
