"""Hostile input against `edgeclf serve` (issue 12): tokens, viewer starvation, huge ids, cross-site
requests and framing, leftovers of a kill -9, error messages, and signals. Flask's test client for
the request rules; a real waitress server on 127.0.0.1 where threads matter; a subprocess for signals."""

import hmac
import http.client
import io
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgeclf.edge_app.web import serve
from edgeclf.edge_app.web.store import History
from tests import test_web
from tests.conftest import ROOT
from tests.fakes import ScriptedSource
from tests.test_web import images

make = test_web.make  # the fixture of tests/test_web.py, shared

GOOD_TOKEN = "0123456789abcdef"  # exactly the 16-character minimum
BIG = 2**63  # one above SQLite's largest integer


def busy_port_main(converted, tmp_path, extra, env=None, monkeypatch=None):
    """serve.main on a port already taken: exit 2 for a usage error, else 1 ('cannot listen') once
    every option was accepted; it never starts serving, so a test cannot hang on today's code."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = ["--model", str(converted["int8"]), "--port", str(port), "--db", str(tmp_path / "h.db"), *extra]
        try:
            return serve.main(argv)
        except SystemExit as exc:
            return exc.code


# --- item 1: tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "   ", "x", "a" * 15, "spaces in the middle of it", "tab\tinside-a-long-one"])
@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_empty_blank_and_short_tokens_exit_2(converted, tmp_path, capsys, token, host):
    code = busy_port_main(converted, tmp_path, ["--host", host, "--token", token])
    err = capsys.readouterr().err
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert "error:" in last and "--token" in last


def test_good_token_accepted(converted, tmp_path, capsys):
    code = busy_port_main(converted, tmp_path, ["--host", "127.0.0.1", "--token", GOOD_TOKEN])
    assert code == 1 and "cannot listen" in capsys.readouterr().err  # got as far as binding


def test_token_file_env_and_precedence(tmp_path, monkeypatch):
    parser = serve.build_parser()
    path = tmp_path / "token"
    path.write_text(GOOD_TOKEN + "\n")
    assert serve.resolve_token(parser.parse_args(["--token-file", str(path)]), {}) == GOOD_TOKEN
    path.write_text(GOOD_TOKEN + "\r\n")
    assert serve.resolve_token(parser.parse_args(["--token-file", str(path)]), {}) == GOOD_TOKEN
    env = {"EDGECLF_TOKEN": "from-the-environment-1"}
    assert serve.resolve_token(parser.parse_args([]), env) == "from-the-environment-1"
    assert serve.resolve_token(parser.parse_args(["--token", GOOD_TOKEN + "x"]), env) == GOOD_TOKEN + "x"
    assert serve.resolve_token(parser.parse_args(["--token-file", str(path)]), env) == GOOD_TOKEN
    assert serve.resolve_token(parser.parse_args([]), {}) is None
    with pytest.raises(ValueError, match="EDGECLF_TOKEN"):
        serve.resolve_token(parser.parse_args([]), {"EDGECLF_TOKEN": ""})


@pytest.mark.parametrize("content", ["", "\n", "short\n", "two\nlines-of-token-text\n"])
def test_bad_token_file_exits_2(converted, tmp_path, capsys, content):
    path = tmp_path / "token"
    path.write_text(content)
    assert busy_port_main(converted, tmp_path, ["--token-file", str(path)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: --token-file" in last and "unrecognized" not in last


def test_unreadable_token_file_is_one_line_error(converted, tmp_path, capsys):
    for path in (tmp_path / "missing", tmp_path):  # no such file; a folder
        assert busy_port_main(converted, tmp_path, ["--token-file", str(path)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: cannot read the token file"), err


def test_token_with_token_file_exits_2(converted, tmp_path, capsys):
    path = tmp_path / "token"
    path.write_text(GOOD_TOKEN)
    assert busy_port_main(converted, tmp_path, ["--token", GOOD_TOKEN, "--token-file", str(path)]) == 2
    assert "not allowed with" in capsys.readouterr().err


def test_short_env_token_exits_2(converted, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGECLF_TOKEN", "short")
    assert busy_port_main(converted, tmp_path, []) == 2
    assert "EDGECLF_TOKEN" in capsys.readouterr().err


def test_readme_token_recipe_needs_no_openssl():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Web UI on the device", 1)[1].split("\n## ", 1)[0]
    assert "openssl" not in section and "--token-file" in section and "secrets.token_urlsafe" in section


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(make, scheme):
    client, _ = make(token=GOOD_TOKEN)
    assert client.get("/api/history", headers={"Authorization": f"{scheme} {GOOD_TOKEN}"}).status_code == 200
    assert client.get("/api/history", headers={"Authorization": f"{scheme} wrong-{GOOD_TOKEN}"}).status_code == 401


def test_token_in_the_query_is_compared_in_constant_time(make, monkeypatch):
    """The README promises constant-time comparison: the ?token= that sets the cookie too, not only the check."""
    from edgeclf.edge_app.web import auth

    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", compare_digest)
    client, _ = make(token=GOOD_TOKEN)
    r = client.get(f"/healthz?token={GOOD_TOKEN}")  # open: only the cookie step reads the token
    assert r.status_code == 200 and "edgeclf_token" in r.headers.get("Set-Cookie", "")
    assert compared == [(GOOD_TOKEN.encode(), GOOD_TOKEN.encode())]
    for wrong in (f"wrong-{GOOD_TOKEN}", "%C3%A9" * 8):  # non-ASCII: compare_digest refuses str, bytes it takes
        r = client.get(f"/healthz?token={wrong}")
        assert r.status_code == 200 and "Set-Cookie" not in r.headers


def test_empty_token_never_disables_auth(make):
    with pytest.raises(ValueError):
        make(token="")


# --- item 3: MJPEG viewers --------------------------------------------------------------------------


@contextmanager
def real_server(app, threads):
    """The app on waitress at 127.0.0.1, any free port, in a daemon thread."""
    waitress = pytest.importorskip("waitress")
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)  # the requests end first
        server.close()


def open_viewer(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/stream.mjpg")
    response = conn.getresponse()
    return conn, response


def hang_up(conn, response):
    response.close()  # the response holds the socket open too
    conn.close()


def test_viewer_cap_keeps_threads_for_everything_else(make):
    client, _ = make(feed_source=ScriptedSource(delay=0.02), max_viewers=2)
    with real_server(client.application, threads=3) as port:
        viewers = [open_viewer(port) for _ in range(2)]
        for _, response in viewers:
            assert response.status == 200 and response.read(7) == b"--frame"
        conn, refused = open_viewer(port)  # one thread is still free, so this is answered at once
        assert refused.status == 503 and refused.getheader("Retry-After")
        assert "viewers" in json.loads(refused.read())["error"]
        hang_up(conn, refused)
        health = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        health.request("GET", "/healthz")
        assert health.getresponse().status == 200
        health.close()
        hang_up(*viewers[0])  # a viewer goes away: its slot comes back once the server notices
        deadline = time.monotonic() + 10
        while True:
            conn, response = open_viewer(port)
            if response.status == 200 or time.monotonic() > deadline:
                break
            hang_up(conn, response)
            time.sleep(0.1)
        assert response.status == 200 and response.read(7) == b"--frame"
        hang_up(conn, response)
        hang_up(*viewers[1])


def test_max_viewers_must_stay_below_threads(converted, tmp_path, capsys):
    for extra in (["--threads", "2", "--max-viewers", "2"], ["--threads", "4", "--max-viewers", "9"]):
        assert busy_port_main(converted, tmp_path, extra) == 2
        err = capsys.readouterr().err
        assert "--max-viewers" in err and "unrecognized" not in err
    assert busy_port_main(converted, tmp_path, ["--max-viewers", "-1"]) == 2
    assert busy_port_main(converted, tmp_path, ["--threads", "1"]) == 1  # the default adapts: no viewers


@pytest.mark.parametrize("mb", ["1e308", "4097", "0", "-1"])
def test_max_upload_mb_is_bounded(converted, tmp_path, capsys, mb):
    """1e308 MiB is finite, but not in bytes: it was an OverflowError traceback after the model loaded."""
    assert busy_port_main(converted, tmp_path, ["--max-upload-mb", mb]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("python -m edgeclf.edge_app.web.serve: error: --max-upload-mb"), err
    assert "Traceback" not in err
    assert busy_port_main(converted, tmp_path, ["--max-upload-mb", "4096"]) == 1  # the largest: 'cannot listen'


def test_stream_slot_released_when_the_response_closes(make):
    client, _ = make(feed_source=ScriptedSource(delay=0.01), max_viewers=1)
    for _ in range(3):  # each closed stream gives its slot back
        r = client.get("/stream.mjpg", buffered=False)
        assert r.status_code == 200
        assert client.get("/stream.mjpg", buffered=False).status_code == 503
        r.close()
    never_read = client.get("/stream.mjpg", buffered=False)
    never_read.close()  # closed before its generator started
    assert client.get("/stream.mjpg", buffered=False).status_code == 200


# --- item 6: ids and pages out of range, the delete redirect ----------------------------------------


def add_one(client):
    data, _ = images()[0]
    r = client.post("/api/predict", data=data, content_type="application/octet-stream")
    assert r.status_code == 200
    return r.get_json()["id"]


@pytest.mark.parametrize("entry_id", [BIG - 1, BIG, 2**64, 10**30])
def test_huge_ids_are_404_not_500(make, entry_id):
    client, history = make()
    add_one(client)
    r = client.delete(f"/api/history/{entry_id}")
    assert r.status_code == 404 and "no history entry" in r.get_json()["error"]
    page = client.post(f"/history/{entry_id}/delete")
    assert page.status_code == 404 and b"no history entry" in page.data
    assert history.page()[1] == 1


@pytest.mark.parametrize("page", [BIG, 2**64, 10**30, BIG // 20 + 2])  # the last: (page - 1) * 20 overflows
def test_huge_pages_are_400_not_500(make, page):
    client, _ = make()
    add_one(client)
    r = client.get(f"/api/history?page={page}")
    assert r.status_code == 400 and "page" in r.get_json()["error"]
    html = client.get(f"/history?page={page}")
    assert html.status_code == 400 and html.mimetype == "text/html"


@pytest.mark.parametrize(
    "query",
    ["endpoint=x", "_external=1&_scheme=https", "_anchor=x", "_method=GET", "entry_id=5", "values=1", "page=2&x=1"],
)
def test_delete_form_redirect_ignores_unknown_args(make, query):
    client, history = make()
    entry_id = add_one(client)
    r = client.post(f"/history/{entry_id}/delete?{query}")
    assert r.status_code == 302
    location = r.headers["Location"]
    assert location.startswith("/history") and "https" not in location and "#" not in location
    assert re.fullmatch(r"/history(\?(page=\d+)?(&?per_page=\d+)?(&?label=[^&]*)?)?", location), location
    assert history.page()[1] == 0


def test_delete_form_keeps_the_view_and_refuses_bad_values(make):
    client, history = make()
    entry_id = add_one(client)
    bad = client.post(f"/history/{entry_id}/delete?page=abc")
    assert bad.status_code == 400 and history.page()[1] == 1  # refused before anything was deleted
    r = client.post(f"/history/{entry_id}/delete?page=2&per_page=5&label=red")
    assert r.status_code == 302 and r.headers["Location"] == "/history?page=2&per_page=5&label=red"


# --- item 10: Origin: null, framing -----------------------------------------------------------------


def test_origin_null_is_refused_for_state_changes(make):
    client, history = make()
    entry_id = add_one(client)
    data, _ = images()[0]
    null = {"Origin": "null"}
    r = client.post("/api/predict", data=data, content_type="application/octet-stream", headers=null)
    assert r.status_code == 403 and "cross-origin" in r.get_json()["error"]
    assert client.delete(f"/api/history/{entry_id}", headers=null).status_code == 403
    assert client.post(f"/history/{entry_id}/delete", headers=null).status_code == 403
    assert history.page()[1] == 1
    assert client.get("/api/history", headers=null).status_code == 200  # reads are not state changes


def test_every_response_refuses_framing(make):
    client, _ = make(token=GOOD_TOKEN)
    auth = {"Authorization": f"Bearer {GOOD_TOKEN}"}
    thumb = client.post(
        "/api/predict", data=images()[0][0], content_type="application/octet-stream", headers=auth
    ).get_json()["thumb"]
    responses = [client.get(path, headers=auth) for path in ("/", "/history", "/about", "/live", "/api/model")]
    responses += [
        client.get(f"/thumbs/{thumb}", headers=auth),
        client.get("/static/style.css"),
        client.get("/healthz"),
        client.get("/"),  # 401
        client.get("/nowhere", headers=auth),  # 404
        client.get("/api/history?page=x", headers=auth),  # 400
        client.put("/api/model", headers=auth),  # 405
        client.post("/api/predict", headers={**auth, "Origin": "null"}),  # 403
    ]
    for r in responses:
        assert r.headers.get("X-Frame-Options") == "DENY", r.request.path
        csp = r.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, r.request.path


def test_pages_run_only_scripts_the_policy_allows(make):
    """No inline handlers or style attributes, and every inline script carries this response's nonce."""
    client, _ = make(feed_source=ScriptedSource(delay=0.02))
    add_one(client)
    upload = {"image": (io.BytesIO(images()[0][0]), "x.png")}
    result = client.post("/", data=upload, content_type="multipart/form-data")  # the page with result bars
    assert b'class="bar"' in result.data
    for path in ("/", "/history", "/live", "/about", "/nowhere", "POST /"):
        r = result if path == "POST /" else client.get(path)
        html = r.get_data(as_text=True)
        csp = r.headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert not re.search(r"\son[a-z]+\s*=", html), path
        assert not re.search(r"\sstyle\s*=", html), path
        nonces = re.findall(r"<script nonce=\"([^\"]+)\">", html)
        assert html.count("<script") == len(nonces), path
        for nonce in nonces:
            assert f"'nonce-{nonce}'" in csp, path


