"""The Teach page and its JSON API: the taught classes with their picture counts, Capture (frames of the
live feed), an upload of several pictures, Learn, and removing a class (then learning again without it).

Learn and removing a class change the model in force: as POST /api/model, only a server with a token
takes them (403). Adding pictures changes no model and stays open."""

from __future__ import annotations

from typing import Any

from edgeclf.edge_app.errors import EdgeClfError, TeachError, require
from edgeclf.edge_app.head import MODES
from edgeclf.edge_app.labelname import LabelError
from edgeclf.edge_app.web.api import NO_FEED
from edgeclf.edge_app.web.config import WebContext
from edgeclf.edge_app.web.deploy import BaseChanged
from edgeclf.edge_app.web.modelroutes import NO_TOKEN
from edgeclf.edge_app.web.responses import error, without_paths
from edgeclf.edge_app.web.teaching import MAX_CAPTURE, Busy
from edgeclf.edge_app.web.uploads import BadUpload, decoded

MAX_FILES = 50  # pictures in one upload form (the form's part limit is 100)


class NoFeed(EdgeClfError):
    """Capture asked of a server without a camera (answered with 404, as /api/live is)."""


class NoToken(EdgeClfError):
    """A change of the model in force asked of a server without a token (answered with 403, as /api/model is)."""


def field(name: str, default: Any = None) -> Any:
    """A value of this request's form, or of its JSON body."""
    request = require("flask", "web").request
    if name in request.form:
        return request.form[name]
    body = request.get_json(silent=True) if request.is_json else None
    return body.get(name, default) if isinstance(body, dict) else default


def status_of(exc: EdgeClfError) -> int:
    """The HTTP status of a failed teach action: the caller's input (400), a conflict (409), or ours (500)."""
    if isinstance(exc, (Busy, BaseChanged)):
        return 409
    if isinstance(exc, NoToken):
        return 403
    if isinstance(exc, NoFeed):
        return 404
    if isinstance(exc, (LabelError, TeachError, BadUpload)):
        return 400
    return 500


def register(app: Any, ctx: WebContext) -> None:
    """Add /teach and /api/teach/* to `app`."""
    flask = require("flask", "web")
    request = flask.request
    teaching, feed = ctx.teach, ctx.feed

    def state() -> dict[str, Any]:
        return {
            "labels": [{"label": label, "images": n} for label, n in teaching.labels()],
            "model": ctx.model_name,
            "base": teaching.deploy.base.path.name,
            "last": None if teaching.last is None else teaching.last.to_dict(),
            "live": feed is not None,
        }

    def capture() -> dict[str, Any]:
        if feed is None:
            raise NoFeed(NO_FEED)
        label = str(field("label", ""))
        try:
            count = int(field("count", 10))
        except (TypeError, ValueError):
            raise BadUpload(f"count must be a whole number from 1 to {MAX_CAPTURE}") from None
        if not 1 <= count <= MAX_CAPTURE:
            raise BadUpload(f"count must be a whole number from 1 to {MAX_CAPTURE}")
        saved = teaching.capture(feed, label, count)
        return {"label": label, "saved": saved, "message": f"captured {saved} frame(s) of {label}"}

    def upload() -> dict[str, Any]:
        label = str(field("label", ""))
        teaching.folder(label)  # LabelError before any file is read
        pictures = [f for f in request.files.getlist("images") if f.filename or f.content_length]
        if not pictures:
            raise BadUpload("no pictures: choose one or more image files")
        if len(pictures) > MAX_FILES:
            raise BadUpload(f"at most {MAX_FILES} pictures at a time")
        saved, refused = 0, []
        for picture in pictures:
            data = picture.read()
            try:
                with decoded(data, ctx.config.max_pixels):  # an image the server can read, or refused here
                    pass
                teaching.save_upload(label, data)
                saved += 1
            except BadUpload as exc:
                refused.append({"file": (picture.filename or "")[:200], "error": without_paths(str(exc))})
        message = f"added {saved} picture(s) to {label}" + (f"; {len(refused)} refused" if refused else "")
        return {"label": label, "saved": saved, "refused": refused, "message": message}

    def may_change_model() -> None:
        if ctx.config.token is None:
            raise NoToken(NO_TOKEN)

    def learn() -> dict[str, Any]:
        may_change_model()
        mode = str(field("mode", "extend"))
        if mode not in MODES:
            raise BadUpload(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        done = teaching.learn(mode).to_dict()
        message = f"learned {len(done['shots'])} class(es) in {done['seconds']} s: now {done['model']}"
        return {**done, "message": message}

    def remove(label: str) -> dict[str, Any]:
        may_change_model()
        try:
            done = teaching.remove(label)
        except EdgeClfError as exc:
            if not isinstance(exc, (Busy, LabelError)):  # it failed after the folder was moved: say it is back
                exc.args = (f"{label} was not removed: {exc}",)
            raise
        learned = None if done is None else done.to_dict()
        message = f"removed {label}" + (f"; learned again: now {learned['model']}" if learned else "")
        return {"removed": label, "learned": learned, "message": message}

    def run(action: Any, *args: Any) -> tuple[dict[str, Any], int]:
        try:
            return action(*args), 200
        except KeyError as exc:
            return {"error": f"no class {exc.args[0]!r} in the teach folder"}, 404
        except EdgeClfError as exc:
            status = status_of(exc)
            if status == 500:
                app.logger.error("%s %s: %s", request.method, request.path, exc)
            return {"error": without_paths(str(exc))}, status

    def api(action: Any, *args: Any) -> Any:
        body, status = run(action, *args)
        if "error" in body:
            return error(status, body["error"])
        return flask.jsonify({**body, "teach": state()}), status

    def page(action: Any = None, *args: Any) -> Any:
        body, status = run(action, *args) if action else ({}, 200)
        return flask.render_template(
            "teach.html",
            page="teach",
            state=state(),
            message=body.get("message"),
            problem=body.get("error"),
            modes=MODES,
            max_capture=MAX_CAPTURE,
            label=str(field("label", "") or "") if action else "",
        ), status

    @app.get("/teach")
    def teach_page() -> Any:
        return page()

    @app.post("/teach/capture")
    def teach_capture_form() -> Any:
        return page(capture)

    @app.post("/teach/upload")
    def teach_upload_form() -> Any:
        return page(upload)

    @app.post("/teach/learn")
    def teach_learn_form() -> Any:
        return page(learn)

    @app.post("/teach/labels/<label>/delete")
    def teach_remove_form(label: str) -> Any:
        return page(remove, label)

    @app.get("/teach/frame.jpg")
    def teach_frame() -> Any:
        # a still the page refreshes, not the MJPEG stream: that holds a request thread and one of the
        # --max-viewers slots per open page, and the page is left open while pictures are taken
        jpeg = None if feed is None else feed.jpeg
        if jpeg is None:
            return error(404, NO_FEED if feed is None else "no frame yet")
        response = flask.make_response(jpeg)
        response.headers["Content-Type"] = "image/jpeg"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/teach")
    def api_teach() -> Any:
        return flask.jsonify(state())

    @app.post("/api/teach/capture")
    def api_teach_capture() -> Any:
        return api(capture)

    @app.post("/api/teach/upload")
    def api_teach_upload() -> Any:
        return api(upload)

    @app.post("/api/teach/learn")
    def api_teach_learn() -> Any:
        return api(learn)

    @app.delete("/api/teach/labels/<label>")
    def api_teach_remove(label: str) -> Any:
        return api(remove, label)
