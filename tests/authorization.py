"""Who may call what: the authorization matrix of every operation in the route table.

For every route in `gateway.app.ROUTE_TABLES`, every caller - anonymous, user, owner, moderator,
admin - and every relation the caller can stand in to the object the route acts on (its own, a
rental or chat it takes part in as renter or lender, someone else's, or no object at all), the
matrix says what must happen: `ALLOWED` (2xx; 101 for the websocket upgrade), 401, 403, or 404
(the object is hidden: the caller must not learn that it exists) - or, for one's own listing, the
product's refusal to rent it (409) or to open a chat about it (422).

What follows from the route table is generated (`expected`): an anonymous caller of an
AUTHENTICATED route gets 401 and a role outside a route's `any_role(...)` gets 403, before any
object is looked at. The object-level rules are written by hand in `RULES`, each with its reason,
from the product rules (listings: actors/listing.py; rentals: actors/rental_machine.py and
gateway/rental_views.py; chats: actors/chat.py and gateway/chat_actions.py; accounts:
sharehub/accounts.py). A route with no rule fails tests/unit/test_authorization_matrix.py.

tests/e2e/test_authorization_matrix.py executes every cell over HTTP; tests/e2e/test_openapi_contract.py
runs schemathesis once per role and accepts, per operation, only what this matrix allows that role
(plus the business-rule statuses documented in tests/schemathesis.toml)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.routing import Access, RouteSpec, RouteTable

Role = Literal["anonymous", "user", "owner", "moderator", "admin"]
ROLES: tuple[Role, ...] = ("anonymous", "user", "owner", "moderator", "admin")
STAFF: tuple[Role, ...] = ("moderator", "admin")
# The roles each caller's token carries: every account is a `user` (sharehub/accounts.py); `owner`
# comes with the first approved listing. Staff may own listings too, which changes nothing here.
TOKEN_ROLES: dict[Role, frozenset[str]] = {
    "anonymous": frozenset(),
    "user": frozenset({"user"}),
    "owner": frozenset({"user", "owner"}),
    "moderator": frozenset({"user", "moderator"}),
    "admin": frozenset({"user", "admin"}),
}

# - none: the operation acts on nobody's object (a public page, a list of the caller's own things, a create);
# - own: the caller's own object (its listing, its login, its account, its notification);
# - other: someone else's object; for a rental or chat, one the caller takes no part in;
# - renter: a rental or chat in which the caller is the renter;
# - lender: a rental or chat about the caller's listing (the rental's "owner" party, named
#   lender here so that it is not mistaken for the `owner` role).
Relation = Literal["none", "own", "other", "renter", "lender"]
RELATIONS: tuple[Relation, ...] = ("none", "own", "other", "renter", "lender")

# What an object-level rule is about (the path's id, or the listing named in the body).
Kind = Literal["", "listing", "rental", "chat", "session", "account", "notification", "timer"]
# Listing states before the first publication: the only listings a plain `user` can own (the
# first approval makes its author an `owner`).
UNPUBLISHED = frozenset({"draft", "pending_review"})

Outcome = Literal["allowed", "401", "403", "404", "409", "422"]
ALLOWED: Outcome = "allowed"
UNAUTHENTICATED: Outcome = "401"
FORBIDDEN: Outcome = "403"
HIDDEN: Outcome = "404"
Cell = tuple[Role, Relation]


@dataclass(frozen=True)
class Rule:
    """The object-level rule of one operation on an object of `kind` in `state`: the outcome
    for each relation and role. Roles the route table already refuses need no entry."""

    method: str
    path: str
    kind: Kind
    state: str
    outcomes: Mapping[Relation, Mapping[Role, Outcome]]
    why: str

    @property
    def operation(self) -> tuple[str, str]:
        return self.method, self.path

    @property
    def name(self) -> str:
        about = f" [{self.kind} {self.state}]".replace(" ]", "]") if self.kind else ""
        return f"{self.method} {self.path}{about}"


def relations_of(role: Role, kind: Kind, state: str) -> tuple[Relation, ...]:
    """The relations `role` can really stand in to an object of `kind` in `state`."""
    if not kind:
        return ("none",)
    if kind == "timer":
        return ("other",)  # the platform's own, nobody's to own or take part in
    if kind in ("rental", "chat"):
        parties: tuple[Relation, ...] = ("renter", "lender")
    else:
        parties = ("own",)
    if role == "anonymous":
        return ("other",)  # owns nothing, takes part in nothing
    if role == "user":
        # A user whose listing was published is an owner: a user lends nothing and owns only
        # listings that were never approved.
        parties = tuple(p for p in parties if p != "lender")
        if kind == "listing" and state not in UNPUBLISHED:
            parties = ()
    return (*parties, "other")


def gate(access: Access, role: Role) -> Outcome | None:
    """What the gateway answers `role` before any handler runs (gateway/middleware.py
    `authenticate`): 401 without a token where one is required, 403 for a role outside the
    route's roles; None when the call gets through to the handler."""
    if access.authenticated and role == "anonymous":
        return UNAUTHENTICATED
    if access.roles and not access.roles & TOKEN_ROLES[role]:
        return FORBIDDEN
    return None


