"""`edgeclf convert` / `python -m edgeclf.convert`: Keras -> .tflite with verification against Keras."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from edgeclf.convert.modes import IO_TYPES, QUANT_MODES
from edgeclf.convert.tta import TTA_MODES
from edgeclf.edge_app.argtypes import finite_float, rgb_triple
from edgeclf.edge_app.cli import guarded
from edgeclf.edge_app.contract import COLORS


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    modes_help = "; ".join(f"{m.name}: {m.description}" for m in QUANT_MODES.values())
    by_io: dict[tuple[str, ...], list[str]] = {}
    for m in QUANT_MODES.values():
        by_io.setdefault(m.io_choices, []).append(m.name)
    io_help = "; ".join(
        f"{', '.join(names)}: {', '.join(io)}" + (f" (default {io[0]})" if len(io) > 1 else "")
        for io, names in by_io.items()
    )
    calibrated = ", ".join(m.name for m in QUANT_MODES.values() if m.calibrated)
    parser = argparse.ArgumentParser(
        prog=prog or "python -m edgeclf.convert",
        description="Convert a trained run (or a .keras file) to .tflite, verify it against the Keras model on the "
        "test split in the TFLite runtime, and write it with its metadata (embedded and as a JSON sidecar).",
    )
    parser.add_argument("source", help="a run folder from `edgeclf train`, or a .keras / .h5 file")
    parser.add_argument("--quantize", default="int8", choices=list(QUANT_MODES), help=modes_help)
    parser.add_argument("--out", help="output .tflite (default: <run>/<arch>_<mode>.tflite)")
    parser.add_argument(
        "--io",
        choices=IO_TYPES,
        help=f"input/output tensor type: {io_help}",
    )
    parser.add_argument(
        "--calibration", type=int, default=300, help=f"training images used to calibrate {calibrated} (default 300)"
    )
    parser.add_argument("--eval-limit", type=int, help="verify on the first N test images only (default: all)")
    parser.add_argument(
        "--max-drop", type=finite_float, default=1.0, help="largest accepted accuracy loss in points (default 1.0)"
    )
    parser.add_argument(
        "--allow-drop", action="store_true", help="write the model even if it loses more than --max-drop"
    )
    parser.add_argument(
        "--tta",
        choices=TTA_MODES,
        default="none",
        help="test-time augmentation in the exported graph: flip averages the outputs for the image and its "
        "mirror (twice the compute per frame); flip_shift adds both shifted one pixel up-left and down-right "
        "(six times the compute; airbench's weighting); default none",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    data = parser.add_argument_group("data (default: the run's own data and splits, from run.json)")
    data.add_argument("--data", help="'cifar10' or an image folder; needed for a Keras file without run.json")
    data.add_argument("--data-dir", help="offline CIFAR-10 image-folder copy (e.g. when the run's copy moved)")
    data.add_argument("--image-size", type=int, help="image side (default: the run's, or the model's input)")
    lone = parser.add_argument_group(
        "input contract of a Keras file without run.json (required, unless a <stem>.json sidecar beside the file "
        "gives them; an option wins over the sidecar)"
    )
    lone.add_argument("--mean", type=rgb_triple, help="what training subtracted from pixels (one number or R,G,B)")
    lone.add_argument("--std", type=rgb_triple, help="what training divided by after the mean: one number or R,G,B")
    lone.add_argument("--color", choices=COLORS, help="the channel order the model was trained on")
    lone.add_argument("--labels", type=Path, help="labels file: one class name per line, in the model's output order")
    return parser


@guarded
def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Convert, verify, write, print the accuracy report."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.eval_limit is not None and args.eval_limit < 1:
        parser.error("--eval-limit must be at least 1")
    if args.image_size is not None and args.image_size < 1:
        parser.error("--image-size must be at least 1")
    from edgeclf.convert.pipeline import convert, report

    data = {k: v for k in ("data", "data_dir", "image_size") if (v := getattr(args, k)) is not None}
    result = convert(
        args.source,
        args.quantize,
        out=args.out,
        io=args.io,
        calibration=args.calibration,
        data=data,
        eval_limit=args.eval_limit,
        max_drop=args.max_drop,
        allow_drop=args.allow_drop,
        force=args.force,
        tta_mode=args.tta,
        mean=args.mean,
        std=args.std,
        color=args.color,
        labels=args.labels,
    )
    print(report(result))
    return 0
