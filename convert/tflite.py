"""Keras model -> .tflite bytes in one of the quantization modes."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgeclf.convert.modes import QuantMode
from edgeclf.edge_app.errors import EdgeClfError, require


def representative(images: np.ndarray) -> Any:
    """A representative_dataset callable yielding one normalised image at a time."""

    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(images)):
            yield [images[i : i + 1].astype(np.float32)]

    return gen


def to_tflite(model: Any, mode: QuantMode, io: str, calibration: np.ndarray | None = None) -> bytes:
    """Convert a Keras model; `calibration` (normalised float images) is required by calibrated modes."""
    tf = require("tensorflow", "train")
    if mode.calibrated and (calibration is None or len(calibration) == 0):
        raise EdgeClfError(f"{mode.name} conversion needs calibration images")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    mode.configure(tf, converter, representative(calibration) if mode.calibrated else None, io)
    try:
        with _quiet():
            return bytes(converter.convert())
    except Exception as exc:  # noqa: BLE001 - the converter raises many types; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeClfError(f"TFLite conversion ({mode.name}) failed: {first}") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Send the converter's C++ and Python chatter (graph dumps, MLIR logs) to a discarded file."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(open(os.devnull, "w")) as devnull:
                try:
                    yield
                finally:
                    devnull.close()
        finally:
            sys.stdout.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