# --- item 12: leftovers of a kill -9 ----------------------------------------------------------------


def test_orphan_thumbnails_and_temp_files_swept_at_start(make, tmp_path, caplog):
    client, history = make()
    entry_id = add_one(client)
    kept = history.page()[0][0].thumb
    thumbs = history.thumbs
    orphan = thumbs / ("ab" * 16 + ".jpg")  # written, then killed before its row was committed
    temp = thumbs / f".{'cd' * 16}.jpg.k2j4_x9q.tmp.jpg"  # killed inside atomic_write
    foreign = [thumbs / "notes.txt", thumbs / "holiday.jpg", thumbs / ".hidden.tmp"]
    for path in (orphan, temp, *foreign):
        path.write_bytes(b"x")
    caplog.set_level("INFO")
    History(history.path)
    assert not orphan.exists() and not temp.exists()
    assert (thumbs / kept).exists() and all(p.exists() for p in foreign)
    assert "removed 1 orphan thumbnail and 1 temporary file" in caplog.text
    assert client.get(f"/thumbs/{kept}").status_code == 200 and history.page()[0][0].id == entry_id
    caplog.clear()
    History(history.path)
    assert "removed" not in caplog.text  # nothing to say when there was nothing to sweep


# --- item 13: messages ------------------------------------------------------------------------------


