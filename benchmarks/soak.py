"""Soak test of the live loop: does `edgeclf run` hold its memory and its collect folder over a long run?

    python -m edgeclf.benchmarks.soak --frames 1000000 --out benchmarks/results/<device>-<date>-soak

One process classifies synthetic 160x120 frames at full speed with the int8 ResNet-8 through the
same code as `edgeclf run` (a Grabber on a live source, then run_live: preprocessing, smoothing,
JSON lines, --collect), with --collect writing into a temporary folder whose small quota is reached
within the first minute. JSON lines go to a counter. A background thread reads the process's RSS
(VmRSS in /proc/self/status) and the collect folder's size every --sample-every seconds.

Writes soak.json (frames, seconds, fps, CPU, runtime, the samples, RSS after the warm-up and the
largest deviation from it, collect folder sizes against the quota), soak.png (the curves) and a
README.md. Exit 1 when RSS after the warm-up drifts by more than --max-drift-mb or the collect
folder ended above its quota (or passed it by more than one frame while a frame was being replaced).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeclf.benchmarks.device import describe
from edgeclf.edge_app import files, logs
from edgeclf.edge_app.capture import Grabber
from edgeclf.edge_app.classifier import Classifier
from edgeclf.edge_app.collector import MIB, CollectLimits, allocated
from edgeclf.edge_app.live import LiveOptions, StopFlag, run_live
from edgeclf.edge_app.shipped import MODELS_DIR, SAMPLES_DIR
from edgeclf.edge_app.sources import Frame

ROOT = Path(__file__).resolve().parent.parent
MODEL = MODELS_DIR / "resnet8_int8.tflite"
WIDTH, HEIGHT = 160, 120


def scenes(count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """BGR frames made once: sample photos where there are any, noise of several grains, gradients."""
    import cv2

    rng = np.random.default_rng(seed)
    made: list[np.ndarray] = []
    for path in sorted(SAMPLES_DIR.glob("*.jpg"))[: count // 2]:
        image = cv2.imread(str(path))
        if image is not None:
            made.append(cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR))
    while len(made) < count:
        grain = 2 ** (len(made) % 4)  # 1, 2, 4, 8 px blocks
        small = rng.integers(0, 256, (HEIGHT // grain, WIDTH // grain, 3), dtype=np.uint8)
        made.append(cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST))
    return made


@dataclass
class PacedFrame(Frame):
    """A frame that tells its camera when the model took it, so the next one is ready, never spun for."""

    camera: SyntheticCamera | None = None

    @property
    def for_model(self) -> np.ndarray:
        if self.camera is not None:
            self.camera.taken.set()
        return self.image if self.infer is None else self.infer


class SyntheticCamera:
    """A live FrameSource over a few pre-made images in turn: a new frame as soon as the last one is taken
    (or after `patience` s, as a camera would deliver anyway), so the loop runs at full speed and this
    thread does not burn the CPU the model needs."""

    live = True

    def __init__(self, images: list[np.ndarray], patience: float = 0.05) -> None:
        self.name = "synthetic"
        self.images = images
        self.patience = patience
        self.taken = threading.Event()
        self.delivered = 0

    def open(self) -> None:
        self.taken.set()

    def read(self) -> Frame | None:
        self.taken.wait(self.patience)
        self.taken.clear()
        frame = PacedFrame(self.images[self.delivered % len(self.images)], self.delivered, self.name, camera=self)
        self.delivered += 1
        return frame

    def close(self) -> None:
        pass


class LineCounter(io.TextIOBase):
    """The JSON lines' sink: counts them and their bytes, keeps nothing."""

    def __init__(self) -> None:
        self.lines = 0
        self.bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        self.bytes += len(text)
        return len(text)


