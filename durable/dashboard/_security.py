"""Who may use the dashboard: the token (header or login cookie), the Host and Origin
checks, CSRF for browser POSTs, read-only mode.

- With a token, every request needs it: ``Authorization: Bearer T``, or the session
  cookie the login page sets. An API request without it gets 401; a page redirects to
  ``/login``.
- Without a token, only requests addressed to a loopback name (``127.0.0.1``,
  ``localhost``, ``[::1]``) or to a host the server was told about are served: a page
  of another site whose name resolves to 127.0.0.1 (DNS rebinding) gets 403.
- Every POST from a browser must come from the dashboard's own origin (``Origin``, or
  ``Sec-Fetch-Site: same-origin``) and carry the CSRF token of the session (a hidden
  field or the ``X-CSRF-Token`` header) equal to its ``durable_csrf`` cookie. A page on
  another port of the same host can read that cookie, but cannot send a same-origin
  ``Origin``. Requests with a valid bearer token, and requests no browser made (no
  ``Origin`` and no ``Sec-Fetch-Site`` header: curl, your scripts), need neither.
- Read-only: every action answers 403.

Paths are taken relative to where the dashboard is mounted (``scope["root_path"]``).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import parse_qs, quote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

SESSION_COOKIE = "durable_session"
CSRF_COOKIE = "durable_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"

#: paths anyone allowed to reach the server may open (the login page, static files)
OPEN_PATHS = ("/login", "/static/")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
#: the most login sessions kept (the oldest are forgotten first)
MAX_SESSIONS = 1000


def base_of(request: Request) -> str:
    """Where the dashboard is mounted ("" at the root)."""
    return str(request.scope.get("root_path") or "").rstrip("/")


def path_of(request: Request) -> str:
    """The request's path below the dashboard's mount point."""
    path = str(request.scope.get("path") or "/")
    base = base_of(request)
    if base and path.startswith(base):
        path = path[len(base) :] or "/"
    return path


class Guard:
    """The dashboard's access rules (see the module doc)."""

    def __init__(
        self, token: str | None, read_only: bool, allowed_hosts: Iterable[str] = ()
    ) -> None:
        self.token = token or None
        self.read_only = read_only
        self.allowed_hosts = LOOPBACK | {h.lower() for h in allowed_hosts}
        self._sessions: dict[str, None] = {}

    # -- where the request comes from --------------------------------------------------------

    def host_ok(self, request: Request) -> bool:
        """With a token, any Host (the token is what protects); without one, a loopback
        name or an allowed host only."""
        if self.token is not None:
            return True
        host = request.headers.get("host", "").lower()
        name = host[: host.find("]") + 1] if host.startswith("[") else host.split(":")[0]
        return name in self.allowed_hosts

    @staticmethod
    def from_a_browser(request: Request) -> bool:
        return "origin" in request.headers or "sec-fetch-site" in request.headers

    @staticmethod
    def same_origin(request: Request) -> bool:
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return site is not None
        parts = urlsplit(origin)
        return parts.netloc.lower() == request.headers.get("host", "").lower()

    # -- authentication ----------------------------------------------------------------------

    def bearer_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not self.token or not header.lower().startswith("bearer "):
            return False
        return hmac.compare_digest(header[7:].strip().encode(), self.token.encode())

    def authenticated(self, request: Request) -> bool:
        if self.token is None or self.bearer_ok(request):
            return True
        session = request.cookies.get(SESSION_COOKIE)
        return session is not None and session in self._sessions

    def login(self, given: str) -> str | None:
        """A new session id if ``given`` is the token, else None."""
        if self.token is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        session = secrets.token_urlsafe(32)
        self._sessions[session] = None
        while len(self._sessions) > MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        return session

    # -- CSRF ------------------------------------------------------------------------------------

    async def post_ok(self, request: Request) -> bool:
        """A POST may act: the bearer token, not a browser, or the dashboard's own page
        with its CSRF token."""
        if self.bearer_ok(request) or not self.from_a_browser(request):
            return True
        if not self.same_origin(request):
            return False
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
    path = path_of(request)
    return path.startswith("/api/") or path == "/events"


def deny(request: Request, status: int, message: str) -> Response:
    """A one-line refusal: JSON for the API, a page (or the login redirect) otherwise."""
    if status == 401 and not is_api(request):
        target = path_of(request) + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{base_of(request)}/login?next={quote(target)}", status_code=303)
    if is_api(request):
        return JSONResponse({"error": message}, status_code=status)
    return Response(message, status_code=status, media_type="text/plain")


SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; frame-ancestors 'none'; form-action 'self'"
    ),
}


def guard_middleware(
    guard: Guard,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """The checks of every request, the CSRF cookie, and the security headers."""

    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = path_of(request)
        if not guard.host_ok(request):
            return deny(
                request,
                403,
                "this dashboard answers only to 127.0.0.1/localhost (or give it a token)",
            )
        is_post = request.method not in ("GET", "HEAD", "OPTIONS")
        if not path.startswith(OPEN_PATHS):
            if not guard.authenticated(request):
                return deny(request, 401, "authentication required: give the dashboard token")
            if is_post and guard.read_only:
                return deny(request, 403, "the dashboard is read-only")
        if is_post and not await guard.post_ok(request):
            return deny(request, 403, "missing or wrong CSRF token, or another site's page")
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if CSRF_COOKIE not in request.cookies:
            response.set_cookie(
                CSRF_COOKIE,
                csrf_token(request),
                httponly=False,
                samesite="strict",
                path=base_of(request) or "/",
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
