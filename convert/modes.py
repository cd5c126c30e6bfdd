"""The one table of quantization modes: CLI choices, converter settings, verification and benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from edge_app.errors import EdgeClfError

IO_TYPES = ("int8", "uint8", "float32")


@dataclass(frozen=True)
class QuantMode:
    """One row of the table: what the mode does and how it sets up a TFLiteConverter."""

    name: str
    description: str
    calibrated: bool  # needs a representative dataset
    default_io: str
    io_choices: tuple[str, ...]
    configure: Callable[[Any, Any, Callable[[], Iterator[list[Any]]] | None, str], None]


def _float32(tf: Any, conv: Any, rep: Any, io: str) -> None:
    """No optimisation: the float graph as it is."""


def _float16(tf: Any, conv: Any, rep: Any, io: str) -> None:
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]


def _dynamic(tf: Any, conv: Any, rep: Any, io: str) -> None:
    conv.optimizations = [tf.lite.Optimize.DEFAULT]


def _int8(tf: Any, conv: Any, rep: Any, io: str) -> None:
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_type = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io]
    conv.inference_input_type = io_type
    conv.inference_output_type = io_type


QUANT_MODES: dict[str, QuantMode] = {
    m.name: m
    for m in (
        QuantMode("float32", "float32 weights and activations (reference)", False, "float32", ("float32",), _float32),
        QuantMode("float16", "float16 weights, float32 compute", False, "float32", ("float32",), _float16),
        QuantMode(
            "dynamic", "int8 weights, float activations (dynamic range)", False, "float32", ("float32",), _dynamic
        ),
        QuantMode("int8", "full integer: int8 weights and activations, calibrated", True, "int8", IO_TYPES, _int8),
    )
}


def get(name: str, io: str | None = None) -> tuple[QuantMode, str]:
    """The mode called `name` and the I/O type to use; a one-line error for a bad pair."""
    if name not in QUANT_MODES:
        raise EdgeClfError(f"unknown quantization {name!r}; choose from {', '.join(QUANT_MODES)}")
    mode = QUANT_MODES[name]
    io = io or mode.default_io
    if io not in mode.io_choices:
        raise EdgeClfError(f"--io {io} is not available for {name} (choose from {', '.join(mode.io_choices)})")
    return mode, io
