"""The HTTP (and, later, websocket) edge of ShareHub: aiohttp on uvloop, orjson bodies.

One module per resource under `gateway/routes/`, each declaring its routes with who may call them
(`gateway.routing`). Handlers authenticate, validate, call one action and return; cross-cutting
rules (errors as problem+json, auth, rate limits, idempotency, security headers, metrics) are
middlewares in `gateway.middleware`."""
