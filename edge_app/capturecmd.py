"""`edgeclf capture`: save frames from any source into `<out>/<label>/` for `teach` (or `train`).

Frames are saved as JPEGs, each written atomically (temp file, rename), at most one every `--every`
seconds: of the clock for cameras and streams, of the video's own time for a video file (read faster
than real time, a 10 s clip with --every 1 still gives 10 frames). Images in a folder are taken as
they come.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeclf.edge_app import cameraopts, files, notify, preprocess
from edgeclf.edge_app.argtypes import finite_float
from edgeclf.edge_app.capture import Grabber
from edgeclf.edge_app.cli import guarded
from edgeclf.edge_app.collector import frame_name
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.labelname import LabelError, label_problem
from edgeclf.edge_app.sources import CameraSettings, Frame, FrameSource, parse_source

JPEG_QUALITY = 95  # teaching pictures: keep the detail, a frame is still only ~50 kB at 640x480
FRAME_WAIT = 1.0  # s per wait for a frame; the grabber's own give-up decides when a camera is stuck


@dataclass(frozen=True)
class CaptureConfig:
    """What `edgeclf capture` was asked to do."""

    label: str
    count: int
    out: Path
    source: str | None = None
    every: float | None = None  # None: 0.5 s for cameras and streams, every frame for files
    camera: CameraSettings = CameraSettings()
    retries: int = 5


@dataclass(frozen=True)
class CaptureResult:
    """The frames saved, the frames the source delivered, and why capturing stopped early (None: it did not)."""

    saved: tuple[Path, ...]
    seen: int
    seconds: float
    ended: str | None = None


def frame_time(frame: Frame, source: FrameSource) -> float:
    """When `frame` was taken: a video file's own position (its fps), else the time it was read."""
    fps = getattr(source, "fps", 0.0)
    if not source.live and fps:
        return frame.index / fps
    return frame.timestamp


def save_frame(folder: Path, frame: Frame) -> Path:
    """Write `frame` as a JPEG in `folder`, atomically; EdgeClfError (one line) when it cannot be written."""
    ok, data = preprocess._cv2().imencode(".jpg", frame.image, [preprocess._cv2().IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise EdgeClfError(f"could not encode frame {frame.index} of {frame.origin} as JPEG")
    return files.write_bytes(folder / frame_name(frame.timestamp, frame.index), data.tobytes())


def capture(config: CaptureConfig) -> CaptureResult:
    """Save up to `config.count` frames of `config.source` into `config.out/<label>/`.

    EdgeClfError when the label cannot name a folder, the source cannot be opened or gives no frame, or a
    frame cannot be written (the message says how many were saved before)."""
    problem = label_problem(config.label)
    if problem:
        raise LabelError(problem)
    if config.count < 1:
        raise EdgeClfError(f"--count must be at least 1, got {config.count}")
    folder = config.out / config.label
    source = parse_source(config.source, config.camera)
    every = config.every if config.every is not None else (0.5 if source.live else 0.0)
    give_up = notify.give_up_after(config.source, config.camera.stall_timeout, config.retries)
    grabber = Grabber(source, retries=config.retries, give_up_after=give_up)
    start = time.perf_counter()
    saved: list[Path] = []
    seen, last, ended = 0, None, None
    grabber.start()  # opens in its own thread: a source that cannot open raises here, in one line
    try:
        while len(saved) < config.count:
            frame = grabber.next_frame(FRAME_WAIT)
            if frame is None:
                if grabber.ended:
                    ended = grabber.error or "the source ended"
                    break
                silent = grabber.stuck_for()
                if silent is not None:
                    ended = f"no frame for {silent:.0f} s from {source.name}"
                    break
                continue
            seen += 1
            at = frame_time(frame, source)
            if last is not None and at - last < every:
                continue
            try:
                saved.append(save_frame(folder, frame))
            except EdgeClfError as exc:
                raise EdgeClfError(f"{exc} (after {len(saved)} of {config.count} frames)") from None
            last = at
    finally:
        grabber.stop()
    if not saved:
        raise EdgeClfError(f"no frame from {source.name}: {ended or 'it delivered none'}")
    return CaptureResult(tuple(saved), seen, time.perf_counter() - start, ended)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m edgeclf.edge_app.capturecmd",
        description="Save frames from a camera, video, stream or images into OUT/LABEL/ (atomically), to teach "
        "a model with `edgeclf teach --data OUT` or train one with `edgeclf train --data OUT`.",
    )
    parser.add_argument("--label", required=True, help="the class the frames show: one plain folder name")
    parser.add_argument("--count", type=int, required=True, help="how many frames to save")
    parser.add_argument(
        "--every",
        type=finite_float,
        metavar="S",
        help="at most one frame every S seconds (a video file: of its own time; default 0.5 for cameras and "
        "streams, 0 (every frame) for files)",
    )
    parser.add_argument(
        "--source",
        help="picamera2 | camera index (0) | video file | rtsp:// or http:// URL | image, folder or glob "
        "(default: the first camera found)",
    )
    parser.add_argument("--out", type=Path, required=True, help="the data folder: frames go to OUT/LABEL/")
    cameraopts.add_arguments(parser)
    return parser


def _main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.every is not None and args.every < 0:
        parser.error("--every must be 0 or more")
    problem = label_problem(args.label)
    if problem:
        parser.error(f"--label: {problem}")
    config = CaptureConfig(
        label=args.label,
        count=args.count,
        out=args.out,
        source=args.source,
        every=args.every,
        camera=cameraopts.settings(parser, args),
        retries=args.retries,
    )
    result = capture(config)
    stopped = f"; {result.ended} after {result.seen} frame(s)" if result.ended else ""
    print(
        f"saved {len(result.saved)} of {config.count} frame(s) of {config.label!r} to {config.out / config.label} "
        f"in {result.seconds:.1f} s{stopped}"
    )
    return 0


main = guarded(_main)

if __name__ == "__main__":
    raise SystemExit(main())
