"""`edgeclf doctor`: what this machine has for edgeclf, with a fix for each problem found."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

from edge_app.cli import guarded
from edge_app.errors import EdgeClfError

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.status:^4}] {self.name}: {self.detail}"
        return text + (f"\n       fix: {self.fix}" if self.fix else "")


def _version(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None


def check_platform() -> list[Check]:
    from edge_app.picamera import pi_model

    pi = pi_model()
    machine = f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} cores"
    checks = [Check(OK, "machine", machine + (f", {pi}" if pi else ""))]
    py = sys.version_info
    status = OK if py >= (3, 11) else FAIL
    checks.append(
        Check(status, "python", platform.python_version(), "" if status == OK else "use Python 3.11 or newer")
    )
    return checks


def check_runtimes() -> list[Check]:
    import numpy

    numpy_major = int(numpy.__version__.split(".")[0])
    checks = [Check(OK, "numpy", numpy.__version__)]
    found = []
    for name, module, dist in (
        ("ai_edge_litert", "ai_edge_litert.interpreter", "ai-edge-litert"),
        ("tflite_runtime", "tflite_runtime.interpreter", "tflite-runtime"),
    ):
        version = _version(dist)
        if version is None:
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - a broken install shows up as any error
            fix = (
                "pip install 'numpy<2' (or use ai-edge-litert)" if name == "tflite_runtime" and numpy_major >= 2 else ""
            )
            checks.append(Check(FAIL, name, f"{version} installed but does not import: {exc}", fix))
            continue
        if name == "tflite_runtime" and numpy_major >= 2 and version.startswith("2.1"):
            checks.append(
                Check(
                    WARN,
                    name,
                    f"{version} is built for numpy 1.x, numpy is {numpy.__version__}",
                    "pip install 'numpy<2', or prefer ai-edge-litert",
                )
            )
            continue
        found.append(name)
        checks.append(Check(OK, name, version))
    tf_version = _version("tensorflow") or _version("tensorflow-cpu")
    if tf_version and importlib.util.find_spec("tensorflow"):
        found.append("tensorflow")
        checks.append(Check(OK, "tensorflow.lite", f"{tf_version} (host fallback; not needed on the device)"))
    if not found:
        checks.append(Check(FAIL, "TFLite runtime", "none importable", "pip install 'edgeclf[edge]' (ai-edge-litert)"))
    return checks


def check_camera_and_display() -> list[Check]:
    from edge_app.overlay import gui_available
    from edge_app.picamera import pi_model

    checks = []
    try:
        cv2 = importlib.import_module("cv2")
        checks.append(Check(OK, "opencv", cv2.__version__))
    except ImportError:
        return [Check(FAIL, "opencv", "not installed", "pip install 'edgeclf[edge]' (opencv-python-headless)")]
    if importlib.util.find_spec("picamera2") is not None:
        from edge_app.picamera import cameras_available

        try:
            importlib.import_module("picamera2")
        except Exception as exc:  # noqa: BLE001 - typically numpy 2 in the venv vs apt's numpy 1.x builds
            fix = (
                "keep the system numpy in the venv: pip install \"numpy==<apt version>\" 'opencv-python-headless<4.12'"
            )
            return checks + [Check(FAIL, "picamera2", f"installed but does not import: {exc}", fix)]
        cams = cameras_available()
        checks.append(
            Check(
                OK if cams else WARN,
                "picamera2",
                "importable, " + ("camera found" if cams else "no camera"),
                "" if cams else "check the ribbon cable and `rpicam-hello --list-cameras`",
            )
        )
    elif pi_model():
        checks.append(
            Check(
                WARN,
                "picamera2",
                "not importable",
                "sudo apt install python3-picamera2; make the venv with --system-site-packages",
            )
        )
    else:
        checks.append(Check(OK, "picamera2", "not installed (only needed for a Pi camera)"))
    videos = sorted(str(p) for p in Path("/dev").glob("video*"))
    checks.append(
        Check(
            OK,
            "/dev/video*",
            ", ".join(videos[:6]) + (" ..." if len(videos) > 6 else "")
            if videos
            else "none (use --source with a file, folder or URL)",
        )
    )
    shown, why = gui_available()
    checks.append(Check(OK, "display", "available" if shown else f"headless: {why}"))
    return checks


def check_model(model: Path | None, labels: Path | None = None) -> list[Check]:
    """Load `model` (default: the shipped one) with `labels` if given, and classify the sample images."""
    from edge_app.classifier import Classifier
    from edge_app.run import default_model
    from edge_app.shipped import MODELS_DIR
    from edge_app.sources import read_image

    path = model or default_model()
    try:
        clf = Classifier(path, labels)
    except EdgeClfError as exc:
        fix = "pass --model (with --labels FILE for a model without metadata), or restore models/ from the repository"
        return [Check(FAIL, "model", str(exc), fix)]
    checks = [Check(OK, "model", f"{path} loads in {clf.runtime} ({clf.info.architecture}, {clf.info.quantization})")]
    samples = sorted((MODELS_DIR / "samples").glob("*.jpg"))
    known = [p for p in samples if p.stem in clf.labels]
    if not known:
        return checks + [Check(WARN, "classification", "no sample images with this model's labels to try")]
    right = sum(clf.classify(read_image(p), "BGR", 1)[0][0] == p.stem for p in known)
    status = OK if right * 2 > len(known) else FAIL
    checks.append(
        Check(
            status,
            "classification",
            f"{right}/{len(known)} sample images classified correctly",
            "" if status == OK else "the model or its preprocessing is wrong for these images",
        )
    )
    return checks


CHECKS: tuple[Callable[[], list[Check]], ...] = (check_platform, check_runtimes, check_camera_and_display)


@guarded
def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Print every check; exit 1 when any failed."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m edge_app.doctor",
        description="Check this machine for edgeclf: runtimes, camera, display, model.",
    )
    parser.add_argument("--model", type=Path, help="model to try (default: the shipped default)")
    parser.add_argument(
        "--labels", type=Path, help="labels file for --model (one per line or 'index label'); overrides metadata"
    )
    args = parser.parse_args(argv)
    results = [c for check in CHECKS for c in check()] + check_model(args.model, args.labels)
    for result in results:
        print(result.line())
    failed = [r for r in results if r.status == FAIL]
    print(f"{len(results)} checks, {len(failed)} failed" + (", see the fixes above" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
