"""Who may ask, and what every answer carries: the Host check (DNS rebinding), the cross-site check
(CSRF), the token (a Bearer header, or ?token= once, which sets a cookie), and the security headers
(a content security policy with a nonce per response, no framing, no sniffing)."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from edgeclf.edge_app.errors import require
from edgeclf.edge_app.web.config import WebConfig
from edgeclf.edge_app.web.responses import error

TOKEN_COOKIE = "edgeclf_token"
OPEN_ENDPOINTS = {"healthz", "static"}
MIN_TOKEN_CHARS = 16
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def token_problem(token: str) -> str | None:
    """Why `token` cannot guard the server (empty, blank, short, spaces or control characters); None if fit."""
    if not token.strip():
        return "the token is empty (an unset shell variable?)"
    if not all(33 <= ord(c) <= 126 for c in token):
        return "the token may hold only printable ASCII characters, without spaces"
    if len(token) < MIN_TOKEN_CHARS:
        return f"the token has {len(token)} characters; at least {MIN_TOKEN_CHARS} are needed"
    return None


def token_matches(config: WebConfig, given: str | None) -> bool:
    """`given` is the token, compared in constant time."""
    return bool(config.token and given and hmac.compare_digest(given.encode(), config.token.encode()))


def csp_nonce() -> str:
    """This response's nonce for inline scripts (the templates call it; the policy names it)."""
    g = require("flask", "web").g
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return str(g.csp_nonce)


def register(app: Any, config: WebConfig) -> None:
    """Check every request (host, cross-site, token) before its route runs; add the cookie and the
    security headers to every response. ValueError for a token unfit to guard the server."""
    if config.token is not None and (problem := token_problem(config.token)):
        raise ValueError(problem)  # an empty token must never mean "no authentication"
    flask = require("flask", "web")
    request = flask.request

    @app.before_request
    def same_site_only() -> Any:
        # DNS rebinding: a loopback server answers only to loopback host names
        host = request.host.rsplit(":", 1)[0].strip("[]").lower()
        if config.allowed_hosts is not None and host not in config.allowed_hosts:
            return error(403, f"host {request.host!r} not allowed; use http://127.0.0.1:PORT/")
        # CSRF: no page of another site may post to or delete from this one
        if request.method in ("POST", "DELETE", "PUT", "PATCH"):
            if request.headers.get("Sec-Fetch-Site") == "cross-site":
                return error(403, "cross-site request refused")
            origin = request.headers.get("Origin")  # "null": a sandboxed frame, a data: page, a file...
            if origin is not None and origin.split("://", 1)[-1] != request.host:
                return error(403, "cross-origin request refused")
        return None

    @app.before_request
    def authenticate() -> Any:
        if not config.token or request.endpoint in OPEN_ENDPOINTS:
            return None
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":  # RFC 7235: the scheme is case-insensitive
            given = credentials.strip()
        else:
            given = request.args.get("token") or request.cookies.get(TOKEN_COOKIE)
        if not token_matches(config, given):
            return error(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' or open /?token=TOKEN")
        return None

    @app.after_request
    def remember_token(response: Any) -> Any:
        # one hook for the cookie and the headers: their order in the response stays as it always was
        if token_matches(config, request.args.get("token")):
            response.set_cookie(TOKEN_COOKIE, config.token, httponly=True, samesite="Strict")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # no other site may frame a page (clickjacking the delete button) or run script in it
        nonce = f" 'nonce-{flask.g.csp_nonce}'" if "csp_nonce" in flask.g else ""
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; script-src 'self'{nonce}; style-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        return response
