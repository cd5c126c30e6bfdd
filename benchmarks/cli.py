"""`edgeclf bench` / `python -m edgeclf.benchmarks`: every model, runtime and thread count side by side."""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Sequence
from pathlib import Path

from edgeclf.benchmarks import bench, device, recommend, report
from edgeclf.edge_app.argtypes import finite_float
from edgeclf.edge_app.cli import guarded
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.runtime import RUNTIMES
from edgeclf.edge_app.shipped import MODELS_DIR

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_KERAS = MODELS_DIR / "tutorial_cnn.keras"


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("thread counts must be at least 1")
    return values


def _runtimes(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"runtimes must be from {', '.join(RUNTIMES)}")
    return names


def _budget(text: str) -> float:
    value = finite_float(text)  # no budget is the default, not inf
    if value <= 0:
        raise argparse.ArgumentTypeError("the budget must be more than 0 ms")
    return value


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m edgeclf.benchmarks",
        description="Benchmark .tflite models side by side: invoke() and end-to-end 640x480 frame latency, "
        "accuracy, size, peak RSS and cold start, plus the tutorial's Keras deployment as a reference. "
        "Writes report.md, report.json, report.csv and latency_accuracy.png.",
    )
    parser.add_argument("models", nargs="*", type=Path, help=f"models (default: every .tflite in {MODELS_DIR})")
    parser.add_argument(
        "--data",
        type=Path,
        help="evaluation images: an image folder (its test/ split when present) "
        "or CIFAR-10's python batches (cifar-10-batches-py); adds top-1 / top-5 / macro F1 and each class's "
        "recall per model to the report",
    )
    parser.add_argument("--threads", type=_ints, default=[1], help="comma list of thread counts (default 1)")
    parser.add_argument("--runtime", type=_runtimes, default=[None], help="comma list of runtimes (default: auto)")
    parser.add_argument("--quick", action="store_true", help="seconds, not minutes (tests, CI)")
    parser.add_argument("--eval-limit", type=int, help="evaluate on at most N images (quick default 300)")
    parser.add_argument(
        "--labels",
        type=Path,
        help="labels file (one per line or 'index label') for the models given; needed for a model without "
        "edgeclf metadata, and it overrides the labels of those with",
    )
    parser.add_argument("--keras", type=Path, help=f"Keras model for the reference row (default {DEFAULT_KERAS.name})")
    parser.add_argument("--no-reference", action="store_true", help="skip the Keras reference row")
    parser.add_argument("--out", type=Path, help="report folder (default benchmarks/results/<device>-<date>/)")
    parser.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("A.json", "B.json"),
        help="print two report.json files side by side and exit",
    )
    parser.add_argument(
        "--recommend",
        action="store_true",
        help="after measuring, rank the variants for this device: most accurate first (top-1 on --data when "
        "given, else the test_accuracy in each model's metadata; the output says which), then the smaller file, "
        "then the faster frame; prints the `edgeclf run` line to use",
    )
    parser.add_argument(
        "--budget-ms",
        type=_budget,
        metavar="MS",
        help="with --recommend: only variants whose 640x480 frame p50 is at most MS (default: no budget); "
        "exit 1 when none is",
    )
    parser.add_argument(
        "--from",
        dest="from_report",
        type=Path,
        metavar="REPORT.json",
        help="with --recommend: rank the rows of a saved report.json instead of measuring",
    )
    return parser


@guarded
def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the benchmark and write its report, or compare two reports."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.budget_ms is not None and not args.recommend:
        parser.error("--budget-ms needs --recommend")
    if args.from_report is not None:
        if not args.recommend:
            parser.error("--from needs --recommend")
        if args.models or args.data or args.compare or args.out:
            parser.error("--from ranks a saved report: it takes no models, --data, --compare or --out")
        print(recommend.advice(report.load(args.from_report), args.budget_ms))
        return 0
    if args.recommend and args.compare:
        parser.error("--recommend ranks one report: use it with --from, not --compare")
    if args.compare:
        a, b = (report.load(p) for p in args.compare)
        print(report.compare(a, b, (args.compare[0].parent.name or "A", args.compare[1].parent.name or "B")))
        return 0
    if args.eval_limit is not None and args.eval_limit < 1:
        parser.error("--eval-limit must be at least 1")
    models = args.models or sorted(MODELS_DIR.glob("*.tflite"))
    if not models:
        raise EdgeClfError(f"no .tflite models given and none in {MODELS_DIR}")
    missing = [str(m) for m in models if not m.is_file()]
    if missing:
        raise EdgeClfError(f"model file(s) not found: {', '.join(missing)}")
    if args.keras and not args.no_reference and (problem := bench.keras_problem(args.keras)):
        raise EdgeClfError(problem)  # before minutes of measuring, not after
    # float32 first, so each quantized row can be compared with it
    models = sorted(models, key=lambda p: (0 if "float32" in p.name else 1, p.name))
    keras = None if args.no_reference else (args.keras or (DEFAULT_KERAS if DEFAULT_KERAS.is_file() else None))
    config = bench.BenchConfig(
        models=models,
        threads=args.threads,
        runtimes=args.runtime,
        data=args.data,
        keras=keras,
        mode=bench.QUICK if args.quick else bench.FULL,
        eval_limit=args.eval_limit,
        labels=args.labels,
    )
    result = bench.run(config)
    report.explain(result)
    out = args.out or RESULTS_DIR / f"{device.slug(result['device'])}-{datetime.date.today().isoformat()}"
    paths = report.write(result, out)
    print(report.to_markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    if args.recommend:
        print(recommend.advice(result, args.budget_ms))  # nothing within the budget: EdgeClfError, exit 1
    return 0
