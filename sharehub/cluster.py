"""Joining the Ray cluster, as every process that calls ShareHub's actors does (gateways, the CLI
commands that reach shards or search replicas).

Production code joins a cluster someone else started (KubeRay, `ray up`, compose's head); only the
dev stack starts one (`sharehub/devstack/ray_local.py`). So joining lives here, beside the
configuration, and production code never imports the dev stack
(tests/unit/test_import_boundaries.py)."""

from __future__ import annotations

import logging

from sharehub.config import RAY_NAMESPACE


def connect_ray(address: str) -> None:
    """Join an existing cluster as a driver in ShareHub's namespace (once per process)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address=address,
            namespace=RAY_NAMESPACE,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
