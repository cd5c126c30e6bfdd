"""The JSON API (/api/predict, /api/history, its CSV export, /api/model, /api/live, /healthz), and the
operations the HTML pages share with it: read an upload, classify and store it, page the history,
describe the model."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from edgeclf.edge_app.errors import require
from edgeclf.edge_app.results import frame_json
from edgeclf.edge_app.web.config import WebConfig, WebContext
from edgeclf.edge_app.web.responses import error
from edgeclf.edge_app.web.store import MAX_ROW_ID, History
from edgeclf.edge_app.web.uploads import BadUpload, decoded

CSV_BATCH = 500  # rows read per query of the CSV export
NO_FEED = "the server runs without a camera source (start it with --source)"


def predict_upload(ctx: WebContext, data: bytes, filename: str | None) -> dict[str, Any]:
    """Decode, classify and store an upload; the JSON of /api/predict. BadUpload for a bad image."""
    with decoded(data, ctx.config.max_pixels) as image:  # its memory counted until the thumbnail is stored
        result, model, sha = ctx.shared.answer(image)
        shown = frame_json(result, uncertain=True, inference_ms=True)
        original = Path(filename).name[:200] if filename else None  # shown only; files get server names
        added = ctx.history.add(image, "upload", shown["label"], result.top[0][1], shown["top"], model, original, sha)
    if ctx.config.on_upload is not None:
        ctx.config.on_upload(shown["label"], float(result.top[0][1]), shown["top"], model)
    return {"id": added.id, **shown, "model": model, "model_sha": sha, "thumb": added.thumb}


def upload_from_request() -> tuple[bytes, str | None]:
    """The uploaded bytes and the file's name (None for a raw body). BadUpload for a form without a file."""
    request = require("flask", "web").request
    # only a multipart form is parsed as a form: `curl --data-binary @x.jpg` says urlencoded, and is the image
    if request.mimetype == "multipart/form-data":
        upload = next(iter(request.files.values()), None)
        if upload is None:
            raise BadUpload("the form has no file: send the image as a file field (curl -F image=@FILE)")
        return upload.read(), upload.filename
    return request.get_data(cache=False), None


def paging(config: WebConfig) -> tuple[int, int, str | None]:
    """The page, page size (1 to 200) and label filter of this request; answers 400 for bad values."""
    flask = require("flask", "web")
    request = flask.request
    try:
        page = max(1, int(request.args.get("page", 1)))
        per_page = min(200, max(1, int(request.args.get("per_page", config.per_page))))
    except ValueError:
        flask.abort(flask.make_response(error(400, "page and per_page must be integers")))
    if (page - 1) * per_page > MAX_ROW_ID:  # SQLite's OFFSET is a signed 64-bit integer
        flask.abort(flask.make_response(error(400, "page out of range")))
    return page, per_page, request.args.get("label") or None


def model_card(ctx: WebContext) -> dict[str, Any]:
    """The model's file name, runtime and metadata (labels, input, quantisation...)."""
    shared = ctx.shared
    with shared.lock:  # a swap changes both together
        clf, sha = shared.clf, shared.sha
    return {"file": clf.path.name, "sha256": sha, "runtime": str(clf.runtime), **clf.info.to_dict()}


def _cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def history_csv(history: History, label: str | None) -> str:
    """The whole history (or one label's rows) as CSV, newest first."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "time", "source", "filename", "label", "confidence", "top", "model"])
    before = None
    while True:
        entries = history.before(before, CSV_BATCH, label)  # keyset paging: new rows cannot shift it
        for e in entries:
            d = e.to_dict()
            top = "; ".join(f"{t['label']}:{t['score']}" for t in d["top"])
            row = [d["id"], d["time"], d["source"], d["filename"] or "", d["label"], d["confidence"], top, d["model"]]
            writer.writerow([_cell(v) for v in row])
        if len(entries) < CSV_BATCH:
            break
        before = entries[-1].id
    return buf.getvalue()


def register(app: Any, ctx: WebContext) -> None:
    """Add the API's routes to `app`."""
    flask = require("flask", "web")
    request = flask.request
    history, feed = ctx.history, ctx.feed

    @app.post("/api/predict")
    def api_predict() -> Any:
        try:
            data, name = upload_from_request()
            return flask.jsonify(predict_upload(ctx, data, name))
        except BadUpload as exc:
            return error(getattr(exc, "status", 400), str(exc))  # 503 when the decoders are all busy

    @app.get("/api/history")
    def api_history() -> Any:
        page, per_page, label = paging(ctx.config)
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
        body = history_csv(history, request.args.get("label") or None)
        return flask.Response(
            body, mimetype="text/csv", headers={"Content-Disposition": "attachment; filename=history.csv"}
        )

    @app.get("/api/model")
    def api_model() -> Any:
        return flask.jsonify(model_card(ctx))

    @app.get("/api/live")
    def api_live() -> Any:
        if feed is None:
            return error(404, NO_FEED)
        return flask.jsonify(feed.state())

    @app.get("/healthz")
    def healthz() -> Any:
        body = {"status": "ok", "model": ctx.model_name, "live": None if feed is None else feed.running}
        return flask.jsonify(body)
