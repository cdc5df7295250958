"""Ray for the dev stack: a local head sized for the 2-core machine (a cluster given in RAY_ADDRESS
is joined instead, with `sharehub.cluster.connect_ray`).

The supervisor (or the test session) is the driver that starts the head; gateway processes join it
by its GCS address. Ray's own processes share the driver's fate, so stopping it stops them."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sharehub.config import RAY_NAMESPACE

__all__ = ["RAY_NAMESPACE", "RayInfo", "start_local_ray", "stop_ray"]


@dataclass(frozen=True)
class RayInfo:
    address: str
    dashboard_url: str | None
    # Where Ray's metrics agent serves Prometheus text (shard actor metrics among them).
    metrics_url: str | None = None


def _temp_dir_for(data_dir: Path) -> str:
    # Ray's Unix sockets live under its temp dir and must stay under ~107 bytes, so the per-stack
    # dir goes in /tmp, named after the data dir so two stacks never share one.
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:10]
    return os.path.join(tempfile.gettempdir(), f"shr-ray-{digest}")


def start_local_ray(data_dir: Path, *, dashboard: bool, num_cpus: int = 2) -> RayInfo:
    import ray

    from sharehub.devstack.processes import free_port

    metrics_port = free_port()
    ctx = ray.init(
        _metrics_export_port=metrics_port,
        num_cpus=num_cpus,
        namespace=RAY_NAMESPACE,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        _temp_dir=_temp_dir_for(data_dir),
        object_store_memory=256 * 1024 * 1024,
        # Loopback only: a laptop/test cluster must not listen on the machine's network address.
        _node_ip_address="127.0.0.1",
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    dashboard_url = getattr(ctx, "dashboard_url", None) or None
    if dashboard_url and not dashboard_url.startswith("http"):
        dashboard_url = f"http://{dashboard_url}"
    address_info: dict[str, str] = getattr(ctx, "address_info")  # noqa: B009 - untyped in Ray
    return RayInfo(address=address_info["gcs_address"], dashboard_url=dashboard_url,
                   metrics_url=f"http://127.0.0.1:{metrics_port}/metrics")


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
