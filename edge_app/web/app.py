"""The Flask app: Classify, Live, History and About pages, the JSON API, and token auth."""

from __future__ import annotations

import csv
import hmac
import io
import math
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_app.errors import EdgeClfError, require
from edge_app.web.feed import LiveFeed, SharedClassifier
from edge_app.web.store import MAX_ROW_ID, History
from edge_app.web.uploads import MAX_PIXELS, BadUpload, decoded

TOKEN_COOKIE = "edgeclf_token"
OPEN_ENDPOINTS = {"healthz", "static"}
MIN_TOKEN_CHARS = 16
MAX_FORM_PARTS = 100  # the upload form has one; werkzeug refuses more with 413
MAX_FORM_FIELD = 512 * 1024  # bytes of a text (non-file) form field, or of a whole urlencoded body
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


def token_problem(token: str) -> str | None:
    """Why `token` cannot guard the server (empty, blank, short, spaces or control characters); None if fit."""
    if not token.strip():
        return "the token is empty (an unset shell variable?)"
    if not all(33 <= ord(c) <= 126 for c in token):
        return "the token may hold only printable ASCII characters, without spaces"
    if len(token) < MIN_TOKEN_CHARS:
        return f"the token has {len(token)} characters; at least {MIN_TOKEN_CHARS} are needed"
    return None


@dataclass(frozen=True)
class WebConfig:
    token: str | None = None
    max_upload: int = 10 * 1024 * 1024
    max_pixels: int = MAX_PIXELS
    per_page: int = 20
    allowed_hosts: frozenset[str] | None = None  # None: any Host header (a token guards non-loopback binds)
    max_viewers: int = 2  # MJPEG streams at once: each holds a request thread for as long as it is watched


def _cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _once(fn: Callable[[], None]) -> Callable[[], None]:
    """`fn` wrapped so that only its first call runs, from any thread."""
    done = threading.Lock()

    def call() -> None:
        if done.acquire(blocking=False):
            fn()

    return call


class _CountingStream:
    """A request body seen by the form parser: counts multipart delimiters and notes a failed read
    (the body over the size limit), so a 413 from the parser can say which limit it hit."""

    def __init__(self, inner: Any, boundary: str) -> None:
        self._inner = inner
        self._delimiter = b"--" + boundary.encode("ascii", "replace") if boundary else b""
        self._tail = b""
        self.delimiters = 0
        self.read_failed = False

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._inner.read(size)
        except BaseException:
            self.read_failed = True
            raise
        if self._delimiter and data:
            window = self._tail + data  # the tail is shorter than a delimiter: none is counted twice
            self.delimiters += window.count(self._delimiter)
            self._tail = window[-(len(self._delimiter) - 1) :]
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _request_class(flask: Any) -> Any:
    """Flask's Request whose form parser tells 'too many parts' and 'field too large' from 'body too large'."""
    from werkzeug.exceptions import RequestEntityTooLarge
    from werkzeug.formparser import FormDataParser

    class Parser(FormDataParser):
        def parse(self, stream: Any, mimetype: str, content_length: int | None, options: Any = None) -> Any:
            boundary = (options or {}).get("boundary", "") if mimetype == "multipart/form-data" else ""
            counted = _CountingStream(stream, boundary)
            try:
                return super().parse(counted, mimetype, content_length, options)
            except RequestEntityTooLarge as exc:
                if counted.read_failed:  # the body itself is over the upload limit
                    raise
                if self.max_form_parts is not None and counted.delimiters > self.max_form_parts:
                    exc.form_problem = f"too many parts in the form (at most {self.max_form_parts:,}): send one image"
                else:
                    exc.form_problem = (
                        f"a form field is larger than {size_text(self.max_form_memory_size or 0)}: send the image "
                        "as a file (curl -F image=@FILE) or as the request body (--data-binary @FILE)"
                    )
                raise

    class Request(flask.Request):
        form_data_parser_class = Parser

    return Request


