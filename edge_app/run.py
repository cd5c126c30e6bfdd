"""`edgeclf run` / `python -m edgeclf.edge_app`: live classification from a camera, video, stream or images."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from edgeclf.edge_app import cameraopts, logs, mqttopts, notify
from edgeclf.edge_app.argtypes import finite_float, rgb_triple
from edgeclf.edge_app.capture import Grabber
from edgeclf.edge_app.classifier import Classifier
from edgeclf.edge_app.cli import guarded
from edgeclf.edge_app.collector import CollectLimits
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.live import LiveOptions, StopFlag, Summary, run_live
from edgeclf.edge_app.overlay import gui_available
from edgeclf.edge_app.runtime import RUNTIMES
from edgeclf.edge_app.shipped import DEFAULT_MODEL
from edgeclf.edge_app.sources import parse_source

log = logging.getLogger(__name__)


def default_model() -> Path:
    """$EDGECLF_MODEL, else the shipped default int8 model."""
    return Path(os.environ.get("EDGECLF_MODEL") or DEFAULT_MODEL)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m edgeclf.edge_app",
        description="Classify a camera, video, stream or images live with a .tflite model, using only a TFLite "
        "runtime (no TensorFlow). Headless runs print JSON lines (every frame of a file; for cameras one a "
        "second and at each change of label, see --json-every). Under systemd (Type=notify) it reports READY "
        "with its first frame and feeds the watchdog while frames flow: edgeclf doctor --unit writes the unit.",
    )
    parser.add_argument("--model", type=Path, help=f"the .tflite model (default: models/{DEFAULT_MODEL.name})")
    parser.add_argument(
        "--source",
        help="picamera2 | camera index (0) | video file | rtsp:// or http:// URL | image, folder or glob "
        "(default: the first camera found)",
    )
    parser.add_argument("--labels", type=Path, help="labels file (one per line or 'index label'); overrides metadata")
    parser.add_argument("--mean", type=rgb_triple, help="input mean for a model without metadata (default 127.5)")
    parser.add_argument("--std", type=rgb_triple, help="input std for a model without metadata (default 127.5)")
    parser.add_argument("--top-k", type=int, default=3, help="classes to report (default 3)")
    parser.add_argument(
        "--threshold", type=finite_float, default=0.5, help="below this top score show 'uncertain' (0.5)"
    )
    parser.add_argument("--smooth", type=int, help="average scores over N frames (default 5 live, 1 for files)")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--display", dest="display", action="store_true", default=None, help="show a window")
    shown.add_argument("--no-display", dest="display", action="store_false", help="headless: JSON lines only")
    parser.add_argument("--json", action="store_true", help="print JSON lines in display mode too")
    parser.add_argument(
        "--json-every",
        type=finite_float,
        metavar="S",
        help="at most one JSON line per S seconds, and one at once when the label changes (0: every frame; "
        "default 1 for cameras and streams, 0 for video files and images)",
    )
    parser.add_argument("--save-video", type=Path, help="write the annotated stream to this .mp4 / .avi")
    parser.add_argument(
        "--collect", type=Path, metavar="DIR", help="save frames below --threshold to DIR/<predicted_label>/"
    )
    limits = CollectLimits()
    parser.add_argument(
        "--collect-every",
        type=finite_float,
        default=limits.every,
        metavar="S",
        help=f"save at most one frame per predicted label every S seconds (default {limits.every:g}; 0: no limit)",
    )
    parser.add_argument(
        "--collect-max-mb",
        type=finite_float,
        default=limits.max_mb,
        metavar="MB",
        help=f"keep at most MB MiB of frames in DIR, deleting the oldest first (default {limits.max_mb:g}; 0: no cap)",
    )
    parser.add_argument(
        "--collect-min-free-mb",
        type=finite_float,
        default=limits.min_free_mb,
        metavar="MB",
        help=f"pause saving while the filesystem has under MB MiB free (default {limits.min_free_mb:g}; 0: no floor)",
    )
    parser.add_argument("--max-frames", type=int, help="stop after N classified frames")
    parser.add_argument("--duration", type=finite_float, help="stop after S seconds")
    cameraopts.add_arguments(parser)
    mqttopts.add_arguments(parser)
    parser.add_argument("--runtime", choices=list(RUNTIMES), help="force a TFLite runtime")
    parser.add_argument("--threads", type=int, help="interpreter threads (default: all cores)")
    parser.add_argument(
        "--verbose", action="store_true", help="log the runtime, model and source, and debug messages, to stderr"
    )
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    bad = [
        (args.top_k < 1, "--top-k must be at least 1"),
        (not 0 <= args.threshold <= 1, "--threshold must be between 0 and 1"),
        (args.smooth is not None and args.smooth < 1, "--smooth must be at least 1"),
        (args.max_frames is not None and args.max_frames < 1, "--max-frames must be at least 1"),
        (args.duration is not None and args.duration <= 0, "--duration must be positive"),
        (args.threads is not None and args.threads < 1, "--threads must be at least 1"),
        (args.json_every is not None and args.json_every < 0, "--json-every must be 0 or more"),
        (args.collect_every < 0, "--collect-every must be 0 or more"),
        (args.collect_max_mb < 0, "--collect-max-mb must be 0 or more"),
        (args.collect_min_free_mb < 0, "--collect-min-free-mb must be 0 or more"),
    ]
    for failed, message in bad:
        if failed:
            parser.error(message)
    args.camera = cameraopts.settings(parser, args)
    args.mqtt_settings = mqttopts.settings(parser, args)  # a bad broker URL: one line, exit 1


@guarded
def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Open the model and the source, run the live loop, print the summary line.

    0 when the source ended or a bound was reached; 130 after SIGINT and 143 after SIGTERM,
    honoured within 2 s whatever the source is doing (opening, reading, reconnecting); 1 on an error,
    logged as one (priority 3 in the journal)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    logs.setup(args.verbose)  # before _check: --mqtt-optional warns about a bad URL through the log
    _check(parser, args)
    try:
        with StopFlag() as stop:
            summary, name = _run(args, stop)
        log.info("%s", summary.line())
        if stop.exit_code is not None:
            return stop.exit_code
        if summary.frames == 0:
            raise EdgeClfError(f"no frame could be classified from {name}")
    except EdgeClfError as exc:
        log.error("%s", exc)
        return 1
    return 0


def _run(args: argparse.Namespace, stop: StopFlag) -> tuple[Summary, str]:
    clf = Classifier(args.model or default_model(), args.labels, args.runtime, args.threads, args.mean, args.std)
    source = parse_source(args.source, args.camera)
    display = args.display
    if display is None:
        display = gui_available()[0]
    elif display:
        ok, why = gui_available()
        if not ok:
            raise EdgeClfError(f"cannot --display: {why}; use --no-display")
    if args.verbose:
        info = clf.info
        log.info(
            f"runtime {clf.runtime}, {args.threads or os.cpu_count()} threads; model {clf.path} ({info.architecture}, "
            f"{info.quantization}, input {info.input.height}x{info.input.width} {clf.input_quant.dtype.__name__}, "
            f"{len(info.labels)} labels); source {source.name} ({'live' if source.live else 'file'}); "
            f"{'display' if display else 'headless'}"
        )
    options = LiveOptions(
        top_k=args.top_k,
        threshold=args.threshold,
        smooth=args.smooth or (5 if source.live else 1),
        display=display,
        json_lines=not display or args.json,
        max_frames=args.max_frames,
        duration=args.duration,
        save_video=args.save_video,
        collect=args.collect,
        collect_limits=CollectLimits(args.collect_every, args.collect_max_mb, args.collect_min_free_mb),
        json_every=args.json_every if args.json_every is not None else (1.0 if source.live else 0.0),
    )
    publisher = None
    if args.mqtt_settings is not None:  # before the camera opens: a broker that cannot be used ends the run here
        from edgeclf.edge_app.mqttpublish import Publisher

        publisher = Publisher(args.mqtt_settings).start(clf.path.name, clf.labels, stop.event)
    try:
        give_up = notify.give_up_after(args.source, args.camera.stall_timeout, args.retries)
        grabber = Grabber(source, retries=args.retries, give_up_after=give_up)
        grabber.start(stop.event)  # opens in its thread; a signal ends the wait
        summary = run_live(clf, grabber, options, stop=stop, publisher=publisher)
    finally:
        if publisher is not None:
            publisher.close()  # 'offline' and DISCONNECT, also after an error (bounded: 2 s)
    if publisher is not None:
        summary.mqtt_reconnects, summary.mqtt_dropped = publisher.reconnects, publisher.drops
    return summary, source.name
