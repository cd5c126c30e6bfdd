"""One definition of a classified frame's JSON (edgeclf.edge_app.results.frame_json), and the four places that
use it: the JSON lines of `run`, the web API's /api/predict, the live page's state and the history
rows the live feed samples. Each keeps its own keys; the label and top-k fields are the same."""

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from edgeclf.edge_app.live import FrameResult, _record
from edgeclf.edge_app.results import UNCERTAIN, frame_json, shown_label
from edgeclf.edge_app.sources import Frame
from tests.fakes import ScriptedSource

SURE = FrameResult([("cat", 0.912345), ("dog", 0.05004), ("fox", 0.0)], False, 1.23456, 7.891011)
UNSURE = FrameResult([("cat", 0.3), ("dog", 0.29)], True, 0.5, 2.0)


def test_base_fields_keys_types_and_rounding():
    d = frame_json(SURE)
    assert list(d) == ["label", "top"]
    assert d == {
        "label": "cat",
        "top": [{"label": "cat", "score": 0.9123}, {"label": "dog", "score": 0.05}, {"label": "fox", "score": 0.0}],
    }
    assert all(type(t["score"]) is float and type(t["label"]) is str for t in d["top"])
    assert frame_json(UNSURE)["label"] == UNCERTAIN == "uncertain" == shown_label(UNSURE)
    assert frame_json(UNSURE)["top"][0] == {"label": "cat", "score": 0.3}  # the top class is still listed
    assert shown_label(SURE) == "cat"


def test_optional_fields_in_a_fixed_order():
    d = frame_json(SURE, uncertain=True, preprocess_ms=True, inference_ms=True)
    assert list(d) == ["label", "uncertain", "top", "preprocess_ms", "inference_ms"]
    assert d["uncertain"] is False and frame_json(UNSURE, uncertain=True)["uncertain"] is True
    assert (d["preprocess_ms"], d["inference_ms"]) == (1.235, 7.891)
    assert list(frame_json(SURE, inference_ms=True)) == ["label", "top", "inference_ms"]
    json.dumps(d)  # plain JSON types only (numpy floats would fail here)


def test_run_json_line_keeps_its_keys_and_order():
    """The JSON line `run` prints, byte for byte as before the shared function."""
    frame = Frame(np.zeros((4, 4, 3), np.uint8), 12, "cam0", timestamp=1700000000.123456)
    line = _record(frame, SURE, 12.3456)
    assert line == (
        '{"time": "2023-11-14T22:13:20.123+00:00", "frame": 12, "source": "cam0", "label": "cat", '
        '"top": [{"label": "cat", "score": 0.9123}, {"label": "dog", "score": 0.05}, {"label": "fox", "score": 0.0}], '
        '"preprocess_ms": 1.235, "inference_ms": 7.891, "fps": 12.35}'
    )
    assert json.loads(_record(frame, UNSURE, 0.0))["label"] == "uncertain"


class FixedClassifier:
    """SharedClassifier's interface with a scripted result: the feed's own fields are what is tested."""

    def __init__(self, result):
        self.result = result
        self.threshold = 0.5
        self.clf = SimpleNamespace(path=Path("/models/fake.tflite"))

    def classify(self, image_bgr, live=False):
        return self.result

    def answer(self, image_bgr, live=False):  # the result with the model that made it, as SharedClassifier's
        return self.result, self.clf.path.name, "0123456789ab"


class RecordingHistory:
    def __init__(self):
        self.rows = []
        self.added = threading.Event()

    def add(self, image_bgr, source, label, confidence, top, model, filename=None, model_sha=None):
        self.rows.append((source, label, confidence, top, model, filename))
        self.sha = model_sha
        self.added.set()
        return len(self.rows), f"{len(self.rows)}.jpg"


def test_live_feed_state_and_history_rows_use_the_same_fields():
    from edgeclf.edge_app.web.feed import LiveFeed

    history = RecordingHistory()
    feed = LiveFeed(FixedClassifier(UNSURE), ScriptedSource(frames=10**6), history, sample_every=1e-9)
    assert feed.state() == {"source": "scripted", "frames": 0, "fps": 0.0, "label": None, "top": [], "error": None}
    feed.start()
    try:
        assert history.added.wait(10), "the feed stored no frame within 10 s"
        state = feed.state()  # its result is set before a frame is stored
    finally:
        feed.stop()
    assert set(state) == {"source", "frames", "fps", "label", "top", "error"}
    assert {k: state[k] for k in ("label", "top")} == frame_json(UNSURE)
    assert history.rows[0] == ("live", "uncertain", 0.3, frame_json(UNSURE)["top"], "fake.tflite", None)
    assert history.sha == "0123456789ab"  # which model answered, recorded with the row
