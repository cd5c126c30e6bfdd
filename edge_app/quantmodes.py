"""The one table of quantisation modes. The model contract's names, convert's --quantize choices and
converter settings (keyed by these names in convert/modes.py), verification's floors and the benchmark
report's row order and colours all come from it; adding a row without a converter setting fails a test.

It lives on the edge side because the contract does (a .tflite names its mode); it holds no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeclf.edge_app.errors import EdgeClfError

IO_TYPES = ("int8", "uint8", "float32")  # every input/output type a mode may offer


@dataclass(frozen=True)
class QuantMode:
    """One row: what a mode does to the model, and what checking and reporting it need."""

    name: str
    weights: str
    activations: str
    io_choices: tuple[str, ...]  # input/output tensor types offered; the first is the default
    integer_only: bool  # every op must compute on integers: verification refuses a float op
    min_agreement: float | None  # top-1 agreement with Keras verification requires; None: --max-drop alone
    colour: tuple[int, int, int]  # BGR: the benchmark plot's markers and legend

    @property
    def default_io(self) -> str:
        return self.io_choices[0]

    @property
    def description(self) -> str:
        return f"{self.weights} weights, {self.activations} activations"


# Table order is display order: the reference first, then smaller and more integer.
# The float modes change arithmetic precision only, so a top-1 disagreement with Keras beyond a few
# near-ties means a broken conversion; the integer modes are judged by their accuracy drop.
MODES: dict[str, QuantMode] = {
    m.name: m
    for m in (
        QuantMode("float32", "float32", "float32", ("float32",), False, 0.999, (200, 80, 40)),
        QuantMode("float16", "float16", "float32", ("float32",), False, 0.99, (40, 160, 40)),
        QuantMode("dynamic", "int8", "float32 (dynamic range)", ("float32",), False, None, (160, 40, 160)),
        QuantMode("int8", "int8", "int8 (calibrated)", IO_TYPES, True, None, (30, 30, 220)),
    )
}

REFERENCE = "float32"  # what the other modes are compared with (verification's Keras twin, benchmark ratios)


def get(name: str) -> QuantMode:
    """The row called `name`; a one-line error naming the choices otherwise."""
    if name not in MODES:
        raise EdgeClfError(f"unknown quantization {name!r}; choose from {', '.join(MODES)}")
    return MODES[name]


def order(name: str) -> int:
    """A mode's place in the table (unknown names last), for sorting rows."""
    return list(MODES).index(name) if name in MODES else len(MODES)
