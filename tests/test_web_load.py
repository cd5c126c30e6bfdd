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
