"""The model contract: what a .tflite needs to say so any stage can use it.

One definition, shared by train, convert, benchmarks and the edge app. The same JSON
is written as a sidecar `<name>.json` and embedded in the .tflite (see metadata.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from edgeclf.edge_app.errors import MetadataError
from edgeclf.edge_app.head import Head
from edgeclf.edge_app.quantmodes import MODES

# 1: the contract; 2: the same plus a taught head (`edgeclf teach`). A file is written with the lowest schema
# that holds it, so untaught models stay readable by older versions, and a reader of schema 1 refuses a taught
# model ("unsupported metadata schema 2") instead of ignoring its head and reporting the base's classes.
SCHEMA = 2
HEAD_SCHEMA = 2
READS = (1, 2)
TASK = "image_classification"
QUANTIZATIONS = tuple(MODES)  # the table of modes (quantmodes.py) names them
RESIZE_MODES = ("stretch", "center_crop")
COLORS = ("RGB", "BGR")


@dataclass(frozen=True)
class InputSpec:
    """How a camera frame becomes the model's input: x = (pixel - mean) / std, pixel in 0..255."""

    height: int
    width: int
    color: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (255.0, 255.0, 255.0)
    resize: str = "stretch"

    def __post_init__(self) -> None:
        if not (isinstance(self.height, int) and isinstance(self.width, int)):
            raise MetadataError(f"input height/width must be integers, got {self.height!r}x{self.width!r}")
        if self.height < 1 or self.width < 1:
            raise MetadataError(f"input size must be positive, got {self.height}x{self.width}")
        if self.color not in COLORS:
            raise MetadataError(f"input color must be one of {COLORS}, got {self.color!r}")
        if self.resize not in RESIZE_MODES:
            raise MetadataError(f"input resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3 or not all(_is_number(v) for v in value):
                raise MetadataError(f"input {name} must be three numbers, got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if any(s == 0 for s in self.std):
            raise MetadataError(f"input std must not contain zero, got {self.std!r}")

    @property
    def value_range(self) -> tuple[float, float]:
        """The (min, max) a normalised input can take, over all channels."""
        lows = [(0.0 - m) / s for m, s in zip(self.mean, self.std)]
        highs = [(255.0 - m) / s for m, s in zip(self.mean, self.std)]
        ends = lows + highs
        return min(ends), max(ends)


@dataclass(frozen=True)
class ModelInfo:
    """Everything a .tflite image classifier carries about itself."""

    labels: tuple[str, ...]
    input: InputSpec
    quantization: str = "float32"
    architecture: str = "unknown"
    params: int = 0
    dataset: str = "unknown"
    metrics: dict[str, Any] = field(default_factory=dict)
    schema: int = 1
    task: str = TASK
    head: Head | None = None

    def __post_init__(self) -> None:
        if self.schema not in READS:
            raise MetadataError(
                f"unsupported metadata schema {self.schema!r} (this version reads {', '.join(map(str, READS))})"
            )
        if self.head is not None:
            if self.schema < HEAD_SCHEMA:
                object.__setattr__(self, "schema", HEAD_SCHEMA)
            if tuple(self.labels) != self.head.all_labels:
                raise MetadataError("metadata labels differ from the taught head's labels")
        if self.task != TASK:
            raise MetadataError(f"metadata task is {self.task!r}, expected {TASK!r}")
        if not self.labels or not all(isinstance(x, str) and x for x in self.labels):
            raise MetadataError("metadata labels must be a non-empty list of non-empty strings")
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.quantization not in QUANTIZATIONS:
            raise MetadataError(f"quantization must be one of {QUANTIZATIONS}, got {self.quantization!r}")
        if not isinstance(self.params, int) or self.params < 0:
            raise MetadataError(f"params must be a non-negative integer, got {self.params!r}")
        if not isinstance(self.metrics, dict):
            raise MetadataError("metrics must be a JSON object")

    def to_dict(self) -> dict[str, Any]:
        """The contract as plain JSON-ready data, keys in the documented order."""
        spec = asdict(self.input)
        spec["mean"], spec["std"] = list(self.input.mean), list(self.input.std)
        return {
            "schema": self.schema,
            "task": self.task,
            "labels": list(self.labels),
            "input": spec,
            "quantization": self.quantization,
            "architecture": self.architecture,
            "params": self.params,
            "dataset": self.dataset,
            "metrics": self.metrics,
            **({"head": self.head.to_dict()} if self.head is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> ModelInfo:
        """Validate and build from parsed JSON; every problem is a one-line MetadataError."""
        if not isinstance(data, dict):
            raise MetadataError("metadata is not a JSON object")
        missing = [k for k in ("schema", "labels", "input", "quantization") if k not in data]
        if missing:
            raise MetadataError(f"metadata lacks required key(s): {', '.join(missing)}")
        spec = data["input"]
        if not isinstance(spec, dict) or "height" not in spec or "width" not in spec:
            raise MetadataError("metadata 'input' must be an object with height and width")
        known = {"height", "width", "color", "mean", "std", "resize"}
        if not isinstance(data["labels"], list):
            raise MetadataError("metadata labels must be a list")
        try:
            input_spec = InputSpec(**{k: v for k, v in spec.items() if k in known})
            return cls(
                labels=tuple(data["labels"]),
                input=input_spec,
                quantization=data["quantization"],
                architecture=str(data.get("architecture", "unknown")),
                params=data.get("params", 0),
                dataset=str(data.get("dataset", "unknown")),
                metrics=data.get("metrics", {}),
                schema=data["schema"],
                task=data.get("task", TASK),
                head=_head(data),
            )
        except TypeError as exc:
            raise MetadataError(f"malformed metadata: {exc}") from exc

    def with_changes(self, **changes: Any) -> ModelInfo:
        """A copy with some fields replaced (frozen dataclass helper)."""
        return replace(self, **changes)


def _head(data: dict[str, Any]) -> Head | None:
    if "head" not in data:
        return None
    if data["schema"] < HEAD_SCHEMA:
        raise MetadataError(f"metadata schema {data['schema']} cannot carry a taught head (schema {HEAD_SCHEMA} can)")
    return Head.from_dict(data["head"])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
