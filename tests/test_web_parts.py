"""The web app's other pieces alone, each on a bare app (edgeclf.edge_app.web.app.flask_app): the request
guards and headers (auth), the MJPEG stream and its viewer limit (stream), and the HTML pages."""

import io
import threading

import pytest

from edgeclf.edge_app.web import auth, pages, stream
from edgeclf.edge_app.web.app import flask_app
from edgeclf.edge_app.web.config import WebConfig, WebContext
from tests.test_web_api import SURE, FakeClassifier, MemoryHistory, png

pytest.importorskip("flask")

TOKEN = "0123456789abcdef"


def guarded(**config):
    """A bare app with only the guards, one API route and one open route."""
    app = flask_app(WebConfig(**config))
    auth.register(app, WebConfig(**config))

    @app.route("/api/ping", methods=["GET", "POST"])
    def ping():
        return {"pong": True}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app.test_client()


def test_token_header_query_cookie_and_open_routes():
    c = guarded(token=TOKEN)
    missing = c.get("/api/ping")
    assert missing.status_code == 401 and "Authorization: Bearer TOKEN" in missing.get_json()["error"]
    assert c.get("/api/ping", headers={"Authorization": f"BEARER {TOKEN}"}).status_code == 200
    assert c.get("/api/ping", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
    assert c.get("/healthz").status_code == 200  # open: a supervisor's probe has no token
    first = c.get(f"/api/ping?token={TOKEN}")
    assert first.status_code == 200
    assert first.headers["Set-Cookie"] == f"edgeclf_token={TOKEN}; HttpOnly; Path=/; SameSite=Strict"
    assert c.get("/api/ping").status_code == 200  # the cookie now
    for bad in ("", "   ", "short", "has spaces in the middle"):
        with pytest.raises(ValueError):
            guarded(token=bad)


def test_security_headers_on_every_answer():
    c = guarded()
    for r in (c.get("/api/ping"), c.get("/api/nowhere")):
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Content-Security-Policy"] == (
            "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )


def test_host_and_cross_site_checks():
    c = guarded(allowed_hosts=frozenset({"127.0.0.1"}))
    assert c.get("/api/ping", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    rebound = c.get("/api/ping", headers={"Host": "evil.example"})
    assert rebound.status_code == 403 and "not allowed" in rebound.get_json()["error"]
    same = {"Host": "127.0.0.1:8000"}
    assert c.post("/api/ping", headers={**same, "Origin": "http://127.0.0.1:8000"}).status_code == 200
    assert c.post("/api/ping", headers={**same, "Origin": "null"}).status_code == 403
    assert c.post("/api/ping", headers={**same, "Sec-Fetch-Site": "cross-site"}).get_json() == {
        "error": "cross-site request refused"
    }


class JpegFeed:
    """LiveFeed's stream interface: a new JPEG at every wait, until stopped."""

    def __init__(self):
        self.stopped = threading.Event()
        self.frames = 0

    @property
    def running(self):
        return not self.stopped.is_set()

    def wait_jpeg(self, after, timeout=2.0):
        self.frames += 1
        return b"JPEG%d" % self.frames, self.frames

    def state(self):
        return {}


def streaming(feed, max_viewers):
    config = WebConfig(max_viewers=max_viewers)
    app = flask_app(config)
    stream.register(app, WebContext(FakeClassifier([]), MemoryHistory(), config, feed))
    return app.test_client()


def test_stream_parts_and_viewer_limit():
    feed = JpegFeed()
    c = streaming(feed, max_viewers=1)
    first = c.get("/stream.mjpg", buffered=False)
    assert first.status_code == 200 and first.mimetype == "multipart/x-mixed-replace"
    chunks = iter(first.response)
    assert next(chunks) + next(chunks) == b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 5\r\n\r\nJPEG1\r\n"
    refused = c.get("/stream.mjpg")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "10"
    assert "too many live viewers: the server streams to 1 at once" in refused.get_json()["error"]
    first.close()  # the viewer left: its slot comes back
    again = c.get("/stream.mjpg", buffered=False)
    assert again.status_code == 200
    feed.stopped.set()
    assert b"".join(again.response).count(b"--frame") <= 1  # a stopped feed ends the stream (after a frame in flight)
    again.close()
    none = streaming(None, max_viewers=1).get("/stream.mjpg")
    assert none.status_code == 404 and "--source" in none.get_json()["error"]


def test_pages_alone():
    config = WebConfig()
    app = flask_app(config)
    history = MemoryHistory()
    pages.register(app, WebContext(FakeClassifier([SURE]), history, config, None))
    c = app.test_client()
    home = c.get("/")
    assert home.status_code == 200 and "Classify an image" in home.get_data(as_text=True)
    shown = c.post("/", data={"image": (io.BytesIO(png()), "cat.png")})
    page = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "fake.tflite" in page and f"/thumbs/{1:032x}.jpg" in page
    assert history.entries[0].label == "cat"
    bad = c.post("/", data={"image": (io.BytesIO(b"junk"), "junk.png")})
    assert bad.status_code == 400 and "not an image" in bad.get_data(as_text=True)
    missing = c.get("/thumbs/nothing.jpg")
    assert missing.status_code == 404 and "no such thumbnail" in missing.get_data(as_text=True)
