"""run.json as convert reads it: the run's data and splits, and its model contract.

A run folder can be edited, truncated or hand-written; every problem with its run.json is
one EdgeClfError that names the file and the key, never a KeyError or TypeError traceback.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeclf.edge_app.contract import RESIZE_MODES, ModelInfo
from edgeclf.edge_app.errors import EdgeClfError, MetadataError
from edgeclf.train.data import DataSpec
from edgeclf.train.jsonfile import read_json

RUN_FILE = "run.json"


@dataclass(frozen=True)
class RunRecord:
    """The parts of a run.json that convert uses."""

    data: DataSpec
    info: ModelInfo


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value < 1


def _optional_path(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value != "")


# config.data fields: (what the value must be, check). `data` is required: without it DataSpec
# would quietly fall back to CIFAR-10; the others default as DataSpec does (older runs lack some).
DATA_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "data": ("'cifar10' or a folder path", lambda v: isinstance(v, str) and v != ""),
    "data_dir": ("null or a folder path", _optional_path),
    "image_size": ("a positive integer", lambda v: _is_int(v) and v > 0),
    "resize": (f"one of {', '.join(RESIZE_MODES)}", lambda v: isinstance(v, str) and v in RESIZE_MODES),
    "val_split": ("a number from 0 up to (not including) 1", _is_fraction),
    "test_split": ("a number from 0 up to (not including) 1", _is_fraction),
    "limit": ("null or a positive integer", lambda v: v is None or (_is_int(v) and v > 0)),
    "seed": ("a non-negative integer", lambda v: _is_int(v) and v >= 0),
    "cache_dir": ("null or a folder path", _optional_path),
}
REQUIRED_DATA_FIELDS = ("data",)


JSON_KINDS = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}


def _kind(value: Any) -> str:
    """How a JSON value reads in a message: 'a string', 'null', ..."""
    return "null" if value is None else JSON_KINDS.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _object(parent: dict[str, Any], key: str, where: str, path: Path) -> dict[str, Any]:
    if key not in parent:
        raise EdgeClfError(f"{path}: '{where}' is missing")
    value = parent[key]
    if not isinstance(value, dict):
        raise EdgeClfError(f"{path}: '{where}' must be an object, got {_kind(value)}")
    return value


def read_run(path: str | Path) -> RunRecord:
    """Read and check a run.json; any missing or malformed key is one EdgeClfError naming the file and the key."""
    path = Path(path)
    run = read_json(path)
    if not isinstance(run, dict):
        raise EdgeClfError(f"{path} is not a JSON object (got {_kind(run)}); expected a run.json from `edgeclf train`")
    data = _object(_object(run, "config", "config", path), "data", "config.data", path)
    for key in REQUIRED_DATA_FIELDS:
        if key not in data:
            raise EdgeClfError(f"{path}: 'config.data.{key}' is missing")
    for key, (expected, ok) in DATA_FIELDS.items():
        if key in data and not ok(data[key]):
            raise EdgeClfError(f"{path}: 'config.data.{key}' must be {expected}, got {_shown(data[key])}")
    try:
        info = ModelInfo.from_dict(_object(run, "model_info", "model_info", path))
    except MetadataError as exc:
        raise EdgeClfError(f"{path}: 'model_info' is not a usable model contract: {exc}") from None
    return RunRecord(DataSpec.from_dict(data), info)
