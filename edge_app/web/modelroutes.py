"""Redeploying without a restart: POST /api/model (a new .tflite) and POST /api/model/restore (the one
before). Only a server with a token takes them: without one, anyone who can reach it could replace
its model (403)."""

from __future__ import annotations

from typing import Any

from edgeclf.edge_app.errors import require
from edgeclf.edge_app.web.api import model_card
from edgeclf.edge_app.web.config import WebContext
from edgeclf.edge_app.web.deploy import BadModel, NoPrevious
from edgeclf.edge_app.web.responses import error

NO_TOKEN = "this server has no token: start it with --token-file FILE (or $EDGECLF_TOKEN) to replace its model"


def register(app: Any, ctx: WebContext) -> None:
    """Add the model-changing routes to `app`."""
    flask = require("flask", "web")
    request = flask.request
    deploy = ctx.deploy

    @app.post("/api/model")
    def api_model_upload() -> Any:
        if ctx.config.token is None:
            return error(403, NO_TOKEN)
        if request.mimetype == "multipart/form-data":
            upload = next(iter(request.files.values()), None)
            if upload is None:
                return error(400, "the form has no file: send the model as a file field (curl -F model=@FILE)")
            data, name = upload.read(), upload.filename
        else:
            data, name = request.get_data(cache=False), None
        try:
            deploy.upload(data, name)
        except BadModel as exc:
            return error(400, str(exc))
        return flask.jsonify({**model_card(ctx), "previous": deploy.previous and deploy.previous.path.name})

    @app.post("/api/model/restore")
    def api_model_restore() -> Any:
        if ctx.config.token is None:
            return error(403, NO_TOKEN)
        try:
            deploy.restore()
        except NoPrevious as exc:
            return error(409, str(exc))
        except BadModel as exc:  # the kept file was removed or damaged since
            return error(409, f"the previous model cannot be restored: {exc}")
        return flask.jsonify({**model_card(ctx), "previous": deploy.previous and deploy.previous.path.name})
