"""The entity kinds the shard actors host, as importable "module:attribute" paths (the actors
import them in their own processes)."""

ENTITY_KINDS = ["actors.listing:LISTING", "actors.chat:CHAT"]
