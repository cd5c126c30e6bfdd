"""The input contract of a lone Keras file (no run.json beside it): options, or a `<stem>.json` sidecar.

A run folder's run.json records how its model was trained. A lone .keras / .h5 records nothing, and a
guess (RGB, pixel / 255, the data's sorted class names) goes unnoticed: the model just sees wrong inputs.
So the contract must be given. `edgeclf convert` and `edgeclf train --init` both read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeclf.edge_app.contract import COLORS, InputSpec
from edgeclf.edge_app.errors import EdgeClfError, MetadataError
from edgeclf.edge_app.labels import read_labels
from edgeclf.train.jsonfile import read_json

# The options a lone file needs, in the order messages name them
CONTRACT_OPTIONS = ("mean", "std", "color", "labels")


@dataclass(frozen=True)
class LoneContract:
    """How the lone model's inputs were made and what its outputs mean, and where that was read."""

    labels: tuple[str, ...]
    color: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    origin: str  # "the options", "tiny.json", or "tiny.json and the options": for messages

    def input_spec(self, height: int, width: int, resize: str) -> InputSpec:
        """The contract's InputSpec for a model input of height x width."""
        return InputSpec(height, width, self.color, self.mean, self.std, resize)


def sidecar_path(model_path: Path) -> Path:
    """`models/tiny.keras` -> `models/tiny.json`: the same naming as a .tflite's sidecar."""
    return model_path.with_suffix(".json")


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _read_sidecar(path: Path) -> dict[str, Any]:
    """The contract keys a sidecar gives (labels, color, mean, std), checked; {} when there is no sidecar.

    The layout is the model contract's (what convert writes beside a .tflite): `labels` at the top,
    `color`, `mean` and `std` under `input`. Other keys are ignored.
    """
    if not path.is_file():
        return {}
    data = read_json(path)
    if not isinstance(data, dict):
        raise EdgeClfError(f"{path} is not a JSON object; expected labels and input color/mean/std")
    found: dict[str, Any] = {}
    if "labels" in data:
        labels = data["labels"]
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
            raise EdgeClfError(f"{path}: 'labels' must be a non-empty list of non-empty strings")
        found["labels"] = tuple(x.strip() for x in labels)
    spec = data.get("input", {})
    if not isinstance(spec, dict):
        raise EdgeClfError(f"{path}: 'input' must be an object with color, mean and std")
    found.update({k: spec[k] for k in ("color", "mean", "std") if k in spec})
    return found


def resolve(model_path: Path, given: dict[str, Any], has_data: bool) -> LoneContract:
    """The contract from the options in `given` (None = not given) over the sidecar's; one error line naming
    everything missing (and --data, when that is missing too) otherwise. An option wins over the sidecar."""
    sidecar = sidecar_path(model_path)
    from_file = _read_sidecar(sidecar)
    from_options = {k: v for k, v in given.items() if k in CONTRACT_OPTIONS and v is not None}
    values = {**from_file, **from_options}
    missing = ([] if has_data else ["--data"]) + [f"--{k}" for k in CONTRACT_OPTIONS if k not in values]
    if missing:
        if all(m == "--data" for m in missing):
            hint = ""
        elif sidecar.is_file():
            hint = f" ({sidecar.name} beside it gives no {_join([m[2:] for m in missing if m != '--data'])})"
        else:
            hint = f" (or write {sidecar.name} beside it with labels and input color, mean and std)"
        raise EdgeClfError(f"{model_path} has no run.json beside it; pass {_join(missing)}{hint}")
    used_file = any(k not in from_options for k in CONTRACT_OPTIONS)
    origin = (
        f"{sidecar.name} and the options"
        if used_file and from_options
        else (sidecar.name if used_file else "the options")
    )
    labels = values["labels"]
    # an option names a labels file (one label per line, in output order); the sidecar and Python callers give them
    labels = read_labels(labels) if isinstance(labels, (str, Path)) else tuple(labels)
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise EdgeClfError(f"the labels from {origin} repeat {', '.join(repeated)}; each output needs its own")
    if values["color"] not in COLORS:
        raise EdgeClfError(f"{origin}: color must be one of {', '.join(COLORS)}, got {values['color']!r}")
    try:
        spec = InputSpec(1, 1, values["color"], values["mean"], values["std"])  # validates mean and std
    except (MetadataError, TypeError) as exc:
        raise EdgeClfError(f"{origin}: {exc}") from None
    return LoneContract(tuple(labels), spec.color, spec.mean, spec.std, origin)
