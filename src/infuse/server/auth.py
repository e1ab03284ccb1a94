"""Who is asking: the auth dependency every route but ``/health`` and ``/ready`` depends on.

Why a dependency and not middleware: a route needs the :class:`~infuse.access.Caller` itself (to
build the caller's pipeline, to check admin rights, to audit), and FastAPI hands a dependency's
value to the route; a router declares it once (``dependencies=[Depends(gate)]``) so a new route
cannot forget it (``tests/test_team_server.py`` enumerates the routes and knocks on each).

Two modes:

- ``serve --auth``: an :class:`Authenticator` (production: the workspace's identity store) turns a
  bearer API key, or a session cookie set by ``POST /auth/session``, into a caller. A cookie
  session must send its CSRF token in ``X-CSRF-Token`` on unsafe methods (the cookie is HttpOnly
  and SameSite=Strict, Secure behind HTTPS). Failed attempts count per client address in a
  :class:`Limiter`; past its limit the answer is 429 with ``Retry-After``, before the key is even
  checked.
- without ``--auth`` (today's single-user server): everyone is one admin caller, ``local``; with
  ``--api-key`` the bearer must match it (constant-time comparison).
"""

from __future__ import annotations

import hmac
from typing import Any, Protocol

import anyio
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from infuse.access import Caller
from infuse.errors import InfuseError
from infuse.server.common import APIError

SESSION_COOKIE = "infuse_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOCAL_ADMIN = Caller("local", admin=True)  # the caller of a server without --auth


class SessionGrant(Protocol):
    """A signed-in session: the cookie's value, the CSRF token the client echoes, seconds left."""

    @property
    def token(self) -> str: ...

    @property
    def csrf(self) -> str: ...

    @property
    def max_age(self) -> int: ...


class Authenticator(Protocol):
    """What the server needs from an identity store (``infuse.identity.IdentityStore`` in production;
    tests may pass a small stand-in)."""

    def authenticate_key(self, key: str) -> Caller | None: ...

    def record_failure(self, address: str, reason: str, key: str | None = None) -> None:
        """Keep a record of a failed authentication (the key's id only, never the key)."""
        ...

    def create_session(self, key: str) -> SessionGrant:
        """A new session for a valid key; an invalid one raises an ``InfuseError``."""
        ...

    def session_caller(self, token: str) -> Caller | None: ...

    def check_csrf(self, token: str, csrf: str) -> bool: ...

    def end_session(self, token: str) -> bool: ...


class Limiter(Protocol):
    """Failed sign-ins per client address (``infuse.identity.FailedAuthLimiter``): ``retry_after`` is
    the seconds to wait (None: may try now)."""

    def retry_after(self, address: str) -> float | None: ...

    def failure(self, address: str) -> float | None: ...

    def success(self, address: str) -> None: ...


def unauthorized(message: str = "invalid or missing API key (Authorization: Bearer ...) or session") -> APIError:
    return APIError(401, message, "invalid_api_key", kind="authentication_error")


def note(request: Request, **fields: Any) -> None:
    """Add fields to this request's audit record (:mod:`infuse.server.audit`); a no-op without one."""
    record = request.scope.get("state", {}).get("audit")
    if record is not None:
        record.update(fields)


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


