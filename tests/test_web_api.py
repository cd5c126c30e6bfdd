"""The JSON API alone (edgeclf.edge_app.web.api on a bare app from edgeclf.edge_app.web.app.flask_app), on a scripted
classifier and an in-memory store: no model, no SQLite, no pages, no stream. And the store's `add`
result, read by name."""

import io
import threading
import typing
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from edgeclf.edge_app.live import FrameResult
from edgeclf.edge_app.web import api
from edgeclf.edge_app.web.app import flask_app
from edgeclf.edge_app.web.config import WebConfig, WebContext
from edgeclf.edge_app.web.feed import Answer
from edgeclf.edge_app.web.store import Added, Entry, History

pytest.importorskip("flask")

SURE = FrameResult([("cat", 0.8123456), ("dog", 0.1)], False, 1.0, 2.34567)
UNSURE = FrameResult([("dog", 0.41), ("cat", 0.4)], True, 1.0, 3.0)


def png(size=8):
    ok, data = cv2.imencode(".png", np.full((size, size, 3), 200, np.uint8))
    assert ok
    return data.tobytes()


class FakeInfo:
    def to_dict(self):
        return {"labels": ["cat", "dog"], "quantization": "int8"}


class FakeClassifier:
    """SharedClassifier's interface: `clf` (path, info, runtime), `threshold`, `classify`."""

    def __init__(self, results):
        self.results = list(results)
        self.seen = []
        self.threshold = 0.5
        self.clf = SimpleNamespace(path=Path("/models/fake.tflite"), info=FakeInfo(), runtime="fake-runtime")

    def classify(self, image_bgr, live=False):
        self.seen.append(image_bgr.shape)
        return self.results.pop(0)

    sha = "f00dfeed0000"
    lock = threading.Lock()

    def answer(self, image_bgr, live=False):
        return Answer(self.classify(image_bgr, live), self.clf.path.name, self.sha)


class MemoryHistory:
    """History's interface in a list, newest last."""

    def __init__(self):
        self.entries: list[Entry] = []

    def add(self, image_bgr, source, label, confidence, top, model, filename=None, model_sha=None):
        entry_id = len(self.entries) + 1
        thumb = f"{entry_id:032x}.jpg"
        self.entries.append(Entry(entry_id, 0.0, source, filename, thumb, label, confidence, top, model, model_sha))
        return Added(entry_id, thumb)

    def page(self, page=1, per_page=20, label=None):
        rows = [e for e in reversed(self.entries) if not label or e.label == label]
        return rows[(page - 1) * per_page : page * per_page], len(rows)

    def before(self, entry_id, limit, label=None):
        rows = [e for e in reversed(self.entries) if entry_id is None or e.id < entry_id]
        return [e for e in rows if not label or e.label == label][:limit]

    def labels(self):
        return sorted({e.label for e in self.entries})

    def thumb_path(self, name):
        return None  # no files: the pages' thumbnails are tested on the real store

    def delete(self, entry_id):
        before = len(self.entries)
        self.entries = [e for e in self.entries if e.id != entry_id]
        return len(self.entries) < before


class FakeFeed:
    running = True

    def state(self):
        return {"source": "fake", "frames": 3, "fps": 1.5, "label": "cat", "top": [], "error": None}


def client(results=(), feed=None, **config):
    shared, history = FakeClassifier(results), MemoryHistory()
    app = flask_app(WebConfig(**config))
    api.register(app, WebContext(shared, history, WebConfig(**config), feed))
    return app.test_client(), shared, history


def test_predict_answers_the_shared_fields_and_stores_the_row():
    c, shared, history = client([SURE, UNSURE])
    r = c.post("/api/predict", data={"image": (io.BytesIO(png()), "/home/me/photo.png")})
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {
        "id": 1,
        "label": "cat",
        "uncertain": False,
        "top": [{"label": "cat", "score": 0.8123}, {"label": "dog", "score": 0.1}],
        "inference_ms": 2.346,
        "model": "fake.tflite",
        "model_sha": "f00dfeed0000",
        "thumb": f"{1:032x}.jpg",
    }
    assert shared.seen == [(8, 8, 3)]
    row = history.entries[0]
    assert (row.source, row.label, row.confidence, row.filename, row.model) == (
        "upload",
        "cat",
        0.8123456,
        "photo.png",
        "fake.tflite",
    )
    raw = c.post("/api/predict", data=png(), content_type="application/octet-stream").get_json()
    assert (raw["id"], raw["label"], raw["uncertain"]) == (2, "uncertain", True)
    assert history.entries[1].filename is None and history.entries[1].label == "uncertain"