def create_app(shared: SharedClassifier, history: History, config: WebConfig, feed: LiveFeed | None = None) -> Any:
    """Build the Flask application around a shared classifier, a history store and an optional feed."""
    if config.token is not None and (problem := token_problem(config.token)):
        raise ValueError(problem)  # an empty token must never mean "no authentication"
    flask = require("flask", "web")
    from werkzeug.exceptions import HTTPException

    here = Path(__file__).resolve().parent
    app = flask.Flask("edgeclf", template_folder=str(here / "templates"), static_folder=str(here / "static"))
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_FORM_FIELD
    app.request_class = _request_class(flask)
    request = flask.request
    model_name = shared.clf.path.name
    viewers = threading.Semaphore(max(0, config.max_viewers))  # MJPEG streams hold a request thread each

    def wants_json() -> bool:
        return request.path.startswith("/api/") or request.path.endswith((".csv", ".mjpg"))

    def error(status: int, message: str) -> Any:
        message = without_paths(message)
        if wants_json():
            return flask.jsonify({"error": message}), status
        return flask.render_template("error.html", status=status, message=message), status

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

    def token_matches(given: str | None) -> bool:
        """`given` is the token, compared in constant time."""
        return bool(config.token and given and hmac.compare_digest(given.encode(), config.token.encode()))

    @app.before_request
    def authenticate() -> Any:
        if not config.token or request.endpoint in OPEN_ENDPOINTS:
            return None
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":  # RFC 7235: the scheme is case-insensitive
            given = credentials.strip()
        else:
            given = request.args.get("token") or request.cookies.get(TOKEN_COOKIE)
        if not token_matches(given):
            return error(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' or open /?token=TOKEN")
        return None

    def csp_nonce() -> str:
        """This response's nonce for inline scripts (templates call it; the policy names it)."""
        if "csp_nonce" not in flask.g:
            flask.g.csp_nonce = secrets.token_urlsafe(16)
        return str(flask.g.csp_nonce)

    app.jinja_env.globals["csp_nonce"] = csp_nonce

    @app.after_request
    def remember_token(response: Any) -> Any:
        if token_matches(request.args.get("token")):
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

    def predict_bytes(data: bytes, filename: str | None) -> dict[str, Any]:
        with decoded(data, config.max_pixels) as image:  # its memory counted until the thumbnail is stored
            result = shared.classify(image)
            label = "uncertain" if result.uncertain else result.top[0][0]
            top = [{"label": n, "score": round(p, 4)} for n, p in result.top]
            original = Path(filename).name[:200] if filename else None  # shown only; files get server names
            entry_id, thumb = history.add(image, "upload", label, result.top[0][1], top, model_name, original)
        return {
            "id": entry_id,
            "label": label,
            "uncertain": result.uncertain,
            "top": top,
            "inference_ms": round(result.infer_ms, 3),
            "model": model_name,
            "thumb": thumb,
        }

    def upload_from_request() -> tuple[bytes, str | None]:
        # only a multipart form is parsed as a form: `curl --data-binary @x.jpg` says urlencoded, and is the image
        if request.mimetype == "multipart/form-data":
            upload = next(iter(request.files.values()), None)
            if upload is None:
                raise BadUpload("the form has no file: send the image as a file field (curl -F image=@FILE)")
            return upload.read(), upload.filename
        return request.get_data(cache=False), None

    @app.get("/")
    def classify_page() -> Any:
        return flask.render_template("classify.html", page="classify", result=None, model=model_name)

    @app.post("/")
    def classify_form() -> Any:
        try:
            data, name = upload_from_request()
            result = predict_bytes(data, name)
        except BadUpload as exc:
            return flask.render_template(
                "classify.html", page="classify", result=None, model=model_name, message=without_paths(str(exc))
            ), getattr(exc, "status", 400)
        return flask.render_template(
            "classify.html", page="classify", result=result, model=model_name, threshold=shared.threshold
        )

    @app.post("/api/predict")
    def api_predict() -> Any:
        try:
            data, name = upload_from_request()
            return flask.jsonify(predict_bytes(data, name))
        except BadUpload as exc:
            return error(getattr(exc, "status", 400), str(exc))  # 503 when the decoders are all busy

    def paging() -> tuple[int, int, str | None]:
        try:
            page = max(1, int(request.args.get("page", 1)))
            per_page = min(200, max(1, int(request.args.get("per_page", config.per_page))))
        except ValueError:
            flask.abort(flask.make_response(error(400, "page and per_page must be integers")))
        if (page - 1) * per_page > MAX_ROW_ID:  # SQLite's OFFSET is a signed 64-bit integer
            flask.abort(flask.make_response(error(400, "page out of range")))
        return page, per_page, request.args.get("label") or None

    @app.get("/history")
    def history_page() -> Any:
        page, per_page, label = paging()
        entries, total = history.page(page, per_page, label)
        pages = max(1, math.ceil(total / per_page))
        return flask.render_template(
            "history.html",
            page="history",
            entries=[e.to_dict() for e in entries],
            total=total,
            current=page,
            pages=pages,
            label=label,
            labels=history.labels(),
            per_page=per_page,
        )

    @app.post("/history/<int:entry_id>/delete")
    def history_delete_form(entry_id: int) -> Any:
        page, per_page, label = paging()  # checked before anything is deleted
        if not history.delete(entry_id):
            return error(404, f"no history entry {entry_id}")
        # back to the same view: only these arguments, validated (never url_for's own, like _external)
        view = {"page": page, "per_page": per_page, "label": label}
        return flask.redirect(
            flask.url_for("history_page", **{k: v for k, v in view.items() if v is not None and k in request.args})
        )

    @app.get("/api/history")
    def api_history() -> Any:
        page, per_page, label = paging()
        entries, total = history.page(page, per_page, label)
        return flask.jsonify(
            {"page": page, "per_page": per_page, "total": total, "entries": [e.to_dict() for e in entries]}
        )

    @app.delete("/api/history/<int:entry_id>")
    def api_history_delete(entry_id: int) -> Any:
        if not history.delete(entry_id):
            return error(404, f"no history entry {entry_id}")
        return flask.jsonify({"deleted": entry_id})

    @app.get("/api/history.csv")
    def api_history_csv() -> Any:
        label = request.args.get("label") or None
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", "time", "source", "filename", "label", "confidence", "top", "model"])
        before = None
        while True:
            entries = history.before(before, 500, label)  # keyset paging: new rows cannot shift it
            for e in entries:
                d = e.to_dict()
                top = "; ".join(f"{t['label']}:{t['score']}" for t in d["top"])
                row = [
                    d["id"],
                    d["time"],
                    d["source"],
                    d["filename"] or "",
                    d["label"],
                    d["confidence"],
                    top,
                    d["model"],
                ]
                writer.writerow([_cell(v) for v in row])
            if len(entries) < 500:
                break
            before = entries[-1].id
        return flask.Response(
            buf.getvalue(), mimetype="text/csv", headers={"Content-Disposition": "attachment; filename=history.csv"}
        )

    @app.get("/thumbs/<name>")
    def thumb(name: str) -> Any:
        path = history.thumb_path(name)
        if path is None:
            return error(404, "no such thumbnail")
        return flask.send_file(path, mimetype="image/jpeg", max_age=3600)

    def model_card() -> dict[str, Any]:
        info = shared.clf.info
        return {"file": model_name, "runtime": str(shared.clf.runtime), **info.to_dict()}

    @app.get("/about")
    def about_page() -> Any:
        return flask.render_template("about.html", page="about", card=model_card())

    @app.get("/api/model")
    def api_model() -> Any:
        return flask.jsonify(model_card())

    @app.get("/live")
    def live_page() -> Any:
        return flask.render_template("live.html", page="live", feed=None if feed is None else feed.state())

    @app.get("/api/live")
    def api_live() -> Any:
        if feed is None:
            return error(404, "the server runs without a camera source (start it with --source)")
        return flask.jsonify(feed.state())

    @app.get("/stream.mjpg")
    def stream() -> Any:
        if feed is None:
            return error(404, "the server runs without a camera source (start it with --source)")

        if not viewers.acquire(blocking=False):
            refused = flask.make_response(
                error(
                    503,
                    f"too many live viewers: the server streams to {config.max_viewers} at once "
                    "(--max-viewers); close another live view or try again later",
                )
            )
            refused.headers["Retry-After"] = "10"
            return refused
        release = _once(viewers.release)

        def frames() -> Any:
            seen = 0
            while feed.running:
                jpeg, seen_now = feed.wait_jpeg(seen)
                if jpeg is None:
                    continue
                # a stalled camera repeats its last frame every wait: a viewer who left is noticed
                # (the write fails) and gives its slot back even when no new frame comes
                seen = seen_now
                yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode()
                yield b"\r\n\r\n" + jpeg + b"\r\n"

        try:
            response = flask.Response(frames(), mimetype="multipart/x-mixed-replace; boundary=frame")
            response.call_on_close(release)  # the server closes the response when the client goes away
        except BaseException:
            release()
            raise
        return response

    @app.get("/healthz")
    def healthz() -> Any:
        body = {"status": "ok", "model": model_name, "live": None if feed is None else feed.running}
        return flask.jsonify(body)

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

    return app
