"""The TFLiteConverter setting of each quantisation mode, keyed by the one table (edge_app/quantmodes.py).

The table says what a mode is (names, I/O types, verification floors, report colours); this module says
only how TensorFlow makes it. `build` joins the two and refuses a row without a setting or a setting
without a row, so a mode cannot be half added.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from edgeclf.edge_app import quantmodes
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.quantmodes import IO_TYPES

__all__ = ["CONVERTERS", "IO_TYPES", "QUANT_MODES", "Converter", "QuantMode", "build", "get"]

Configure = Callable[[Any, Any, Callable[[], Iterator[list[Any]]] | None, str], None]


@dataclass(frozen=True)
class Converter:
    """How a TFLiteConverter is set up for a mode."""

    calibrated: bool  # needs a representative dataset
    configure: Configure  # (tf, converter, representative dataset or None, io type)


@dataclass(frozen=True)
class QuantMode:
    """A table row joined with its converter setting: what convert, verification and the CLI use."""

    row: quantmodes.QuantMode
    converter: Converter

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def description(self) -> str:
        return self.row.description

    @property
    def io_choices(self) -> tuple[str, ...]:
        return self.row.io_choices

    @property
    def default_io(self) -> str:
        return self.row.default_io

    @property
    def calibrated(self) -> bool:
        return self.converter.calibrated

    @property
    def configure(self) -> Configure:
        return self.converter.configure


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


CONVERTERS: dict[str, Converter] = {
    "float32": Converter(False, _float32),
    "float16": Converter(False, _float16),
    "dynamic": Converter(False, _dynamic),
    "int8": Converter(True, _int8),
}


def build(table: Mapping[str, quantmodes.QuantMode], converters: Mapping[str, Converter]) -> dict[str, QuantMode]:
    """Every table row with its converter setting, in table order; RuntimeError (a code defect, not a user
    error) when a row has no setting or a setting no row."""
    no_setting = [name for name in table if name not in converters]
    if no_setting:
        raise RuntimeError(f"quantization mode(s) {', '.join(no_setting)} in the table have no converter setting")
    no_row = [name for name in converters if name not in table]
    if no_row:
        raise RuntimeError(f"converter setting(s) {', '.join(no_row)} are not in the table of quantization modes")
    return {name: QuantMode(row, converters[name]) for name, row in table.items()}


QUANT_MODES: dict[str, QuantMode] = build(quantmodes.MODES, CONVERTERS)


def get(name: str, io: str | None = None) -> tuple[QuantMode, str]:
    """The mode called `name` and the I/O type to use; a one-line error for a bad pair."""
    mode = QUANT_MODES[quantmodes.get(name).name]
    io = io or mode.default_io
    if io not in mode.io_choices:
        raise EdgeClfError(f"--io {io} is not available for {name} (choose from {', '.join(mode.io_choices)})")
    return mode, io
