"""Entity actors: listings, rentals and chat rooms as single-owner entities hosted by a few
long-lived Ray shard actors (virtual-actor style), with Postgres as the source of truth and a
transactional outbox to NATS JetStream. Built in the entity-actors issue (#3)."""
