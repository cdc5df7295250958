"""Entity actors: listings, rentals and chat rooms as single-owner entities hosted by a few
long-lived Ray shard actors (virtual-actor style, like Orleans grains or Akka sharding).

- `sharding`: entity -> logical shard (stable hash) -> physical shard actor.
- `shard`: the host logic: activation, one command at a time per entity, fencing by lease epoch,
  effectively-once commands, state + outbox + command id in one transaction.
- `shard_actor`: the Ray actor around it; `router`: the caller's micro-batching client.
- `relay`: outbox -> NATS JetStream, deduplicated by event id.
- `entity`: what an entity kind provides (load / decide / save)."""