def test_413_names_the_limit_as_given(make):
    client, _ = make(max_upload=10 * 1024 * 1024)
    r = client.post("/api/predict", data=b"\0" * (10 * 1024 * 1024 + 1), content_type="application/octet-stream")
    message = r.get_json()["error"]
    assert r.status_code == 413 and "10 MiB" in message and "10.5" not in message


def test_too_many_parts_has_its_own_message(make):
    client, _ = make()
    boundary = "b0undary"
    parts = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n' for i in range(1500))
    body = (parts + f"--{boundary}--\r\n").encode()
    assert len(body) < 1024 * 1024
    for path in ("/api/predict", "/"):
        r = client.post(path, data=body, content_type=f"multipart/form-data; boundary={boundary}")
        text = r.get_data(as_text=True)
        assert r.status_code == 413 and "too many parts" in text and "larger than" not in text, path


def test_large_text_field_has_its_own_message(make):
    client, _ = make()
    form = {"image": "x" * 600_000}  # a file pasted as a text field (curl -F image=<FILE)
    r = client.post("/api/predict", data=form, content_type="multipart/form-data")
    assert r.status_code == 413 and "as a file" in r.get_json()["error"]
    small = client.post("/api/predict", data={"image": "x"}, content_type="multipart/form-data")
    assert small.status_code == 400 and "no file" in small.get_json()["error"]


