"""The schemathesis config of one role's run (tests/e2e/test_openapi_contract.py), written from the
authorization matrix (tests/authorization.py) and tests/schemathesis.toml (the business-rule
statuses and other settings of each operation): one [[operations]] entry per operation, so that
what a run accepts has one source of truth and no two entries compete."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.routing import RouteSpec, RouteTable
from sharehub.config import REPO_ROOT
from tests.authorization import ALLOWED, RULES, Role, gate, role_outcomes, routes

BASE = REPO_ROOT / "tests" / "schemathesis.toml"
_FILTERS = frozenset({"include-path", "include-path-regex", "include-method"})
# Generated Idempotency-Key values repeat, and a key names one request of the caller's: another
# request with it is 422 `idempotency_key_reused`, one while the first runs 409.
IDEMPOTENCY_STATUSES = frozenset({"409", "422"})
# Operations the gateway refuses a role before any handler runs answer every request alike:
# a few fuzzed examples show it, the coverage phase's hundreds would only repeat it.
REFUSED_EXAMPLES = 3
Operation = tuple[str, str]


@dataclass(frozen=True)
class Base:
    """tests/schemathesis.toml: settings for the whole run, and [[operations]] entries."""

    settings: dict[str, Any]
    entries: list[dict[str, Any]]

    @classmethod
    def load(cls, path: Path = BASE) -> Base:
        data = tomllib.loads(path.read_text())
        entries = data.pop("operations", [])
        for entry in entries:
            unknown = {key for key in entry if key.startswith(("include-", "exclude-"))} - _FILTERS
            assert not unknown, f"tests/fuzz_config.py does not apply these filters: {unknown}"
            assert "2xx" not in _statuses(entry), f"the matrix decides what is allowed, not {entry}"
        return cls(data, entries)

    def business(self, method: str, path: str) -> tuple[set[str], dict[str, Any]]:
        """The business-rule statuses of one operation (every entry that applies, together) and
        the other settings of those entries."""
        statuses: set[str] = set()
        settings: dict[str, Any] = {}
        for entry in self.entries:
            if _applies(entry, method, path):
                statuses |= set(_statuses(entry))
                _merge(settings, {k: v for k, v in entry.items() if k not in _FILTERS})
        positive = settings.get("checks", {}).get("positive_data_acceptance", {})
        positive.pop("expected-statuses", None)
        return statuses, _pruned(settings)


def _statuses(entry: Mapping[str, Any]) -> list[str]:
    statuses: list[str] = entry.get("checks", {}).get("positive_data_acceptance", {}).get("expected-statuses", [])
    return statuses


def _listed(value: str | list[str] | None) -> list[str] | None:
    return [value] if isinstance(value, str) else value


def _applies(entry: Mapping[str, Any], method: str, path: str) -> bool:
    paths, methods = _listed(entry.get("include-path")), _listed(entry.get("include-method"))
    regex = entry.get("include-path-regex")
    return ((paths is None or path in paths)
            and (methods is None or method.upper() in {m.upper() for m in methods})
            and (regex is None or re.search(regex, path) is not None))


def _merge(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, Mapping):
            _merge(into.setdefault(key, {}), value)
        else:
            into[key] = value


def _pruned(settings: dict[str, Any]) -> dict[str, Any]:
    """Without the tables left empty."""
    kept = {k: _pruned(v) if isinstance(v, dict) else v for k, v in settings.items()}
    return {k: v for k, v in kept.items() if v != {}}


def accepted(role: Role, spec: RouteSpec, outcomes: set[str], business: set[str]) -> list[str]:
    """The statuses a positive (schema-valid) request of `role` may get: what the gateway answers
    before the handler if it refuses the role (and nothing else), otherwise what the matrix
    allows the role over every relation plus the business-rule statuses."""
    refused = gate(spec.access, role)
    if refused is not None:
        return [refused]
    found = {("101" if spec.socket else "2xx") if outcome == ALLOWED else outcome for outcome in outcomes}
    found |= business
    if spec.idempotent:
        found |= IDEMPOTENCY_STATUSES
    return sorted(found)


@dataclass
class RoleRun:
    """One schemathesis run as `role`: which operations it tests, the token it sends, and the
    operations that send a token of their own (those that can end the login they use)."""

    role: Role
    token: str | None
    enabled: set[Operation] | None = None  # None: every operation
    own_tokens: dict[Operation, str] = field(default_factory=dict)

    def config(self, tables: list[RouteTable], base: Base | None = None) -> str:
        base = base or Base.load()
        served = routes(tables)
        outcomes = role_outcomes(tables)
        why: dict[Operation, list[str]] = {}
        for rule in RULES:
            why.setdefault(rule.operation, []).append(rule.why)
        lines = [f"# Generated for the {self.role} run by tests/fuzz_config.py from tests/schemathesis.toml",
                 "# and tests/authorization.py: edit those, not this.", ""]
        settings = copy.deepcopy(base.settings)
        if self.token is not None:
            settings.setdefault("headers", {})["Authorization"] = f"Bearer {self.token}"
        lines += [f"{key} = {_value(value)}" for key, value in _flat(settings)]
        for (method, path), spec in sorted(served.items(), key=lambda item: (item[0][1], item[0][0])):
            business, extra = base.business(method, path)
            # `include-name` alone: schemathesis ORs the filters of an entry, so a path filter
            # beside a method filter would pick every operation with that method.
            entry: dict[str, Any] = {"include-name": f"{method} {path}"}
            if self.enabled is not None and (method, path) not in self.enabled:
                entry["enabled"] = False
            if (method, path) in self.own_tokens:
                entry["headers"] = {"Authorization": f"Bearer {self.own_tokens[method, path]}"}
            statuses = accepted(self.role, spec, {str(o) for o in outcomes[method, path][self.role]}, business)
            _merge(entry, extra)
            _merge(entry, {"checks": {"positive_data_acceptance": {"expected-statuses": statuses}}})
            if gate(spec.access, self.role) is not None:
                _merge(entry, {"generation": {"max-examples": REFUSED_EXAMPLES},
                               "phases": {"coverage": {"enabled": False}}})
            lines += ["", *(f"# {reason}" for reason in why.get((method, path), [])), "[[operations]]"]
            lines += [f"{key} = {_value(value)}" for key, value in _flat(entry)]
        return "\n".join(lines) + "\n"


def _flat(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in table.items():
        name = f"{prefix}{_key(key)}"
        if isinstance(value, Mapping) and key != "headers":
            yield from _flat(value, f"{name}.")
        else:
            yield name, value


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    assert isinstance(value, Mapping), value
    return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