def rss_mb() -> float:
    """This process's resident set size (VmRSS) in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def folder_bytes(root: Path) -> tuple[int, int]:
    """Bytes the files under `root` take on disk (allocated blocks, what the card loses, as the collector's
    quota counts them) and the largest file (files may vanish while it is walked)."""
    total = largest = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                size = allocated(os.stat(os.path.join(folder, name)))
            except FileNotFoundError:
                continue
            total += size
            largest = max(largest, size)
    return total, largest


class Sampler:
    """Samples RSS, frames delivered and the collect folder's size every `every` seconds in a thread."""

    def __init__(self, every: float, camera: SyntheticCamera, folder: Path) -> None:
        self.every, self.camera, self.folder = every, camera, folder
        self.rows: list[dict[str, float]] = []
        self.largest_file = 0
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def sample(self) -> None:
        size, largest = folder_bytes(self.folder)
        self.largest_file = max(self.largest_file, largest)
        row = {"t": time.monotonic() - self._start, "rss_mb": rss_mb(), "frames": self.camera.delivered}
        self.rows.append({**{k: round(v, 3) for k, v in row.items()}, "collect_mb": round(size / MIB, 3)})

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def git_commit() -> str | None:
    """The checkout's commit, when this runs from one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def drift(rows: list[dict[str, float]], warmup: float) -> tuple[float | None, float | None]:
    """RSS at the first sample after `warmup` seconds, and the largest deviation from it after; None, None
    when the run ended before."""
    after = [row for row in rows if row["t"] >= warmup]
    if not after:
        return None, None
    base = after[0]["rss_mb"]
    return base, round(max(abs(row["rss_mb"] - base) for row in after), 3)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edgeclf.benchmarks.soak", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("--frames", type=int, default=1_000_000, help="frames to classify (default 1,000,000)")
    parser.add_argument("--out", type=Path, required=True, help="folder for soak.json, soak.png and README.md")
    parser.add_argument("--model", type=Path, default=MODEL, help=f"the .tflite model (default {MODEL.name})")
    parser.add_argument("--threads", type=int, help="interpreter threads (default: all cores, as run)")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between RSS samples (10)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS baseline (60)")
    parser.add_argument("--max-drift-mb", type=float, default=5.0, help="RSS drift after the warm-up that fails (5)")
    parser.add_argument("--threshold", type=float, default=0.9, help="top score below which a frame is collected")
    parser.add_argument(
        "--collect-every", type=float, default=0.02, help="seconds between frames of a label (0.02: fills the quota)"
    )
    parser.add_argument("--collect-max-mb", type=float, default=20.0, help="the collect folder's quota, MiB (20)")
    parser.add_argument("--collect-dir", type=Path, help="collect here (default: a temporary folder, removed)")
    return parser


def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Run the loop for `args.frames` frames while sampling; the results as a dict."""
    clf = Classifier(args.model, threads=args.threads)
    camera = SyntheticCamera(scenes())
    own_folder = args.collect_dir is None
    folder = Path(tempfile.mkdtemp(prefix="edgeclf-soak-")) if own_folder else args.collect_dir
    limits = CollectLimits(every=args.collect_every, max_mb=args.collect_max_mb)
    options = LiveOptions(
        threshold=args.threshold,
        smooth=5,  # as `edgeclf run` on a live source
        max_frames=args.frames,
        collect=folder,
        collect_limits=limits,
        json_every=1.0,  # as `edgeclf run` on a live source
    )
    sink = LineCounter()
    try:
        with StopFlag() as stop, Sampler(args.sample_every, camera, folder) as sampler:
            grabber = Grabber(camera).start(stop.event)
            summary = run_live(clf, grabber, options, out=sink, stop=stop)
        final_bytes, _ = folder_bytes(folder)
        files_left = sum(len(names) for _, _, names in os.walk(folder))
    finally:
        if own_folder:
            shutil.rmtree(folder, ignore_errors=True)
    rows = sampler.rows
    base, deviation = drift(rows, args.warmup)
    cap = args.collect_max_mb * MIB
    collect_max = max(row["collect_mb"] for row in rows)
    device = describe()  # /proc/cpuinfo read once: the summary's cpu and flags are its fields
    return {
        "frames": summary.frames,
        "seconds": round(summary.seconds, 2),
        "fps": round(summary.fps, 1),
        "summary": summary.line(),
        "reason": summary.reason,
        "json_lines": sink.lines,
        "collected": summary.collected,
        "dropped": summary.dropped,
        "cpu": device["cpu"] or "unknown",
        "cpu_flags": device["cpu_features"],  # the int8-relevant ones
        "device": device,
        "runtime": {"name": clf.runtime.name, "version": clf.runtime.version},
        "model": args.model.name,
        "threads": args.threads or os.cpu_count(),
        "python": platform.python_version(),
        "commit": git_commit(),
        "sample_every_s": args.sample_every,
        "warmup_s": args.warmup,
        "rss_start_mb": rows[0]["rss_mb"],
        "rss_after_warmup_mb": base,
        "rss_max_deviation_after_warmup_mb": deviation,
        "rss_max_drift_allowed_mb": args.max_drift_mb,
        "rss_peak_mb": max(row["rss_mb"] for row in rows),
        "collect": {
            "every_s": args.collect_every,
            "cap_mb": round(cap / MIB, 3),
            "max_sampled_mb": collect_max,
            "final_mb": round(final_bytes / MIB, 3),
            "files_final": files_left,
            "largest_frame_bytes": sampler.largest_file,
        },
        "samples": rows,
    }


