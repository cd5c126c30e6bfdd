"""Redeploying without a restart: POST /api/model (refused without a token; a corrupt or non-classifier
file refused with the current model unchanged), restore, the hot swap seen by uploads, the history's
model column, and SIGHUP in a real `edgeclf serve` process (a missing or broken file keeps the model)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from edgeclf.benchmarks.web_load import free_port, request
from edgeclf.edge_app import metadata
from edgeclf.edge_app.web.serve import ServeConfig, make_app
from tests.conftest import ROOT, wait_until

pytest.importorskip("flask")
TOKEN = "a-long-enough-test-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SAMPLES = ROOT / "models" / "samples"


@pytest.fixture()
def server(shipped_models, tmp_path):
    def make(token=TOKEN, model="default"):
        config = ServeConfig(model=shipped_models[model], db=tmp_path / "db" / "h.sqlite3", token=token)
        app, _feed, _ = make_app(config)
        app.testing = True
        return app.test_client()

    return make


def jpeg(name="ship.jpg") -> bytes:
    return (SAMPLES / name).read_bytes()


def predict(client):
    r = client.post("/api/predict", data=jpeg(), content_type="application/octet-stream", headers=AUTH)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_without_a_token_a_model_upload_is_403(server, shipped_models):
    client = server(token=None)
    data = shipped_models["resnet8_int8"].read_bytes()
    r = client.post("/api/model", data=data, content_type="application/octet-stream")
    assert r.status_code == 403 and "--token-file" in r.get_json()["error"]
    assert client.post("/api/model/restore").status_code == 403
    assert client.get("/api/model").get_json()["file"] == shipped_models["default"].name


@pytest.mark.parametrize(
    "what, data, message",
    [
        ("corrupt", b"\x00garbage" * 100, "not a usable classifier"),
        ("empty", b"", "empty upload"),
        ("truncated", "half", "not a usable classifier"),
        ("no metadata", "stripped", "not a usable classifier"),
        ("a JPEG", jpeg(), "not a usable classifier"),
    ],
)
def test_a_bad_upload_is_400_and_the_model_stays(server, shipped_models, tmp_path, what, data, message):
    client = server()
    before = client.get("/api/model", headers=AUTH).get_json()
    good = shipped_models["resnet8_int8"].read_bytes()
    data = {"half": good[: len(good) // 2], "stripped": metadata.strip_embedded(good)}.get(data, data)
    r = client.post("/api/model", data={"model": (io.BytesIO(data), "new.tflite")}, headers=AUTH)
    assert r.status_code == 400, r.get_json()
    error = r.get_json()["error"]
    assert message in error and "\n" not in error and str(tmp_path) not in error
    assert client.get("/api/model", headers=AUTH).get_json() == before
    assert predict(client)["model"] == before["file"]
    assert list((tmp_path / "db" / "models").glob("*.tflite")) == []  # the refused file is not kept


def test_an_upload_replaces_the_model_at_once_and_restore_goes_back(server, shipped_models, tmp_path):
    client = server()
    first = predict(client)
    assert first["model"] == shipped_models["default"].name and len(first["model_sha"]) == 12
    data = shipped_models["tutorial_cnn_int8"].read_bytes()
    r = client.post("/api/model", data={"model": (io.BytesIO(data), "my model.tflite")}, headers=AUTH)
    assert r.status_code == 200, r.get_json()
    card = r.get_json()
    assert card["file"].startswith("my_model-") and card["previous"] == shipped_models["default"].name
    assert card["architecture"] == metadata.load_info(shipped_models["tutorial_cnn_int8"]).architecture
    second = predict(client)  # the next request already uses it
    assert second["model"] == card["file"] and second["model_sha"] != first["model_sha"]
    kept = tmp_path / "db" / "models" / card["file"]
    assert kept.read_bytes() == data
    rows = client.get("/api/history", headers=AUTH).get_json()["entries"]
    assert [(e["model"], e["model_sha"]) for e in rows] == [
        (second["model"], second["model_sha"]),
        (first["model"], first["model_sha"]),
    ]
    back = client.post("/api/model/restore", headers=AUTH)
    assert back.status_code == 200 and back.get_json()["file"] == shipped_models["default"].name
    assert back.get_json()["previous"] == card["file"]
    assert predict(client)["model_sha"] == first["model_sha"]


def test_restore_with_nothing_before_is_409(server):
    r = server().post("/api/model/restore", headers=AUTH)
    assert r.status_code == 409 and "no previous model" in r.get_json()["error"]


def start(model, db, *extra):
    """`edgeclf serve` in its own process, once /healthz answers; its stderr lines gather in the list returned."""
    port = free_port()
    cmd = [sys.executable, "-m", "edgeclf.edge_app.web.serve", "--model", str(model), "--db", str(db)]
    cmd += ["--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([*cmd, *extra], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()

    def up():
        assert proc.poll() is None, lines
        try:
            return request("127.0.0.1", port, "GET", "/healthz")[0] == 200
        except OSError:
            return False

    wait_until(up, 60, "the server to answer /healthz")
    return proc, port, lines


def card(port):
    status, body = request("127.0.0.1", port, "GET", "/api/model")
    assert status == 200
    return json.loads(body)


def test_sighup_reloads_the_model_and_keeps_it_when_the_file_is_missing_or_broken(shipped_models, tmp_path):
    model = tmp_path / "live.tflite"
    model.write_bytes(shipped_models["default"].read_bytes())
    proc, port, lines = start(model, tmp_path / "db" / "h.sqlite3")
    try:
        original = card(port)
        # a new file under the same name: reloaded, and the history can tell it from the old one by its sha
        model.write_bytes(shipped_models["tutorial_cnn_int8"].read_bytes())
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: card(port)["sha256"] != original["sha256"], 30, "the reload")
        reloaded = card(port)
        assert reloaded["file"] == "live.tflite" and reloaded["architecture"] != original["architecture"]
        for n, broken in enumerate((b"not a model", None), start=1):
            if broken is None:
                model.unlink()
            else:
                model.write_bytes(broken)
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda n=n: sum("reload of" in line for line in lines) == n, 30, f"failed reload {n}")
            assert card(port) == reloaded  # the current model stays
            status, body = request("127.0.0.1", port, "POST", "/api/predict", jpeg())
            assert status == 200 and json.loads(body)["model_sha"] == reloaded["sha256"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    failed = [line for line in lines if "reload of" in line]
    assert len(failed) == 2, lines
    assert all("still serving live.tflite" in line and line.count("\n") == 1 for line in failed)
    assert "not a usable classifier" in failed[0] and "model file not found" in failed[1]
    assert not any("Traceback" in line for line in lines), lines


def test_sighup_after_an_upload_reloads_the_model_with_its_labels_file(shipped_models, tmp_path):
    """--labels belongs to --model: a reload after an upload (the base is the upload then) still passes it."""
    from edgeclf.edge_app.classifier import Classifier

    good = shipped_models["default"]
    plain = tmp_path / "plain.tflite"  # no metadata: usable only with --labels
    plain.write_bytes(metadata.strip_embedded(good.read_bytes()))
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(Classifier(good).labels) + "\n")
    config = ServeConfig(model=plain, labels=labels, db=tmp_path / "db" / "h.sqlite3", token=TOKEN)
    app, _feed, _ = make_app(config)
    client = app.test_client()
    before = client.get("/api/model", headers=AUTH).get_json()
    assert before["file"] == "plain.tflite"
    data = shipped_models["tutorial_cnn_int8"].read_bytes()
    r = client.post("/api/model", data={"model": (io.BytesIO(data), "new.tflite")}, headers=AUTH)
    assert r.status_code == 200, r.get_json()
    deploy = app.extensions["edgeclf_deploy"]
    assert deploy.reload() is not None  # SIGHUP's thread calls this
    after = client.get("/api/model", headers=AUTH).get_json()
    assert after["file"] == "plain.tflite" and after["labels"] == before["labels"]
    assert deploy.base.path == plain and deploy.base.labels == labels and deploy.current is deploy.base
    assert deploy.reload() is not None  # and again, from itself
    assert deploy.current.labels == labels
