"""Who may use the dashboard: the token (header or login cookie), CSRF for browser POSTs,
read-only mode.

- With a token, every request needs it: ``Authorization: Bearer T``, or the session
  cookie the login page sets. An API request without it gets 401; a page redirects to
  ``/login``.
- Every POST from a browser carries the CSRF token (a hidden field or the
  ``X-CSRF-Token`` header) equal to the ``durable_csrf`` cookie, which a cross-site page
  can neither read nor send (SameSite=Strict). Requests with a valid bearer token, and
  requests no browser made (no ``Origin`` and no ``Sec-Fetch-Site`` header: curl, your
  scripts), need no CSRF token.
- Read-only: every action answers 403.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

SESSION_COOKIE = "durable_session"
CSRF_COOKIE = "durable_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"

#: paths anyone may open (the login page and the static files)
OPEN_PATHS = ("/login", "/static/")


class Guard:
    """The dashboard's access rules (see the module doc)."""

    def __init__(self, token: str | None, read_only: bool) -> None:
        self.token = token or None
        self.read_only = read_only
        self._sessions: set[str] = set()

    # -- authentication ----------------------------------------------------------------------

    def bearer_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not self.token or not header.lower().startswith("bearer "):
            return False
        return hmac.compare_digest(header[7:].strip().encode(), self.token.encode())

    def authenticated(self, request: Request) -> bool:
        if self.token is None:
            return True
        if self.bearer_ok(request):
            return True
        session = request.cookies.get(SESSION_COOKIE)
        return session is not None and session in self._sessions

    def login(self, given: str) -> str | None:
        """A new session id if ``given`` is the token, else None."""
        if self.token is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        session = secrets.token_urlsafe(32)
        self._sessions.add(session)
        return session

    # -- CSRF ------------------------------------------------------------------------------------

    @staticmethod
    def from_a_browser(request: Request) -> bool:
        return "origin" in request.headers or "sec-fetch-site" in request.headers

    async def csrf_ok(self, request: Request) -> bool:
        if self.bearer_ok(request) or not self.from_a_browser(request):
            return True
        expected = request.cookies.get(CSRF_COOKIE)
        if not expected:
            return False
        given = request.headers.get(CSRF_HEADER)
        if given is None:
            content_type = request.headers.get("content-type", "")
            if content_type.startswith("application/x-www-form-urlencoded"):
                # read as bytes: the body is kept for the endpoint (a parsed form is not)
                fields = parse_qs((await request.body()).decode("utf-8", "replace"))
                values = fields.get(CSRF_FIELD)
                given = values[0] if values else None
        return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/events"


def deny(request: Request, status: int, message: str) -> Response:
    """A one-line refusal: JSON for the API, a page (or the login redirect) otherwise."""
    if status == 401 and not is_api(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    if is_api(request):
        return JSONResponse({"error": message}, status_code=status)
    return Response(message, status_code=status, media_type="text/plain")


def guard_middleware(
    guard: Guard,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """The checks of every request, and the CSRF cookie on every page."""

    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if not path.startswith(OPEN_PATHS):
            if not guard.authenticated(request):
                return deny(request, 401, "authentication required: give the dashboard token")
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                if guard.read_only:
                    return deny(request, 403, "the dashboard is read-only")
                if not await guard.csrf_ok(request):
                    return deny(request, 403, "missing or wrong CSRF token; reload the page")
        elif request.method == "POST" and not await guard.csrf_ok(request):
            return deny(request, 403, "missing or wrong CSRF token; reload the page")
        response = await call_next(request)
        if CSRF_COOKIE not in request.cookies:
            response.set_cookie(
                CSRF_COOKIE, csrf_token(request), httponly=False, samesite="strict", path="/"
            )
        return response

    return middleware


def csrf_token(request: Request) -> str:
    """The request's CSRF token: its cookie's, or a new one (set by the middleware)."""
    token = request.cookies.get(CSRF_COOKIE) or request.scope.get("durable_csrf")
    if not token:
        token = secrets.token_urlsafe(24)
        request.scope["durable_csrf"] = token
    return str(token)
