"""The Review page and its JSON API: the collected frames and the unreviewed history rows, each given
a label (it joins the teach folder) or discarded, one or several at once."""

from __future__ import annotations

from typing import Any

from edgeclf.edge_app.errors import EdgeClfError, require
from edgeclf.edge_app.labelname import LabelError
from edgeclf.edge_app.web.config import WebContext
from edgeclf.edge_app.web.responses import error, without_paths
from edgeclf.edge_app.web.review import BadItem, Outcome, Review

SHOWN = 60  # items of each kind on the page (newest first); reviewing them shows the next ones
THUMB_MAX_AGE = 60  # s a browser may cache a collected frame (its name is never reused, but it may be moved)


def register(app: Any, ctx: WebContext) -> None:
    """Add /review and /api/review* to `app`."""
    flask = require("flask", "web")
    request = flask.request
    review = Review(ctx.config.review_dir, ctx.history, ctx.teach)

    def items() -> list[str]:
        if request.is_json:
            body = request.get_json(silent=True)
            got = body.get("items") if isinstance(body, dict) else None
            return [str(i) for i in got] if isinstance(got, list) else ([str(got)] if got else [])
        return request.form.getlist("items")

    def label() -> str:
        if request.is_json:
            body = request.get_json(silent=True)
            return str(body.get("label", "")) if isinstance(body, dict) else ""
        return request.form.get("label", "")

    def act(action: str) -> tuple[Outcome | None, str | None, int]:
        """Run `action` on this request's items: (outcome, problem, status)."""
        try:
            outcome = review.assign(items(), label()) if action == "label" else review.discard(items())
        except (BadItem, LabelError) as exc:
            return None, str(exc), 400
        except EdgeClfError as exc:  # a full disk while copying a picture
            app.logger.error("%s %s: %s", request.method, request.path, exc)
            return None, without_paths(str(exc)), 500
        if not outcome.done and outcome.missing:
            return outcome, f"no longer there: {', '.join(outcome.missing[:5])}", 404
        return outcome, None, 200

    def state() -> dict[str, Any]:
        return {
            "frames": review.frames(SHOWN),
            "history": review.rows(SHOWN),
            "review_dir": None if ctx.config.review_dir is None else ctx.config.review_dir.name,
            "labels": [name for name, _ in ctx.teach.labels()],
        }

    def message(action: str, outcome: Outcome | None) -> str | None:
        if outcome is None or not outcome.done:
            return None
        what = f"labelled {label()}" if action == "label" else "discarded"
        gone = f"; {len(outcome.missing)} were already gone" if outcome.missing else ""
        return f"{len(outcome.done)} item(s) {what}{gone}"

    @app.get("/review")
    def review_page() -> Any:
        return flask.render_template("review.html", page="review", state=state(), label="")

    @app.post("/review")
    def review_form() -> Any:
        action = request.form.get("action", "")
        if action not in ("label", "discard"):
            return error(400, "action must be 'label' or 'discard'")
        outcome, problem, status = act(action)
        return flask.render_template(
            "review.html",
            page="review",
            state=state(),
            message=message(action, outcome),
            problem=problem,
            label=label(),
        ), status

    @app.get("/review/frames/<label>/<name>")
    def review_frame(label: str, name: str) -> Any:
        path = review.frame_path(label, name)
        if path is None or not path.is_file():
            return error(404, "no such frame")
        return flask.send_file(path, mimetype="image/jpeg", max_age=THUMB_MAX_AGE)

    @app.get("/api/review")
    def api_review() -> Any:
        return flask.jsonify(state())

    @app.post("/api/review/label")
    def api_review_label() -> Any:
        return answer("label")

    @app.post("/api/review/discard")
    def api_review_discard() -> Any:
        return answer("discard")

    def answer(action: str) -> Any:
        outcome, problem, status = act(action)
        if outcome is None or status == 404:
            return error(status, problem or "failed")
        return flask.jsonify(outcome.to_dict())
