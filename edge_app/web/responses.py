"""How the app answers a failure: JSON for the API, the CSV export and the stream, the error page for
a browser; with the server's folders cut from every message; and the app-wide error handlers."""

from __future__ import annotations

import re
from typing import Any

from edgeclf.edge_app.errors import EdgeClfError, require
from edgeclf.edge_app.web.config import WebConfig

# a run of folders from the root ("/a/b/", "~/a/", "C:\\a\\"), not one inside a URL or a word
_FOLDERS = re.compile(r"(?<![\w:/.~-])(?:~|[A-Za-z]:)?[\\/](?:[^\s\\/'\"]+[\\/])+")


def without_paths(message: str) -> str:
    """`message` with every absolute path cut to its file name: error pages never show the server's folders."""
    return _FOLDERS.sub("", message)


def size_text(n: int) -> str:
    """A byte count as the options give it: '10 MiB', '512 KiB', '2,000 bytes'."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and (n % scale == 0 or n >= 10 * scale):
            return f"{n / scale:.4g} {unit}"
    return f"{n:,} bytes"


def wants_json() -> bool:
    """Whether this request's caller reads JSON (a script), not a page (a browser)."""
    path = _flask().request.path
    return path.startswith("/api/") or path.endswith((".csv", ".mjpg"))


def error(status: int, message: str) -> Any:
    """The (response, status) of a failure: {"error": message} or the error page, without server paths."""
    flask = _flask()
    message = without_paths(message)
    if wants_json():
        return flask.jsonify({"error": message}), status
    return flask.render_template("error.html", status=status, message=message), status


def register_errors(app: Any, config: WebConfig) -> None:
    """Error handlers for the whole app: limits (413), unknown routes and methods, EdgeClfError (500,
    logged with its paths), any other HTTP error, and unexpected exceptions (500, logged with the traceback)."""
    from werkzeug.exceptions import HTTPException

    request = _flask().request

    @app.errorhandler(413)
    def too_large(exc: Any) -> Any:
        problem = getattr(exc, "form_problem", None)  # set by the form parser for its own limits
        return error(413, problem or f"upload larger than the limit of {size_text(config.max_upload)}")

    @app.errorhandler(404)
    def not_found(_exc: Any) -> Any:
        return error(404, "not found")

    @app.errorhandler(405)
    def not_allowed(_exc: Any) -> Any:
        return error(405, "method not allowed")

    @app.errorhandler(EdgeClfError)
    def failed(exc: EdgeClfError) -> Any:
        app.logger.error("%s %s: %s", request.method, request.path, exc)  # the log keeps the full paths
        return error(500, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: Any) -> Any:
        if exc.code is None:  # abort(response): already answered
            return exc
        return error(exc.code, exc.name.lower())

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        app.logger.error("%s %s failed", request.method, request.path, exc_info=exc)
        return error(500, "internal server error")


def _flask() -> Any:
    """The flask module, imported only once the web app is used (a missing one names the [web] extra)."""
    return require("flask", "web")
