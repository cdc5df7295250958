"""Prometheus metrics of the websocket gateway (per process, served at /metrics with the rest)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WS_CONNECTIONS = Gauge("ws_connections", "Open websocket connections")
WS_CHANNELS = Gauge("ws_channels", "Channels with at least one local watcher (each a NATS subscription)")
WS_DELIVERIES = Counter("ws_deliveries_total", "Event messages queued to websocket clients")
WS_SLOW_CONSUMER_CLOSES = Counter(
    "ws_slow_consumer_closes_total", "Sockets closed (4008) because their send queue overflowed")
WS_CLOSES = Counter("ws_server_closes_total", "Sockets the server closed, by reason", ["reason"])
WS_FANOUT_LATENCY = Histogram(
    "ws_fanout_latency_seconds",
    "From an event's occurred_at (its commit) to its bytes being queued to every local watcher",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WS_GAP_FILLS = Counter(
    "ws_gap_fill_events_total", "Events read from the outbox because NATS had not delivered them (in order)")
WS_DUPLICATES = Counter("ws_duplicate_events_total", "Events from NATS dropped as already delivered")
WS_RESYNCS = Counter("ws_resyncs_total", "resync messages sent (history not replayable)")
