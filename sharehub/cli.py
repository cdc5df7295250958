"""The `sharehub` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from getpass import getpass

from sharehub.config import Settings, load_settings


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from sharehub.supervisor import run_platform

    if args.port:
        settings = replace(settings, http_port=args.port, public_base_url=f"http://localhost:{args.port}")
    run_platform(settings, gateways=args.gateways, demo=args.demo)
    return 0


def _cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.server import run_gateway

    if args.host:
        settings = replace(settings, http_host=args.host)
    if args.port:
        settings = replace(settings, http_port=args.port)
    run_gateway(settings, reuse_port=args.reuse_port)
    return 0


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Settings]:
    """Settings with a database: DATABASE_URL, else a running `sharehub run`, else the embedded
    Postgres under the data dir, started just for this command."""
    from sharehub.runstate import read_run_state

    if settings.database_url:
        yield settings
        return
    state = read_run_state(settings.data_dir)
    if state:
        yield replace(settings, database_url=state["database_url"], redis_url=state["redis_url"],
                      nats_url=state["nats_url"])
        return
    from sharehub.devstack import DevStack

    stack = DevStack(settings.data_dir, with_ray=False)
    urls = stack.start()  # from this thread: children die with the thread that spawned them
    try:
        yield replace(settings, database_url=urls.database_url, redis_url=urls.redis_url, nats_url=urls.nats_url)
    finally:
        stack.stop()


async def _migrate(settings: Settings) -> int:
    from storage.migrate import migrate

    async with _database(settings) as ready:
        assert ready.database_url
        applied = await migrate(ready.database_url, ready.migrations_dir)
    print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.version:04d}_{m.name}" for m in applied))
    return 0


async def _user_create(args: argparse.Namespace, settings: Settings) -> int:
    from sharehub import accounts
    from sharehub.errors import ApiError
    from sharehub.platform import open_platform
    from storage.migrate import migrate

    password = args.password or getpass("Password: ")
    async with _database(settings) as ready, open_platform(ready) as platform:
        assert ready.database_url
        await migrate(ready.database_url, ready.migrations_dir)
        try:
            user = await accounts.create_user(
                platform, email=args.email, password=password,
                display_name=args.display_name or args.email.split("@")[0], roles=frozenset(args.role or ["user"]),
            )
        except ApiError as exc:
            print(f"error: {exc.code}: {exc.detail} {exc.extra.get('errors', '')}", file=sys.stderr)
            return 1
    print(f"created user {user.id} <{user.email}> roles={','.join(sorted(user.roles))}")
    return 0


async def _seed(args: argparse.Namespace, settings: Settings) -> int:
    from sharehub.demo import ensure_demo_accounts
    from sharehub.platform import open_platform
    from sharehub.seed.generate import SEED_PASSWORD, seed_database
    from storage.migrate import migrate

    async with _database(settings) as ready, open_platform(ready) as platform:
        assert ready.database_url
        await migrate(ready.database_url, ready.migrations_dir)
        demo = await ensure_demo_accounts(platform, ready.data_dir)
        report = await seed_database(platform.db, users=args.users, listings=args.listings, rentals=args.rentals,
                                     seed=args.seed)
    for account in demo:
        print(f"{account['email']}  {account['password']}  ({account['roles']})")
    if report.skipped:
        print(f"seed {args.seed} was loaded before; nothing added")
    else:
        print(f"added {report.users} users (password: {SEED_PASSWORD}), {report.listings} listings "
              f"and {report.rentals} rentals")
    return 0


def _cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from sharehub.security.keys import KeyRing, generate_key

    if args.keys_command == "rotate":
        kid = generate_key(settings.jwt_keys_dir)
        print(f"new signing key {kid}; gateways sign with it after {settings.key_publish_delay_secs}s")
    else:
        ring = KeyRing(settings.jwt_keys_dir, publish_delay_secs=settings.key_publish_delay_secs, rescan_secs=0)
        for key in ring.jwks()["keys"]:
            print(key["kid"])
    return 0


def _cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild every search replica's index from Postgres, one replica at a time (the others
    keep answering; the one rebuilding also answers from its old index until the swap)."""
    if not _join_ray(settings):
        print("No Ray cluster: start the platform (`make run`) or set RAY_ADDRESS.", file=sys.stderr)
        return 2
    from search.reindex import reindex_all

    return reindex_all(only=args.replica)


