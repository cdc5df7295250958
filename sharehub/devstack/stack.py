"""The whole embedded stack as one object: start what has no URL, reuse what has one, stop in
reverse order."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sharehub.devstack.mail import EmbeddedMailSink
from sharehub.devstack.nats import EmbeddedNats
from sharehub.devstack.postgres import EmbeddedPostgres
from sharehub.devstack.ray_local import RayInfo, start_local_ray, stop_ray
from sharehub.devstack.redis import EmbeddedRedis

log = logging.getLogger(__name__)


class _Server(Protocol):
    def start(self) -> str: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    nats_url: str
    redis_url: str
    ray_address: str | None
    ray_dashboard_url: str | None = None
    ray_metrics_url: str | None = None
    smtp_url: str | None = None

    def as_env(self) -> dict[str, str]:
        env = {
            "DATABASE_URL": self.database_url,
            "NATS_URL": self.nats_url,
            "REDIS_URL": self.redis_url,
        }
        if self.ray_address:
            env["RAY_ADDRESS"] = self.ray_address
        if self.smtp_url:
            env["SMTP_URL"] = self.smtp_url
        return env


class DevStack:
    """Embedded services under `root`. `durable=False` trades crash safety for speed (tests)."""

    def __init__(
        self,
        root: Path,
        *,
        durable: bool = True,
        database_url: str | None = None,
        nats_url: str | None = None,
        redis_url: str | None = None,
        ray_address: str | None = None,
        smtp_url: str | None = None,
        with_ray: bool = True,
        ray_dashboard: bool = True,
    ) -> None:
        self.root = root
        self.durable = durable
        self._given = {"database": database_url, "nats": nats_url, "redis": redis_url, "smtp": smtp_url}
        self._ray_address = ray_address
        self._with_ray = with_ray
        self._ray_dashboard = ray_dashboard
        self._started: list[_Server] = []
        self._ray_started = False

    def _start(self, name: str, server: _Server) -> str:
        given = self._given[name]
        if given:
            return given
        log.info("starting embedded %s", name)
        url = server.start()
        self._started.append(server)
        return url

    def start(self) -> ServiceUrls:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            database_url = self._start("database", EmbeddedPostgres(self.root / "postgres", durable=self.durable))
            nats_url = self._start("nats", EmbeddedNats(self.root / "nats", durable=self.durable))
            redis_url = self._start("redis", EmbeddedRedis(self.root / "redis", durable=self.durable))
            smtp_url = self._start("smtp", EmbeddedMailSink(self.root / "mail"))
            ray = self._start_ray()
        except BaseException:
            self.stop()
            raise
        return ServiceUrls(
            database_url=database_url,
            nats_url=nats_url,
            redis_url=redis_url,
            ray_address=ray.address if ray else None,
            ray_dashboard_url=ray.dashboard_url if ray else None,
            ray_metrics_url=ray.metrics_url if ray else None,
            smtp_url=smtp_url,
        )

    def _start_ray(self) -> RayInfo | None:
        if not self._with_ray:
            return None
        if self._ray_address:
            return RayInfo(address=self._ray_address, dashboard_url=None)
        info = start_local_ray(self.root, dashboard=self._ray_dashboard)
        self._ray_started = True
        return info

    def stop(self) -> None:
        if self._ray_started:
            stop_ray()
            self._ray_started = False
        while self._started:
            server = self._started.pop()
            try:
                server.stop()
            except Exception:
                log.exception("stopping %s failed", type(server).__name__)
