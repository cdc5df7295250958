"""Postgres access: the connection pool, the migration runner, and one store module per aggregate
(users, auth sessions, idempotency keys, ...). Stores hold SQL only; rules live in callers."""
