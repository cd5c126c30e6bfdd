"""The camera options `run` and `serve --source` share, and the CameraSettings they make."""

from __future__ import annotations

import argparse

from edgeclf.edge_app.argtypes import finite_float
from edgeclf.edge_app.sources import CameraSettings

DEFAULTS = CameraSettings()


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("expected WIDTHxHEIGHT, e.g. 640x480") from None
    return w, h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--size, --fps, --hflip, --vflip, --stall-timeout and --retries."""
    width, height = DEFAULTS.size
    parser.add_argument(
        "--size", type=_size, default=DEFAULTS.size, help=f"camera resolution WxH (default {width}x{height})"
    )
    parser.add_argument(
        "--fps",
        type=finite_float,
        default=DEFAULTS.fps,
        help=f"frame-rate cap for cameras (default {DEFAULTS.fps:g}; a Pi camera still slows down in the dark)",
    )
    parser.add_argument("--hflip", action="store_true", help="mirror the image left-right (a camera mounted so)")
    parser.add_argument("--vflip", action="store_true", help="flip the image upside down")
    parser.add_argument(
        "--stall-timeout",
        type=finite_float,
        default=DEFAULTS.stall_timeout,
        metavar="S",
        help=f"a Pi camera that delivers no frame for S seconds is reopened (default {DEFAULTS.stall_timeout:g})",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=5,
        help="reopen a failed camera or stream N times, with growing pauses, then exit 1 (default 5)",
    )


def settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> CameraSettings:
    """The CameraSettings of parsed `args`; a usage error (exit 2) for values no camera takes."""
    width, height = args.size
    bad = [
        (width < 2 or height < 2, f"--size {width}x{height}: a camera frame is at least 2x2"),
        (args.fps <= 0, f"--fps {args.fps:g}: must be above 0"),
        (args.stall_timeout <= 0, f"--stall-timeout {args.stall_timeout:g}: must be above 0 (seconds)"),
        (
            args.fps > 0 and args.stall_timeout > 0 and 2 / args.fps > args.stall_timeout,
            f"--fps {args.fps:g} with --stall-timeout {args.stall_timeout:g}: two frames take longer than the "
            "stall timeout, so every frame would count as a stall; raise --stall-timeout",
        ),
        (args.retries < 0, "--retries must be 0 or more"),
    ]
    for failed, message in bad:
        if failed:
            parser.error(message)
    try:
        return CameraSettings(
            size=args.size, fps=args.fps, hflip=args.hflip, vflip=args.vflip, stall_timeout=args.stall_timeout
        )
    except ValueError as exc:
        parser.error(str(exc))
    raise AssertionError("unreachable")  # parser.error exits
