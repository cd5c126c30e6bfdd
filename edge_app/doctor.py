"""`edgeclf doctor`: what this machine has for edgeclf, with a fix for each problem found."""

from __future__ import annotations

import argparse
import getpass
import importlib
import importlib.util
import os
import platform
import pwd
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import NoReturn

from edgeclf.edge_app import mqttopts
from edgeclf.edge_app.cli import guarded
from edgeclf.edge_app.errors import EdgeClfError, MissingDependencyError

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
    from edgeclf.edge_app.picamera import pi_model

    pi = pi_model()
    machine = f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} cores"
    checks = [Check(OK, "machine", machine + (f", {pi}" if pi else ""))]
    py = sys.version_info
    status = OK if py >= (3, 11) else FAIL
    checks.append(
        Check(status, "python", platform.python_version(), "" if status == OK else "use Python 3.11 or newer")
    )
    return checks


def check_cpu() -> list[Check]:
    """The CPU line a benchmark report records (model, cores, MHz, int8 features); a warning on a throttled Pi."""
    from edgeclf.edge_app import cpuinfo

    detail = cpuinfo.describe().summary()
    state = cpuinfo.throttled()
    if state is None:
        return [Check(OK, "cpu", detail)]
    detail += f", throttled {state}"
    if state == "0x0":
        return [Check(OK, "cpu", detail)]
    # vcgencmd's bits: 0x1 under-voltage, 0x2 frequency capped, 0x4 throttled, 0x8 soft temperature limit, now;
    # the same shifted by 16 since boot. Either way the Pi ran below its clock, and so do timings taken there
    fix = "use the official power supply and a heatsink or fan; benchmark after `vcgencmd get_throttled` says 0x0"
    return [Check(WARN, "cpu", detail, fix)]


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


# picamera2 0.3.20 is where a capture with wait= times out and cancel_all_and_flush() clears the stuck job:
# without them a stalled camera hangs the capture for ever (edge_app/picamera.py relies on both)
MIN_PICAMERA2 = (0, 3, 20)
PICAMERA2_UPGRADE = "sudo apt update && sudo apt install --only-upgrade python3-picamera2"


def _release(version: str) -> tuple[int, ...]:
    """'0.3.27' -> (0, 3, 27); the leading numbers of a version string."""
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def picamera2_version_check(version: str | None) -> Check:
    """OK for picamera2 >= 0.3.20, FAIL for older, WARN when its version cannot be read."""
    need = ".".join(map(str, MIN_PICAMERA2))
    if version is None:
        return Check(WARN, "picamera2", f"version unknown; edgeclf needs {need} or newer", PICAMERA2_UPGRADE)
    if _release(version) < MIN_PICAMERA2:
        detail = f"{version} is older than {need} (capture timeouts, cancel_all_and_flush): a stalled camera hangs"
        return Check(FAIL, "picamera2", detail, PICAMERA2_UPGRADE)
    return Check(OK, "picamera2", version)


def check_picamera2() -> list[Check]:
    """Whether picamera2 imports, its version, and whether libcamera lists a camera."""
    from edgeclf.edge_app.picamera import cameras_available, pi_model

    try:
        module = importlib.import_module("picamera2")
    except ModuleNotFoundError as exc:
        from_apt = "make the venv with python3 -m venv --system-site-packages"
        if exc.name != "picamera2":  # picamera2 is there, something it imports (libcamera) is not
            fix = f"sudo apt install python3-picamera2 (it brings {exc.name}); {from_apt}"
            return [Check(FAIL, "picamera2", f"installed but does not import: {exc}", fix)]
        if pi_model():
            return [Check(WARN, "picamera2", "not importable", f"sudo apt install python3-picamera2; {from_apt}")]
        return [Check(OK, "picamera2", "not installed (only needed for a Pi camera)")]
    except Exception as exc:  # noqa: BLE001 - typically numpy 2 in the venv vs apt's numpy 1.x builds
        fix = "remove the venv's own numpy so apt's is used (pip uninstall numpy); edgeclf's pins need no numpy 2"
        return [Check(FAIL, "picamera2", f"installed but does not import: {exc}", fix)]
    checks = [picamera2_version_check(_version("picamera2") or getattr(module, "__version__", None))]
    if cameras_available():
        checks.append(Check(OK, "Pi camera", "found"))
    else:
        fix = "check the ribbon cable and `rpicam-hello --list-cameras`"
        checks.append(Check(WARN, "Pi camera", "none found", fix))
    return checks


