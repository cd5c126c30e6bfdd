"""A short, bounded load run against a real `edgeclf serve` process on 127.0.0.1 (the 30 s run is
`python -m edgeclf.benchmarks.web_load`; its numbers go to the closing note, not into assertions)."""

from edgeclf.benchmarks.web_load import SAMPLES, run_load, start_server
from tests.conftest import wait_until


def test_eight_clients_zero_errors_exactly_once(tmp_path):
    proc, port = start_server(tmp_path / "history.sqlite3")
    try:
        result = run_load(port, [p.read_bytes() for p in sorted(SAMPLES.glob("*.jpg"))], clients=8, seconds=3)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert result["errors"] == 0, result["error_samples"]
    assert result["ok"] > 8 and result["exactly_once"], result
    err = proc.stderr.read()
    assert proc.returncode == 143 and "Traceback" not in err, err[-2000:]  # SIGTERM: a clean stop, 128 + 15


def test_kill_during_load_keeps_every_committed_row(tmp_path):
    import signal
    import sqlite3
    import threading

    from edgeclf.edge_app.web.store import History

    db = tmp_path / "history.sqlite3"
    proc, port = start_server(db)
    ids = []
    payloads = [p.read_bytes() for p in sorted(SAMPLES.glob("*.jpg"))]
    loader = threading.Thread(target=run_load_safe, args=(port, payloads, ids))
    loader.start()
    try:  # killed mid-load: once 20 predictions are acknowledged, while the client keeps posting
        wait_until(lambda: len(ids) >= 20, timeout=60, what="20 acknowledged predictions")
    finally:
        proc.send_signal(signal.SIGKILL)  # no clean shutdown at all
        proc.wait(timeout=10)
        loader.join(timeout=30)
    assert not loader.is_alive() and proc.returncode == -signal.SIGKILL
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {e.id for e in History(db).page(1, 100_000)[0]}
    acknowledged = set(ids)
    assert len(acknowledged) >= 20 and acknowledged <= stored  # every prediction answered with 200 was committed


def run_load_safe(port, payloads, ids):
    """Post until the server dies, appending to `ids` each id it acknowledged."""
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for n in range(100_000):
        try:
            conn.request(
                "POST",
                "/api/predict",
                body=payloads[n % len(payloads)],
                headers={"Content-Type": "application/octet-stream"},
            )
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            break
        if response.status == 200:
            ids.append(json.loads(body)["id"])
