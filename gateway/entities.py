"""Sending a command to an entity - from a handler, or from a consumer with no request - and
turning its result into an `ApiError` when it is refused."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web

from actors.commands import Command, Result
from gateway.context import PRINCIPAL, platform
from sharehub.errors import ApiError, unavailable
from sharehub.platform import Platform

_COMMAND_TIMEOUT_SECS = 10.0


async def execute(request: web.Request, kind: str, entity_id: uuid.UUID, name: str,
                  payload: dict[str, Any] | None = None, *, command_id: uuid.UUID | None = None) -> Result:
    """Run one command on its owning shard actor as the caller; a refusal becomes the matching problem."""
    principal = request.get(PRINCIPAL)
    return await execute_as(
        platform(request), kind, entity_id, name, payload,
        actor_id=str(principal.user_id) if principal else None,
        actor_roles=principal.roles if principal else frozenset(), command_id=command_id,
    )


async def execute_as(platform: Platform, kind: str, entity_id: uuid.UUID | str, name: str,
                     payload: dict[str, Any] | None = None, *, actor_id: str | None,
                     actor_roles: frozenset[str], command_id: uuid.UUID | None = None) -> Result:
    """`command_id`: a deterministic id makes a repeated call (a client retry, a redelivered
    event) return the first result instead of acting twice."""
    router = platform.entities
    if router is None:
        raise unavailable("The entity service is not connected.")
    command = Command(
        command_id=command_id or uuid.uuid4(), kind=kind, entity_id=str(entity_id), name=name,
        payload=payload or {}, actor_id=actor_id, actor_roles=actor_roles,
    )
    try:
        result = await asyncio.wait_for(router.execute(command), _COMMAND_TIMEOUT_SECS)
    except TimeoutError:
        raise unavailable("The entity service did not answer in time; try again.") from None
    if not result.ok:
        raise ApiError(result.status, result.code, result.detail)
    return result
