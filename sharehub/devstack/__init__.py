"""The embedded dev/test stack: Postgres, NATS JetStream, Redis and a local Ray, started from PyPI
wheels (or a `postgres` on PATH) with data under one directory.

`make run` keeps that directory at `.sharehub/` so data survives restarts; the test suite gives it a
temporary directory and free ports so two runs never collide. An env var (`DATABASE_URL`,
`NATS_URL`, `REDIS_URL`, `RAY_ADDRESS`) replaces the embedded service with a real one."""

from sharehub.devstack.stack import DevStack, ServiceUrls

__all__ = ["DevStack", "ServiceUrls"]
