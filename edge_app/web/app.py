"""The Flask app, put together from its pieces: auth (request guards and headers), pages (HTML), api
(JSON), stream (MJPEG), and the error answers (responses).

Each piece is a plain `register(app, ...)` function rather than a Flask blueprint: a blueprint would
prefix its endpoint names ('api.api_history'), which the templates' url_for calls and the open
endpoints of auth name bare, and its before_request hooks and error handlers would cover only its own
routes, where the guards and error answers must cover every URL, unknown ones included. A test builds
a bare app with flask_app() and registers the one piece it tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_app.errors import require
from edge_app.web import api, auth, pages, stream
from edge_app.web.auth import LOOPBACK_NAMES, MIN_TOKEN_CHARS, OPEN_ENDPOINTS, TOKEN_COOKIE, token_problem
from edge_app.web.config import WebConfig, WebContext
from edge_app.web.feed import LiveFeed, SharedClassifier
from edge_app.web.forms import MAX_FORM_FIELD, MAX_FORM_PARTS, request_class
from edge_app.web.responses import register_errors, size_text, without_paths
from edge_app.web.store import History

__all__ = [  # what callers imported from this module before it was split
    "LOOPBACK_NAMES",
    "MAX_FORM_FIELD",
    "MAX_FORM_PARTS",
    "MIN_TOKEN_CHARS",
    "OPEN_ENDPOINTS",
    "TOKEN_COOKIE",
    "WebConfig",
    "create_app",
    "flask_app",
    "size_text",
    "token_problem",
    "without_paths",
]


def flask_app(config: WebConfig) -> Any:
    """A Flask app with the templates, static files, request limits and error answers, and no routes."""
    flask = require("flask", "web")
    here = Path(__file__).resolve().parent
    app = flask.Flask("edgeclf", template_folder=str(here / "templates"), static_folder=str(here / "static"))
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_FORM_FIELD
    app.request_class = request_class(flask)
    app.jinja_env.globals["csp_nonce"] = auth.csp_nonce  # the pages' inline scripts carry it; auth's policy names it
    register_errors(app, config)
    return app


def create_app(shared: SharedClassifier, history: History, config: WebConfig, feed: LiveFeed | None = None) -> Any:
    """Build the Flask application around a shared classifier, a history store and an optional feed.

    ValueError for a token unfit to guard the server (auth.register checks it)."""
    app = flask_app(config)
    ctx = WebContext(shared, history, config, feed)
    auth.register(app, config)
    pages.register(app, ctx)
    api.register(app, ctx)
    stream.register(app, ctx)
    return app