def test_raw_body_with_curl_default_content_type(make):
    """`curl --data-binary @cat.jpg` sends application/x-www-form-urlencoded: still the image."""
    client, _ = make()
    data, truth = images()[0]
    for body in (data, data + b"\0" * 600_000):  # small, and over the form-field limit
        r = client.post("/api/predict", data=body, content_type="application/x-www-form-urlencoded")
        assert r.status_code == 200 and r.get_json()["label"] == truth


def test_errors_show_no_server_paths(make, tmp_path, monkeypatch):
    client, history = make()
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    monkeypatch.setattr(history, "thumbs", blocker / "thumbs")  # a thumbnail cannot be written
    data, _ = images()[0]
    for path in ("/api/predict", "/"):
        r = client.post(path, data={"image": (io.BytesIO(data), "x.png")}, content_type="multipart/form-data")
        text = r.get_data(as_text=True)
        assert r.status_code == 500 and "cannot write" in text, text
        assert str(tmp_path) not in text and "/thumbs/" not in text and re.search(r"[0-9a-f]{32}\.jpg", text)
    monkeypatch.undo()
    monkeypatch.setattr(history, "path", tmp_path / "no" / "such" / "dir" / "history.sqlite3")
    r = client.get("/api/history")
    text = r.get_data(as_text=True)
    assert r.status_code == 500 and "history database error" in text and str(tmp_path) not in text


