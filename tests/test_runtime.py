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
        def __init__(self, model_content: bytes, num_threads: int = 1) -> None:
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


REWRITE_IN_PLACE = """
import sys
import numpy as np
from edgeclf.edge_app.classifier import Classifier
clf = Classifier(sys.argv[1], threads=1)
frame = np.zeros((48, 64, 3), np.uint8)
before = clf.classify(frame, top_k=1)
with open(sys.argv[1], "r+b") as f:  # a user's `cp other.tflite model.tflite` under a running service
    f.truncate(100)
    f.write(b"x" * 5000)
assert clf.classify(frame, top_k=1) == before
print("still classifying")
"""


def test_a_model_file_rewritten_in_place_does_not_kill_the_process(shipped_models, tmp_path):
    """The runtime used to memory-map the model: truncating the file under a running process killed it with
    SIGBUS (exit -7) on the next frame. The model's bytes are read once, so the process keeps its model."""
    import shutil
    import subprocess

    model = tmp_path / "model.tflite"
    shutil.copy(shipped_models["default"], model)
    done = subprocess.run([sys.executable, "-c", REWRITE_IN_PLACE, str(model)], capture_output=True, text=True)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert "still classifying" in done.stdout
