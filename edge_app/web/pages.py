"""The HTML pages: Classify (the upload form and its result), History (with delete), About (the model
card), Live (the stream's frame), and the thumbnails they show."""

from __future__ import annotations

import math
from typing import Any

from edgeclf.edge_app.errors import require
from edgeclf.edge_app.web.api import model_card, paging, predict_upload, upload_from_request
from edgeclf.edge_app.web.config import WebContext
from edgeclf.edge_app.web.responses import error, without_paths
from edgeclf.edge_app.web.uploads import BadUpload

THUMB_MAX_AGE = 3600  # s a browser may cache a thumbnail (its name is never reused)


def register(app: Any, ctx: WebContext) -> None:
    """Add the pages' routes to `app` (their templates link to the API's and the stream's routes too)."""
    flask = require("flask", "web")
    request = flask.request
    history, feed = ctx.history, ctx.feed

    @app.get("/")
    def classify_page() -> Any:
        return flask.render_template("classify.html", page="classify", result=None, model=ctx.model_name)

    @app.post("/")
    def classify_form() -> Any:
        try:
            data, name = upload_from_request()
            result = predict_upload(ctx, data, name)
        except BadUpload as exc:
            return flask.render_template(
                "classify.html", page="classify", result=None, model=ctx.model_name, message=without_paths(str(exc))
            ), getattr(exc, "status", 400)
        return flask.render_template(
            "classify.html", page="classify", result=result, model=ctx.model_name, threshold=ctx.shared.threshold
        )

    @app.get("/history")
    def history_page() -> Any:
        page, per_page, label = paging(ctx.config)
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
        page, per_page, label = paging(ctx.config)  # checked before anything is deleted
        if not history.delete(entry_id):
            return error(404, f"no history entry {entry_id}")
        # back to the same view: only these arguments, validated (never url_for's own, like _external)
        view = {"page": page, "per_page": per_page, "label": label}
        return flask.redirect(
            flask.url_for("history_page", **{k: v for k, v in view.items() if v is not None and k in request.args})
        )

    @app.get("/thumbs/<name>")
    def thumb(name: str) -> Any:
        path = history.thumb_path(name)
        if path is None:
            return error(404, "no such thumbnail")
        return flask.send_file(path, mimetype="image/jpeg", max_age=THUMB_MAX_AGE)

    @app.get("/about")
    def about_page() -> Any:
        return flask.render_template("about.html", page="about", card=model_card(ctx))

    @app.get("/live")
    def live_page() -> Any:
        return flask.render_template("live.html", page="live", feed=None if feed is None else feed.state())