def check_camera_and_display() -> list[Check]:
    from edgeclf.edge_app.overlay import gui_available

    checks = []
    try:
        cv2 = importlib.import_module("cv2")
        checks.append(Check(OK, "opencv", cv2.__version__))
    except ImportError:
        return [Check(FAIL, "opencv", "not installed", "pip install 'edgeclf[edge]' (opencv-python-headless)")]
    checks += check_picamera2()
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
    from edgeclf.edge_app.classifier import Classifier
    from edgeclf.edge_app.run import default_model
    from edgeclf.edge_app.shipped import MODELS_DIR
    from edgeclf.edge_app.sources import read_image

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


def check_mqtt(settings: mqttopts.MqttSettings) -> list[Check]:
    """Connect to the broker as `run --mqtt` would (without a will, publishing nothing), and list the topics."""
    from edgeclf.edge_app import hadiscovery
    from edgeclf.edge_app.mqtt import MqttLink

    try:
        link = MqttLink(settings, will=False, client_id=f"edgeclf-doctor-{os.getpid()}")
    except MissingDependencyError as exc:
        return [Check(FAIL, "mqtt", str(exc), "pip install 'edgeclf[mqtt]'")]
    try:
        link.start()
    except EdgeClfError as exc:
        fix = "check the URL, that the broker runs and listens there, the user and password, and --mqtt-ca for mqtts"
        return [Check(FAIL, "mqtt", str(exc).removeprefix("mqtt: "), fix)]
    link.close()
    node = settings.node_id
    topics = ", ".join(settings.topic(name) for name in ("availability", "state", "event", "snapshot"))
    discovery = [hadiscovery.config_topic("sensor", node, name) for name in ("label", "score")]
    # a binary sensor per --ha-labels label (shown as a pattern: the labels are run's), the camera with --mqtt-snapshot
    discovery += [f"{hadiscovery.DISCOVERY_PREFIX}/binary_sensor/{node}/label_<LABEL>/config"]
    discovery += [hadiscovery.config_topic("camera", node, "snapshot")]
    return [
        Check(OK, "mqtt", f"connected to {settings.url}" + (" (TLS)" if settings.tls else "")),
        Check(OK, "mqtt topics", topics),
        Check(OK, "home assistant", f"with --ha-discovery: {', '.join(discovery)}"),
    ]


CHECKS: tuple[Callable[[], list[Check]], ...] = (
    check_platform,
    check_cpu,
    check_runtimes,
    check_camera_and_display,
)


# --- `edgeclf doctor --unit`: a systemd unit for `edgeclf run`, filled in for this user, venv and folder ---------

RESTART_SEC = 5
START_ALLOWANCE = 30  # seconds to import OpenCV and load the model on a slow Pi before the first frame's READY=1
STOP_TIMEOUT = 15  # the run honours SIGTERM within 2 s; systemd sends SIGKILL after this
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@+=:,./-]+")  # nothing systemd would split, unquote, unescape or expand


class UnitError(ValueError):
    """Options that cannot make a unit: printed as one line, exit 2."""