def test_unexpected_errors_are_json_on_the_api(make, monkeypatch):
    client, history = make()
    monkeypatch.setattr(history, "page", lambda *a: 1 / 0)
    r = client.get("/api/history")
    assert r.status_code == 500 and r.get_json() == {"error": "internal server error"}
    assert client.get("/history").status_code == 500


# --- item 8 (serve part): exit codes after signals --------------------------------------------------


@contextmanager
def serve_process(model, tmp_path, *extra, code=None):
    """`python -m edgeclf.edge_app.web.serve --port 0` in a subprocess: (process, port, stderr lines so far, queue).
    `code`: run this program (`python -c`, given the same arguments) instead of the module."""
    program = ["-c", code] if code else ["-m", "edgeclf.edge_app.web.serve"]
    cmd = [sys.executable, *program, "--model", str(model), "--port", "0"]
    cmd += ["--db", str(tmp_path / "h.sqlite3"), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("serving http://127.0.0.1:") for line in seen):
            assert time.monotonic() < deadline and proc.poll() is None, seen
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        port = int(re.search(r":(\d+)/", seen[-1]).group(1))
        assert port > 0
        yield proc, port, seen, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_serve_exits_130_or_143_after_a_signal(converted, tmp_path, signum, code):
    with serve_process(converted["int8"], tmp_path) as (proc, _port, seen, lines):
        proc.send_signal(signum)
        assert proc.wait(timeout=20) == code, seen
    time.sleep(0.1)
    while not lines.empty():
        seen.append(lines.get())
    assert any("server stopped" in line for line in seen), seen
    assert not any("Traceback" in line for line in seen), seen


