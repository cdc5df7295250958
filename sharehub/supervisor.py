"""`sharehub run`: the whole platform on one machine.

Starts the embedded services (or uses the URLs given), applies migrations, then runs N gateway
processes and restarts any that die. Ctrl-C (or SIGTERM) stops everything it started; every child
also dies with it if it is killed outright.

Demo data - an admin and a moderator with printed passwords, 200 users sharing one published
password, listings and rental histories - goes only into the embedded database, which exists for
trying ShareHub out. A database given in DATABASE_URL may be someone's real one: it is seeded only
when asked with `sharehub run --demo`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from types import FrameType

from sharehub.config import Settings
from sharehub.demo import ensure_demo_accounts
from sharehub.devstack import DevStack, ServiceUrls
from sharehub.devstack.processes import spawn, stop, wait_until
from sharehub.devstack.reaper import start_reaper
from sharehub.platform import open_platform
from sharehub.runstate import clear_run_state, write_run_state
from sharehub.security.keys import ensure_key
from sharehub.seed.generate import SEED_PASSWORD, seed_database
from storage.migrate import migrate

log = logging.getLogger("sharehub.run")
_RESTART_BACKOFF_SECS = 2.0
_DEMO_USERS = 200
_DEMO_LISTINGS = 2000
_DEMO_RENTALS = 5000


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def seeds_demo(given: Settings, *, demo: bool) -> bool:
    """Whether `sharehub run` seeds demo accounts and data: `given` are the settings as read from
    the environment, before the embedded services fill in their URLs."""
    return demo or given.database_url is None


async def prepare_database(settings: Settings, *, demo: bool) -> list[dict[str, str]]:
    """Migrate; with `demo`, create the demo accounts (returned, for the banner) and the demo
    market, once per database."""
    assert settings.database_url
    applied = await migrate(settings.database_url, settings.migrations_dir)
    for migration in applied:
        print(f"  migrated {migration.version:04d}_{migration.name}")
    if not demo:
        return []
    async with open_platform(settings) as platform:
        accounts = await ensure_demo_accounts(platform, settings.data_dir)
        report = await seed_database(platform.db, users=_DEMO_USERS, listings=_DEMO_LISTINGS, rentals=_DEMO_RENTALS,
                                     seed=1)
        if not report.skipped:
            print(f"  demo data: {report.users} users (password: {SEED_PASSWORD}), {report.listings} listings, "
                  f"{report.rentals} rentals")
        return accounts


def start_shard_actors(settings: Settings) -> None:
    """Create the shard actors up front (each is a process, ~0.5 s to start) rather than on the
    first request; they are detached, so they live on while gateways come and go."""
    import ray

    from actors.kinds import ENTITY_KINDS
    from actors.shard_actor import shard_actor
    from actors.sharding import ShardMap

    assert settings.database_url
    shard_map = ShardMap(settings.shard_count, fleet=settings.fleet)
    actors = [shard_actor(shard_map, i, settings.database_url, ENTITY_KINDS) for i in range(shard_map.physical_count)]
    ray.get([actor.stats.remote() for actor in actors], timeout=120)


def start_search_replicas(settings: Settings) -> None:
    """Each replica builds its index from Postgres on first start (with the demo data, a second)
    or opens it from disk; gateways find them by name."""
    from search.replica_actor import start_replicas

    assert settings.database_url and settings.nats_url
    start_replicas(settings.search_replicas, data_dir=settings.data_dir / "search",
                   database_url=settings.database_url, nats_url=settings.nats_url)


def start_ml_serving(settings: Settings) -> None:
    """The Ray Serve `ml` app (ml/serving.py); with no model promoted yet, the first training
    runs in the background (a Ray job, ~30 s on the demo data; log in logs/train.log) and the
    replicas pick its models up when it promotes them."""
    import threading

    from ml.serving import deploy

    assert settings.database_url
    deploy(settings.database_url, str(settings.model_dir), http_host=settings.serve_http_host,
           http_port=settings.serve_http_port, reload_secs=settings.ml_reload_secs)
    if settings.train_on_start and not asyncio.run(_any_model_promoted(settings.database_url)):
        threading.Thread(target=_first_training, args=(settings,), name="first-training", daemon=True).start()


async def _any_model_promoted(database_url: str) -> bool:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        return bool(await conn.fetchval("SELECT count(DISTINCT kind) = 2 FROM ml_models WHERE status = 'promoted'"))
    finally:
        await conn.close()


def _first_training(settings: Settings) -> None:
    from ml.reporting import ConsoleReporter
    from ml.train_job import submit_training

    assert settings.database_url
    log_path = settings.data_dir / "logs" / "train.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as out:
        try:
            for report in submit_training(settings.database_url, settings.model_dir, reporter=ConsoleReporter(out)):
                print(f"  ml: {report['kind']} v{report['version']}: {report['decision']}", flush=True)
        except Exception:
            log.exception("the first training failed (see %s); run `sharehub train` to retry", log_path)


def _gateway_env(settings: Settings, urls: ServiceUrls) -> dict[str, str]:
    env = dict(os.environ)
    env.update(urls.as_env())
    env.update({
        "SHAREHUB_DATA_DIR": str(settings.data_dir),
        "SHAREHUB_HTTP_HOST": settings.http_host,
        "SHAREHUB_HTTP_PORT": str(settings.http_port),
        "SHAREHUB_JWT_KEYS_DIR": str(settings.jwt_keys_dir),
        "SHAREHUB_MODEL_DIR": str(settings.model_dir),
    })
    return env


class GatewayPool:
    def __init__(self, settings: Settings, urls: ServiceUrls, count: int) -> None:
        self.settings = settings
        self.env = _gateway_env(settings, urls)
        self.count = count
        self.procs: list[subprocess.Popen[bytes]] = []

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "sharehub", "gateway"]
        if self.count > 1:
            argv.append("--reuse-port")
        return spawn(argv, log_path=self.settings.data_dir / "logs" / f"gateway-{index}.log", env=self.env)

    def start(self) -> None:
        self.procs = [self._spawn(i) for i in range(self.count)]
        url = f"http://127.0.0.1:{self.settings.http_port}/healthz"
        wait_until(lambda: _http_ok(url), timeout_secs=120, what="gateway", proc=self.procs[0],
                   log_path=self.settings.data_dir / "logs" / "gateway-0.log")

    def restart_dead(self) -> None:
        for index, proc in enumerate(self.procs):
            if proc.poll() is not None:
                log.warning("gateway %d exited with %s; restarting", index, proc.returncode)
                time.sleep(_RESTART_BACKOFF_SECS)
                self.procs[index] = self._spawn(index)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            stop(proc, timeout_secs=15)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own localhost URL
            return bool(response.status == 200)
    except OSError:
        return False


def run_platform(settings: Settings, *, gateways: int, demo: bool = False) -> None:
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    start_reaper()
    stack = DevStack(
        settings.data_dir, durable=True, database_url=settings.database_url, nats_url=settings.nats_url,
        redis_url=settings.redis_url, ray_address=settings.ray_address, smtp_url=settings.smtp_url,
    )
    pool: GatewayPool | None = None
    seed = seeds_demo(settings, demo=demo)
    try:
        print("Starting ShareHub services...", flush=True)
        urls = stack.start()
        settings = replace(settings, database_url=urls.database_url, nats_url=urls.nats_url,
                           redis_url=urls.redis_url, ray_address=urls.ray_address, smtp_url=urls.smtp_url)
        ensure_key(settings.jwt_keys_dir)
        accounts = asyncio.run(prepare_database(settings, demo=seed))
        start_shard_actors(settings)
        start_search_replicas(settings)
        start_ml_serving(settings)
        pool = GatewayPool(settings, urls, gateways)
        pool.start()
        http_url = f"http://localhost:{settings.http_port}"
        write_run_state(settings.data_dir, urls, http_url=http_url)
        _print_banner(settings, urls, http_url, accounts if seed else None, gateways)
        while True:
            time.sleep(1)
            pool.restart_dead()
    except _Stop:
        print("\nStopping ShareHub...", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if pool is not None:
            pool.stop()
        stack.stop()
        clear_run_state(settings.data_dir)
        print("Stopped.", flush=True)


def _mail_note(settings: Settings, urls: ServiceUrls) -> str:
    if settings.smtp_url and settings.smtp_url != urls.smtp_url:
        return settings.smtp_url
    return f"kept as .eml files in {settings.data_dir / 'mail' / 'messages'} (dev mail sink)"


def _print_banner(
    settings: Settings, urls: ServiceUrls, http_url: str, demo: list[dict[str, str]] | None, gateways: int
) -> None:
    """`demo`: the demo accounts, or None when this database was not seeded."""
    lines = [
        "",
        f"ShareHub is running ({gateways} gateway process{'es' if gateways > 1 else ''}).",
        f"  API          {http_url}/api/v1",
        f"  Swagger UI   {http_url}/docs",
        f"  OpenAPI      {http_url}/api/openapi.yaml",
        f"  Metrics      {http_url}/metrics",
        f"  Health       {http_url}/readyz",
        f"  Ray dashboard {urls.ray_dashboard_url or '(external cluster: ' + str(urls.ray_address) + ')'}",
        f"  Shard metrics {urls.ray_metrics_url or '(the Ray cluster’s metrics agent)'}",
        f"  ML (Serve)   http://{settings.serve_http_host}:{settings.serve_http_port}/ml/pricing, /ml/similar",
        f"  Outgoing mail {_mail_note(settings, urls)}",
        f"  Data         {settings.data_dir}",
    ]
    if demo is None:
        lines += ["No demo data: DATABASE_URL was given (`sharehub run --demo` seeds demo accounts and data into it)."]
    else:
        lines += ["Demo accounts:"]
        lines += [f"  {a['email']:<28} {a['password']}   ({a['roles']})" for a in demo] or ["  (see earlier runs)"]
    lines += ["Press Ctrl-C to stop.", ""]
    print("\n".join(lines), flush=True)