def failures(result: dict[str, Any]) -> list[str]:
    """What makes the soak fail: RSS drift after the warm-up, a collect folder over its quota."""
    found = []
    deviation = result["rss_max_deviation_after_warmup_mb"]
    if deviation is not None and deviation > result["rss_max_drift_allowed_mb"]:
        found.append(f"RSS drifted {deviation:.1f} MB after the warm-up (allowed {result['rss_max_drift_allowed_mb']})")
    collect = result["collect"]
    slack = collect["largest_frame_bytes"] / MIB  # a new frame is written, then the oldest removed
    if collect["final_mb"] > collect["cap_mb"]:
        found.append(f"collect folder ended at {collect['final_mb']} MiB, above its {collect['cap_mb']} MiB quota")
    if collect["max_sampled_mb"] > collect["cap_mb"] + slack:
        found.append(f"collect folder reached {collect['max_sampled_mb']} MiB, above its {collect['cap_mb']} MiB quota")
    return found


def plot(result: dict[str, Any], path: Path) -> None:
    """RSS and the collect folder's size over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["samples"]
    t = [row["t"] for row in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(t, [row["rss_mb"] for row in rows], marker=".", label="RSS (MB)")
    base = result["rss_after_warmup_mb"]
    if base is not None:
        band = result["rss_max_drift_allowed_mb"]
        ax.axvline(result["warmup_s"], color="grey", linestyle=":", label="end of warm-up")
        ax.axhspan(base - band, base + band, color="green", alpha=0.1, label=f"allowed drift (+-{band:g} MB)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS (MB)")
    other = ax.twinx()
    other.plot(t, [row["collect_mb"] for row in rows], color="tab:orange", marker=".", label="collect folder (MiB)")
    other.axhline(result["collect"]["cap_mb"], color="tab:orange", linestyle="--", label="collect quota")
    other.set_ylabel("collect folder (MiB)")
    other.set_ylim(0, result["collect"]["cap_mb"] * 1.3)
    lines = ax.get_legend_handles_labels()
    more = other.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right", fontsize=8)
    ax.set_title(f"{result['frames']:,} frames, {result['fps']:.0f} FPS, {result['cpu']}", fontsize=9)
    fig.tight_layout()
    files.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def readme(result: dict[str, Any], argv: Sequence[str], problems: list[str]) -> str:
    """The out folder's README: the command, the machine, the numbers and the verdict."""
    collect = result["collect"]
    base = result["rss_after_warmup_mb"]
    drift_text = (
        f"RSS {base:.1f} MB after the {result['warmup_s']:g} s warm-up, at most "
        f"{result['rss_max_deviation_after_warmup_mb']:.2f} MB away from it afterwards "
        f"(allowed {result['rss_max_drift_allowed_mb']:g} MB)"
        if base is not None
        else f"the run ended within the {result['warmup_s']:g} s warm-up: no drift measured"
    )
    return "\n".join(
        [
            "# Soak test of the live loop",
            "",
            f"    python -m edgeclf.benchmarks.soak {' '.join(argv)}",
            "",
            f"{result['frames']:,} frames of synthetic {WIDTH}x{HEIGHT} scenes in {result['seconds']:,.0f} s "
            f"({result['fps']:.0f} FPS) with {result['model']} on {result['runtime']['name']} "
            f"{result['runtime']['version']}, {result['threads']} threads, {result['cpu']} "
            f"({', '.join(result['cpu_flags']) or 'no int8 ISA flags found'}); commit {result['commit']}.",
            "",
            f"- Memory: {result['rss_start_mb']:.1f} MB at start, {drift_text}; peak {result['rss_peak_mb']:.1f} MB.",
            f"- Collect: {result['collected']:,} frames saved (one per label every {collect['every_s']:g} s), "
            f"folder at most {collect['max_sampled_mb']:.2f} MiB when sampled and {collect['final_mb']:.2f} MiB "
            f"({collect['files_final']} files) at the end, quota {collect['cap_mb']:g} MiB.",
            f"- JSON lines: {result['json_lines']:,} (one a second, and at each change of label).",
            f"- {result['summary']}",
            "",
            "Result: " + ("FAILED: " + "; ".join(problems) if problems else "passed"),
            "",
            "soak.json holds every sample (t, rss_mb, frames, collect_mb); soak.png plots them.",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak, write its results; 0 when memory and the collect folder stayed bounded, 1 when not."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.frames < 1 or args.sample_every <= 0 or args.warmup < 0 or args.collect_max_mb <= 0:
        parser.error("--frames, --sample-every and --collect-max-mb must be above 0, --warmup 0 or more")
    logs.setup(False)
    result = soak(args)
    problems = failures(result)
    result["failures"] = problems
    args.out.mkdir(parents=True, exist_ok=True)
    files.write_json(args.out / "soak.json", result)
    plot(result, args.out / "soak.png")
    files.write_text(args.out / "README.md", readme(result, sys.argv[1:] if argv is None else argv, problems))
    print(readme(result, sys.argv[1:] if argv is None else argv, problems))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
