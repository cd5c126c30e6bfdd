"""Fuzz the shared image reader and the upload endpoint with mutated JPEG / PNG / GIF / WebP bytes.

Every input must give an image or a clear rejection (400 on the endpoint), never a 500, never a
traceback, and the process's peak memory must stay bounded. Hypothesis keeps it to a few seconds.
"""

from __future__ import annotations

import io
import resource
import struct

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeclf.edge_app import imagedecode
from edgeclf.edge_app.imagedecode import ImageRejected
from tests.conftest import ROOT
from tests.fakes import pattern

TINY_MODEL = ROOT / "models" / "airbench_tiny_int8.tflite"


def _seeds() -> dict[str, bytes]:
    from PIL import Image

    image = pattern(48, 32, seed=5)
    seeds = {
        "jpeg": cv2.imencode(".jpg", image)[1].tobytes(),
        "progressive": cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
        "png": cv2.imencode(".png", image)[1].tobytes(),
        "webp": cv2.imencode(".webp", image)[1].tobytes(),
        "webp_lossless": cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes(),
    }
    buf = io.BytesIO()
    Image.fromarray(image[:, :, ::-1]).save(buf, format="GIF")
    seeds["gif"] = buf.getvalue()
    return seeds


SEEDS = _seeds()
# where each format keeps its width and height, so mutations there make bombs and zero sizes
SIZE_FIELDS = {"png": (16, 8), "gif": (6, 4), "webp": (26, 4), "webp_lossless": (21, 4)}


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    if name in SIZE_FIELDS and draw(st.booleans()):
        start, length = SIZE_FIELDS[name]
        data[start : start + length] = draw(st.binary(min_size=length, max_size=length))
    if name.startswith(("jpeg", "progressive")) and draw(st.booleans()):
        sof = data.find(b"\xff\xc0") if name == "jpeg" else data.find(b"\xff\xc2")
        data[sof + 5 : sof + 9] = struct.pack(">HH", *draw(st.tuples(st.integers(0, 65535), st.integers(0, 65535))))
    for _ in range(draw(st.integers(0, 8))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_shared_reader_gives_an_image_or_a_one_line_rejection(data):
    try:
        image = imagedecode.decode(data)
    except ImageRejected as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from edgeclf.edge_app.classifier import Classifier
    from edgeclf.edge_app.web.app import WebConfig, create_app
    from edgeclf.edge_app.web.feed import SharedClassifier
    from edgeclf.edge_app.web.store import History

    shared = SharedClassifier(Classifier(TINY_MODEL), top_k=3)
    history = History(tmp_path_factory.mktemp("fuzzweb") / "history.sqlite3")
    app = create_app(shared, history, WebConfig())
    app.testing = False  # errors are handled as in production, not re-raised
    return app.test_client()


def test_upload_endpoint_never_answers_500(client):
    before = peak_rss_mb()
    statuses: dict[int, int] = {}

    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=mutated())
    def post(data):
        r = client.post("/api/predict", data=data, content_type="application/octet-stream")
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code in (200, 400), (r.status_code, r.get_data()[:200])
        body = r.get_json()
        assert body is not None and ("label" in body if r.status_code == 200 else "Traceback" not in body["error"])

    post()
    assert statuses.get(200, 0) > 0 and statuses.get(400, 0) > 0, statuses
    assert peak_rss_mb() - before < 150, f"peak RSS grew by {peak_rss_mb() - before:.0f} MB"