# serve with its whole upload decode budget taken, as by a large upload being decoded: the next upload
# waits for its share in a request thread, for up to 30 s
BUDGET_TAKEN = """
import sys
from edgeclf.edge_app.web import serve, uploads
uploads.UPLOAD_BUDGET.acquire(uploads.UPLOAD_BUDGET.total)
raise SystemExit(serve.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_serve_stops_in_time_with_a_request_in_flight(converted, tmp_path, signum, code):
    """waitress waited 5 s for the request threads after a signal: an upload waiting on the decode
    budget held the exit past the 2 s the issue asks for."""
    data, _ = images()[0]
    head = "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
    with serve_process(converted["int8"], tmp_path, code=BUDGET_TAKEN) as (proc, port, seen, lines):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
            conn.settimeout(1.0)
            with pytest.raises(TimeoutError):  # no answer: the upload is in a request thread, waiting
                conn.recv(1)
            start = time.monotonic()
            proc.send_signal(signum)
            assert proc.wait(timeout=20) == code, seen
            seconds = time.monotonic() - start
    time.sleep(0.1)
    while not lines.empty():
        seen.append(lines.get())
    assert seconds < 2.5, f"exited {seconds:.1f} s after {signal.Signals(signum).name}"
    assert any("server stopped" in line for line in seen), seen
    assert not any("Traceback" in line for line in seen), seen


def test_shutdown_grace_holds_for_a_server_on_several_sockets():
    """waitress on several sockets (`--host localhost` where it is 127.0.0.1 and ::1) waits for the request
    threads twice: in run() after the interrupt and again in close(). The grace is for both together."""
    waitress = pytest.importorskip("waitress")
    started, release = threading.Event(), threading.Event()

    def app(_environ, start_response):
        started.set()
        release.wait(30)
        start_response("200 OK", [])
        return [b""]

    server = waitress.create_server(
        app, listen="127.0.0.1:0 127.0.0.1:0", threads=2, asyncore_loop_timeout=serve.LOOP_TIMEOUT
    )
    assert type(server).__name__ == "MultiSocketServer"
    serve.bound_shutdown(server, 1.0)
    sent: list[float] = []

    main = threading.main_thread().ident

    def interrupt() -> None:
        assert started.wait(10)
        sent.append(time.monotonic())
        # a KeyboardInterrupt in the main thread, inside run() (a signal that lands just before its select()
        # is seen at the select timeout: serve's LOOP_TIMEOUT; with waitress's default 1 s, 2.0 s was measured)
        signal.pthread_kill(main, signal.SIGINT)

    try:
        with socket.create_connection(("127.0.0.1", int(server.effective_listen[0][1])), timeout=5) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            threading.Thread(target=interrupt, daemon=True).start()
            server.run()  # returns on the interrupt, after shutdown()
            server.close()  # shutdown() again
            seconds = time.monotonic() - sent[0]
    finally:
        release.set()
    assert 0.9 < seconds < 1.6, f"{seconds:.2f} s"


def test_serve_refuses_a_huge_body_before_reading_it(converted, tmp_path):
    """waitress spools request bodies to disk before Flask sees them: its own limit must follow --max-upload-mb."""
    with serve_process(converted["int8"], tmp_path, "--max-upload-mb", "1") as (_proc, port, _seen, _lines):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(
                b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: 500000000\r\n\r\n" + b"\0" * 65536
            )
            head = conn.recv(200)  # without the limit waitress waits for 500 MB that never come: a timeout
    assert head.startswith(b"HTTP/1.1 413"), head


def test_path_scrubbing_keeps_urls():
    from edgeclf.edge_app.web.app import without_paths

    assert without_paths("cannot write /home/pi/.local/x/thumbs/ab.jpg: No space left") == (
        "cannot write ab.jpg: No space left"
    )
    assert without_paths("use http://127.0.0.1:8000/ instead") == "use http://127.0.0.1:8000/ instead"
    assert without_paths("'/srv/db/history.sqlite3' is locked") == "'history.sqlite3' is locked"
    assert without_paths(str(Path("/a/b/c.txt"))) == "c.txt"