def expected(access: Access, rule: Rule) -> dict[Cell, Outcome]:
    """Every cell of one rule: generated from the route's access where the gateway decides
    before the handler runs, from the hand-written rule everywhere else."""
    cells: dict[Cell, Outcome] = {}
    for role in ROLES:
        refused = gate(access, role)
        for relation in relations_of(role, rule.kind, rule.state):
            if refused is not None:
                cells[role, relation] = refused
            elif role in rule.outcomes.get(relation, {}):
                cells[role, relation] = rule.outcomes[relation][role]
            else:
                raise LookupError(f"{rule.name}: no outcome for a caller with the {role} role as {relation}")
    return cells


def everyone(outcome: Outcome) -> dict[Role, Outcome]:
    return dict.fromkeys(ROLES, outcome)


def split(members: Outcome, staff: Outcome, *, admin: Outcome | None = None) -> dict[Role, Outcome]:
    """`members` for anonymous, user and owner; `staff` for moderators (and admins, unless `admin`)."""
    return {"anonymous": members, "user": members, "owner": members, "moderator": staff,
            "admin": staff if admin is None else admin}


def _rule(method: str, path: str, why: str, *, kind: Kind = "", state: str = "",
          none: Mapping[Role, Outcome] | None = None, own: Mapping[Role, Outcome] | None = None,
          other: Mapping[Role, Outcome] | None = None, renter: Mapping[Role, Outcome] | None = None,
          lender: Mapping[Role, Outcome] | None = None) -> Rule:
    given: dict[Relation, Mapping[Role, Outcome] | None] = {
        "none": none, "own": own, "other": other, "renter": renter, "lender": lender}
    outcomes = {relation: by_role for relation, by_role in given.items() if by_role is not None}
    return Rule(method, path, kind, state, outcomes, why)


def _public(method: str, path: str, why: str) -> Rule:
    return _rule(method, path, why, none=everyone(ALLOWED))


_L = "/api/v1/listings/{listing_id}"
_R = "/api/v1/rentals/{rental_id}"
_C = "/api/v1/chats/{chat_id}"
_PARTIES_ONLY = "A rental exists only for its renter, its lender and staff; anyone else must not learn it does."

