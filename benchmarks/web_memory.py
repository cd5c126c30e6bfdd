"""Peak memory of `edgeclf serve` under concurrent hostile and large uploads, and top-1 agreement
with `edgeclf run` on a large photo (issue 12, item 2).

    python -m edgeclf.benchmarks.web_memory --out benchmarks/results/web-memory-<device>-<date>.json

A server starts on 127.0.0.1 with its defaults (`--max-pixels` 40 M, 8 threads). After one
warm-up upload, each scenario posts the same file from 8 clients at once and reads the server's
peak RSS (VmHWM) from /proc: a 4.4 KB 6000x6000 1-bit PNG (108 MB of pixels once decoded), a
4000x3000 JPEG photo, and the largest 4:3 PNG the upload decode budget admits. Scenarios run in
that order, so each peak includes the ones before it.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeclf.benchmarks.device import describe
from edgeclf.benchmarks.web_load import request, start_server
from edgeclf.edge_app import files

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "models" / "samples" / "cat.jpg"


def grey_png(width: int, height: int, depth: int, rows: bytes) -> bytes:
    """A greyscale PNG with this header and these (filtered, uncompressed) rows; the rows may be fewer
    than the header declares, which makes a header-only bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def one_bit_png(side: int = 6000) -> bytes:
    """A valid all-black 1-bit PNG: a few KB on the wire, side^2 pixels once decoded."""
    return grey_png(side, side, 1, (b"\x00" + b"\x00" * ((side + 7) // 8)) * side)


def photo(width: int, height: int, ext: str) -> bytes:
    """The cat sample scaled up to a camera-sized image (smooth content, so it compresses like a photo)."""
    import cv2

    big = cv2.resize(cv2.imread(str(SAMPLE)), (width, height), interpolation=cv2.INTER_CUBIC)
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 9]
    ok, data = cv2.imencode(ext, big, params)
    assert ok
    return data.tobytes()


def largest_png() -> tuple[int, int]:
    """The largest 4:3 PNG (multiples of 100 px) whose estimated decode fits one upload decode."""
    from edgeclf.edge_app.imagedecode import ImageHeader, decode_bytes_needed
    from edgeclf.edge_app.web.uploads import MAX_DECODE_BYTES

    side = 300
    while decode_bytes_needed(ImageHeader("PNG", (side + 100) * 4 // 3, side + 100), 1) <= MAX_DECODE_BYTES:
        side += 100
    return side * 4 // 3, side


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def burst(port: int, body: bytes, clients: int) -> list[tuple[int, str]]:
    """`clients` uploads of `body` at once; (status, label or error) for each."""
    results: list[tuple[int, str]] = [(0, "")] * clients
    go = threading.Barrier(clients)

    def one(i: int) -> None:
        go.wait()
        status, data = request("127.0.0.1", port, "POST", "/api/predict", body)
        answer = json.loads(data) if data.startswith(b"{") else {}
        results[i] = (status, answer.get("label") or answer.get("error", "")[:100])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def run_top1(image: Path) -> str:
    """The label `edgeclf run` prints for one image file (default model)."""
    out = subprocess.run(
        [sys.executable, "-m", "edgeclf.edge_app", "--source", str(image), "--no-display", "--max-frames", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["top"][0]["label"]


def measure(clients: int = 8) -> dict[str, Any]:
    scenarios = {
        "6000x6000 1-bit PNG": one_bit_png(6000),
        "4000x3000 JPEG photo": photo(4000, 3000, ".jpg"),
    }
    width, height = largest_png()
    scenarios[f"{width}x{height} PNG (largest 4:3 the decode budget admits)"] = photo(width, height, ".png")
    with tempfile.TemporaryDirectory(prefix="edgeclf-mem-") as tmp:
        proc, port = start_server(Path(tmp) / "history.sqlite3")
        try:
            request("127.0.0.1", port, "POST", "/api/predict", SAMPLE.read_bytes())
            time.sleep(0.5)
            report: dict[str, Any] = {"baseline_mb": memory_mb(proc.pid), "scenarios": []}
            for name, body in scenarios.items():
                results = burst(port, body, clients)
                report["scenarios"].append(
                    {
                        "upload": name,
                        "bytes": len(body),
                        "clients": clients,
                        "statuses": sorted({s for s, _ in results}),
                        "answers": sorted({a for _, a in results}),
                        "after_mb": memory_mb(proc.pid),
                    }
                )
            photo_path = Path(tmp) / "photo.jpg"
            photo_path.write_bytes(scenarios["4000x3000 JPEG photo"])
            _, data = request("127.0.0.1", port, "POST", "/api/predict", photo_path.read_bytes())
            serve_top = json.loads(data)["top"][0]["label"]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        report["photo_top1"] = {"serve": serve_top, "run": run_top1(photo_path)}
    report["photo_top1"]["same"] = report["photo_top1"]["serve"] == report["photo_top1"]["run"]
    report["peak_mb"] = report["scenarios"][-1]["after_mb"]["VmHWM"]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeclf.benchmarks.web_memory", description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    command = "python -m edgeclf.benchmarks.web_memory " + " ".join(argv or sys.argv[1:])
    report = {"command": command, **measure(args.clients)}
    report["device"] = describe()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        files.write_text(args.out, text + "\n")
    return 0 if report["peak_mb"] < 200 and report["photo_top1"]["same"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
