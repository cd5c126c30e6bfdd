"""Pick the TFLite interpreter: ai_edge_litert, then tflite_runtime, then tensorflow.lite."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from edgeclf.edge_app.errors import EdgeClfError, ModelLoadError

log = logging.getLogger(__name__)

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


def _import(name: str) -> tuple[type, RuntimeInfo]:
    """The Interpreter class of runtime `name`; ImportError (or whatever a broken install raises) if not."""
    module_name, attr, dists = RUNTIMES[name]
    obj: Any = importlib.import_module(module_name)  # tensorflow only when nothing lighter imported
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj, RuntimeInfo(name, _version(dists))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def interpreter_class(runtime: str | None = None) -> tuple[type, RuntimeInfo]:
    """The Interpreter class of the named runtime, or of the first one that imports."""
    return next(_candidates(runtime, []))


def _candidates(runtime: str | None, errors: list[str]) -> Iterator[tuple[type, RuntimeInfo]]:
    """Each runtime that imports, in the chain's order (only `runtime` when one is named); what failed is
    added to `errors`. EdgeClfError once none is left."""
    if runtime is not None and runtime not in RUNTIMES:
        raise EdgeClfError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    for name in [runtime] if runtime else list(RUNTIMES):
        try:
            yield _import(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a broken install (numpy ABI) raises anything at import
            errors.append(f"{name} is installed but does not import: {_reason(exc)}")
            if runtime is None:
                log.warning("%s; trying the next runtime", errors[-1])
    hint = "pip install 'edgeclf[edge]'" if runtime is None else f"install {runtime}, or leave out --runtime"
    raise EdgeClfError(f"no TFLite runtime available ({'; '.join(errors)}); {hint}")


def _read_model(path: Path) -> bytes:
    """The model file's bytes, read once. A runtime given the path memory-maps the file, and a file
    rewritten in place under a running process (a `cp` over it) then kills the process with SIGBUS."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ModelLoadError(f"{path} is a folder, not a model file") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read the model {path}: {exc.strerror or exc}") from None


def load_interpreter(
    model_path: str | Path, runtime: str | None = None, threads: int | None = None, content: bytes | None = None
) -> tuple[Any, RuntimeInfo]:
    """A ready (allocated) interpreter for `model_path` (or for the flatbuffer `content`, which `model_path`
    then only names in messages), and which runtime it is.

    A runtime that is installed but broken (tflite-runtime 2.14 with numpy 2 raises SystemError when the
    interpreter is made) is one warning line and the next runtime is tried; a model that no runtime can
    read is a ModelLoadError."""
    path = Path(model_path)
    if content is None:
        content = _read_model(path)
    threads = threads or os.cpu_count() or 1
    errors: list[str] = []
    for cls, info in _candidates(runtime, errors):
        try:
            interpreter = cls(model_content=content, num_threads=threads)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # the model: a bad file is refused by every runtime
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"{path} is not a usable .tflite model ({info}): {first}") from None
        except Exception as exc:  # noqa: BLE001 - SystemError, TypeError...: the runtime, not the model
            errors.append(f"{info} is installed but broken: {_reason(exc)}")
            if runtime is not None:
                raise EdgeClfError(f"{errors[-1]}; leave out --runtime to use another") from None
            log.warning("%s; trying the next runtime", errors[-1])
            continue
        return interpreter, info
    raise AssertionError("unreachable: _candidates raises when it runs out")