RULES: tuple[Rule, ...] = (
    # ---------------------------------------------------------------- probes, docs, catalogue, search
    _public("GET", "/healthz", "A liveness probe for the orchestrator; a sent token is not even read."),
    _public("GET", "/readyz", "A readiness probe for the load balancer."),
    _public("GET", "/metrics", "Prometheus scrapes it without credentials (private network only)."),
    _public("GET", "/api/openapi.yaml", "The API description is public."),
    _public("GET", "/docs", "Swagger UI is public."),
    _public("GET", "/.well-known/jwks.json", "Other services verify tokens offline with these public keys."),
    _public("GET", "/api/v1/categories", "The catalogue's categories are public."),
    _public("GET", "/api/v1/search", "Published listings are found by anyone."),
    _public("GET", "/api/v1/search/suggest", "Search completions are for anyone typing in the search box."),
    # ---------------------------------------------------------------- authentication
    _public("POST", "/api/v1/auth/register", "Anyone may open an account."),
    _public("POST", "/api/v1/auth/login", "Logging in is how one gets a token."),
    _public("POST", "/api/v1/auth/refresh", "The refresh token is the credential; no access token is needed."),
    _public("POST", "/api/v1/auth/password-reset", "Anyone may ask for a reset (the same answer for any address)."),
    _public("POST", "/api/v1/auth/password-reset/confirm", "The reset token from the e-mail is the credential."),
    _rule("POST", "/api/v1/auth/logout", "Ends the caller's own login.", none=everyone(ALLOWED)),
    _rule("GET", "/api/v1/auth/sessions", "The caller's own logins.", none=everyone(ALLOWED)),
    _rule("DELETE", "/api/v1/auth/sessions/{session_id}",
          "Only one's own logins can be ended; someone else's session id is not found, whoever asks.",
          kind="session", own=everyone(ALLOWED), other=everyone(HIDDEN)),
    # ---------------------------------------------------------------- accounts
    _rule("GET", "/api/v1/users/me", "The caller's own account.", none=everyone(ALLOWED)),
    _rule("PATCH", "/api/v1/users/me", "The caller's own profile.", none=everyone(ALLOWED)),
    _rule("POST", "/api/v1/users/me/password", "The caller's own password (with the current one).",
          none=everyone(ALLOWED)),
    _rule("GET", "/api/v1/users/{user_id}", "Public profiles of active accounts are for anyone.",
          kind="account", own=everyone(ALLOWED), other=everyone(ALLOWED)),
    _rule("POST", "/api/v1/admin/users", "Admins create accounts with roles.", none=everyone(ALLOWED)),
    _rule("GET", "/api/v1/admin/users/{user_id}", "Staff look any account up, their own included.",
          kind="account", own=everyone(ALLOWED), other=everyone(ALLOWED)),
    _rule("PUT", "/api/v1/admin/users/{user_id}/roles",
          "Admins set anyone's roles, but cannot take their own admin role away (403).",
          kind="account", own=everyone(FORBIDDEN), other=everyone(ALLOWED)),
    _rule("PUT", "/api/v1/admin/users/{user_id}/status",
          "Admins ban and reinstate accounts, never their own (403).",
          kind="account", own=everyone(FORBIDDEN), other=everyone(ALLOWED)),
    _rule("GET", "/api/v1/admin/timers", "Admins see the durable timers that failed.", none=everyone(ALLOWED)),
    _rule("POST", "/api/v1/admin/timers/{timer_id}/retry", "Admins re-arm a dead timer once its cause is fixed.",
          kind="timer", state="dead", other=everyone(ALLOWED)),
    # ---------------------------------------------------------------- listings
    _rule("POST", "/api/v1/listings", "Any logged-in user may offer things for rent.", none=everyone(ALLOWED)),
    _rule("GET", "/api/v1/users/me/listings", "The caller's own listings.", none=everyone(ALLOWED)),
    _rule("GET", _L, "A published listing is public.", kind="listing", state="published",
          own=everyone(ALLOWED), other=everyone(ALLOWED)),
    _rule("GET", _L, "A draft is seen by its author and staff only; to anyone else it does not exist.",
          kind="listing", state="draft", own=everyone(ALLOWED), other=split(HIDDEN, ALLOWED)),
    _rule("GET", f"{_L}/availability", "A published listing's calendar is public.", kind="listing",
          state="published", own=everyone(ALLOWED), other=everyone(ALLOWED)),
    _rule("GET", f"{_L}/availability", "A draft's calendar: its author and staff only (hidden from others).",
          kind="listing", state="draft", own=everyone(ALLOWED), other=split(HIDDEN, ALLOWED)),
    _rule("GET", f"{_L}/similar", "Listings like a published one: for anyone who can see it.", kind="listing",
          state="published", own=everyone(ALLOWED), other=everyone(ALLOWED)),
    _rule("GET", f"{_L}/similar", "Listings like a draft: for those who can see the draft.", kind="listing",
          state="draft", own=everyone(ALLOWED), other=split(HIDDEN, ALLOWED)),
    _rule("GET", f"{_L}/price-suggestion",
          "Only a listing's owner is advised on its price (admins may ask); others who see it get 403.",
          kind="listing", state="published", own=everyone(ALLOWED),
          other=split(FORBIDDEN, FORBIDDEN, admin=ALLOWED)),
    _rule("GET", f"{_L}/price-suggestion",
          "A draft is hidden from other users (404) before the owner-only rule refuses staff (403).",
          kind="listing", state="draft", own=everyone(ALLOWED), other=split(HIDDEN, FORBIDDEN, admin=ALLOWED)),
    _rule("POST", "/api/v1/pricing/suggest", "Any logged-in user may price a draft.", none=everyone(ALLOWED)),
    _rule("PATCH", _L, "Only the owner edits a listing; staff see it exists (403), others must not (404).",
          kind="listing", state="published", own=everyone(ALLOWED), other=split(HIDDEN, FORBIDDEN)),
    _rule("PATCH", _L, "Only the author edits a draft; staff see it exists (403), others must not (404).",
          kind="listing", state="draft", own=everyone(ALLOWED), other=split(HIDDEN, FORBIDDEN)),
    _rule("DELETE", _L, "The owner archives a listing, and staff take any listing down; others get 404.",
          kind="listing", state="published", own=everyone(ALLOWED), other=split(HIDDEN, ALLOWED)),
    _rule("DELETE", _L, "The author throws a draft away, and staff take any listing down; to others it does "
          "not exist.", kind="listing", state="draft", own=everyone(ALLOWED), other=split(HIDDEN, ALLOWED)),
    _rule("POST", f"{_L}/archive", "The owner archives a listing, and staff take any listing down; others 404.",
          kind="listing", state="published", own=everyone(ALLOWED), other=split(HIDDEN, ALLOWED)),
    _rule("POST", f"{_L}/archive", "The author throws a draft away, and staff take any listing down; to others "
          "it does not exist.", kind="listing", state="draft", own=everyone(ALLOWED), other=split(HIDDEN, ALLOWED)),
    _rule("POST", f"{_L}/submit", "Only the author submits a draft for review; staff 403, others 404.",
          kind="listing", state="draft", own=everyone(ALLOWED), other=split(HIDDEN, FORBIDDEN)),
    _rule("POST", f"{_L}/pause", "Only the owner pauses a listing; staff 403, others 404.",
          kind="listing", state="published", own=everyone(ALLOWED), other=split(HIDDEN, FORBIDDEN)),
    _rule("POST", f"{_L}/resume", "Only the owner resumes a listing; staff 403, others 404.",
          kind="listing", state="paused", own=everyone(ALLOWED), other=split(HIDDEN, FORBIDDEN)),
    _rule("PUT", f"{_L}/blocked-periods", "Only the owner blocks days of a listing; staff 403, others 404.",
          kind="listing", state="published", own=everyone(ALLOWED), other=split(HIDDEN, FORBIDDEN)),
    _rule("PUT", f"{_L}/blocked-periods", "Only the author blocks days of a draft; staff 403, others 404 (it is "
          "hidden).", kind="listing", state="draft", own=everyone(ALLOWED), other=split(HIDDEN, FORBIDDEN)),
    _rule("GET", "/api/v1/moderation/listings", "Staff read the review queue.", none=everyone(ALLOWED)),
    _rule("POST", "/api/v1/moderation/listings/{listing_id}/approve",
          "Staff approve others' listings, never their own (403: no one reviews their own work).",
          kind="listing", state="pending_review", own=everyone(FORBIDDEN), other=everyone(ALLOWED)),
    _rule("POST", "/api/v1/moderation/listings/{listing_id}/reject",
          "Staff reject others' listings, never their own (403: no one reviews their own work).",
          kind="listing", state="pending_review", own=everyone(FORBIDDEN), other=everyone(ALLOWED)),
    # ---------------------------------------------------------------- rentals
    _rule("POST", "/api/v1/rentals",
          "Anyone logged in may ask to rent someone else's listing; one's own is 409 `own_listing`.",
          kind="listing", state="published", own=everyone("409"), other=everyone(ALLOWED)),
    _rule("GET", "/api/v1/rentals", "The caller's own rentals (as renter or as owner).", none=everyone(ALLOWED)),
    _rule("GET", _R, f"{_PARTIES_ONLY} Staff read every rental.", kind="rental", state="requested",
          renter=everyone(ALLOWED), lender=everyone(ALLOWED), other=split(HIDDEN, ALLOWED)),
    _rule("POST", f"{_R}/accept", f"Only the lender answers a request; the renter and staff 403. {_PARTIES_ONLY}",
          kind="rental", state="requested", renter=everyone(FORBIDDEN), lender=everyone(ALLOWED),
          other=split(HIDDEN, FORBIDDEN)),
    _rule("POST", f"{_R}/decline", f"Only the lender answers a request; the renter and staff 403. {_PARTIES_ONLY}",
          kind="rental", state="requested", renter=everyone(FORBIDDEN), lender=everyone(ALLOWED),
          other=split(HIDDEN, FORBIDDEN)),
    _rule("POST", f"{_R}/cancel",
          f"A request is withdrawn by its renter or staff; the lender declines it instead (403). {_PARTIES_ONLY}",
          kind="rental", state="requested", renter=everyone(ALLOWED), lender=everyone(FORBIDDEN),
          other=split(HIDDEN, ALLOWED)),
    _rule("POST", f"{_R}/cancel",
          f"An accepted rental is cancelled by either party or staff. {_PARTIES_ONLY}",
          kind="rental", state="accepted", renter=everyone(ALLOWED), lender=everyone(ALLOWED),
          other=split(HIDDEN, ALLOWED)),
    _rule("POST", f"{_R}/handover", f"Only the lender issues the handover code. {_PARTIES_ONLY}",
          kind="rental", state="accepted", renter=everyone(FORBIDDEN), lender=everyone(ALLOWED),
          other=split(HIDDEN, FORBIDDEN)),
    _rule("POST", f"{_R}/confirm-handover",
          f"Only the renter confirms receipt with the code (sent right, by everyone). {_PARTIES_ONLY}",
          kind="rental", state="handover_issued", renter=everyone(ALLOWED), lender=everyone(FORBIDDEN),
          other=split(HIDDEN, FORBIDDEN)),
    _rule("POST", f"{_R}/return", f"Only the lender confirms the item came back. {_PARTIES_ONLY}",
          kind="rental", state="active", renter=everyone(FORBIDDEN), lender=everyone(ALLOWED),
          other=split(HIDDEN, FORBIDDEN)),
    _rule("POST", f"{_R}/complete", f"Only the lender completes a returned rental. {_PARTIES_ONLY}",
          kind="rental", state="returned", renter=everyone(FORBIDDEN), lender=everyone(ALLOWED),
          other=split(HIDDEN, FORBIDDEN)),
    _rule("POST", f"{_R}/extend",
          f"The renter asks for a later end and the lender answers; staff take no part (403). {_PARTIES_ONLY}",
          kind="rental", state="extension_requested", renter=everyone(ALLOWED), lender=everyone(ALLOWED),
          other=split(HIDDEN, FORBIDDEN)),
    _rule("GET", "/api/v1/channels/{channel}/events",
          "A rental's channel is its parties' and staff's, as over REST; anyone else gets 404.",
          kind="rental", state="requested", renter=everyone(ALLOWED), lender=everyone(ALLOWED),
          other=split(HIDDEN, ALLOWED)),
    _rule("GET", "/api/v1/channels/{channel}/events", "`user:me` is always the caller's own channel.",
          none=everyone(ALLOWED)),
    # ---------------------------------------------------------------- chats
    _rule("POST", "/api/v1/chats",
          "Anyone logged in may ask about someone else's published listing; one's own is 422 `own_listing`.",
          kind="listing", state="published", own=everyone("422"), other=everyone(ALLOWED)),
    _rule("GET", "/api/v1/chats", "The caller's own rooms.", none=everyone(ALLOWED)),
    _rule("GET", _C, "A room is its two parties'; staff read it; to anyone else it does not exist.",
          kind="chat", renter=everyone(ALLOWED), lender=everyone(ALLOWED), other=split(HIDDEN, ALLOWED)),
    _rule("GET", f"{_C}/messages", "A room's messages: its parties and staff; hidden from anyone else.",
          kind="chat", renter=everyone(ALLOWED), lender=everyone(ALLOWED), other=split(HIDDEN, ALLOWED)),
    _rule("POST", f"{_C}/messages", "The parties write; staff read but do not write (403); others 404.",
          kind="chat", renter=everyone(ALLOWED), lender=everyone(ALLOWED), other=split(HIDDEN, FORBIDDEN)),
    _rule("POST", f"{_C}/read",
          "Only the two parties have read markers; staff see the room but keep none (403); others 404.",
          kind="chat", renter=everyone(ALLOWED), lender=everyone(ALLOWED), other=split(HIDDEN, FORBIDDEN)),
    _rule("POST", f"{_C}/typing", "The parties type; staff do not write (403); others 404.",
          kind="chat", renter=everyone(ALLOWED), lender=everyone(ALLOWED), other=split(HIDDEN, FORBIDDEN)),
    # ---------------------------------------------------------------- notifications, realtime
    _rule("GET", "/api/v1/notifications", "The caller's own notifications.", none=everyone(ALLOWED)),
    _rule("POST", "/api/v1/notifications/read-all", "The caller's own notifications.", none=everyone(ALLOWED)),
    _rule("POST", "/api/v1/notifications/{notification_id}/read",
          "Someone else's notification is not found, like one that does not exist, whoever asks.",
          kind="notification", own=everyone(ALLOWED), other=everyone(HIDDEN)),
    _rule("GET", "/ws", "The socket needs a login (the handshake authenticates: 401 without a token).",
          none={**everyone(ALLOWED), "anonymous": UNAUTHENTICATED}),
)


def routes(tables: list[RouteTable]) -> dict[tuple[str, str], RouteSpec]:
    return {(spec.method, spec.path): spec for table in tables for spec in table.routes}


def matrix(tables: list[RouteTable]) -> Iterator[tuple[Rule, dict[Cell, Outcome]]]:
    """Every rule of a served route with its cells."""
    served = routes(tables)
    for rule in RULES:
        spec = served.get(rule.operation)
        if spec is not None:
            yield rule, expected(spec.access, rule)


def role_outcomes(tables: list[RouteTable]) -> dict[tuple[str, str], dict[Role, set[Outcome]]]:
    """Per operation and role, every outcome the role can get (over all relations and states):
    what schemathesis, which cannot choose whose object it names, must accept for that role."""
    found: dict[tuple[str, str], dict[Role, set[Outcome]]] = {}
    for rule, cells in matrix(tables):
        per_role = found.setdefault(rule.operation, {role: set() for role in ROLES})
        for (role, _), outcome in cells.items():
            per_role[role].add(outcome)
    return found
