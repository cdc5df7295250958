"""How much does authenticating a request cost?

ShareHub checks an access token without touching Postgres: an EdDSA signature check plus one
Redis MGET (revoked session? current auth epoch?). The usual alternative is an opaque session id
looked up in Postgres on every request. Both run here against the same embedded services, in
the same process, interleaved over several rounds; the table shows medians and the ratio.

    .venv/bin/python bench/auth.py [--requests 5000] [--concurrency 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RunResult, measure, median_result, print_table, throwaway_stack
from sharehub import accounts
from sharehub.config import load_settings
from sharehub.platform import Platform, open_platform
from sharehub.revocation import check_not_revoked
from sharehub.security.keys import generate_key
from storage.migrate import migrate

_USERS = 200


async def _prepare(platform: Platform) -> tuple[list[str], list[uuid.UUID]]:
    tokens, sessions = [], []
    for index in range(_USERS):
        email = f"bench-{index}-{uuid.uuid4().hex[:6]}@example.ru"
        await accounts.register(platform, email=email, password="Лето в Сочи 2026!", display_name=f"User {index}")
        pair = await accounts.login(platform, email=email, password="Лето в Сочи 2026!", ip="127.0.0.1",
                                    user_agent="bench")
        tokens.append(pair.access_token)
        sessions.append(pair.session_id)
        if (index + 1) % 50 == 0:
            print(f"  prepared {index + 1}/{_USERS} users", file=sys.stderr)
    return tokens, sessions


async def run(requests: int, concurrency: int, rounds: int) -> None:
    with throwaway_stack() as urls, tempfile.TemporaryDirectory() as keys:
        generate_key(Path(keys))
        settings = replace(load_settings(), database_url=urls.database_url, redis_url=urls.redis_url,
                           nats_url=urls.nats_url, jwt_keys_dir=Path(keys), key_publish_delay_secs=0,
                           db_pool_max=concurrency)
        assert settings.database_url
        await migrate(settings.database_url, settings.migrations_dir)
        async with open_platform(settings) as platform:
            print("preparing users and logins...", file=sys.stderr)
            tokens, sessions = await _prepare(platform)

            async def token_and_redis(i: int) -> None:
                claims = platform.tokens.verify_access(tokens[i % _USERS])
                await check_not_revoked(platform, claims)

            async def session_in_postgres(i: int) -> None:
                row = await platform.db.fetchrow(
                    """SELECT u.id, u.roles, u.status FROM auth_sessions s JOIN users u ON u.id = s.user_id
                       WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > now()""",
                    sessions[i % _USERS],
                )
                assert row is not None and row["status"] == "active"

            paths = {
                "JWT (EdDSA) + Redis revocation check": token_and_redis,
                "baseline: session row lookup in Postgres": session_in_postgres,
            }
            results: dict[str, list[RunResult]] = {name: [] for name in paths}
            for round_no in range(rounds):
                for name, op in paths.items():
                    await measure(op, requests=requests // 10, concurrency=concurrency)  # warm-up
                    results[name].append(await measure(op, requests=requests, concurrency=concurrency))
                print(f"  round {round_no + 1}/{rounds} done", file=sys.stderr)
    print_table(
        f"Authenticating one request ({requests} requests x {rounds} rounds, concurrency {concurrency}, medians)",
        {name: median_result(r) for name, r in results.items()},
        baseline="baseline: session row lookup in Postgres",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    uvloop.run(run(args.requests, args.concurrency, args.rounds))  # as the gateway runs


if __name__ == "__main__":
    main()