def test_predict_refuses_bad_uploads_with_json():
    c, shared, history = client(max_upload=1000, max_pixels=50)
    cases = [
        (b"", "application/octet-stream", 400, "empty upload: send an image file"),
        (b"not an image at all", "application/octet-stream", 400, "not an image: upload a JPEG, PNG, BMP or WebP file"),
        (b"\0" * 2000, "application/octet-stream", 413, "upload larger than the limit of 1,000 bytes"),
    ]
    for body, kind, status, message in cases:
        r = c.post("/api/predict", data=body, content_type=kind)
        assert (r.status_code, r.get_json()) == (status, {"error": message})
    big = c.post("/api/predict", data=png(size=10), content_type="application/octet-stream")
    assert (big.status_code, big.get_json()) == (400, {"error": "image is 10x10 pixels, more than the limit of 50"})
    no_file = c.post("/api/predict", data={"x": "y"}, content_type="multipart/form-data")
    assert no_file.status_code == 400 and "the form has no file" in no_file.get_json()["error"]
    assert shared.seen == [] and history.entries == []


def test_history_paging_delete_and_csv():
    c, _, history = client(per_page=2)
    for i, label in enumerate(["cat", "=HYPERLINK(1)", "dog"]):
        history.add(np.zeros((2, 2, 3), np.uint8), "upload", label, 0.5 + i / 10, [{"label": label, "score": 0.5}], "m")
    body = c.get("/api/history").get_json()
    assert (body["page"], body["per_page"], body["total"]) == (1, 2, 3)
    assert [e["id"] for e in body["entries"]] == [3, 2] and body["entries"][0]["time"] == "1970-01-01T00:00:00Z"
    assert c.get("/api/history?per_page=100000").get_json()["per_page"] == 200
    assert [e["id"] for e in c.get("/api/history?label=cat").get_json()["entries"]] == [1]
    bad = c.get("/api/history?page=abc")
    assert (bad.status_code, bad.get_json()) == (400, {"error": "page and per_page must be integers"})
    assert c.get(f"/api/history?page={2**62}&per_page=200").status_code == 400
    csv = c.get("/api/history.csv")
    assert csv.status_code == 200 and csv.headers["Content-Disposition"] == "attachment; filename=history.csv"
    lines = csv.get_data(as_text=True).splitlines()
    assert lines[0] == "id,time,source,filename,label,confidence,top,model"
    assert lines[2].startswith("2,1970-01-01T00:00:00Z,upload,,'=HYPERLINK(1),0.6,") and len(lines) == 4
    assert c.delete("/api/history/2").get_json() == {"deleted": 2}
    gone = c.delete("/api/history/2")
    assert (gone.status_code, gone.get_json()) == (404, {"error": "no history entry 2"})


def test_model_live_and_health():
    c, _, _ = client()
    assert c.get("/api/model").get_json() == {
        "file": "fake.tflite",
        "sha256": "f00dfeed0000",
        "runtime": "fake-runtime",
        "labels": ["cat", "dog"],
        "quantization": "int8",
    }
    assert c.get("/healthz").get_json() == {"status": "ok", "model": "fake.tflite", "live": None}
    live = c.get("/api/live")
    assert live.status_code == 404 and "--source" in live.get_json()["error"]
    with_feed, _, _ = client(feed=FakeFeed())
    assert with_feed.get("/api/live").get_json()["source"] == "fake"
    assert with_feed.get("/healthz").get_json()["live"] is True


def test_store_add_returns_named_id_and_thumbnail(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    added = history.add(np.zeros((20, 30, 3), np.uint8), "upload", "cat", 0.9, [], "m.tflite", "a.png")
    assert isinstance(added, Added) and typing.get_type_hints(History.add)["return"] is Added
    entry = history.page()[0][0]
    assert (added.id, added.thumb) == (entry.id, entry.thumb) == tuple(added)
    assert history.thumb_path(added.thumb) is not None
