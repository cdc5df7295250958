"""The authorization matrix (tests/authorization.py) covers the route table exactly: a route added
without a rule fails here, and so does a rule with a hole (a caller and relation without an
outcome) or one left behind by a route that is gone. The spec documents every refusal it
promises, and the per-role schemathesis configs written from it accept what it says."""

from __future__ import annotations

import tomllib
from collections import Counter

import yaml

from gateway.app import ROUTE_TABLES
from sharehub.config import REPO_ROOT
from tests.authorization import (
    ALLOWED,
    FORBIDDEN,
    ROLES,
    RULES,
    STAFF,
    TOKEN_ROLES,
    UNAUTHENTICATED,
    Role,
    expected,
    matrix,
    relations_of,
    role_outcomes,
    routes,
)
from tests.fuzz_config import RoleRun


def test_every_route_has_a_rule_and_every_rule_a_route() -> None:
    served = set(routes(ROUTE_TABLES))
    ruled = {rule.operation for rule in RULES}
    missing = sorted(f"{method} {path}" for method, path in served - ruled)
    assert not missing, f"routes without an entry in tests/authorization.py RULES: {missing}"
    assert not ruled - served, f"rules for routes the server does not have: {sorted(ruled - served)}"


def test_every_cell_of_every_rule_has_an_outcome() -> None:
    served = routes(ROUTE_TABLES)
    for rule in RULES:
        cells = expected(served[rule.operation].access, rule)  # raises LookupError on a hole
        assert cells, rule.name
        unused = set(rule.outcomes) - {relation for _, relation in cells}
        assert not unused, f"{rule.name}: outcomes for relations no caller has: {unused}"


def test_rules_are_told_apart_and_give_reasons() -> None:
    names = Counter(rule.name for rule in RULES)
    assert [name for name, count in names.items() if count > 1] == []
    assert all(rule.why.strip() for rule in RULES)


def test_what_the_route_table_decides_is_generated_from_it() -> None:
    served = routes(ROUTE_TABLES)
    for rule, cells in matrix(ROUTE_TABLES):
        access = served[rule.operation].access
        for (role, relation), outcome in cells.items():
            if access.authenticated and role == "anonymous":
                assert outcome == UNAUTHENTICATED, (rule.name, role, relation)
            elif access.roles and not access.roles & TOKEN_ROLES[role]:
                assert outcome == FORBIDDEN, (rule.name, role, relation)


def test_a_plain_user_lends_nothing_and_owns_no_published_listing() -> None:
    assert relations_of("user", "rental", "requested") == ("renter", "other")
    assert relations_of("user", "listing", "published") == ("other",)
    assert relations_of("user", "listing", "draft") == ("own", "other")
    assert relations_of("anonymous", "chat", "") == ("other",)
    assert relations_of("owner", "rental", "active") == ("renter", "lender", "other")


def test_per_role_outcomes_are_what_schemathesis_is_held_to() -> None:
    outcomes = role_outcomes(ROUTE_TABLES)
    assert set(outcomes) == set(routes(ROUTE_TABLES))
    # A few anchors of the product's rules, as the fuzzer will see them.
    assert outcomes["POST", "/api/v1/admin/users"]["moderator"] == {FORBIDDEN}
    assert outcomes["POST", "/api/v1/admin/users"]["anonymous"] == {UNAUTHENTICATED}
    assert outcomes["PATCH", "/api/v1/listings/{listing_id}"]["user"] == {ALLOWED, "404"}
    for role in STAFF:
        assert outcomes["POST", "/api/v1/chats/{chat_id}/messages"][role] == {ALLOWED, FORBIDDEN}


def test_the_spec_documents_every_refusal_the_matrix_promises() -> None:
    spec = yaml.safe_load((REPO_ROOT / "api" / "openapi.yaml").read_text())
    for (method, path), per_role in role_outcomes(ROUTE_TABLES).items():
        refusals = {outcome for outcomes in per_role.values() for outcome in outcomes} - {ALLOWED}
        documented = set(spec["paths"][path][method.lower()]["responses"])
        assert refusals <= documented, (method, path, refusals - documented)


def test_each_role_run_accepts_what_the_matrix_allows_that_role() -> None:
    """The generated schemathesis configs (tests/fuzz_config.py): one entry per operation, the
    gateway's refusal alone where it refuses the role, business refusals only past the gate."""
    configs = {role: tomllib.loads(RoleRun(role, None if role == "anonymous" else "token").config(ROUTE_TABLES))
               for role in ROLES}

    def accepts(role: Role, method: str, path: str) -> list[str]:
        [entry] = [e for e in configs[role]["operations"] if e["include-name"] == f"{method} {path}"]
        statuses: list[str] = entry["checks"]["positive_data_acceptance"]["expected-statuses"]
        return statuses

    for config in configs.values():
        assert len(config["operations"]) == len(routes(ROUTE_TABLES))
    assert accepts("user", "POST", "/api/v1/admin/users") == ["403"]
    assert accepts("anonymous", "PATCH", "/api/v1/listings/{listing_id}") == ["401"]
    assert accepts("moderator", "PATCH", "/api/v1/listings/{listing_id}") == ["2xx", "403", "404", "409", "422", "503"]
    assert accepts("user", "PATCH", "/api/v1/listings/{listing_id}") == ["2xx", "404", "409", "422", "503"]
    assert accepts("admin", "GET", "/api/v1/listings/{listing_id}/price-suggestion") == ["2xx", "404", "422", "503"]
    assert accepts("owner", "GET", "/api/v1/listings/{listing_id}/price-suggestion") == [
        "2xx", "403", "404", "422", "503"]
    assert accepts("admin", "POST", "/api/v1/rentals") == ["2xx", "404", "409", "422", "429", "503"]
    assert configs["anonymous"].get("headers") is None
    assert configs["user"]["headers"] == {"Authorization": "Bearer token"}
