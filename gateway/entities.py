"""Sending a command to an entity - from a handler, or from a consumer with no request - and
turning its result into an `ApiError` when it is refused."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web

from actors.commands import Command, Result
from gateway.context import IDEMPOTENCY, PRINCIPAL, platform
from sharehub.errors import ApiError, unavailable
from sharehub.platform import Platform


def new_entity_id(request: web.Request, kind: str) -> uuid.UUID:
    """The id of an entity this request creates: fresh - or, under an Idempotency-Key, the same
    for every retry of the request, so a retry after a lost answer cannot create a second one."""
    context = request.get(IDEMPOTENCY)
    return context.derive("entity", kind) if context is not None else uuid.uuid4()


def request_command_id(request: web.Request, kind: str, entity_id: uuid.UUID, name: str) -> uuid.UUID | None:
    """Under an Idempotency-Key, the id of this request's command: its retry returns the first
    result (the runtime stores every command's result with its commit). None without a key."""
    context = request.get(IDEMPOTENCY)
    return context.derive("command", kind, str(entity_id), name) if context is not None else None


async def execute(request: web.Request, kind: str, entity_id: uuid.UUID, name: str,
                  payload: dict[str, Any] | None = None, *, command_id: uuid.UUID | None = None) -> Result:
    """Run one command on its owning shard actor as the caller; a refusal becomes the matching problem."""
    principal = request.get(PRINCIPAL)
    return await execute_as(
        platform(request), kind, entity_id, name, payload,
        actor_id=str(principal.user_id) if principal else None,
        actor_roles=principal.roles if principal else frozenset(),
        command_id=command_id or request_command_id(request, kind, entity_id, name),
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
        result = await asyncio.wait_for(router.execute(command), platform.settings.command_timeout_secs)
    except TimeoutError:
        # The command may still commit a moment later; a retry with the same Idempotency-Key
        # (same command id) then returns that outcome instead of acting twice.
        raise unavailable("The entity service did not answer in time; try again.") from None
    if not result.ok:
        error = ApiError(result.status, result.code, result.detail)
        if result.status == 503:
            error.headers["Retry-After"] = "1"
        raise error
    return result