class Gate:
    """The auth dependency: ``caller: Caller = Depends(gate)`` (see the module docstring)."""

    def __init__(
        self, authenticator: Authenticator | None = None, api_key: str | None = None, limiter: Limiter | None = None
    ) -> None:
        self.authenticator = authenticator
        self.api_key = api_key
        self.limiter = limiter

    @property
    def multi_user(self) -> bool:
        return self.authenticator is not None

    def check_limit(self, request: Request) -> None:
        if self.limiter is None:
            return
        wait = self.limiter.retry_after(_client(request))
        if wait is not None:
            seconds = max(1, round(wait))
            raise APIError(
                429,
                f"too many failed sign-ins from this address; retry in {seconds} s",
                "rate_limited",
                kind="authentication_error",
                headers={"Retry-After": str(seconds)},
            )

    async def failed(self, request: Request, reason: str, key: str | None) -> None:
        """Count a failure against the client's address and record it for admins (``users failures``)."""
        if self.limiter is not None:
            self.limiter.failure(_client(request))
        if self.authenticator is not None:
            await anyio.to_thread.run_sync(self.authenticator.record_failure, _client(request), reason, key)

    def succeeded(self, request: Request) -> None:
        if self.limiter is not None:
            self.limiter.success(_client(request))

    async def sign_in(self, request: Request, key: str) -> tuple[Caller, SessionGrant]:
        """A new session for a valid key: 429 past the failure limit, 401 for a bad key (counted)."""
        assert self.authenticator is not None
        authenticator = self.authenticator
        self.check_limit(request)
        caller = await anyio.to_thread.run_sync(authenticator.authenticate_key, key) if key else None
        grant: SessionGrant | None = None
        if caller is not None:
            try:
                grant = await anyio.to_thread.run_sync(authenticator.create_session, key)
            except InfuseError:  # the key was rotated or revoked in between
                grant = None
        if caller is None or grant is None:
            await self.failed(request, "sign-in with a bad key", key)
            raise unauthorized("invalid API key")
        self.succeeded(request)
        note(request, user=caller.name)
        return caller, grant

    async def __call__(self, request: Request) -> Caller:
        caller = await self._caller(request)
        note(request, user=caller.name)
        return caller

    async def _caller(self, request: Request) -> Caller:
        key = _bearer(request)
        if self.authenticator is None:
            if self.api_key is None:
                return LOCAL_ADMIN
            if key is not None and hmac.compare_digest(key.encode(), self.api_key.encode()):
                return LOCAL_ADMIN
            raise unauthorized("invalid or missing API key (Authorization: Bearer ...)")
        authenticator = self.authenticator
        token = request.cookies.get(SESSION_COOKIE)
        if key is None and token:
            caller = await anyio.to_thread.run_sync(authenticator.session_caller, token)
            if caller is None:
                raise unauthorized("the session has expired or was signed out; sign in again (POST /auth/session)")
            if request.method not in SAFE_METHODS:
                csrf = request.headers.get(CSRF_HEADER, "")
                if not await anyio.to_thread.run_sync(authenticator.check_csrf, token, csrf):
                    raise APIError(
                        403,
                        f"missing or wrong {CSRF_HEADER} header (a signed-in session sends the csrf_token it got "
                        "at sign-in with every POST, PUT, PATCH or DELETE)",
                        "csrf_failed",
                        kind="authentication_error",
                    )
            return caller
        self.check_limit(request)
        caller = await anyio.to_thread.run_sync(authenticator.authenticate_key, key) if key else None
        if caller is None:
            await self.failed(request, "bad key" if key else "no key", key)
            raise unauthorized()
        self.succeeded(request)
        return caller


def set_session_cookie(response: Response, request: Request, grant: SessionGrant) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure when the client came over HTTPS."""
    response.set_cookie(
        SESSION_COOKIE,
        grant.token,
        max_age=grant.max_age,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )


class SignIn(BaseModel):
    key: str = Field("", description="an API key, as `infuse users add` printed it")


def _secure(request: Request) -> bool:
    """Whether the client reached us over HTTPS (directly, or through a proxy uvicorn trusts)."""
    return request.url.scheme == "https"


def session_router(gate: Gate) -> APIRouter:
    """``POST /auth/session`` (sign in with a key: sets the cookie, returns the CSRF token),
    ``GET /auth/session`` (who am I) and ``DELETE /auth/session`` (sign out)."""
    assert gate.authenticator is not None
    authenticator = gate.authenticator
    router = APIRouter(tags=["auth"])

    @router.post("/auth/session")
    async def sign_in(body: SignIn, request: Request, response: Response) -> dict[str, Any]:
        caller, grant = await gate.sign_in(request, body.key)
        set_session_cookie(response, request, grant)
        return {"user": caller.name, "admin": caller.admin, "groups": list(caller.groups), "csrf_token": grant.csrf}

    @router.get("/auth/session")
    async def who_am_i(caller: Caller = Depends(gate)) -> dict[str, Any]:
        return {"user": caller.name, "admin": caller.admin, "groups": list(caller.groups)}

    @router.delete("/auth/session")
    async def sign_out(request: Request, response: Response, caller: Caller = Depends(gate)) -> dict[str, Any]:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await anyio.to_thread.run_sync(authenticator.end_session, token)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))
        return {"signed_out": caller.name}

    return router
