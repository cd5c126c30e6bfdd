"""The runtime chain: an installed but broken runtime is one line, and the automatic choice moves on."""

from __future__ import annotations

import sys
import types

import pytest

import edgeclf.edge_app.runtime as runtime
from edgeclf.edge_app.errors import EdgeClfError, ModelLoadError
from edgeclf.edge_app.runtime import load_interpreter

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it


def broken_runtime(monkeypatch, error: BaseException) -> None:
    """A runtime named 'broken' first in the chain: tflite-runtime 2.14 with numpy 2 raises SystemError
    inside its wrapper when the Interpreter is made."""
    module = types.ModuleType("fake_broken_runtime")

    class Interpreter:
        def __init__(self, model_path: str, num_threads: int = 1) -> None:
            raise error

    module.Interpreter = Interpreter
    monkeypatch.setitem(sys.modules, "fake_broken_runtime", module)
    chain = {"broken": ("fake_broken_runtime", "Interpreter", ("fake-broken",)), **runtime.RUNTIMES}
    monkeypatch.setattr(runtime, "RUNTIMES", chain)


WRAPPER_ERROR = SystemError("<built-in method CreateWrapperFromFile of PyCapsule object> returned NULL without setting")


def test_a_broken_runtime_is_skipped_with_one_line(shipped_models, monkeypatch, caplog):
    broken_runtime(monkeypatch, WRAPPER_ERROR)
    interpreter, info = load_interpreter(shipped_models["default"])
    assert info.name == "ai_edge_litert" and interpreter.get_input_details()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "broken" in warnings[0] and "SystemError" in warnings[0], warnings
    assert "\n" not in warnings[0]


def test_a_forced_broken_runtime_is_a_one_line_error(shipped_models, monkeypatch):
    broken_runtime(monkeypatch, WRAPPER_ERROR)
    with pytest.raises(EdgeClfError) as exc:
        load_interpreter(shipped_models["default"], runtime="broken")
    message = str(exc.value)
    assert "broken" in message and "SystemError" in message and "\n" not in message
    assert not isinstance(exc.value, ModelLoadError)  # the model is fine: the runtime is not


def test_a_bad_model_is_not_blamed_on_the_runtime(tmp_path, monkeypatch):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ModelLoadError, match="is not a usable .tflite model"):
        load_interpreter(bad)