def systemd_quote(word: str) -> str:
    """`word` as one argument of ExecStart=: in C-style double quotes when systemd would split, unquote or
    unescape it, with % (a specifier) and $ (an environment variable) doubled."""
    if _PLAIN_WORD.fullmatch(word):
        return word
    quoted = "".join("\\" + c if c in '\\"' else "\\t" if c == "\t" else c for c in word)
    return '"' + quoted.replace("%", "%%").replace("$", "$$") + '"'


def _unit_value(value: str, what: str) -> str:
    """A plain setting's value (User=, WorkingDirectory=): no quoting there, so only % is escaped."""
    if value != value.strip() or not value:
        raise UnitError(f"{what} {value!r} starts or ends with a space")
    return value.replace("%", "%%")


def _run_options(argv: Sequence[str]) -> argparse.Namespace:
    """`argv` parsed and checked by `edgeclf run`'s own parser; UnitError instead of its usage message."""
    from edgeclf.edge_app.run import _check, build_parser

    parser = build_parser("edgeclf run")

    def error(message: str) -> NoReturn:
        raise UnitError(f"edgeclf run: {message}")

    parser.error = error  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    try:
        _check(parser, args)
    except EdgeClfError as exc:  # a broker URL that cannot be used
        raise UnitError(f"edgeclf run: {exc}") from None
    return args


def systemd_unit(run_argv: Sequence[str], user: str, venv: Path, workdir: Path, made_by: str) -> str:
    """The unit that runs `<venv>/bin/edgeclf run RUN_ARGV --no-display` as `user` in `workdir` under systemd's
    watchdog; After=network-online.target only for a URL source. UnitError for options that cannot make one."""
    from edgeclf.edge_app.notify import OPENCV_TIMEOUT, watchdog_seconds
    from edgeclf.edge_app.sources import URL

    for value in (*run_argv, user, str(venv), str(workdir)):
        if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in value):
            raise UnitError(f"{value!r}: a unit file cannot hold a line break or control character")
    args = _run_options(run_argv)
    if args.display:
        raise UnitError("a service has no screen: leave out --display")
    stall = args.stall_timeout
    watchdog = watchdog_seconds(args.source, stall, args.retries)
    reads = f"--stall-timeout {stall:g}" if args.source == "picamera2" else f"OpenCV's {OPENCV_TIMEOUT:g} s timeouts"
    words = [str(venv / "bin" / "edgeclf"), "run", *run_argv, *([] if args.display is False else ["--no-display"])]
    lines = [
        "# edgeclf run as a systemd service: started at boot, restarted when it fails or its frames stop.",
        f"# Made by: {made_by}",
        "# Make your own instead of editing this file: `edgeclf doctor --unit RUN OPTIONS > edgeclf.service` fills",
        "# in your user, venv and folder (--user, --venv, --workdir override them) and the watchdog time. Install:",
        "#   sudo cp edgeclf.service /etc/systemd/system/ && sudo systemctl daemon-reload",
        "#   sudo systemctl enable --now edgeclf && journalctl -u edgeclf -f",
        "",
        "[Unit]",
        "Description=edgeclf live image classification (headless)",
    ]
    network = [
        what
        for what, used in (("the source is a stream", args.source and URL.match(args.source)), ("--mqtt", args.mqtt))
        if used
    ]
    if network:
        lines += [
            f"# {' and '.join(network)}: start once the network is up",
            "After=network-online.target",
            "Wants=network-online.target",
        ]
    lines += [
        "",
        "[Service]",
        "# READY=1 comes with the first classified frame, WATCHDOG=1 while frames flow (edge_app/notify.py)",
        "Type=notify",
        "NotifyAccess=main",
        f"User={_unit_value(user, 'user')}",
        "# the camera's device nodes belong to group video",
        "SupplementaryGroups=video",
        f"WorkingDirectory={_unit_value(str(workdir), 'working directory')}",
        "Environment=PYTHONUNBUFFERED=1",
        "ExecStart=" + " ".join(systemd_quote(word) for word in words),
        "# the watchdog outlasts the run's own reopens of a failed camera "
        f"({reads}, --retries {args.retries}),",
        "# so only a stuck process is killed; the start also loads the model before the first frame",
        f"WatchdogSec={watchdog}",
        f"TimeoutStartSec={watchdog + START_ALLOWANCE}",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        "# after SIGINT / SIGTERM the run releases the camera, prints its summary and exits 130 / 143: a clean stop",
        "SuccessExitStatus=130 143",
        f"TimeoutStopSec={STOP_TIMEOUT}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def _add_unit_options(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--unit",
        action="store_true",
        help="print a systemd unit for `edgeclf run RUN OPTIONS --no-display` instead of checking; every option "
        "that is not one of these four is a run option",
    )
    group.add_argument("--user", help="the user the service runs as (default: you)")
    group.add_argument("--venv", type=Path, help="the venv edgeclf is installed in (default: this one)")
    group.add_argument("--workdir", type=Path, help="the service's working directory (default: the current one)")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m edgeclf.edge_app.doctor",
        description="Check this machine for edgeclf: runtimes, camera, display, model. With --unit, print a "
        "systemd unit for `edgeclf run` instead.",
        epilog="example: %(prog)s --unit --source picamera2 > edgeclf.service",
        allow_abbrev=False,
    )
    parser.add_argument("--model", type=Path, help="model to try (default: the shipped default)")
    parser.add_argument(
        "--labels", type=Path, help="labels file for --model (one per line or 'index label'); overrides metadata"
    )
    _add_unit_options(parser.add_argument_group("systemd unit (--unit [--user U] [--venv DIR] [--workdir DIR] ...)"))
    mqttopts.add_arguments(parser, publishing=False)
    return parser


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry (containers)
        return getpass.getuser()


