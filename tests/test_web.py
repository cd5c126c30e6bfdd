"""The web app through Flask's test client: every route, good and bad input, auth, history."""

import io
import logging
import struct
import zlib
from dataclasses import replace

import cv2
import numpy as np
import pytest

from edgeclf.edge_app.classifier import Classifier
from edgeclf.edge_app.web.app import WebConfig, create_app
from edgeclf.edge_app.web.feed import LiveFeed, SharedClassifier
from edgeclf.edge_app.web.serve import ServeConfig, is_loopback, make_app
from edgeclf.edge_app.web.store import History
from tests.conftest import colour_images, wait_until
from tests.fakes import ScriptedSource


def png(image_rgb):
    ok, data = cv2.imencode(".png", image_rgb[:, :, ::-1])
    assert ok
    return data.tobytes()


def bomb_png(width=100_000, height=100_000):
    """A tiny PNG whose header declares a huge image."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@pytest.fixture()
def make(converted, tmp_path):
    made = []

    def factory(token=None, max_upload=10 * 1024 * 1024, feed_source=None, db=None, allowed_hosts=None, max_viewers=2):
        shared = SharedClassifier(Classifier(converted["int8"]), top_k=3)
        history = History(db or tmp_path / "web" / "history.sqlite3")
        feed = LiveFeed(shared, feed_source, history, sample_every=0.05).start() if feed_source else None
        if feed:
            made.append(feed)
        config = WebConfig(
            token=token,
            max_upload=max_upload,
            max_pixels=1_000_000,
            allowed_hosts=allowed_hosts,
            max_viewers=max_viewers,
        )
        app = create_app(shared, history, config, feed)
        app.testing = True
        return app.test_client(), history

    yield factory
    for feed in made:
        feed.stop()


def images():
    x, y = colour_images(12, 16, seed=21)
    return [(png(img), ("red", "green", "blue")[label]) for img, label in zip(x, y)]


def test_predict_pages_and_api(make):
    client, history = make()
    data, truth = images()[0]
    r = client.post("/api/predict", data={"image": (io.BytesIO(data), "../../evil name.png")})
    assert r.status_code == 200
    body = r.get_json()
    assert body["label"] == truth and len(body["top"]) == 3 and body["thumb"].endswith(".jpg")
    assert "evil" not in body["thumb"] and history.page()[0][0].filename == "evil name.png"
    raw = client.post("/api/predict", data=data, content_type="application/octet-stream")
    assert raw.status_code == 200 and raw.get_json()["id"] == body["id"] + 1
    page = client.post("/", data={"image": (io.BytesIO(data), "x.png")}, content_type="multipart/form-data")
    assert page.status_code == 200 and b'id="label"' in page.data and truth.encode() in page.data
    thumb = client.get(f"/thumbs/{body['thumb']}")
    assert thumb.status_code == 200 and thumb.data[:2] == b"\xff\xd8"
    for path in ("/", "/history", "/about", "/live", "/healthz", "/api/model", "/api/history", "/api/history.csv"):
        assert client.get(path).status_code == 200, path
    assert client.get("/api/model").get_json()["labels"] == ["red", "green", "blue"]
    assert b"without a camera" in client.get("/live").data
    assert client.get("/api/live").status_code == 404 and client.get("/stream.mjpg").status_code == 404
    assert client.get("/thumbs/..%2Fhistory.sqlite3").status_code == 404
    assert client.get("/nowhere").status_code == 404


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "empty upload"),
        (b"hello, I am text", "not an image"),
        ("gif", "unsupported image format GIF"),
        (None, "more than the limit"),
        ("corrupt", "corrupt PNG"),
    ],
)
def test_bad_uploads_are_clear_400s(make, payload, message):
    client, history = make()
    if payload is None:
        payload = png(np.zeros((1200, 1200, 3), np.uint8))  # 1.44 Mpx > the 1 Mpx limit set above
    elif payload == "gif":
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (8, 8), "red").save(buf, format="GIF")
        payload = buf.getvalue()
    elif payload == "corrupt":
        payload = png(np.full((64, 64, 3), 77, np.uint8))[:60]
    r = client.post("/api/predict", data=payload, content_type="application/octet-stream")
    assert r.status_code == 400 and message in r.get_json()["error"]
    form = client.post("/", data={"image": (io.BytesIO(payload), "x.png")}, content_type="multipart/form-data")
    assert form.status_code == 400 and message.encode() in form.data
    assert history.page()[1] == 0


def test_decompression_bomb_refused_before_decoding(make, monkeypatch):
    client, _ = make()
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded a bomb"))
    r = client.post("/api/predict", data=bomb_png(), content_type="application/octet-stream")
    assert r.status_code == 400 and "far too many pixels" in r.get_json()["error"]


def test_upload_size_limit(make):
    client, _ = make(max_upload=2000)
    big = png(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert len(big) > 2000
    r = client.post("/api/predict", data=big, content_type="application/octet-stream")
    assert r.status_code == 413 and "larger than the limit" in r.get_json()["error"]


TOKEN = "s3cret-s3cret-s3cret"


def test_token_auth(make):
    client, _ = make(token=TOKEN)
    data, _ = images()[0]
    assert client.get("/").status_code == 401
    assert client.get("/api/history").status_code == 401
    assert client.post("/api/predict", data=data, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/healthz").status_code == 200  # health checks stay open
    ok = client.post(
        "/api/predict", data=data, headers={"Authorization": f"Bearer {TOKEN}"}, content_type="application/octet-stream"
    )
    assert ok.status_code == 200
    first = client.get(f"/?token={TOKEN}")
    assert first.status_code == 200 and "edgeclf_token" in first.headers.get("Set-Cookie", "")
    assert client.get("/history").status_code == 200  # the cookie now carries the token


def test_history_paging_filter_delete_csv_and_restart(make, tmp_path):
    client, history = make()
    sent = images()
    for data, _ in sent:
        assert client.post("/api/predict", data=data, content_type="application/octet-stream").status_code == 200
    page = client.get("/api/history?page=1&per_page=5").get_json()
    assert page["total"] == 12 and len(page["entries"]) == 5
    assert [e["id"] for e in page["entries"]] == [12, 11, 10, 9, 8]  # newest first
    last = client.get("/api/history?page=3&per_page=5").get_json()
    assert [e["id"] for e in last["entries"]] == [2, 1]
    assert client.get("/api/history?page=x").status_code == 400
    reds = client.get("/api/history?label=red&per_page=100").get_json()
    assert reds["total"] == sum(1 for _, t in sent if t == "red") and all(e["label"] == "red" for e in reds["entries"])
    assert b"red" in client.get("/history?label=red").data
    csv_text = client.get("/api/history.csv").data.decode()
    assert csv_text.splitlines()[0].startswith("id,time,source") and len(csv_text.splitlines()) == 13
    thumb = page["entries"][0]["thumb"]
    assert client.delete("/api/history/12").get_json() == {"deleted": 12}
    assert client.delete("/api/history/12").status_code == 404
    assert client.get(f"/thumbs/{thumb}").status_code == 404  # its thumbnail went with it
    assert client.post("/history/11/delete").status_code == 302
    assert client.get("/api/history").get_json()["total"] == 10
    # a restart (a new store and app on the same file) keeps every committed row
    client2, _ = make(db=history.path)
    assert client2.get("/api/history").get_json()["total"] == 10


def test_live_feed_stream_and_sampled_history(make):
    client, history = make(feed_source=ScriptedSource(delay=0.01))
    wait_until(lambda: client.get("/api/live").get_json()["frames"] >= 3, timeout=10, what="3 live frames")
    state = client.get("/api/live").get_json()
    assert state["frames"] >= 3 and state["top"] and state["fps"] > 0
    r = client.get("/stream.mjpg", buffered=False)
    chunk = next(r.response) + next(r.response)
    r.close()
    assert chunk.startswith(b"--frame") and b"\xff\xd8" in chunk
    assert b'src="/stream.mjpg"' in client.get("/live").data
    wait_until(lambda: any(e.source == "live" for e in history.page(1, 50)[0]), what="a sampled live row")


def test_serve_binding_rules(converted, tmp_path, caplog):
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    caplog.set_level(logging.INFO)  # the token is a NOTICE (serve's main sets the level up)
    config = ServeConfig(
        host="0.0.0.0",
        model=converted["int8"],
        top_k=3,
        db=tmp_path / "h.sqlite3",
        max_upload=10 * 1024 * 1024,
        max_pixels=1000,
    )
    _, _, token = make_app(config)
    assert token and len(token) >= 20 and any(token in r.getMessage() for r in caplog.records)
    assert make_app(replace(config, host="127.0.0.1"))[2] is None


def test_serve_cli_errors(converted, tmp_path, capsys):
    import socket

    from edgeclf.edge_app.web.serve import main as serve_main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = serve_main(["--model", str(converted["int8"]), "--port", str(port), "--db", str(tmp_path / "h.db")])
    assert code == 1 and f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        serve_main(["--port", "65536"])
    assert exc.value.code == 2
    blocked = tmp_path / "file"
    blocked.write_text("x")
    code = serve_main(["--model", str(converted["int8"]), "--db", str(blocked / "h.db")])
    assert code == 1 and "cannot open the history database" in capsys.readouterr().err


def test_rebinding_csrf_and_csv_formulas(make):
    from edgeclf.edge_app.web.app import LOOPBACK_NAMES

    client, history = make(allowed_hosts=LOOPBACK_NAMES)
    data, _ = images()[0]
    assert client.get("/", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert client.get("/", headers={"Host": "evil.example:8000"}).status_code == 403
    cross = client.post(
        "/api/predict",
        data=data,
        content_type="application/octet-stream",
        headers={"Host": "127.0.0.1:8000", "Origin": "http://evil.example"},
    )
    assert cross.status_code == 403 and "cross-origin" in cross.get_json()["error"]
    fetch = client.post("/history/1/delete", headers={"Host": "localhost", "Sec-Fetch-Site": "cross-site"})
    assert fetch.status_code == 403
    ok = client.post(
        "/api/predict",
        data={"image": (io.BytesIO(data), "=HYPERLINK(1).png")},
        headers={"Host": "localhost:8000", "Origin": "http://localhost:8000"},
    )
    assert ok.status_code == 200
    csv_text = client.get("/api/history.csv", headers={"Host": "localhost"}).data.decode()
    assert "'=HYPERLINK(1).png" in csv_text


def test_the_live_feed_keeps_at_most_its_cap_of_live_rows(converted, tmp_path):
    history = History(tmp_path / "web" / "history.sqlite3", max_live_rows=3)
    shared = SharedClassifier(Classifier(converted["int8"]), top_k=3)

    def sampled_30():
        newest = history.before(None, 1)
        return newest and newest[0].id >= 30

    feed = LiveFeed(shared, ScriptedSource(delay=0.005), history, sample_every=0.01).start()
    try:
        wait_until(sampled_30, timeout=10, what="the feed to sample 30 frames")
    finally:
        feed.stop()
    entries, total = history.page(1, 100)
    assert all(e.source == "live" for e in entries) and total < 3 + history.prune_every
    assert sorted(p.name for p in history.thumbs.iterdir()) == sorted(e.thumb for e in entries)