def _join_ray(settings: Settings) -> bool:
    """Join the cluster of RAY_ADDRESS or of a running `sharehub run`; False when there is none."""
    from sharehub.runstate import read_run_state

    state = read_run_state(settings.data_dir) or {}
    address = settings.ray_address or state.get("ray_address")
    if not address:
        return False
    if not settings.ray_address and state.get("ray_auth_mode"):
        # Before Ray is imported: it reads the mode once, when its config first loads.
        os.environ.setdefault("RAY_AUTH_MODE", state["ray_auth_mode"])
    from sharehub.cluster import connect_ray

    connect_ray(address)
    return True


async def _train(args: argparse.Namespace, settings: Settings) -> int:
    """Train, measure and maybe promote models as a Ray job; serving replicas pick a promoted
    version up within seconds."""
    from ml.train_job import submit_training
    from ml.training import NotEnoughData
    from storage.migrate import migrate

    if not _join_ray(settings):
        from sharehub.devstack.ray_local import start_local_ray

        start_local_ray(settings.data_dir / "ray-train", dashboard=False)
    async with _database(settings) as ready:
        assert ready.database_url
        await migrate(ready.database_url, ready.migrations_dir)
        try:
            reports = await asyncio.to_thread(submit_training, ready.database_url, ready.model_dir,
                                              kinds=args.kind or ["pricing", "similar"])
        except NotEnoughData as exc:
            print(f"error: not enough data to train: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # a RayTaskError wrapping the task's own exception
            cause = getattr(exc, "cause", None)
            if isinstance(cause, NotEnoughData):
                print(f"error: not enough data to train: {cause}", file=sys.stderr)
                return 1
            raise
    for report in reports:
        print(f"{report['kind']} v{report['version']}: {report['decision']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sharehub", description="ShareHub rental marketplace platform")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the whole platform (embedded services unless URLs are set)")
    run.add_argument("--port", type=int, default=0, help="HTTP port (default 8080 or $SHAREHUB_HTTP_PORT)")
    run.add_argument("--gateways", type=int, default=1, help="gateway processes sharing the port")
    run.add_argument("--demo", action="store_true",
                     help="seed demo accounts (printed passwords) and demo data even into the database of "
                          "DATABASE_URL (the embedded database is always seeded)")

    gw = sub.add_parser("gateway", help="run one gateway process against the services in the environment")
    gw.add_argument("--host", default="")
    gw.add_argument("--port", type=int, default=0)
    gw.add_argument("--reuse-port", action="store_true", help="share the port with sibling gateways")

    sub.add_parser("migrate", help="apply database migrations")

    user = sub.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    create = user_sub.add_parser("create", help="create a user")
    create.add_argument("--email", required=True)
    create.add_argument("--password", help="prompted for when omitted")
    create.add_argument("--display-name")
    create.add_argument("--role", action="append", choices=["user", "owner", "moderator", "admin"])

    seed = sub.add_parser("seed", help="demo data: admin and moderator accounts, users, listings, rentals")
    seed.add_argument("--users", type=int, default=200)
    seed.add_argument("--listings", type=int, default=2000)
    seed.add_argument("--rentals", type=int, default=5000, help="rental histories on the published listings")
    seed.add_argument("--seed", type=int, default=1, help="same seed, same data")

    train = sub.add_parser("train", help="train ml-core models as a Ray job; promote those that beat the current")
    train.add_argument("--kind", action="append", choices=["pricing", "similar"], help="default: both")

    reindex = sub.add_parser("reindex", help="rebuild the search index from Postgres (no downtime)")
    reindex.add_argument("--replica", help="only this replica (by name, e.g. 0); default: all of them")

    keys = sub.add_parser("keys", help="JWT signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("rotate", help="add a new signing key (gateways pick it up without restart)")
    keys_sub.add_parser("list", help="list key ids")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    commands: dict[str, Callable[[], int]] = {
        "run": lambda: _cmd_run(args, settings),
        "gateway": lambda: _cmd_gateway(args, settings),
        "migrate": lambda: asyncio.run(_migrate(settings)),
        "user": lambda: asyncio.run(_user_create(args, settings)),
        "seed": lambda: asyncio.run(_seed(args, settings)),
        "keys": lambda: _cmd_keys(args, settings),
        "reindex": lambda: _cmd_reindex(args, settings),
        "train": lambda: asyncio.run(_train(args, settings)),
    }
    sys.exit(commands[args.command]())
