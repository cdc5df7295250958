"""One error vocabulary for the whole platform.

Code anywhere raises `ApiError` (or a helper below) with a stable machine `code`; the gateway turns
it into an RFC 9457 `application/problem+json` body in one place. Codes are part of the API: never
rename one, add a new one."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or code)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}

    @property
    def title(self) -> str:
        return HTTPStatus(self.status).phrase

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://sharehub.ru/problems/{self.code.replace('_', '-')}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


def unauthorized(code: str = "authentication_required", detail: str | None = None) -> ApiError:
    error = ApiError(401, code, detail or "A valid access token is required.")
    error.headers["WWW-Authenticate"] = 'Bearer realm="sharehub"'
    return error


def forbidden(detail: str = "You may not do this.") -> ApiError:
    return ApiError(403, "forbidden", detail)


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, "not_found", f"No such {what}.")


def conflict(code: str, detail: str) -> ApiError:
    return ApiError(409, code, detail)


def rate_limited(retry_after_secs: int, detail: str = "Too many requests; try again later.") -> ApiError:
    error = ApiError(429, "rate_limited", detail, retry_after=retry_after_secs)
    error.headers["Retry-After"] = str(retry_after_secs)
    return error


# How long a client should wait before retrying after a 503: outages of a dependency are answered
# at once, and service returns by itself within a second or two of the dependency coming back.
RETRY_AFTER_SECS = 2


def unavailable(detail: str, code: str = "service_unavailable", retry_after_secs: int = RETRY_AFTER_SECS) -> ApiError:
    error = ApiError(503, code, detail)
    error.headers["Retry-After"] = str(retry_after_secs)
    return error
