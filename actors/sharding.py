"""Which shard owns an entity.

entity -> logical shard: a stable hash over a fixed number of logical shards (never changes, so
no entity ever moves between logical shards). logical -> physical: `logical % physical_count`.
Changing the physical count (2 on a laptop, more on a cluster) only moves whole logical shards to
other actors, which take them over by bumping the lease epoch: no data migration."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# Akka's rule of thumb is ~10x the largest number of physical shards you expect.
LOGICAL_SHARDS = 256


def logical_shard(kind: str, entity_id: str) -> int:
    digest = hashlib.blake2b(f"{kind}:{entity_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % LOGICAL_SHARDS


@dataclass(frozen=True)
class ShardMap:
    physical_count: int
    # The fleet: one set of shard actors and the entity kinds they host. A deployment has one
    # ("entities"); tests start fleets of their own for test-only kinds.
    fleet: str = "entities"

    def __post_init__(self) -> None:
        if not 1 <= self.physical_count <= LOGICAL_SHARDS:
            raise ValueError(f"physical shard count must be 1..{LOGICAL_SHARDS}")

    def physical_for(self, logical: int) -> int:
        return logical % self.physical_count

    def logical_of(self, physical: int) -> list[int]:
        return [shard for shard in range(LOGICAL_SHARDS) if shard % self.physical_count == physical]

    def actor_name(self, physical: int) -> str:
        return f"{self.fleet}-shard-{physical}-of-{self.physical_count}"
