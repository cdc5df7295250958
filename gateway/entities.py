"""Sending a command to an entity from a handler, and turning its result into HTTP."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web

from actors.commands import Command, Result
from gateway.context import PRINCIPAL, platform
from sharehub.errors import ApiError, unavailable

_COMMAND_TIMEOUT_SECS = 10.0


async def execute(request: web.Request, kind: str, entity_id: uuid.UUID, name: str,
                  payload: dict[str, Any] | None = None) -> Result:
    """Run one command on its owning shard actor; a refusal becomes the matching problem."""
    router = platform(request).entities
    if router is None:
        raise unavailable("The entity service is not connected.")
    principal = request.get(PRINCIPAL)
    command = Command(
        command_id=uuid.uuid4(),
        kind=kind,
        entity_id=str(entity_id),
        name=name,
        payload=payload or {},
        actor_id=str(principal.user_id) if principal else None,
        actor_roles=principal.roles if principal else frozenset(),
    )
    try:
        result = await asyncio.wait_for(router.execute(command), _COMMAND_TIMEOUT_SECS)
    except TimeoutError:
        raise unavailable("The entity service did not answer in time; try again.") from None
    if not result.ok:
        raise ApiError(result.status, result.code, result.detail)
    return result
