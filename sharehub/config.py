"""Settings read once from the environment.

Every process (gateway, CLI, Ray workers, tests) builds the same `Settings` from the same variables,
so a deployment is described by env vars alone (see compose.yaml, deploy/helm)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The Ray namespace of every ShareHub actor (shard actors, search replicas): the processes that
# create them and those that look them up by name must agree on it, in every deployment.
RAY_NAMESPACE = "sharehub"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _env_list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    env: str = "dev"
    data_dir: Path = REPO_ROOT / ".sharehub"
    migrations_dir: Path = REPO_ROOT / "migrations"
    web_dir: Path = REPO_ROOT / "web"
    api_dir: Path = REPO_ROOT / "api"

    # External services; None means "start the embedded one" (sharehub.devstack).
    database_url: str | None = None
    nats_url: str | None = None
    redis_url: str | None = None
    ray_address: str | None = None
    s3_endpoint_url: str | None = None
    # smtp://[user:password@]host:port (STARTTLS when offered) or smtps:// (implicit TLS).
    smtp_url: str | None = None
    mail_from: str = "ShareHub <no-reply@sharehub.ru>"

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    public_base_url: str = "http://localhost:8080"
    # Where people open links from e-mails (the web app); the reset page takes ?token=.
    web_app_url: str = "http://localhost:3000"
    log_level: str = "INFO"
    # Behind an ingress/load balancer the client address is the last X-Forwarded-For entry.
    trust_forwarded_for: bool = False
    max_body_bytes: int = 1024 * 1024
    cors_origins: tuple[str, ...] = ("http://localhost:3000", "http://localhost:8080")

    jwt_keys_dir: Path = REPO_ROOT / ".sharehub" / "keys"
    jwt_issuer: str = "https://sharehub.ru"
    jwt_audience: str = "sharehub-api"
    access_token_ttl_secs: int = 15 * 60
    refresh_token_ttl_secs: int = 30 * 24 * 3600
    # A new signing key is used for signing only after every gateway has had time to load it.
    key_publish_delay_secs: int = 60
    key_rescan_interval_secs: int = 10

    login_failures_per_account_per_hour: int = 100
    login_failures_per_ip_per_hour: int = 1000
    password_resets_per_ip_per_hour: int = 20
    # Wrong current passwords per user in any hour on `POST /api/v1/users/me/password`: a stolen
    # access token must not become an oracle for guessing the password behind it.
    password_change_failures_per_hour: int = 10
    # argon2 runs on threads of its own (sharehub/security/passwords.py `HashingPool`): this many
    # (0: one per core), with at most `password_hash_queue` hashes waiting - more answer 503 auth_busy.
    password_hash_workers: int = 0
    password_hash_queue: int = 32
    # Requests per minute per client for the whole API (a coarse guard; login has its own limits).
    # Websocket commands and failed authentications count here too.
    api_requests_per_minute: int = 1200
    # /readyz per client address, counted in the process (it must answer while Redis is down);
    # far above what a kubelet or load balancer probe sends (at most one a second).
    readyz_per_ip_per_minute: int = 300

    # Physical shard actors hosting entities (2 on a laptop; more on a cluster). Changing it
    # moves logical shards between actors without moving data.
    shard_count: int = 2
    # The set of shard actors (and their leases) this deployment uses; two deployments sharing
    # one Ray cluster (a staging beside production, a test beside the suite) need different ones.
    fleet: str = "entities"
    # How long a request waits for an entity's committed answer before it is answered 503 (the
    # command may still commit; its retry under the same Idempotency-Key finds that outcome).
    command_timeout_secs: float = 10.0
    # Until payments hold dates with money, a renter may hold only so many rentals that have not
    # started yet (requested or accepted, any listing), and only so many on one listing: one
    # account cannot take every unit of a listing for a year for free.
    max_open_rentals_per_renter: int = 10
    max_open_rentals_per_listing: int = 2
    # Stored command results (a retried command returns its first answer) and consumers' marks of
    # the events they handled are kept this long, then purged: well past every retry horizon - an
    # Idempotency-Key lives 24 h, JetStream redelivers for minutes - and far short of "forever".
    dedup_retention_secs: float = 7 * 24 * 3600.0
    # Search replicas (Ray actors, each with its own index under <data dir>/search/<name>).
    search_replicas: int = 1
    # Gateways create missing replicas at start (Kubernetes, compose); `sharehub run` does it itself.
    gateway_starts_search: bool = False
    search_timeout_secs: float = 2.0
    # ml-core (ml/): model artifacts, and the Ray Serve app the gateway calls with a deadline.
    model_dir: Path = REPO_ROOT / ".sharehub" / "models"
    ml_timeout_secs: float = 1.0
    # Serving replicas look for a newly promoted model this often.
    ml_reload_secs: float = 5.0
    serve_http_host: str = "127.0.0.1"
    serve_http_port: int = 8000
    # `sharehub run` trains the first models in the background when none is promoted yet.
    train_on_start: bool = True
    db_pool_min: int = 1
    db_pool_max: int = 10

    # Websocket gateway (gateway/realtime). permessage-deflate costs ~100 KiB per connection in
    # aiohttp, so it is off unless asked for; a client message above the limit is refused.
    ws_compress: bool = False
    ws_max_message_bytes: int = 64 * 1024
    # Messages waiting for one client; a client that lets more pile up is disconnected (4008).
    ws_send_queue: int = 1024
    # Open sockets per user across every gateway process (counted in Redis presence); one more
    # is refused with 429 too_many_sockets before the upgrade.
    ws_sockets_per_user: int = 20

    def with_services(
        self,
        *,
        database_url: str,
        nats_url: str,
        redis_url: str,
        ray_address: str | None,
    ) -> Settings:
        return replace(
            self,
            database_url=database_url,
            nats_url=nats_url,
            redis_url=redis_url,
            ray_address=ray_address,
        )


def load_settings() -> Settings:
    env = os.environ.get("SHAREHUB_ENV", "dev")
    data_dir = Path(os.environ.get("SHAREHUB_DATA_DIR", str(REPO_ROOT / ".sharehub"))).resolve()
    port = _env_int("SHAREHUB_HTTP_PORT", 8080)
    return Settings(
        env=env,
        data_dir=data_dir,
        database_url=os.environ.get("DATABASE_URL") or None,
        nats_url=os.environ.get("NATS_URL") or None,
        redis_url=os.environ.get("REDIS_URL") or None,
        ray_address=os.environ.get("RAY_ADDRESS") or None,
        s3_endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
        smtp_url=os.environ.get("SMTP_URL") or None,
        mail_from=os.environ.get("SHAREHUB_MAIL_FROM", "ShareHub <no-reply@sharehub.ru>"),
        http_host=os.environ.get("SHAREHUB_HTTP_HOST", "127.0.0.1"),
        http_port=port,
        public_base_url=os.environ.get("SHAREHUB_PUBLIC_BASE_URL", f"http://localhost:{port}"),
        web_app_url=os.environ.get("SHAREHUB_WEB_APP_URL", "http://localhost:3000"),
        log_level=os.environ.get("SHAREHUB_LOG_LEVEL", "INFO"),
        trust_forwarded_for=os.environ.get("SHAREHUB_TRUST_FORWARDED_FOR", "") == "1",
        cors_origins=_env_list(
            "SHAREHUB_CORS_ORIGINS", ("http://localhost:3000", f"http://localhost:{port}")
        ),
        jwt_keys_dir=Path(os.environ.get("SHAREHUB_JWT_KEYS_DIR", str(data_dir / "keys"))),
        jwt_issuer=os.environ.get("SHAREHUB_JWT_ISSUER", "https://sharehub.ru"),
        jwt_audience=os.environ.get("SHAREHUB_JWT_AUDIENCE", "sharehub-api"),
        key_publish_delay_secs=_env_int("SHAREHUB_KEY_PUBLISH_DELAY_SECS", 60),
        key_rescan_interval_secs=_env_int("SHAREHUB_KEY_RESCAN_INTERVAL_SECS", 10),
        login_failures_per_account_per_hour=_env_int("SHAREHUB_LOGIN_FAILURES_PER_ACCOUNT", 100),
        login_failures_per_ip_per_hour=_env_int("SHAREHUB_LOGIN_FAILURES_PER_IP", 1000),
        password_resets_per_ip_per_hour=_env_int("SHAREHUB_PASSWORD_RESETS_PER_IP", 20),
        password_change_failures_per_hour=_env_int("SHAREHUB_PASSWORD_CHANGE_FAILURES", 10),
        password_hash_workers=_env_int("SHAREHUB_PASSWORD_HASH_WORKERS", 0),
        password_hash_queue=_env_int("SHAREHUB_PASSWORD_HASH_QUEUE", 32),
        api_requests_per_minute=_env_int("SHAREHUB_API_REQUESTS_PER_MINUTE", 1200),
        readyz_per_ip_per_minute=_env_int("SHAREHUB_READYZ_PER_IP_PER_MINUTE", 300),
        db_pool_max=_env_int("SHAREHUB_DB_POOL_MAX", 10),
        shard_count=_env_int("SHAREHUB_SHARDS", 2),
        fleet=os.environ.get("SHAREHUB_FLEET", "entities"),
        command_timeout_secs=float(os.environ.get("SHAREHUB_COMMAND_TIMEOUT_SECS", "10")),
        max_open_rentals_per_renter=_env_int("SHAREHUB_MAX_OPEN_RENTALS_PER_RENTER", 10),
        max_open_rentals_per_listing=_env_int("SHAREHUB_MAX_OPEN_RENTALS_PER_LISTING", 2),
        search_replicas=_env_int("SHAREHUB_SEARCH_REPLICAS", 1),
        model_dir=Path(os.environ.get("SHAREHUB_MODEL_DIR", str(data_dir / "models"))),
        ml_timeout_secs=float(os.environ.get("SHAREHUB_ML_TIMEOUT_SECS", "1.0")),
        ml_reload_secs=float(os.environ.get("SHAREHUB_ML_RELOAD_SECS", "5")),
        serve_http_host=os.environ.get("SHAREHUB_SERVE_HTTP_HOST", "127.0.0.1"),
        serve_http_port=_env_int("SHAREHUB_SERVE_HTTP_PORT", 8000),
        train_on_start=os.environ.get("SHAREHUB_TRAIN_ON_START", "1") != "0",
        gateway_starts_search=os.environ.get("SHAREHUB_GATEWAY_STARTS_SEARCH", "") == "1",
        ws_compress=os.environ.get("SHAREHUB_WS_COMPRESS", "") == "1",
        ws_max_message_bytes=_env_int("SHAREHUB_WS_MAX_MESSAGE_BYTES", 64 * 1024),
        ws_send_queue=_env_int("SHAREHUB_WS_SEND_QUEUE", 1024),
        ws_sockets_per_user=_env_int("SHAREHUB_WS_SOCKETS_PER_USER", 20),
    )
