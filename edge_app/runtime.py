"""Pick the TFLite interpreter: ai_edge_litert, then tflite_runtime, then tensorflow.lite."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from edge_app.errors import EdgeClfError, ModelLoadError

# name -> (module holding Interpreter, attribute path, distribution names for the version)
RUNTIMES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ai_edge_litert": ("ai_edge_litert.interpreter", "Interpreter", ("ai-edge-litert", "ai-edge-litert-nightly")),
    "tflite_runtime": ("tflite_runtime.interpreter", "Interpreter", ("tflite-runtime", "tflite_runtime")),
    "tensorflow": ("tensorflow", "lite.Interpreter", ("tensorflow", "tensorflow-cpu")),
}


@dataclass(frozen=True)
class RuntimeInfo:
    """Which interpreter runs the model, with its version, e.g. `ai_edge_litert 2.3.0`."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def _version(dists: tuple[str, ...]) -> str:
    for dist in dists:
        try:
            return importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    return "unknown"


def interpreter_class(runtime: str | None = None) -> tuple[type, RuntimeInfo]:
    """The Interpreter class of the named runtime, or of the first one installed."""
    if runtime is not None and runtime not in RUNTIMES:
        raise EdgeClfError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    names = [runtime] if runtime else list(RUNTIMES)
    errors = []
    for name in names:
        module_name, attr, dists = RUNTIMES[name]
        try:
            # tensorflow is the last resort and is imported only when nothing lighter exists.
            obj: Any = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj, RuntimeInfo(name, _version(dists))
    hint = "pip install 'edgeclf[edge]'" if runtime is None else f"install {runtime}"
    raise EdgeClfError(f"no TFLite runtime available ({'; '.join(errors)}); {hint}")


def load_interpreter(
    model_path: str | Path, runtime: str | None = None, threads: int | None = None
) -> tuple[Any, RuntimeInfo]:
    """A ready (allocated) interpreter for `model_path`, and which runtime it is."""
    path = Path(model_path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    cls, info = interpreter_class(runtime)
    threads = threads or os.cpu_count() or 1
    try:
        interpreter = cls(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path} is not a usable .tflite model ({info}): {first}") from None
    return interpreter, info