def _unit_main(argv: Sequence[str], prog: str) -> int:
    """Print the unit for the run options in `argv`; exit 2 with one line when they cannot make one."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _add_unit_options(parser)

    def error(message: str) -> NoReturn:
        raise UnitError(message)

    parser.error = error  # type: ignore[method-assign]
    notes = []
    try:
        options, run_argv = parser.parse_known_args(argv)
        user = options.user or _current_user()
        venv = (options.venv or Path(sys.prefix)).expanduser().absolute()
        workdir = (options.workdir or Path.cwd()).expanduser().absolute()
        made_by = shlex.join(
            ["edgeclf", "doctor", "--unit", "--user", user, "--venv", str(venv), "--workdir", str(workdir), *run_argv]
        )
        text = systemd_unit(run_argv, user, venv, workdir, made_by)
    except UnitError as exc:
        print(f"{prog} --unit: error: {exc}", file=sys.stderr)
        return 2
    if options.venv is None and sys.prefix == sys.base_prefix:
        notes.append(f"{sys.prefix} is not a venv; pass --venv DIR if edgeclf is installed in one")
    if not (venv / "bin" / "edgeclf").is_file():
        notes.append(f"{venv / 'bin' / 'edgeclf'} does not exist (yet)")
    if options.user is None and user == "root":
        notes.append("the service would run as root; pass --user NAME")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    sys.stdout.write(text)
    return 0


@guarded
def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Print every check and exit 1 when any failed; with --unit, print a systemd unit for `edgeclf run`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    if "--unit" in argv and not {"-h", "--help"} & set(argv):
        return _unit_main(argv, parser.prog)
    args = parser.parse_args(argv)
    if args.user or args.venv or args.workdir:
        parser.error("--user, --venv and --workdir go with --unit")
    mqtt = mqttopts.settings(parser, args)  # a bad URL: one line, exit 1
    results = [c for check in CHECKS for c in check()] + check_model(args.model, args.labels)
    if mqtt is not None:
        results += check_mqtt(mqtt)
    for result in results:
        print(result.line())
    failed = [r for r in results if r.status == FAIL]
    print(f"{len(results)} checks, {len(failed)} failed" + (", see the fixes above" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
