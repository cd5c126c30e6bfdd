"""`edgeclf <stage> ...`: one console script that hands over to each stage's own `main`.

It lives in edge_app because that is the package every install has. Stages are named by
module path (edgeclf.<stage>...) and imported only when asked for, so `edgeclf run` on a Pi never
loads the host-side stages or TensorFlow; `python -m edgeclf.<stage>` calls the very same `main`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from edgeclf.edge_app import __version__
from edgeclf.edge_app.errors import EdgeClfError

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("edgeclf.train.cli", "train a CNN on CIFAR-10 or an image folder (host, needs [train])"),
    "convert": ("edgeclf.convert.cli", "Keras model -> .tflite (float32/float16/dynamic/int8) with verification"),
    "run": ("edgeclf.edge_app.run", "live classification from a camera, video, stream or images (TFLite only)"),
    "bench": ("edgeclf.benchmarks.cli", "latency / accuracy / size of .tflite models"),
    "serve": (
        "edgeclf.edge_app.web.serve",
        "web UI and JSON API on the device: upload, live view, history (needs [web])",
    ),
    "teach": (
        "edgeclf.edge_app.teach",
        "teach a model new classes from a few pictures each, on the device (TFLite only)",
    ),
    "capture": (
        "edgeclf.edge_app.capturecmd",
        "save frames from a camera, video, stream or images into DIR/LABEL/ to teach",
    ),
    "doctor": ("edgeclf.edge_app.doctor", "check runtimes, camera, display and the default model on this machine"),
}


def guarded(main: Callable[[Sequence[str] | None, str | None], int]) -> Callable[..., int]:
    """Wrap a stage's main so user errors print one line and exit 1, Ctrl-C exits 130."""

    def wrapper(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
        try:
            return main(argv, prog)
        except EdgeClfError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    wrapper.__doc__ = main.__doc__
    wrapper.__name__ = getattr(main, "__name__", "main")
    return wrapper


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"usage: edgeclf <command> [options]   (edgeclf {__version__})", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`edgeclf <command> --help` for each command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch `edgeclf <command> ...` to `<stage>.main(argv, prog)`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"edgeclf {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"edgeclf: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest, f"edgeclf {command}"))


if __name__ == "__main__":
    raise SystemExit(main())
