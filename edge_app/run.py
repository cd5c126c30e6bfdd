"""`edgeclf run`: classify images with a .tflite model and print one JSON line per image."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from edge_app.classifier import Classifier
from edge_app.cli import guarded
from edge_app.errors import EdgeClfError
from edge_app.runtime import RUNTIMES
from edge_app.sources import iter_images

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = MODELS_DIR / "tutorial_cnn_int8.tflite"


def default_model() -> Path:
    """$EDGECLF_MODEL, else the shipped default int8 model."""
    return Path(os.environ.get("EDGECLF_MODEL") or DEFAULT_MODEL)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m edge_app",
        description="Classify images with a .tflite model using only a TFLite runtime (no TensorFlow).",
    )
    parser.add_argument("--model", type=Path, default=None, help=f"the .tflite model (default: {DEFAULT_MODEL.name})")
    parser.add_argument("--source", required=True, help="an image file, a folder of images or a glob")
    parser.add_argument("--labels", type=Path, help="labels file (one per line or 'index label'); overrides metadata")
    parser.add_argument("--top-k", type=int, default=3, help="how many classes to report (default 3)")
    parser.add_argument("--runtime", choices=list(RUNTIMES), help="force a TFLite runtime")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads (default: all cores)")
    parser.add_argument("--verbose", action="store_true", help="print the runtime and model details to stderr")
    return parser


@guarded
def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Classify each image of --source and print JSON lines: path, top-k labels and scores, ms."""
    args = build_parser(prog).parse_args(argv)
    if args.top_k < 1:
        build_parser(prog).error("--top-k must be at least 1")
    clf = Classifier(args.model or default_model(), args.labels, args.runtime, args.threads)
    if args.verbose:
        info = clf.info
        print(
            f"runtime {clf.runtime}; model {clf.path} ({info.architecture}, {info.quantization}, "
            f"input {info.input.height}x{info.input.width}, {len(info.labels)} labels)",
            file=sys.stderr,
        )
    count = 0
    for path, image in iter_images(args.source):
        start = time.perf_counter_ns()
        top = clf.classify(image, color="BGR", top_k=args.top_k)
        ms = (time.perf_counter_ns() - start) / 1e6
        record = {
            "source": str(path),
            "top": [{"label": lab, "score": round(s, 4)} for lab, s in top],
            "ms": round(ms, 3),
        }
        print(json.dumps(record), flush=True)
        count += 1
    if not count:
        raise EdgeClfError(f"no readable image in {args.source}")
    return 0
