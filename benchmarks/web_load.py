"""Load test of `edgeclf serve`: N concurrent clients post images to a server on 127.0.0.1 for a
bounded time; every request must succeed and appear in the history exactly once.

    python -m edgeclf.benchmarks.web_load --seconds 30 --clients 8
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeclf.benchmarks.device import describe
from edgeclf.benchmarks.stats import summarize
from edgeclf.edge_app import files
from edgeclf.edge_app.argtypes import finite_float
from edgeclf.edge_app.errors import EdgeClfError

SAMPLES = Path(__file__).resolve().parent.parent / "models" / "samples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db: Path, model: Path | None = None, threads: int = 8) -> tuple[subprocess.Popen, int]:
    """`edgeclf serve` in its own process on a free loopback port, once /healthz answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "edgeclf.edge_app.web.serve", "--port", str(port), "--db", str(db)]
    cmd += ["--threads", str(threads)]
    if model:
        cmd += ["--model", str(model)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EdgeClfError(f"server exited: {proc.stderr.read()[-500:] if proc.stderr else ''}")
        try:
            status, _ = request("127.0.0.1", port, "GET", "/healthz")
            if status == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise EdgeClfError("server did not come up within 30 s")


def request(
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection(host, port, timeout=30)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


def run_load(port: int, payloads: list[bytes], clients: int = 8, seconds: float = 30.0) -> dict[str, Any]:
    """`clients` threads post payloads in turn until `seconds` pass; latencies, errors and ids."""
    deadline = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    ids: list[list[int]] = [[] for _ in range(clients)]
    errors: list[list[str]] = [[] for _ in range(clients)]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = 0
        while time.monotonic() < deadline:
            body = payloads[(i + n) % len(payloads)]
            n += 1
            start = time.perf_counter_ns()
            try:
                status, data = request("127.0.0.1", port, "POST", "/api/predict", body, conn)
            except OSError as exc:
                errors[i].append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            latencies[i].append((time.perf_counter_ns() - start) / 1e6)
            if status != 200:
                errors[i].append(f"HTTP {status}: {data[:100]!r}")
            else:
                ids[i].append(json.loads(data)["id"])
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    all_ids = [x for part in ids for x in part]
    _, body = request("127.0.0.1", port, "GET", "/api/history?per_page=1")
    stored = json.loads(body)["total"]
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": sum(len(x) for x in latencies),
        "ok": len(all_ids),
        "errors": sum(len(e) for e in errors),
        "error_samples": [e for part in errors for e in part][:5],
        "rps": round(len(all_ids) / elapsed, 1),
        "latency_ms": summarize([x for part in latencies for x in part]),
        "unique_ids": len(set(all_ids)) == len(all_ids),
        "history_rows": stored,
        "exactly_once": stored == len(all_ids) and len(set(all_ids)) == len(all_ids),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeclf.benchmarks.web_load", description=__doc__)
    parser.add_argument("--seconds", type=finite_float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--model", type=Path, help="model to serve (default: the shipped default)")
    parser.add_argument("--out", type=Path, help="also write the JSON result (with the command and device) here")
    args = parser.parse_args(argv)
    payloads = [p.read_bytes() for p in sorted(SAMPLES.glob("*.jpg"))]
    with tempfile.TemporaryDirectory(prefix="edgeclf-load-") as tmp:
        proc, port = start_server(Path(tmp) / "history.sqlite3", args.model)
        try:
            result = run_load(port, payloads, args.clients, args.seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    result = {"command": "python -m edgeclf.benchmarks.web_load " + " ".join(argv or sys.argv[1:]), **result}
    result["device"] = describe()
    print(json.dumps(result, indent=2))
    if args.out:
        files.write_text(args.out, json.dumps(result, indent=2) + "\n")
    return 0 if result["errors"] == 0 and result["exactly_once"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
