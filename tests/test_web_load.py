"""A short, bounded load run against a real `edgeclf serve` process on 127.0.0.1 (the 30 s run is
`python -m benchmarks.web_load`; its numbers go to the closing note, not into assertions)."""

from benchmarks.web_load import SAMPLES, run_load, start_server


def test_eight_clients_zero_errors_exactly_once(tmp_path):
    proc, port = start_server(tmp_path / "history.sqlite3")
    try:
        result = run_load(port, [p.read_bytes() for p in sorted(SAMPLES.glob("*.jpg"))], clients=8, seconds=3)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert result["errors"] == 0, result["error_samples"]
    assert result["ok"] > 8 and result["exactly_once"], result
    assert proc.returncode is not None


def test_kill_during_load_keeps_every_committed_row(tmp_path):
    import signal
    import sqlite3
    import threading
    import time

    from edge_app.web.store import History

    db = tmp_path / "history.sqlite3"
    proc, port = start_server(db)
    outcome = {}
    payloads = [p.read_bytes() for p in sorted(SAMPLES.glob("*.jpg"))]
    loader = threading.Thread(target=lambda: outcome.update(run_load_safe(port, payloads)))
    loader.start()
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)  # no clean shutdown at all
    proc.wait(timeout=10)
    loader.join(timeout=30)
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {e.id for e in History(db).page(1, 100_000)[0]}
    acknowledged = set(outcome["ids"])
    assert acknowledged and acknowledged <= stored  # every prediction answered with 200 was committed


def run_load_safe(port, payloads):
    """Post until the server dies; the ids it acknowledged."""
    import http.client
    import json

    ids = []
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
    return {"ids": ids}
