"""`serve --mqtt` after a model swap and with a high-resolution camera, the link replaced by a recorder: each
event and state names the model that answered, and a 12 MP camera's snapshot is shrunk and sent."""

from __future__ import annotations

import io
import json
import logging
import threading

import cv2
import numpy as np
import pytest

from edgeclf.edge_app import mqttpublish
from edgeclf.edge_app.live import FrameResult
from edgeclf.edge_app.mqttopts import MqttSettings
from edgeclf.edge_app.mqttpublish import Publisher
from edgeclf.edge_app.shipped import MODELS_DIR
from edgeclf.edge_app.web import serve
from edgeclf.edge_app.web.serve import ServeConfig
from tests.conftest import wait_until
from tests.test_mqtt_run import CyclingCamera

pytest.importorskip("flask")
TOKEN = "a-long-enough-test-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FIRST, SECOND = MODELS_DIR / "resnet8_int8.tflite", MODELS_DIR / "airbench_tiny_int8.tflite"


class RecordingLink:
    """MqttLink's publishing side: what was handed over, in order (the broker's side is test_mqtt_serve's)."""

    def __init__(self, settings, on_connected=None) -> None:
        self.sent: list[tuple[str, bytes | str]] = []
        self.lock = threading.Lock()
        self.drops = self.reconnects = 0

    def start(self, stop=None) -> None:
        pass

    def publish(self, topic, payload, qos=1, retain=False) -> bool:
        with self.lock:
            self.sent.append((topic, payload))
        return True

    def close(self) -> None:
        pass

    def on(self, name: str, after: int = 0) -> list[bytes | str]:
        with self.lock:
            return [p for t, p in self.sent[after:] if t.endswith(f"/{name}")]


def test_events_and_states_name_the_model_that_answered_after_a_swap(tmp_path, monkeypatch):
    monkeypatch.setattr("edgeclf.edge_app.web.serve.parse_source", lambda spec, camera: CyclingCamera())
    publisher = Publisher(MqttSettings(host="x", prefix="t/swap", min_interval=0.0), link_factory=RecordingLink)
    config = ServeConfig(model=FIRST, db=tmp_path / "db" / "h.sqlite3", token=TOKEN, source="0")
    app, feed, _ = serve.make_app(config, publisher=publisher)
    link = publisher.link
    stop = threading.Event()
    poller = threading.Thread(target=serve._publish_live, args=(feed, publisher, stop), daemon=True)
    poller.start()
    try:
        wait_until(lambda: link.on("state"), 30, "a live state from the first model")
        assert json.loads(link.on("state")[0])["model"] == FIRST.name
        client = app.test_client()
        upload = {"model": (io.BytesIO(SECOND.read_bytes()), "airbench.tflite")}
        answer = client.post("/api/model", data=upload, headers=AUTH)
        assert answer.status_code == 200, answer.get_json()
        new = answer.get_json()["file"]
        assert new != FIRST.name
        predicted = client.post("/api/predict", data=(MODELS_DIR / "samples" / "ship.jpg").read_bytes(), headers=AUTH)
        assert predicted.get_json()["model"] == new
        uploads = [json.loads(p) for p in link.on("event") if json.loads(p)["type"] == "upload"]
        assert [e["model"] for e in uploads] == [new]
        # frames classified from here on were answered by the new model
        seen = feed.frames
        wait_until(lambda: feed.frames > seen + 1, 30, "two frames of the new model")
        mark = len(link.sent)
        wait_until(lambda: any(json.loads(p)["type"] == "start" for p in link.on("event", mark)), 30, "a new event")
        wait_until(lambda: link.on("state", mark), 30, "a new state")
    finally:
        stop.set()
        poller.join(5)
        feed.stop()
        publisher.close()
    later = [json.loads(p) for p in link.on("event", mark) + link.on("state", mark)]
    assert {m["model"] for m in later} == {new}, later


class HighResolutionCamera(CyclingCamera):
    """A 12 MP camera (4056x3040, the Raspberry Pi HQ camera's full frame) with sensor noise: its annotated JPEG
    at quality 80 is ~800 KB, far above the snapshot limit."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        big = []
        for image in self.samples[:2]:
            image = cv2.resize(image, (4056, 3040), interpolation=cv2.INTER_CUBIC).astype(np.float32)
            big.append(np.clip(image + rng.normal(0, 4.0, image.shape), 0, 255).astype(np.uint8))
        self.samples = big


def test_serve_sends_a_shrunk_snapshot_of_a_high_resolution_camera(tmp_path, monkeypatch):
    monkeypatch.setattr("edgeclf.edge_app.web.serve.parse_source", lambda spec, camera: HighResolutionCamera())
    settings = MqttSettings(host="x", prefix="t/snap", min_interval=0.0, snapshot=True)
    publisher = Publisher(settings, link_factory=RecordingLink)
    _, feed, _ = serve.make_app(ServeConfig(db=tmp_path / "h.sqlite3", source="0"), publisher=publisher)
    link = publisher.link
    stop = threading.Event()
    poller = threading.Thread(target=serve._publish_live, args=(feed, publisher, stop), daemon=True)
    poller.start()
    try:
        wait_until(lambda: link.on("snapshot"), 60, "a snapshot")
    finally:
        stop.set()
        poller.join(5)
        feed.stop()
        publisher.close()
    jpeg = link.on("snapshot")[0]
    assert len(jpeg) <= mqttpublish.SNAPSHOT_MAX_BYTES
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert max(image.shape[:2]) == mqttpublish.SNAPSHOT_SIDE, image.shape


def test_a_snapshot_dropped_for_its_size_is_logged_once(caplog):
    """A snapshot that stays above the limit at the lowest quality is dropped, and said so once a minute."""
    now = [0.0]
    settings = MqttSettings(host="x", snapshot=True, min_interval=0.0)
    publisher = Publisher(settings, link_factory=RecordingLink, clock=lambda: now[0]).start("m.tflite", ["a", "b"])
    too_big = b"\xff" * (mqttpublish.SNAPSHOT_MAX_BYTES + 1)
    with caplog.at_level(logging.WARNING, logger="edgeclf.edge_app.mqttpublish"):
        for i, label in enumerate("ababab"):
            now[0] = i * 10.0  # 6 event starts within 50 s: one line
            publisher.frame(FrameResult([(label, 0.9)], False, 1.0, 1.0), 1e9 + i, "cam", lambda: too_big)
        now[0] = 120.0
        publisher.frame(FrameResult([("a", 0.9)], False, 1.0, 1.0), 1e9 + 120, "cam", lambda: too_big)
    assert publisher.link.on("snapshot") == []
    dropped = [r.getMessage() for r in caplog.records if "snapshot" in r.getMessage()]
    assert len(dropped) == 2, dropped
    why = "the JPEG is 262,145 bytes, above the limit of 262,144"
    assert dropped[0] == f"mqtt: an event's snapshot was dropped: {why} (said once a minute)", dropped
