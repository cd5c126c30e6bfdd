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

from edgeclf.edge_app.errors import require
from edgeclf.edge_app.web import api, auth, modelroutes, pages, reviewroutes, stream, teachroutes
from edgeclf.edge_app.web.auth import LOOPBACK_NAMES, MIN_TOKEN_CHARS, OPEN_ENDPOINTS, TOKEN_COOKIE, token_problem
from edgeclf.edge_app.web.config import WebConfig, WebContext
from edgeclf.edge_app.web.deploy import Deployer
from edgeclf.edge_app.web.feed import LiveFeed, SharedClassifier
from edgeclf.edge_app.web.forms import MAX_FORM_FIELD, MAX_FORM_PARTS, request_class
from edgeclf.edge_app.web.responses import register_errors, size_text, without_paths
from edgeclf.edge_app.web.store import History
from edgeclf.edge_app.web.teaching import Teaching

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
    # root_path given: Flask would look up the import name's folder, and `edgeclf` is a namespace package (no
    # folder of its own; see pyproject.toml), which Flask refuses
    app = flask.Flask(
        "edgeclf", root_path=str(here), template_folder=str(here / "templates"), static_folder=str(here / "static")
    )
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_FORM_FIELD
    app.request_class = request_class(flask)
    app.jinja_env.globals["csp_nonce"] = auth.csp_nonce  # the pages' inline scripts carry it; auth's policy names it
    app.jinja_env.globals["has_page"] = lambda endpoint: endpoint in app.view_functions  # a test app has some pages
    register_errors(app, config)
    return app


def create_app(
    shared: SharedClassifier,
    history: History,
    config: WebConfig,
    feed: LiveFeed | None = None,
    deploy: Deployer | None = None,
    teaching: Teaching | None = None,
) -> Any:
    """Build the Flask application around a shared classifier, a history store and an optional feed.

    `deploy` changes the model in force (default: uploads kept in models/ beside the database) and
    `teaching` holds the teach folder (default: teach/ beside the database, taught models in taught/).
    The Deployer is `app.extensions["edgeclf_deploy"]` (serve's SIGHUP reloads through it), the Teaching
    `app.extensions["edgeclf_teach"]`.
    ValueError for a token unfit to guard the server (auth.register checks it)."""
    app = flask_app(config)
    here = history.path.parent
    deploy = deploy or Deployer(shared, here / "models")
    teaching = teaching or Teaching(here / "teach", here / "taught", deploy)
    ctx = WebContext(shared, history, config, feed, deploy, teaching)
    auth.register(app, config)
    pages.register(app, ctx)
    api.register(app, ctx)
    stream.register(app, ctx)
    modelroutes.register(app, ctx)
    teachroutes.register(app, ctx)
    reviewroutes.register(app, ctx)
    app.extensions["edgeclf_deploy"] = deploy
    app.extensions["edgeclf_teach"] = teaching
    return app
