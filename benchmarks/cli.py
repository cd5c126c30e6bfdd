"""`edgeclf bench` / `python -m benchmarks`: a side-by-side table of .tflite models."""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.measure import accuracy, evaluation_set, latency
from edge_app import files, metrics
from edge_app.classifier import Classifier
from edge_app.cli import guarded
from edge_app.errors import EdgeClfError
from edge_app.run import MODELS_DIR
from edge_app.runtime import RUNTIMES


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m benchmarks",
        description="Measure invoke() latency, size and (with --data) accuracy of .tflite models, side by side.",
    )
    parser.add_argument("models", nargs="*", type=Path, help=f"models (default: every .tflite in {MODELS_DIR})")
    parser.add_argument("--data", type=Path, help="image folder to evaluate on (its test/ split when present)")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    parser.add_argument("--runtime", choices=list(RUNTIMES), help="force a TFLite runtime")
    parser.add_argument("--quick", action="store_true", help="seconds instead of a minute: for tests and CI")
    parser.add_argument("--out", type=Path, help="also write the raw numbers as JSON to this file")
    return parser


def bench_model(path: Path, args: argparse.Namespace, float_probs: dict[str, Any]) -> dict[str, Any]:
    clf = Classifier(path, runtime=args.runtime, threads=args.threads)
    timing = latency(clf, 0.5 if args.quick else 10.0, 20 if args.quick else 200)
    row: dict[str, Any] = {
        "model": str(path),
        "architecture": clf.info.architecture,
        "quantization": clf.info.quantization,
        "runtime": str(clf.runtime),
        "threads": args.threads,
        "invoke_ms": timing,
        "bytes": path.stat().st_size,
    }
    if args.data:
        data = evaluation_set(args.data, clf.labels, (clf.spec.height, clf.spec.width), clf.spec.resize)
        report, probs = accuracy(clf, data)
        row.update(top1=report["accuracy"], top5=report.get("top5"), macro_f1=report["macro_f1"], n=report["n"])
        key = clf.info.architecture
        if clf.info.quantization == "float32":
            float_probs[key] = probs
        if key in float_probs and len(float_probs[key]) == len(probs):
            row["agreement_vs_float32"] = metrics.agreement(float_probs[key], probs)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = "| model | quant | runtime | threads | invoke p50 ms | p90 ms | bytes | top-1 | macro F1 | agree f32 |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        fmt = {k: f"{r[k]:.4f}" if r.get(k) is not None else "-" for k in ("top1", "macro_f1", "agreement_vs_float32")}
        lines.append(
            f"| {Path(r['model']).name} | {r['quantization']} | {r['runtime']} | {r['threads']} | "
            f"{r['invoke_ms']['p50']:.3f} | {r['invoke_ms']['p90']:.3f} | {r['bytes']:,} | "
            f"{fmt['top1']} | {fmt['macro_f1']} | {fmt['agreement_vs_float32']} |"
        )
    return "\n".join(lines)


def device() -> dict[str, Any]:
    import numpy

    return {
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
    }


@guarded
def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Benchmark the models and print a Markdown table."""
    args = build_parser(prog).parse_args(argv)
    if args.threads < 1:
        raise EdgeClfError("--threads must be at least 1")
    models = args.models or sorted(MODELS_DIR.glob("*.tflite"))
    if not models:
        raise EdgeClfError(f"no .tflite models given and none in {MODELS_DIR}")
    # float32 first so the others can be compared with it
    models = sorted(models, key=lambda p: 0 if "float32" in p.name else 1)
    float_probs: dict[str, Any] = {}
    rows = [bench_model(Path(m), args, float_probs) for m in models]
    print(table(rows))
    if args.out:
        files.write_json(args.out, {"device": device(), "rows": rows})
    return 0
